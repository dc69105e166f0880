"""The prediction log's reader: live traffic as the scoring API recorded it.

The schema and the layout are part of the contract between the API and the pipeline
(`fraud_assets.core.contract`, the ``LOG_*`` names and `prediction_log_files`): one JSON line
per model call, its transactions as columns, in one object per flush under
``<dir>/<YYYY-MM-DD>/``. Two other forms read the same, so that logs already written stay
readable: a whole day in one ``<dir>/<YYYY-MM-DD>.jsonl``, and a line holding one transaction as
plain values. The directory may be any storage location (a local folder, ``s3://...``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Sequence

import pandas as pd
import pydantic_core

from fraud_assets.core.contract import (
    LOG_CALL_FIELDS,
    LOG_FEATURES,
    LOG_READ_COLUMNS,
    LOG_READ_DTYPES,
    LOG_SHADOW_DTYPES,
    LOG_SHADOW_FIELDS,
    LOG_SUFFIX,
    LOG_TRANSACTION_FIELDS,
    prediction_log_files,
)
from fraud_assets.core.storage import Location

READ_COLUMNS = LOG_READ_COLUMNS  # the frame's first columns, in order; the model inputs follow
_COLUMNS = LOG_TRANSACTION_FIELDS


def _transactions(line: dict) -> list[dict]:
    """One record per transaction of a logged request (a line of columns, or one plain record)."""
    if not isinstance(line.get("transaction_id"), list):
        return [line]
    n = len(line["transaction_id"])
    shared = {key: line.get(key) for key in (*LOG_CALL_FIELDS, LOG_SHADOW_FIELDS[0])}
    each = {key: shared.pop(key) for key, value in list(shared.items()) if isinstance(value, list)}
    columns = {key: line.get(key) or [None] * n for key in (*_COLUMNS, LOG_SHADOW_FIELDS[1])}
    features = line.get(LOG_FEATURES) or {}
    return [
        {
            **shared,
            **{key: values[i] for key, values in each.items()},
            **{key: values[i] for key, values in columns.items()},
            LOG_FEATURES: {name: values[i] for name, values in features.items()},
        }
        for i in range(n)
    ]


def read_prediction_log(directory: str | os.PathLike | Location, day: str | dt.date | None = None):
    """The logged predictions as a DataFrame: one row per scored transaction, oldest first.

    ``day`` (``YYYY-MM-DD`` or a date) reads one day; None reads all of them. Columns (types in
    `contract.LOG_READ_DTYPES`): ``scored_at`` (UTC timestamp), ``timestamp`` (the transaction's,
    naive local time), ``transaction_id``, ``card_id``, ``merchant_id``, ``model_version``,
    ``threshold``, ``fraud_probability``, ``is_fraud``, ``risk_level``, ``latency_ms``,
    ``reason_codes`` (list); when a challenger was scored in shadow, ``shadow_version`` and
    ``shadow_probability`` (None and NaN where it was not); then one column per model input value
    (``amount``, ``merchant_category``, ``transactions_last_24h``, ...; NaN where the value was
    missing and imputed). A half-written last line (a crash mid-write) is skipped.
    """
    folder = Location.of(directory)
    wanted = None if day is None else (day if isinstance(day, str) else day.isoformat())
    records = []
    for blob in Location.read_many(prediction_log_files(folder, wanted)):
        for line in blob.splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                records.extend(_transactions(json.loads(line)))
            except (
                json.JSONDecodeError,
                UnicodeDecodeError,
                TypeError,
                KeyError,
                IndexError,
                AttributeError,
            ):
                continue
    base = list(READ_COLUMNS)
    if not records:
        return pd.DataFrame({col: pd.Series(dtype=LOG_READ_DTYPES[col]) for col in base})
    if any(r.get(LOG_SHADOW_FIELDS[0]) is not None for r in records):  # a challenger was in shadow
        base += list(LOG_SHADOW_DTYPES)
    frame = pd.DataFrame([{k: r.get(k) for k in base} for r in records])
    features = pd.DataFrame([r.get(LOG_FEATURES) or {} for r in records])
    features = features[[col for col in features.columns if col not in frame.columns]]
    return _typed(pd.concat([frame, features], axis=1), list(features.columns))


def _typed(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """The read columns in their `LOG_READ_DTYPES` types (those present), the numeric model
    inputs as float64, oldest scoring first."""
    frame["scored_at"] = pd.to_datetime(frame["scored_at"], utc=True, format="ISO8601")
    if "timestamp" in frame:
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], errors="coerce", format="ISO8601")
    for col, dtype in {**LOG_READ_DTYPES, **LOG_SHADOW_DTYPES}.items():
        if dtype in ("float64", "Int64") and col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(dtype)
    for col in features:
        if frame[col].map(lambda v: isinstance(v, str)).any():
            continue
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    return frame.sort_values("scored_at", kind="stable").reset_index(drop=True)


def read_log_columns(
    directory: str | os.PathLike | Location,
    day: str,
    columns: Sequence[str],
    features: Sequence[str] = (),
) -> pd.DataFrame:
    """Some columns of one day's logged transactions (``scored_at`` always), and some model
    inputs (NaN where a line has none), typed as `read_prediction_log` types them.

    Read a line's columns at a time: no record is built per transaction, which is what makes
    `read_prediction_log` cost seconds on a busy day. Lines of one plain transaction are read too.
    """
    wanted = _wanted(columns)
    out = _empty(wanted, features)
    for blob in Location.read_many(prediction_log_files(Location.of(directory), day)):
        _extend(out, _columns_of(blob, wanted, features))
    return _typed(pd.DataFrame(out), list(features))


def _wanted(columns: Sequence[str]) -> list[str]:
    return ["scored_at", *(col for col in columns if col != "scored_at")]


def _empty(wanted: Sequence[str], features: Sequence[str]) -> dict[str, list]:
    return {name: [] for name in (*wanted, *features)}


def _extend(out: dict[str, list], more: dict[str, list]) -> None:
    for name, values in more.items():
        out[name].extend(values)


def _columns_of(blob: bytes, wanted: Sequence[str], features: Sequence[str]) -> dict[str, list]:
    """The wanted columns and model inputs of one file's lines, one value per transaction."""
    out = _empty(wanted, features)
    for raw in blob.splitlines():
        try:
            line = pydantic_core.from_json(raw, allow_inf_nan=True) if raw.strip() else None
        except ValueError:
            continue  # a half-written last line (a crash mid-write)
        if not isinstance(line, dict):
            continue
        ids = line.get("transaction_id")
        n = len(ids) if isinstance(ids, list) else 1
        given = line.get(LOG_FEATURES)
        given = given if isinstance(given, dict) else {}
        values = [(name, line.get(name)) for name in wanted] + [(name, given.get(name)) for name in features]
        if any(isinstance(value, list) and len(value) != n for _, value in values):
            continue  # a damaged line: its columns differ in length
        for name, value in values:
            out[name].extend(value if isinstance(value, list) else [value] * n)
    return out


class LogColumnsCache:
    """`read_log_columns` for a reader that asks again and again (``GET /alerts``): each part
    file of a day is read and parsed once.

    A part is never changed after it is written (the API writes each flush as a new object,
    atomically), so what was parsed of it stays true as long as it exists; each read lists the
    day's files, parses only the parts it has not seen, forgets those no longer listed, and puts
    the columns together in the listing's order, as `read_log_columns` does. A whole-day
    ``<day>.jsonl`` (the layout before parts) is read every time. The parsed columns of the
    ``days`` most recently read days are kept, with the frame last built of each (memory: about
    twice the size of those days' values), older ones dropped; a read that finds no file added
    or removed since the last one returns a copy of that frame, and parts listed after the last
    read's files are added to it (their rows after the earlier ones, then in scoring order, as a
    read of every file orders them). Safe to share between threads: one read at a time.
    """

    def __init__(
        self,
        directory: str | os.PathLike | Location,
        columns: Sequence[str],
        features: Sequence[str] = (),
        days: int = 2,
    ) -> None:
        if days < 1:
            raise ValueError(f"LogColumnsCache keeps at least one day; got days={days!r}")
        self.directory = Location.of(directory)
        self.wanted, self.features, self.days = _wanted(columns), tuple(features), days
        self._parsed: dict[str, dict[str, dict[str, list]]] = {}  # day -> part -> its columns
        self._frames: dict[str, tuple[tuple[str, ...], pd.DataFrame]] = {}  # day -> files read, frame
        self._lock = threading.Lock()
        self.parts_parsed = 0  # parts parsed since the start (each once)

    def read(self, day: str) -> pd.DataFrame:
        """``read_log_columns(directory, day, columns, features)``, parsing only new parts (a
        frame of the caller's own)."""
        with self._lock:
            known = self._parsed.pop(day, {})
            self._parsed[day] = known  # the most recently read day last
            while len(self._parsed) > self.days:
                dropped = next(iter(self._parsed))
                del self._parsed[dropped]
                self._frames.pop(dropped, None)
            files = prediction_log_files(self.directory, day)
            listing = tuple(str(f) for f in files)
            whole_day = any(f.name == day + LOG_SUFFIX for f in files)
            if not whole_day and day in self._frames and self._frames[day][0] == listing:
                return self._frames[day][1].copy()  # nothing written since the last read
            to_read = [f for f in files if f.name == day + LOG_SUFFIX or str(f) not in known]
            fresh = {
                str(f): _columns_of(blob, self.wanted, self.features)
                for f, blob in zip(to_read, Location.read_many(to_read), strict=True)
            }
            parts = {str(f) for f in files if f.name != day + LOG_SUFFIX}
            self._parsed[day] = {key: known.get(key) or fresh[key] for key in parts}
            self.parts_parsed += len(parts & fresh.keys())
            parsed = {**self._parsed[day], **fresh}
            before = self._frames.get(day)
            frame = None
            if not whole_day and before is not None and listing[: len(before[0])] == before[0]:
                frame = _appended(
                    before[1], self._frame_of([parsed[key] for key in listing[len(before[0]) :]])
                )
            if frame is None:
                frame = self._frame_of([parsed[key] for key in listing])
            self._frames[day] = (listing, frame)
            return frame.copy()

    def _frame_of(self, parsed: list[dict[str, list]]) -> pd.DataFrame:
        out = _empty(self.wanted, self.features)
        for columns in parsed:
            _extend(out, columns)
        return _typed(pd.DataFrame(out), list(self.features))


def _appended(frame: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame | None:
    """``frame`` (the files read before) and ``new`` (the files listed after them) as one read of
    all of them builds it: the new rows after the earlier ones, then in scoring order (stable).
    None when a column's type differs (a model input holding text only in one of them): only a
    read of every file gives the type the whole day has."""
    if new.dtypes.to_dict() != frame.dtypes.to_dict():
        return None
    joined = pd.concat([frame, new], ignore_index=True)
    return joined.sort_values("scored_at", kind="stable").reset_index(drop=True)
