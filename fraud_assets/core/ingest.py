"""Reading a user's own transaction files (CSV or Parquet) from a landing folder.

A file is mapped onto fraudops' column names by a column mapping and kept as received: CSV
values stay text (so ``"007"`` is not turned into ``7`` and an unreadable amount is still there
to be reported); timestamps are rewritten to ISO text only when a configured format reads them.
Every row remembers its file and row number.

Reading one file (pyarrow, and the checks that make a file unreadable) is in `landing_files`;
this module maps a file onto the contract and files its rows under their days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fraud_assets.core import columns as c
from fraud_assets.core.landing_files import (
    SUPPORTED_SUFFIXES,
    TEXT,
    LandingFileError,
    file_columns,
    read_table,
    to_pandas,
)
from fraud_assets.core.landing_settings import LandingSettings
from fraud_assets.core.timestamps import day_keys, parse_timestamps
from fraud_assets.core.validation import PARTITION_DATE, SOURCE_FILE, SOURCE_ROW, positional
from fraud_assets.core.value_rules import apply_value_rules

__all__ = [  # LandingFileError, read_table and LandingSettings live in their modules; callers may import them from here
    "LandingFileError",
    "LandingSettings",
    "covered_days",
    "file_signature",
    "list_landing_files",
    "map_columns",
    "read_landing_days",
    "read_landing_file",
    "read_table",
]


def list_landing_files(folder: str | Path) -> list[Path]:
    """Transaction files in the landing folder, in name order; hidden and temp files skipped."""
    root = Path(folder)
    if not root.exists():
        return []
    return sorted(
        p
        for p in root.iterdir()
        if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES and not p.name.startswith((".", "_"))
    )


def file_signature(path: Path) -> str:
    """Changes whenever the file is replaced or rewritten."""
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def map_columns(
    names: list[str], settings: LandingSettings, source: str, required: str = c.TIMESTAMP
) -> dict[str, str]:
    """How to rename a file's columns onto ours; unmapped columns keep their own names.

    ``required`` is the column a file cannot be read without (its rows' days come from it)."""
    missing = sorted(
        f"{ours} <- {theirs!r}" for ours, theirs in settings.column_mapping.items() if theirs not in names
    )
    if missing:
        raise LandingFileError(
            f"{source}: column_mapping names column(s) the file does not have ({missing}); "
            f"the file's columns are {names}"
        )
    renames = {theirs: ours for ours, theirs in settings.column_mapping.items()}
    clash = sorted(ours for theirs, ours in renames.items() if ours in names and ours != theirs)
    if clash:
        raise LandingFileError(
            f"{source}: the file already has column(s) {clash} and column_mapping maps another "
            "column onto them; remove one of the two"
        )
    if settings.file_column(required) not in names:
        raise LandingFileError(
            f"{source}: required column {required!r} is missing (columns: {names}); "
            f'map it with the column mapping, e.g. {{"{required}": "<your column>"}}'
        )
    return renames


# --- landing files as raw transactions ---------------------------------------------------------


def _timestamps(frame: pd.DataFrame, path: Path, settings: LandingSettings) -> pd.Series:
    parsed = parse_timestamps(frame[c.TIMESTAMP], settings.timestamp_format)
    if parsed.isna().all():
        examples = frame[c.TIMESTAMP].head(3).tolist()
        raise LandingFileError(
            f"{path}: no value of column 'timestamp' could be read as a date-time "
            f"(examples: {examples}); set timestamp_format (FRAUDOPS_TIMESTAMP_FORMAT)"
        )
    return parsed


def _partition_days(parsed: pd.Series) -> np.ndarray:
    """Each row's day; rows whose timestamp is unreadable are filed under the file's first day."""
    return day_keys(parsed.fillna(parsed.min()))


def read_landing_file(path: str | Path, settings: LandingSettings) -> pd.DataFrame:
    """One landing file as raw transactions: mapped, lineage added, each row's partition day.

    Rows whose timestamp cannot be read are kept and filed under the file's first day, where
    validation rejects them with the value that failed; so are rows with a value that no value
    rule of the mapping maps (`fraud_assets.core.value_rules`).
    """
    path = Path(path)
    names = file_columns(path, settings)
    renames = map_columns(names, settings, str(path))
    frame = to_pandas(read_table(path, settings)).rename(columns=renames)
    frame = apply_value_rules(frame, settings.value_rules)
    parsed = _timestamps(frame, path, settings)
    if settings.timestamp_format and not pd.api.types.is_datetime64_any_dtype(frame[c.TIMESTAMP].dtype):
        # Rewrite what the configured format read as ISO text, which validation reads without
        # the format; keep the rest as received, to be rejected with its own text.
        iso = pa.array(parsed, type=pa.timestamp("ns")).cast(TEXT.pyarrow_dtype)
        received = pa.array(frame[c.TIMESTAMP], type=TEXT.pyarrow_dtype, from_pandas=True)
        frame[c.TIMESTAMP] = pd.Series(pc.coalesce(iso, received), dtype=TEXT, index=frame.index)
    if c.IS_FRAUD in frame and c.LABEL_KNOWN_AT not in frame:
        frame[c.LABEL_KNOWN_AT] = parsed + pd.Timedelta(days=settings.label_delay_days)
    frame[PARTITION_DATE] = _partition_days(parsed)
    frame[SOURCE_FILE] = path.name
    frame[SOURCE_ROW] = np.arange(1, len(frame) + 1)
    return frame


def read_landing_days(
    files: Iterable[Path], settings: LandingSettings, days: Iterable[str]
) -> tuple[pd.DataFrame, list[str]]:
    """All rows of the landing files that belong to the given days, and the files they came from.

    Each file is read once, whatever the number of days. A Parquet file is read whole too: the
    sensor's run wants every day a file covers, so a row filter would only pay for a backfill of
    a few days out of a large file.
    """
    wanted = set(days)
    parts, used = [], []
    for path in files:
        frame = read_landing_file(path, settings)
        keep = frame[PARTITION_DATE].isin(wanted).to_numpy()
        if keep.any():
            parts.append(frame if keep.all() else frame[keep])
            used.append(path.name)
    if not parts:
        return pd.DataFrame(columns=[*c.REQUIRED_COLUMNS, PARTITION_DATE]), used
    if len(parts) == 1:
        return positional(parts[0]), used
    return pd.concat(parts, ignore_index=True), used


def covered_days(path: str | Path, settings: LandingSettings) -> list[dt.date]:
    """The days a landing file has transactions on, from its timestamp column alone.

    This is what the sensor evaluates for each new file, so it parses one column, not the file:
    pyarrow still checks that every line has the header's number of fields, and `check_text`
    that the whole file is text; a value that does not parse is for validation to reject.
    """
    path = Path(path)
    names = file_columns(path, settings)
    map_columns(names, settings, str(path))
    column = settings.file_column(c.TIMESTAMP)
    frame = to_pandas(read_table(path, settings, columns=[column])).rename(columns={column: c.TIMESTAMP})
    days = np.unique(_partition_days(_timestamps(frame, path, settings)))
    return [dt.date.fromisoformat(day) for day in days]
