"""Validation that loses nothing: every raw row ends up either validated or rejected.

Three kinds of problem are told apart because they call for different actions:

* a value that does not parse as its column's type (``amount = "abc"``) and a row that fails a
  row-level check (negative amount, unknown category, duplicate ID, inconsistent weekend flag)
  reject that row only, with the column, the check and the offending value recorded;
* a dataset-level problem (a required column missing, a fraud rate out of range, too many
  rejected rows) is reported as a `DatasetIssue` so that a blocking check can stop everything
  downstream.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.errors
import pyarrow as pa
import pyarrow.compute as pc

from fraud_assets.core import columns as c
from fraud_assets.core.calendar import hour_and_weekday, is_weekend
from fraud_assets.core.coercion import RowFailure, coerce_column, coerce_to_contract
from fraud_assets.core.geo import haversine_km
from fraud_assets.core.schemas import (
    FRAUD_RATE_MAX,
    FRAUD_RATE_MIN,
    ROW_CHECK_COLUMNS,
    RawTransactionSchema,
    ValidatedTransactionSchema,
)
from fraud_assets.core.text import arrow_text
from fraud_assets.core.value_rules import UNMAPPED, unmapped_failures

# Lineage columns the ingestion step adds; carried along, never validated as data.
PARTITION_DATE = "partition_date"
SOURCE = "source"  # where the row came from: generator, landing or api (the scoring API's traffic)
SOURCE_FILE = "source_file"
SOURCE_ROW = "source_row"
LINEAGE_COLUMNS = (PARTITION_DATE, SOURCE, SOURCE_FILE, SOURCE_ROW, UNMAPPED)

FAILED_CHECKS = "failed_checks"
REJECTION_REASON = "rejection_reason"


@dataclass(frozen=True)
class DatasetIssue:
    """A problem of the whole dataset: nothing downstream should be built from it."""

    check: str
    column: str | None
    message: str
    examples: tuple[object, ...] = ()

    def __str__(self) -> str:
        where = f" [column {self.column!r}]" if self.column else ""
        examples = f" (examples: {list(self.examples)})" if self.examples else ""
        return f"{self.check}{where}: {self.message}{examples}"


@dataclass
class ValidationOutcome:
    validated: pd.DataFrame
    rejected: pd.DataFrame
    issues: list[DatasetIssue] = field(default_factory=list)
    failures: list[RowFailure] = field(default_factory=list)  # row numbers of the input frame

    @property
    def n_rows(self) -> int:
        return len(self.validated) + len(self.rejected)

    @property
    def rejected_share(self) -> float:
        return len(self.rejected) / self.n_rows if self.n_rows else 0.0

    def rejection_counts(self) -> pd.Series:
        """How many rows failed each check (a row may fail several)."""
        if self.rejected.empty:
            return pd.Series(dtype="int64", name="rows")
        checks = self.rejected[FAILED_CHECKS].str.split("; ").explode()
        return checks.value_counts().rename("rows")


class DatasetValidationError(ValueError):
    """The dataset as a whole cannot be validated (for example a required column is missing)."""

    def __init__(self, issues: list[DatasetIssue]):
        self.issues = issues
        super().__init__("; ".join(str(issue) for issue in issues))


def missing_required_columns(df: pd.DataFrame) -> list[DatasetIssue]:
    """One issue per required column the frame lacks, naming it and what is there instead."""
    present = [col for col in df.columns if col not in LINEAGE_COLUMNS]
    return [
        DatasetIssue(
            check="required_column_present",
            column=col,
            message=f"required column {col!r} is missing; columns present: {present}. "
            "Map it with the landing zone's column_mapping.",
        )
        for col in c.REQUIRED_COLUMNS
        if col not in df.columns
    ]


def fraud_rate_issue(
    df: pd.DataFrame, min_rate: float = FRAUD_RATE_MIN, max_rate: float = FRAUD_RATE_MAX
) -> DatasetIssue | None:
    """The seed's business rule: a labelled dataset has a fraud rate within [0.1%, 5%]."""
    rate = fraud_rate(df)
    if rate is None or min_rate <= rate <= max_rate:
        return None
    labelled = int(np.isfinite(_labels(df)).sum())
    return DatasetIssue(
        check="fraud_rate_in_range",
        column=c.IS_FRAUD,
        message=f"fraud rate {rate:.4%} over {labelled} labelled rows is outside "
        f"[{min_rate:.2%}, {max_rate:.2%}]",
        examples=(round(rate, 6),),
    )


def fraud_rate(df: pd.DataFrame) -> float | None:
    if c.IS_FRAUD not in df:
        return None
    labels = _labels(df)
    labels = labels[np.isfinite(labels)]
    return float(labels.mean()) if len(labels) else None


def _labels(df: pd.DataFrame) -> np.ndarray:
    """``is_fraud`` as numbers (NaN: unlabelled or unreadable), raw text included."""
    labels, _ = coerce_column(df[c.IS_FRAUD], "float64")
    return labels.to_numpy(dtype="float64", na_value=np.nan)


# --- derived columns --------------------------------------------------------------------------


def add_derived_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Compute the derived columns a source did not provide, from their inputs: the calendar
    columns also for the rows that left them empty (a day's rows may come from several sources)."""
    calendar = (c.HOUR_OF_DAY, c.DAY_OF_WEEK, c.IS_WEEKEND)
    if not all(col in df and df[col].notna().all() for col in calendar):
        hour, day, known = hour_and_weekday(df[c.TIMESTAMP].to_numpy("datetime64[ms]"))
        missing = ~known
        computed = {
            c.HOUR_OF_DAY: pd.arrays.IntegerArray(hour.astype("int8"), missing),
            c.DAY_OF_WEEK: pd.arrays.IntegerArray(day.astype("int8"), missing),
            c.IS_WEEKEND: pd.arrays.BooleanArray(is_weekend(day), missing),
        }
        for col, values in computed.items():
            if col not in df:
                df[col] = values
            elif df[col].isna().any():
                df[col] = df[col].fillna(pd.Series(values, index=df.index))
    location = (c.TXN_LAT, c.TXN_LON, c.CARD_HOME_LAT, c.CARD_HOME_LON)
    if c.DISTANCE_FROM_HOME not in df and all(col in df for col in location):
        df[c.DISTANCE_FROM_HOME] = np.round(haversine_km(*(df[col] for col in location)), 3)
    if c.IS_FOREIGN not in df and c.TXN_COUNTRY in df and c.CARD_HOME_COUNTRY in df:
        known = df[c.TXN_COUNTRY].notna() & df[c.CARD_HOME_COUNTRY].notna()
        foreign = (df[c.TXN_COUNTRY] != df[c.CARD_HOME_COUNTRY]).astype("boolean")
        df[c.IS_FOREIGN] = foreign.where(known, pd.NA)
    return df


def canonical_order(df: pd.DataFrame) -> pd.DataFrame:
    """Canonical columns first in contract order, then lineage, then a source's extra columns."""
    known = [col for col in c.ALL_COLUMNS if col in df]
    lineage = [col for col in LINEAGE_COLUMNS if col in df]
    extra = [col for col in df.columns if col not in known and col not in lineage]
    order = known + lineage + extra
    if order == list(df.columns):
        return df
    return pd.DataFrame({col: df[col] for col in order}, index=df.index, copy=False)  # df[order] copies


# --- the split --------------------------------------------------------------------------------


def _schema_failures(df: pd.DataFrame) -> tuple[list[RowFailure], list[DatasetIssue]]:
    try:
        RawTransactionSchema.validate(df, lazy=True, inplace=True)  # no coercion: nothing to copy
    except pandera.errors.SchemaErrors as err:
        cases = err.failure_cases
    else:
        return [], []
    rows: list[RowFailure] = []
    issues: list[DatasetIssue] = []
    seen: set[tuple[int, str]] = set()
    for case in cases.itertuples(index=False):
        check = str(case.check)
        if case.index is None or pd.isna(case.index):
            issues.append(DatasetIssue(check, str(case.column), "failed", (case.failure_case,)))
            continue
        if check == "field_uniqueness":
            continue  # duplicates are decided below, keeping the first occurrence
        row = int(case.index)
        if check in ROW_CHECK_COLUMNS:  # a row-wise dataframe check: report the cells it read
            involved = ROW_CHECK_COLUMNS[check]
            if (row, check) in seen:
                continue
            seen.add((row, check))
            value = {col: _as_text(df.at[row, col]) for col in involved}
            rows.append(RowFailure(row, "+".join(involved), check, value))
        else:
            rows.append(RowFailure(row, str(case.column), check, case.failure_case))
    return rows, issues


def _duplicate_failures(df: pd.DataFrame) -> list[RowFailure]:
    ids = df[c.TRANSACTION_ID]
    dup = ids.notna() & ids.duplicated(keep="first")
    return [
        RowFailure(int(row), c.TRANSACTION_ID, "unique_transaction_id", ids.iloc[row])
        for row in np.flatnonzero(dup.to_numpy())
    ]


def _as_text(value: object) -> object:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value if isinstance(value, str) else str(value)


def _short(check: str) -> str:
    """``isin(('grocery', ...))`` -> ``isin``: the check's name without its arguments."""
    return check.split("(", 1)[0]


def rejected_frame(
    raw: pd.DataFrame, failures: Iterable[RowFailure], lineage: tuple[str, ...] = LINEAGE_COLUMNS
) -> pd.DataFrame:
    """Rejected rows exactly as received (as text), with every failed check and a reason; the
    ``lineage`` columns are kept as they are (and `UNMAPPED`, said again by the reason, dropped)."""
    by_row: dict[int, dict[tuple[str, str], object]] = {}
    for failure in failures:
        by_row.setdefault(failure.row, {}).setdefault((failure.column, failure.check), failure.value)
    rows = sorted(by_row)
    rejected = raw.iloc[rows].drop(columns=[UNMAPPED], errors="ignore")
    for col in rejected.columns:
        if col not in lineage:
            rejected[col] = rejected[col].astype(object).map(_as_text)
    rejected[FAILED_CHECKS] = ["; ".join(f"{col}:{_short(check)}" for col, check in by_row[r]) for r in rows]
    rejected[REJECTION_REASON] = [
        "; ".join(f"{col} failed {check} (value {value!r})" for (col, check), value in by_row[r].items())
        for r in rows
    ]
    return rejected.reset_index(drop=True)


def positional(df: pd.DataFrame) -> pd.DataFrame:
    """The frame indexed 0..n-1, without copying its data (``reset_index`` copies every column)."""
    if isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1:
        return df
    out = df.copy(deep=False)
    out.index = pd.RangeIndex(len(out))
    return out


def in_time_order(df: pd.DataFrame) -> bool:
    """Whether rows are ordered by timestamp, then ID: most files are, and then need no sort."""
    ts = df[c.TIMESTAMP].to_numpy()
    if len(ts) < 2:
        return True
    later, tied = ts[1:] > ts[:-1], ts[1:] == ts[:-1]
    if not (later | tied).all():
        return False
    ids = df[c.TRANSACTION_ID].to_numpy(dtype=object)
    at = np.flatnonzero(tied)
    return all(a <= b for a, b in zip(ids[at], ids[at + 1], strict=True))


def split_transactions(raw: pd.DataFrame) -> ValidationOutcome:
    """Split raw transactions into validated and rejected rows; nothing is dropped.

    Raises `DatasetValidationError` when a required column is missing: then no row can be
    judged. Dataset-level findings that still allow a split (fraud rate out of range) are
    returned in ``issues``.
    """
    missing = missing_required_columns(raw)
    if missing:
        raise DatasetValidationError(missing)
    raw = positional(raw)
    coerced, failures = coerce_to_contract(raw)
    unmapped = unmapped_failures(raw)  # a value no rule mapped is reported as that, not as unreadable
    failed_cells = {(f.row, f.column) for f in unmapped}
    failures = unmapped + [f for f in failures if (f.row, f.column) not in failed_cells]
    failed_cells |= {(f.row, f.column) for f in failures}
    schema_rows, issues = _schema_failures(coerced)
    failures += [f for f in schema_rows if (f.row, f.column) not in failed_cells]
    failures += _duplicate_failures(coerced)

    bad_rows = np.zeros(len(raw), dtype=bool)
    bad_rows[[f.row for f in failures]] = True
    validated = coerced.loc[~bad_rows] if bad_rows.any() else coerced
    validated = validated.drop(columns=[UNMAPPED], errors="ignore")
    validated = add_derived_columns(validated.copy(deep=False))
    if not in_time_order(validated):
        validated = validated.sort_values([c.TIMESTAMP, c.TRANSACTION_ID], kind="stable")
    validated = canonical_order(positional(validated))
    rate_issue = fraud_rate_issue(validated)
    if rate_issue:
        issues.append(rate_issue)
    return ValidationOutcome(validated, rejected_frame(raw, failures), issues, failures)


def validate_data(df: pd.DataFrame, schema_type: str = "raw") -> tuple[bool, str | None]:
    """Validate a DataFrame against the raw or validated contract: ``(is_valid, error)``.

    ``error`` lists every failed check with its column and example values, or is None.

    >>> from fraud_assets import FraudDataGenerator, validate_data
    >>> is_valid, error = validate_data(FraudDataGenerator(n_samples=1_000).generate())
    >>> is_valid
    True
    """
    if schema_type not in ("raw", "validated"):
        raise ValueError(f"schema_type must be 'raw' or 'validated', not {schema_type!r}")
    if df is None or len(df.columns) == 0:
        return False, "the DataFrame has no columns"
    report = check_report(df, schema_type)
    return (not report, "\n".join(report) if report else None)


def check_report(df: pd.DataFrame, schema_type: str = "raw", max_examples: int = 5) -> list[str]:
    """One line per failed check: check, column, how many rows and example values."""
    issues = missing_required_columns(df)
    if issues:
        return [str(issue) for issue in issues]
    if schema_type == "validated":
        try:
            ValidatedTransactionSchema.validate(df, lazy=True)
        except pandera.errors.SchemaErrors as err:
            return _summarise_cases(err.failure_cases, max_examples)
        issue = fraud_rate_issue(df)
        return [str(issue)] if issue else []
    outcome = split_transactions(df)
    lines = [str(issue) for issue in outcome.issues]
    grouped: dict[tuple[str, str], list[RowFailure]] = {}
    for failure in outcome.failures:
        grouped.setdefault((failure.column, failure.check), []).append(failure)
    for (column, check), failures in grouped.items():
        rows = sorted({f.row + 1 for f in failures})  # 1-based data rows, as a user counts them
        examples = [f.value for f in failures[:max_examples]]
        lines.append(
            f"{check} [column {column!r}]: {len(rows)} row(s) rejected; "
            f"data rows {rows[:max_examples]} had values {examples}"
        )
    if len(df) == 0:
        lines.append("not_empty: the dataset has no rows")
    return lines


def _summarise_cases(cases: pd.DataFrame, max_examples: int) -> list[str]:
    lines = []
    for (column, check), group in cases.groupby(["column", "check"], dropna=False):
        examples = group["failure_case"].head(max_examples).tolist()
        lines.append(f"{check} [column {column!r}]: {len(group)} failure(s) (examples: {examples})")
    return lines


__all__ = [
    "DatasetIssue",
    "DatasetValidationError",
    "ValidationOutcome",
    "add_derived_columns",
    "check_report",
    "coerce_to_contract",
    "fraud_rate_issue",
    "missing_required_columns",
    "split_transactions",
    "validate_data",
]


def lost_rows(raw: pd.DataFrame, validated: pd.DataFrame, rejected: pd.DataFrame) -> str | None:
    """Why validated + rejected is not exactly raw, or None when every row is accounted for."""
    if len(raw) != len(validated) + len(rejected):
        return (
            f"{len(raw)} raw rows but {len(validated)} validated + {len(rejected)} rejected "
            f"= {len(validated) + len(rejected)}"
        )
    ids = pa.chunked_array(
        [
            chunk.cast(pa.large_string())
            for frame in (raw, validated, rejected)
            for chunk in _ids_as_text(frame[c.TRANSACTION_ID]).chunks
        ],
        type=pa.large_string(),
    )
    encoded = pc.dictionary_encode(ids.combine_chunks())
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False) + 1  # 0: no ID
    size, n_raw = len(encoded.dictionary) + 1, len(raw)
    diff = np.bincount(codes[:n_raw], minlength=size) - np.bincount(codes[n_raw:], minlength=size)
    if diff.any():
        names = [None, *encoded.dictionary.to_pylist()]
        shown = {names[i]: int(diff[i]) for i in np.flatnonzero(diff)[:5]}
        return f"transaction_id counts differ between raw and validated+rejected: {shown}"
    return None


def _ids_as_text(ids: pd.Series) -> pa.ChunkedArray:
    """IDs as Arrow text, numbers written as validation writes them (``astype("string")``)."""
    text = arrow_text(ids)
    if text is None:
        text = arrow_text(ids.astype("string"))
    return text
