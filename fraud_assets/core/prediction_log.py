"""The prediction log's reader: live traffic as the scoring API recorded it.

`fraud_serving` appends one JSON line per model call to ``<dir>/<YYYY-MM-DD>.jsonl``: the call's
facts (``scored_at``, ``model_version``, ``threshold``, ``latency_ms``; a fact given as a list
holds one value per transaction) and its transactions as
columns (lists of equal length: ``transaction_id``, ``card_id``, ``merchant_id``, ``timestamp``,
``fraud_probability``, ``is_fraud``, ``risk_level``, ``reason_codes``, ``input``, and
``features`` as a column per model input). A line holding one transaction as plain values (the
earlier format) reads the same. Monitoring reads it here, so the format is a contract of the
domain, not of the API.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pandas as pd

_REQUEST_FIELDS = ("scored_at", "model_version", "threshold", "latency_ms")
_COLUMNS = (
    "transaction_id", "card_id", "merchant_id", "timestamp", "fraud_probability", "is_fraud",
    "risk_level", "reason_codes", "input",
)  # fmt: skip


# The frame's first columns, in order; the model inputs follow.
READ_COLUMNS = (
    "scored_at", "timestamp", "transaction_id", "card_id", "merchant_id", "model_version", "threshold",
    "fraud_probability", "is_fraud", "risk_level", "latency_ms", "reason_codes", "input",
)  # fmt: skip


def _transactions(line: dict) -> list[dict]:
    """One record per transaction of a logged request (a line of columns, or one plain record)."""
    if not isinstance(line.get("transaction_id"), list):
        return [line]
    n = len(line["transaction_id"])
    shared = {key: line.get(key) for key in _REQUEST_FIELDS}
    each = {key: shared.pop(key) for key, value in list(shared.items()) if isinstance(value, list)}
    columns = {key: line.get(key) or [None] * n for key in _COLUMNS}
    features = line.get("features") or {}
    return [
        {
            **shared,
            **{key: values[i] for key, values in each.items()},
            **{key: values[i] for key, values in columns.items()},
            "features": {name: values[i] for name, values in features.items()},
        }
        for i in range(n)
    ]


def read_prediction_log(directory: str | os.PathLike, day: str | dt.date | None = None):
    """The logged predictions as a DataFrame: one row per scored transaction, oldest first.

    ``day`` (``YYYY-MM-DD`` or a date) reads one day's file; None reads all of them. Columns:
    ``scored_at`` (UTC timestamp), ``timestamp`` (the transaction's, naive local time),
    ``transaction_id``, ``card_id``, ``merchant_id``, ``model_version``, ``threshold``,
    ``fraud_probability``, ``is_fraud``, ``risk_level``, ``latency_ms``, ``reason_codes`` (list),
    ``input`` (dict as sent), then one column per model input value (``amount``,
    ``merchant_category``, ``transactions_last_24h``, ...; NaN where the value was missing and
    imputed). A half-written last line (a crash mid-write) is skipped.
    """
    folder = Path(directory)
    if day is not None:
        files = [folder / f"{day if isinstance(day, str) else day.isoformat()}.jsonl"]
    else:
        files = sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    records = []
    for path in files:
        if not path.exists():
            continue
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    records.extend(_transactions(json.loads(line)))
                except (json.JSONDecodeError, TypeError, KeyError, IndexError, AttributeError):
                    continue
    base = list(READ_COLUMNS)
    if not records:
        return pd.DataFrame({col: pd.Series(dtype=object) for col in base})
    frame = pd.DataFrame([{k: r.get(k) for k in base} for r in records])
    features = pd.DataFrame([r.get("features") or {} for r in records])
    features = features[[col for col in features.columns if col not in frame.columns]]
    frame = pd.concat([frame, features], axis=1)
    frame["scored_at"] = pd.to_datetime(frame["scored_at"], utc=True, format="ISO8601")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], errors="coerce", format="ISO8601")
    for col in features.columns:
        if features[col].map(lambda v: isinstance(v, str)).any():
            continue
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    return frame.sort_values("scored_at", kind="stable").reset_index(drop=True)
