"""Value rules of a column mapping: a file's own codes mapped onto ours, and nothing guessed.

A user's file may say ``CP``/``CNP`` for card present / not present, ``Y``/``N`` or
``chargeback``/``reversed`` for labels, a card scheme's entry-mode codes for `entry_mode`. The
mapping's value rules (`LandingSettings.value_rules`) map each code onto our value; a value that
no rule maps stays as received in its cell and its row is rejected with the column and the value
(`UNMAPPED`, read by the validation of transactions and of labels), so that a code nobody
thought of is never read as something else.

Vectorised with Arrow: one hash lookup per column, whatever the number of rows; Python touches
only the rows that fail.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fraud_assets.core.coercion import RowFailure
from fraud_assets.core.landing_files import TEXT

# Lineage column of a landing frame: per row, the values no rule mapped, as a JSON object
# (our column -> the value as received); null when every value was mapped.
UNMAPPED = "unmapped_values"
VALUE_RULES_CHECK = "value_rules"


def _as_text(series: pd.Series) -> pa.ChunkedArray:
    """A column as Arrow text: text as it is, numbers and flags as Arrow writes them."""
    if isinstance(series.array, pd.arrays.ArrowExtensionArray):
        # the Arrow interchange protocol (``__arrow_array__``): pandas hands over its own array
        array = pa.array(series.array)
        if isinstance(array, pa.Array):
            array = pa.chunked_array([array])
    else:
        array = pa.chunked_array([pa.array(series.to_numpy(dtype=object, na_value=None), from_pandas=True)])
    if pa.types.is_boolean(array.type):
        return pc.if_else(array, "true", "false").cast(TEXT.pyarrow_dtype)
    return array.cast(TEXT.pyarrow_dtype)


def apply_value_rules(frame: pd.DataFrame, rules: Mapping[str, Mapping[str, str]]) -> pd.DataFrame:
    """``frame`` with each ruled column's codes replaced by our values (as text), and the
    `UNMAPPED` column when a value had no rule. Columns without rules are left as they are; a
    ruled column the frame lacks is skipped (a missing column is reported where it matters)."""
    present = [col for col in rules if col in frame]
    if not present:
        return frame
    out = frame.copy(deep=False)
    misses: dict[str, tuple[np.ndarray, list]] = {}
    for col in present:
        text = _as_text(frame[col])
        codes = pa.array(list(rules[col]), type=TEXT.pyarrow_dtype)
        ours = pa.array(list(rules[col].values()), type=TEXT.pyarrow_dtype)
        at = pc.index_in(text, value_set=codes)
        unmapped = pc.and_(pc.is_valid(text), pc.is_null(at))
        values = pc.if_else(unmapped, text, ours.take(at))  # a null stays null: not a code
        out[col] = pd.Series(
            pd.arrays.ArrowExtensionArray(values.combine_chunks()), index=frame.index, dtype=TEXT
        )
        rows = np.flatnonzero(unmapped.to_numpy(zero_copy_only=False))
        if len(rows):
            misses[col] = rows, text.take(pa.array(rows)).to_pylist()
    if misses:
        per_row: dict[int, dict[str, object]] = {}
        for col, (rows, values) in misses.items():
            for row, value in zip(rows.tolist(), values, strict=True):
                per_row.setdefault(row, {})[col] = value
        described = np.full(len(frame), None, dtype=object)
        for row, found in per_row.items():
            described[row] = json.dumps(found)
        out[UNMAPPED] = pd.Series(described, index=frame.index, dtype=TEXT)
    return out


def unmapped_failures(frame: pd.DataFrame) -> list[RowFailure]:
    """One failure per value no rule mapped (positional rows of ``frame``), naming its column."""
    if UNMAPPED not in frame:
        return []
    described = frame[UNMAPPED].to_numpy(dtype=object, na_value=None)
    return [
        RowFailure(int(row), col, VALUE_RULES_CHECK, value)
        for row in np.flatnonzero(pd.notna(described))
        for col, value in json.loads(described[row]).items()
    ]
