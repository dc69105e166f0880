"""Label files: chargeback reports, analysts' exports, reversals, dropped into a landing folder.

A label file (CSV or Parquet) holds one label a row: the transaction id, the label, when it was
reported, and optionally who reported it (``source``), why (``reason``) and an id of the label
(``label_id``; without one, an id is derived from the row's content, so the same file dropped
twice adds nothing). Its columns are mapped onto ours by a column mapping with value rules, like
transaction files (`fraud_assets.core.landing_settings`): ``{"is_fraud": {"column": "status",
"values": {"chargeback": 1, "reversed": 0}}}``.

Reading is vectorised (Arrow's CSV reader, Arrow compute for the mapping and the checks), so a
million labels take seconds; `fraud_assets.core.labels.check_labels` splits the rows into valid
and rejected labels, each rejected row with its column and check.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from fraud_assets.core.ingest import list_landing_files, map_columns
from fraud_assets.core.labels import (
    FEED_FILE,
    FILE_SOURCE,
    OPTIONAL_COLUMNS,
    REPORTED_AT,
    REQUIRED_COLUMNS,
    LabelCheck,
    check_labels,
)
from fraud_assets.core.landing_files import LandingFileError, file_columns, read_table, to_pandas
from fraud_assets.core.landing_settings import LandingSettings
from fraud_assets.core.timestamps import day_keys, parse_timestamps
from fraud_assets.core.validation import PARTITION_DATE, SOURCE_FILE, SOURCE_ROW
from fraud_assets.core.value_rules import apply_value_rules

# The names a label file's mapping may target.
LABEL_FILE_COLUMNS = frozenset((*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS))

__all__ = ["LABEL_FILE_COLUMNS", "check_label_files", "covered_days", "label_settings", "list_label_files"]


def label_settings(mapping: dict, **kwargs: object) -> LandingSettings:
    """Reading settings for label files: a mapping (value rules allowed) onto the label columns."""
    return LandingSettings.from_mapping(mapping, known_columns=LABEL_FILE_COLUMNS, **kwargs)  # type: ignore[arg-type]


def list_label_files(folder: str | Path) -> list[Path]:
    """Label files in the folder, in name order; hidden and temporary files skipped."""
    return list_landing_files(folder)


def _reported_days(frame: pd.DataFrame, settings: LandingSettings) -> tuple[pd.Series, np.ndarray]:
    """Each row's reported time and day; a row whose time does not read is filed under the
    file's first day (where its rejection is kept), or the day the file was read if none reads."""
    reported = parse_timestamps(frame[REPORTED_AT], settings.timestamp_format)
    filler = reported.min() if reported.notna().any() else pd.Timestamp(dt.date.today())
    return reported, day_keys(reported.fillna(filler))


def read_label_file(path: str | Path, settings: LandingSettings) -> pd.DataFrame:
    """One label file as received: mapped onto our names (codes through the value rules), with
    its lineage (file, row, the day its label was reported)."""
    path = Path(path)
    names = file_columns(path, settings)
    renames = map_columns(names, settings, str(path), required=REPORTED_AT)
    frame = to_pandas(read_table(path, settings)).rename(columns=renames)
    if missing := [col for col in REQUIRED_COLUMNS if col not in frame]:
        raise LandingFileError(
            f"{path}: required label column(s) {missing} missing (columns: {names}); map them with "
            'FRAUDOPS_LABELS_MAPPING, e.g. {"transaction_id": "<your id column>", "is_fraud": "<your label column>"}'
        )
    frame = apply_value_rules(frame, settings.value_rules)
    frame[PARTITION_DATE] = _reported_days(frame, settings)[1]
    frame[SOURCE_FILE] = path.name
    frame[SOURCE_ROW] = np.arange(1, len(frame) + 1)
    return frame


def check_label_files(files: Iterable[Path], settings: LandingSettings, days: Iterable[str]) -> LabelCheck:
    """The labels of the files reported on ``days``, checked: valid and rejected rows."""
    wanted = set(days)
    parts = []
    for path in files:
        frame = read_label_file(path, settings)
        keep = frame[PARTITION_DATE].isin(wanted).to_numpy()
        if keep.any():
            parts.append(frame if keep.all() else frame[keep])
    if not parts:
        parts = [pd.DataFrame({col: pd.Series([], dtype=object) for col in REQUIRED_COLUMNS})]
    frame = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
    return check_labels(
        frame, feed=FEED_FILE, default_source=FILE_SOURCE, timestamp_format=settings.timestamp_format
    )


def covered_days(path: str | Path, settings: LandingSettings) -> list[dt.date]:
    """The days a label file has labels for (by ``reported_at``), from that column alone."""
    path = Path(path)
    names = file_columns(path, settings)
    map_columns(names, settings, str(path), required=REPORTED_AT)
    column = settings.file_column(REPORTED_AT)
    frame = to_pandas(read_table(path, settings, columns=[column])).rename(columns={column: REPORTED_AT})
    days = np.unique(_reported_days(frame, settings)[1])
    return [dt.date.fromisoformat(day) for day in days]
