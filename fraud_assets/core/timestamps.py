"""Reading timestamps as fraudops means them: naive, the card's local wall-clock time.

A user's file may write times in any format pandas can read, with or without a UTC offset;
the offset is dropped and the wall-clock time kept (``10:00+02:00`` is 10:00), because the
features read the cardholder's hour of day. An unreadable value becomes NaT, never an error:
validation rejects that row and reports the text.

Why two paths: pandas' ``format="mixed"`` reads anything but costs ~0.3 s per million values,
and handing Arrow text to pandas costs ~0.4 s more. Almost every real file writes ISO 8601, which
Arrow's cast reads in ~0.02 s per million. So `parse_timestamps` casts the ISO-shaped values
with Arrow (the offset cut off first) and hands only the rest to `parse_timestamps_general`,
the one reference behaviour; tests check that both give the same result on tricky inputs.
"""

from __future__ import annotations

import datetime as dt
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fraud_assets.core.text import arrow_text

# ISO 8601 as Arrow's cast reads it: a date, then optionally T or a space, the hour, minutes,
# seconds and up to nine decimals, then optionally a UTC offset, which is cut off (wall clock).
_ISO = (
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:(?P<time>[T ]\d{2}(?::\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?)(?:Z|[+-]\d{2}(?::?\d{2})?)?)?$"
)
_SMALLEST_CAST = 64  # below this many values, an ISO-shaped value that is no date goes to pandas
_NS = pa.timestamp("ns")


def parse_timestamps(values: pd.Series, fmt: str | None = None) -> pd.Series:
    """Each value as a naive ``datetime64[ns]`` (local wall-clock time); NaT where unreadable.

    ``fmt`` is a user's ``strptime`` format: when given, only values in that format are read.
    """
    if _is_datetime(values.dtype):
        return _wall_clock(values)
    if fmt:
        return _read_with_pandas(_as_objects(values), fmt)
    text = arrow_text(values)
    if text is None:  # not text (numbers, dates, mixed objects): only pandas reads these
        return parse_timestamps_general(values)
    try:
        return _from_arrow(text.cast(_NS), values.index)  # the common case: every value is ISO
    except pa.ArrowInvalid:
        pass
    parts = pc.extract_regex(text, _ISO)
    empty = pa.scalar("", type=text.type)
    wall_clock = pc.binary_join_element_wise(
        pc.struct_field(parts, "date"), pc.fill_null(pc.struct_field(parts, "time"), empty), empty
    )
    iso = np.flatnonzero(pc.is_valid(wall_clock).to_numpy(zero_copy_only=False))
    out = np.full(len(values), np.datetime64("NaT"), dtype="datetime64[ns]")
    read = np.zeros(len(values), dtype=bool)
    _cast_iso(wall_clock.take(iso).combine_chunks(), iso, out, read)
    rest = ~read & pc.is_valid(text).to_numpy(zero_copy_only=False)
    if rest.any():
        out[rest] = parse_timestamps_general(values[rest]).to_numpy()
    return pd.Series(out, index=values.index)


def _cast_iso(text: pa.Array, rows: np.ndarray, out: np.ndarray, read: np.ndarray) -> None:
    """Arrow-cast ISO-shaped text into ``out[rows]``; halves a slice whose cast fails (one value
    that is no date, like 2026-02-30) until the slices are small, leaving those to pandas."""
    try:
        out[rows] = text.cast(_NS).to_numpy(zero_copy_only=False)
        read[rows] = True
    except pa.ArrowInvalid:
        if len(rows) > _SMALLEST_CAST:
            half = len(rows) // 2
            _cast_iso(text.slice(0, half), rows[:half], out, read)
            _cast_iso(text.slice(half), rows[half:], out, read)


def parse_timestamps_general(values: pd.Series) -> pd.Series:
    """The reference reading of any values: pandas' ISO 8601 reader, then ``format="mixed"``."""
    objects = _as_objects(values)
    out = _read_with_pandas(objects, "ISO8601")
    retry = (out.isna() & objects.notna()).to_numpy()
    if retry.any():
        out[retry] = _read_with_pandas(objects[retry], "mixed").to_numpy()
    return out


def _read_with_pandas(objects: pd.Series, fmt: str) -> pd.Series:
    with warnings.catch_warnings():
        # Several UTC offsets in one column come back as objects (pandas warns): _wall_clock reads them.
        warnings.simplefilter("ignore", FutureWarning)
        return _wall_clock(pd.to_datetime(objects, errors="coerce", format=fmt))


def _wall_clock(parsed: pd.Series) -> pd.Series:
    """Naive ``datetime64[ns]``: a UTC offset is dropped, the local wall-clock time kept."""
    if getattr(parsed.dtype, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    elif pd.api.types.is_object_dtype(
        parsed.dtype
    ):  # several offsets in one column: each value keeps its own clock
        naive = [
            v.replace(tzinfo=None) if isinstance(v, dt.datetime) and v is not pd.NaT else v for v in parsed
        ]
        parsed = pd.Series(pd.to_datetime(naive, errors="coerce"), index=parsed.index)
    return parsed.astype("datetime64[ns]")


def _from_arrow(stamps: pa.Array | pa.ChunkedArray, index: pd.Index) -> pd.Series:
    return pd.Series(stamps.cast(_NS).to_numpy(zero_copy_only=False), index=index)


def _is_datetime(dtype) -> bool:
    if isinstance(dtype, pd.ArrowDtype):
        return pa.types.is_timestamp(dtype.pyarrow_dtype)
    return pd.api.types.is_datetime64_any_dtype(dtype)


def _as_objects(values: pd.Series) -> pd.Series:
    """Python objects with None for missing values: what pandas' parsers read fastest."""
    if pd.api.types.is_object_dtype(values.dtype):
        return values
    return pd.Series(values.to_numpy(dtype=object, na_value=None), index=values.index)


def day_keys(timestamps: pd.Series | np.ndarray) -> np.ndarray:
    """``YYYY-MM-DD`` of each timestamp, vectorised (one string per distinct day)."""
    days = np.asarray(timestamps, dtype="datetime64[ns]").astype("datetime64[D]")
    uniques, inverse = np.unique(days, return_inverse=True)
    return uniques.astype(str).astype(object)[inverse]
