"""Reading a user's own transaction files (CSV or Parquet) from a landing folder.

A file is mapped onto fraudops' column names by a column mapping and kept as received:
CSV values stay text (so ``"007"`` is not turned into ``7`` and an unreadable amount is
still there to be reported); only timestamps are rewritten to ISO text when the configured
format reads them. Every row remembers its file and row number.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from fraud_assets.core import columns as c
from fraud_assets.core.validation import PARTITION_DATE, SOURCE_FILE, SOURCE_ROW

SUPPORTED_SUFFIXES = (".csv", ".parquet", ".pq")
KNOWN_COLUMNS = frozenset(c.ALL_COLUMNS)


class LandingFileError(ValueError):
    """A landing file cannot be read as transactions; the message names the file and the fix."""


@dataclass(frozen=True)
class LandingSettings:
    """How to read a user's files.

    ``column_mapping`` maps our column name to the name in the file, e.g.
    ``{"transaction_id": "txn_ref", "timestamp": "created", "is_fraud": "chargeback"}``;
    columns already named like ours need no entry.
    """

    column_mapping: Mapping[str, str] = field(default_factory=dict)
    timestamp_format: str | None = None
    label_delay_days: float = 7.0
    encoding: str = "utf-8"
    csv_separator: str = ","

    def __post_init__(self) -> None:
        unknown = sorted(set(self.column_mapping) - KNOWN_COLUMNS)
        if unknown:
            raise ValueError(
                f"column_mapping has unknown target column(s) {unknown}; "
                f"map onto these names: {sorted(KNOWN_COLUMNS)}"
            )
        targets = list(self.column_mapping.values())
        twice = sorted({name for name in targets if targets.count(name) > 1})
        if twice:
            raise ValueError(f"column_mapping uses file column(s) {twice} for several targets")
        if self.label_delay_days < 0:
            raise ValueError(f"label_delay_days must be >= 0, not {self.label_delay_days}")

    @classmethod
    def from_json(cls, mapping_json: str | None, **kwargs: object) -> LandingSettings:
        """Build settings from a JSON column mapping (as kept in an environment variable)."""
        mapping: dict[str, str] = {}
        if mapping_json and mapping_json.strip():
            try:
                mapping = json.loads(mapping_json)
            except json.JSONDecodeError as err:
                raise ValueError(f"column mapping is not valid JSON ({err}): {mapping_json!r}") from err
            if not isinstance(mapping, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
            ):
                raise ValueError('column mapping must be a JSON object of strings, e.g. {"amount": "amt"}')
        return cls(column_mapping=mapping, **kwargs)  # type: ignore[arg-type]


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


def _read_raw(path: Path, settings: LandingSettings) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise LandingFileError(f"{path}: unsupported file type {suffix!r}; use .csv or .parquet")
    if path.stat().st_size == 0:
        raise LandingFileError(f"{path}: the file is empty (0 bytes)")
    if suffix == ".csv":
        try:
            frame = pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                encoding=settings.encoding,
                sep=settings.csv_separator,
            )
        except UnicodeDecodeError as err:
            raise LandingFileError(
                f"{path}: not valid {settings.encoding} text (byte {err.object[err.start]:#04x} "
                f"at offset {err.start}); re-encode the file as UTF-8 or set the landing "
                "zone's encoding (e.g. FRAUDOPS_LANDING_ENCODING=latin-1)"
            ) from err
        except pd.errors.EmptyDataError as err:
            raise LandingFileError(f"{path}: the file has no header and no rows") from err
        except pd.errors.ParserError as err:
            raise LandingFileError(f"{path}: not a readable CSV file: {err}") from err
    else:
        try:
            frame = pq.read_table(path).to_pandas()
        except Exception as err:  # pyarrow raises several types for corrupt files
            raise LandingFileError(f"{path}: not a readable Parquet file: {err}") from err
    if frame.empty:
        raise LandingFileError(f"{path}: the file has a header but no rows")
    return frame


def map_columns(frame: pd.DataFrame, settings: LandingSettings, source: str) -> pd.DataFrame:
    """Rename a file's columns onto ours; unmapped columns are kept under their own names."""
    missing = sorted(
        f"{ours} <- {theirs!r}"
        for ours, theirs in settings.column_mapping.items()
        if theirs not in frame.columns
    )
    if missing:
        raise LandingFileError(
            f"{source}: column_mapping names column(s) the file does not have ({missing}); "
            f"the file's columns are {list(frame.columns)}"
        )
    renames = {theirs: ours for ours, theirs in settings.column_mapping.items()}
    clash = sorted(ours for theirs, ours in renames.items() if ours in frame.columns and ours != theirs)
    if clash:
        raise LandingFileError(
            f"{source}: the file already has column(s) {clash} and column_mapping maps another "
            "column onto them; remove one of the two"
        )
    return frame.rename(columns=renames)


def _parse_timestamps(values: pd.Series, fmt: str | None) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        parsed = values
    else:
        parsed = pd.to_datetime(values, errors="coerce", format=fmt or "mixed")
    if getattr(parsed.dtype, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")


def day_keys(timestamps: pd.Series) -> np.ndarray:
    """``YYYY-MM-DD`` of each timestamp, vectorised (one string per distinct day)."""
    days = timestamps.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]")
    uniques, inverse = np.unique(days, return_inverse=True)
    return uniques.astype(str).astype(object)[inverse]


def read_landing_file(path: str | Path, settings: LandingSettings) -> pd.DataFrame:
    """One landing file as raw transactions: mapped, lineage added, each row's partition day.

    Rows whose timestamp cannot be read are kept and filed under the file's first day, where
    validation rejects them with the value that failed.
    """
    path = Path(path)
    frame = map_columns(_read_raw(path, settings), settings, str(path))
    if c.TIMESTAMP not in frame:
        raise LandingFileError(
            f"{path}: required column 'timestamp' is missing (columns: {list(frame.columns)}); "
            "map it with column_mapping, e.g. "
            '{"timestamp": "<your timestamp column>"}'
        )
    parsed = _parse_timestamps(frame[c.TIMESTAMP], settings.timestamp_format)
    readable = parsed.notna().to_numpy()
    if not readable.any():
        examples = frame[c.TIMESTAMP].head(3).tolist()
        raise LandingFileError(
            f"{path}: no value of column 'timestamp' could be read as a date-time "
            f"(examples: {examples}); set timestamp_format (FRAUDOPS_TIMESTAMP_FORMAT)"
        )
    if not pd.api.types.is_datetime64_any_dtype(frame[c.TIMESTAMP].dtype):
        # Rewrite readable timestamps as ISO text so later steps need no format; keep the rest.
        iso = parsed.dt.strftime("%Y-%m-%dT%H:%M:%S.%f").astype(object)
        frame[c.TIMESTAMP] = iso.where(readable, frame[c.TIMESTAMP])
    if c.IS_FRAUD in frame and c.LABEL_KNOWN_AT not in frame:
        frame[c.LABEL_KNOWN_AT] = parsed + pd.Timedelta(days=settings.label_delay_days)
    days = day_keys(parsed.fillna(parsed.min()))
    frame[PARTITION_DATE] = days
    frame[SOURCE_FILE] = path.name
    frame[SOURCE_ROW] = np.arange(1, len(frame) + 1)
    return frame


def read_landing_days(
    files: Iterable[Path], settings: LandingSettings, days: Iterable[str]
) -> tuple[pd.DataFrame, list[str]]:
    """All rows of the landing files that belong to the given days, and the files they came from."""
    wanted = set(days)
    parts, used = [], []
    for path in files:
        frame = read_landing_file(path, settings)
        frame = frame[frame[PARTITION_DATE].isin(wanted)]
        if len(frame):
            parts.append(frame)
            used.append(path.name)
    if not parts:
        return pd.DataFrame(columns=[*c.REQUIRED_COLUMNS, PARTITION_DATE]), used
    return pd.concat(parts, ignore_index=True), used


def covered_days(path: str | Path, settings: LandingSettings) -> list[dt.date]:
    """The days a landing file has transactions on."""
    frame = read_landing_file(path, settings)
    return sorted(dt.date.fromisoformat(day) for day in frame[PARTITION_DATE].unique())
