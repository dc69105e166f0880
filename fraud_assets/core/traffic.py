"""The API's captured transactions as raw rows, beside a day's other source.

A day of `raw_transactions` holds the rows of its source (the generator or the landing files)
and the transactions the scoring API accepted for that day (filed by the capture sensor, see
`fraud_assets.core.capture`), each row's origin in the lineage column ``source``. They go through
the same contract and validation; a transaction id is kept once:

- among the API's rows, the first captured wins (a retried request, a replayed stream);
- an id the API scored that the day's other source also has is the API's row (what the model
  saw), with that source's label columns carried over (a file's chargeback flag, the
  generator's ground truth), and the other source's row left out.

API rows never carry labels themselves: labels arrive through the label feed, and a label
field sent along with a transaction is not kept.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fraud_assets.core import columns as c
from fraud_assets.core.calendar import hour_and_weekday, is_weekend
from fraud_assets.core.capture import RECEIVED_AT, TRANSACTIONS, read_filed, transaction_day
from fraud_assets.core.landing_files import TEXT
from fraud_assets.core.storage import Location
from fraud_assets.core.timestamps import parse_timestamps
from fraud_assets.core.validation import LINEAGE_COLUMNS, PARTITION_DATE, SOURCE, positional

API = "api"
GENERATOR = "generator"
LANDING = "landing"
# What only the outcome of a transaction tells: never taken from a request, carried from the
# day's other source onto the API's row of the same transaction.
OUTCOME_COLUMNS = (c.IS_FRAUD, c.LABEL_KNOWN_AT, c.FRAUD_SCENARIO)


@dataclass
class Combined:
    """A day's raw rows from its sources, and how they were put together."""

    frame: pd.DataFrame
    rows_by_source: dict[str, int] = field(default_factory=dict)
    api_also_in_source: int = 0  # API transactions the other source had too (kept once)


def api_transactions(storage: Location, days: Iterable[str]) -> pd.DataFrame:
    """The filed API transactions of ``days`` as raw rows: as the API validated them, each id
    once, ``source`` = api, ``received_at`` (UTC) kept; outcome columns left out."""
    rows = read_filed(storage, TRANSACTIONS, days)
    if not rows:
        return pd.DataFrame(columns=[*c.REQUIRED_COLUMNS, PARTITION_DATE, SOURCE])
    for row in rows:
        for name in (*OUTCOME_COLUMNS, *LINEAGE_COLUMNS):
            row.pop(name, None)
    frame = pd.DataFrame.from_records(rows)
    frame[PARTITION_DATE] = [transaction_day(row) for row in rows]
    if c.TIMESTAMP in frame:  # ISO text as the API wrote it; an offset is dropped, wall clock kept
        frame[c.TIMESTAMP] = parse_timestamps(frame[c.TIMESTAMP].astype(object), None)
        _calendar_as_scored(frame)
    frame[RECEIVED_AT] = pd.to_datetime(frame[RECEIVED_AT], utc=True, format="ISO8601")
    frame[SOURCE] = API
    return frame


def _calendar_as_scored(frame: pd.DataFrame) -> None:
    """Hour, weekday and weekend where a request left them out, from its timestamp: the values the
    API computed and scored with (a request's own values are kept, for validation to judge)."""
    hour, day, known = hour_and_weekday(frame[c.TIMESTAMP].to_numpy("datetime64[ms]"))
    computed = {
        c.HOUR_OF_DAY: pd.array(np.where(known, hour, 0), dtype="Int64"),
        c.DAY_OF_WEEK: pd.array(np.where(known, day, 0), dtype="Int64"),
        c.IS_WEEKEND: pd.array(is_weekend(day), dtype="boolean"),
    }
    for col, values in computed.items():
        values[~known] = pd.NA
        if col not in frame:
            frame[col] = values
        else:  # the API took only whole hours and days and true/false here
            frame[col] = frame[col].astype(values.dtype).fillna(pd.Series(values, index=frame.index))


def with_api_transactions(base: pd.DataFrame, api: pd.DataFrame, base_source: str | None) -> Combined:
    """``base`` (one source's rows, or a stored day with its ``source`` column) and the API's rows,
    each transaction once (module docstring)."""
    if base_source is not None and SOURCE not in base:
        base = base.copy(deep=False)
        base[SOURCE] = base_source
        if api.empty:  # (the usual generator or landing run: no counting pass over its rows)
            return Combined(positional(base), {base_source: len(base)} if len(base) else {})
    if api.empty:
        return Combined(positional(base), _counts(base))
    if base.empty:
        return Combined(positional(api), _counts(api))
    api_ids = api[c.TRANSACTION_ID]
    in_api = base[c.TRANSACTION_ID].isin(api_ids).to_numpy() if c.TRANSACTION_ID in base else None
    overlap = 0
    if in_api is not None and in_api.any():
        # A stored day's API rows are the API's again (their carried outcome with them); the other
        # source's rows of the same transactions hand over their outcome and go.
        stored_api = base[SOURCE].astype(object).eq(API).to_numpy() if SOURCE in base else False
        overlap = int((in_api & ~stored_api).sum())
        carried = [col for col in OUTCOME_COLUMNS if col in base]
        if carried:
            known = base.loc[in_api, [c.TRANSACTION_ID, *carried]].drop_duplicates(c.TRANSACTION_ID)
            api = api.merge(known, on=c.TRANSACTION_ID, how="left", validate="one_to_one")
        base = base.loc[~in_api]
    frame = pd.concat([base, _like(api, base)], ignore_index=True)
    return Combined(frame, _counts(frame), overlap)


def _like(api: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """The API's columns as text where the other source's are text (a landing file's values are
    kept as received): one column, one kind of value, for validation and for Parquet."""
    out = api
    for col in api.columns.intersection(base.columns):
        if _is_text(base[col]) and not _is_text(api[col]):
            if out is api:
                out = api.copy(deep=False)
            out[col] = api[col].astype(object).map(_text).astype(TEXT)
    return out


def _is_text(values: pd.Series) -> bool:
    if pd.api.types.is_string_dtype(values.dtype) and values.dtype != object:
        return True
    if values.dtype == object:
        sample = values.dropna()
        return not sample.empty and isinstance(sample.iloc[0], str)
    return False


def _text(value: object) -> object:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp | dt.datetime):
        return value.isoformat()
    return str(value)


def _counts(frame: pd.DataFrame) -> dict[str, int]:
    if SOURCE not in frame or frame.empty:
        return {}
    values, counts = np.unique(frame[SOURCE].astype(str).to_numpy(), return_counts=True)
    return {str(v): int(n) for v, n in zip(values, counts, strict=True)}
