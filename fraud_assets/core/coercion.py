"""Coercion onto the contract's dtypes, recording every value that does not parse.

Each column's reading rule is written once, for any values (`coerce_column_general`). Text, the
common case of a user's CSV, goes faster without a second rule:

* numbers: Arrow's cast reads a whole column of clean numerals in ~0.02 s per million (pandas'
  ``to_numeric`` takes ~0.7 s, and is not correctly rounded); a column with a value Arrow cannot
  read, or a non-finite one, is read by the general rule instead;
* flags, small integers and low-cardinality text: the general rule runs on the column's
  distinct values only, and the results are spread back by code, which is the general rule's
  result by construction (it reads each value on its own);
* timestamps: `parse_timestamps` (Arrow for ISO 8601, pandas for the rest).

Tests check that the fast paths give exactly what `coerce_column_general` gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fraud_assets.core.schemas import CANONICAL_DTYPES
from fraud_assets.core.text import arrow_text
from fraud_assets.core.timestamps import parse_timestamps

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
_CARDINALITY_SAMPLE = 10_000  # values hashed to decide whether a text column has few distinct ones
_LOW_CARDINALITY = 0.25  # at most this share of distinct values: convert each distinct value once

# Text as Arrow strings (the contract's `Text`): a null check reads a bitmap, and Arrow's kernels
# (the contracts' RE2 checks, hashing, the Parquet writer) take the buffers without a copy. With
# Python-object strings the two contracts' null checks and Arrow handovers cost ~3 s of CPU per
# million rows of the full CSV.
TEXT = pd.StringDtype("pyarrow")

Coerced = tuple[pd.Series, np.ndarray]  # the coerced column and the mask of values that did not parse


@dataclass(frozen=True)
class RowFailure:
    row: int  # positional row number in the frame that was validated
    column: str
    check: str
    value: object


def coerce_to_contract(df: pd.DataFrame) -> tuple[pd.DataFrame, list[RowFailure]]:
    """Cast every known column to its canonical dtype, recording each value that did not parse.

    Unknown (extra) columns pass through untouched.
    """
    out = df.copy(deep=False)  # columns are replaced, never written into
    out.index = pd.RangeIndex(len(out))
    failures: list[RowFailure] = []
    for col, dtype in CANONICAL_DTYPES.items():
        if col not in out:
            continue
        original = out[col]
        coerced, bad = coerce_column(original, dtype)
        out[col] = coerced
        failures += [
            RowFailure(int(row), col, f"parses_as_{dtype}", original.iloc[row]) for row in np.flatnonzero(bad)
        ]
    return out, failures


def coerce_column(series: pd.Series, dtype: str) -> Coerced:
    """`coerce_column_general`'s result, computed faster when the values are text."""
    text = arrow_text(series)
    if text is None or dtype == "datetime64[ns]":
        return coerce_column_general(series, dtype)
    if dtype == "float64":
        fast = _arrow_floats(text)
        if fast is not None:
            return pd.Series(fast, index=series.index), np.zeros(len(series), dtype=bool)
    elif dtype == "string" and not _few_distinct(text):
        return series.astype(TEXT), np.zeros(len(series), dtype=bool)
    return _by_distinct_value(text, dtype, series.index)


def coerce_column_general(series: pd.Series, dtype: str) -> Coerced:
    """The reading rule of each dtype, value by value: the reference the fast paths must match."""
    present = series.notna().to_numpy()
    if dtype == "string":
        # IDs that a file stores as numbers are still IDs: keep them, as text.
        return series.astype(TEXT), np.zeros(len(series), dtype=bool)
    if dtype == "float64":
        out = pd.to_numeric(series, errors="coerce").astype("float64")
        if arrow_text(series) is not None:
            # pandas decides what text is a number; its value is Python's, correctly rounded
            # (pandas' parser is off by one unit in the last place for about a quarter of
            # 17-digit numerals, which is what a CSV written by pandas holds).
            exact = series.map(_exact_float, na_action="ignore").astype("float64")
            out = exact.where(out.notna() & exact.notna(), out)
        return out, present & out.isna().to_numpy()
    if dtype == "datetime64[ns]":
        out = parse_timestamps(series)
        return out, present & out.isna().to_numpy()
    if dtype == "boolean":
        if pd.api.types.is_bool_dtype(series.dtype):
            return series.astype("boolean"), np.zeros(len(series), dtype=bool)
        text = series.astype(str).str.strip().str.lower()
        out = pd.Series(pd.NA, index=series.index, dtype="boolean")
        out[text.isin(_TRUE) & series.notna()] = True
        out[text.isin(_FALSE) & series.notna()] = False
        return out, present & out.isna().to_numpy()
    if dtype == "Int8":
        numbers = pd.to_numeric(series, errors="coerce")
        integral = numbers.notna() & (numbers == numbers.round()) & numbers.between(-128, 127)
        out = numbers.where(integral).astype("Int8")
        return out, present & ~integral.to_numpy()
    raise ValueError(f"unknown canonical dtype {dtype!r}")


def _exact_float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return np.nan


def _arrow_floats(text: pa.ChunkedArray) -> np.ndarray | None:
    """Every value cast by Arrow, or None when one is no finite numeral (the general rule decides)."""
    try:
        numbers = text.cast(pa.float64())
    except pa.ArrowInvalid:
        return None
    if not pc.all(pc.is_finite(numbers)).as_py():  # nan, inf, 1e999: pandas reads these its own way
        return None
    return numbers.to_numpy()


def _few_distinct(text: pa.ChunkedArray) -> bool:
    sample = text.slice(0, _CARDINALITY_SAMPLE)
    return len(pc.unique(sample)) <= _LOW_CARDINALITY * max(len(sample), 1)


def _by_distinct_value(text: pa.ChunkedArray, dtype: str, index: pd.Index) -> Coerced:
    """The general rule applied to each distinct value once, then spread back to the rows."""
    encoded = pc.dictionary_encode(text).combine_chunks()
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    distinct = pd.Series(encoded.dictionary.to_numpy(zero_copy_only=False), dtype=object)
    values, bad = coerce_column_general(distinct, dtype)
    known = codes >= 0
    bad_rows = np.zeros(len(codes), dtype=bool)
    bad_rows[known] = bad[codes[known]]
    return pd.Series(values.array.take(codes, allow_fill=True), index=index), bad_rows
