"""Scoring: request bodies -> model inputs (with history features) -> probabilities and reasons.

No pandas in the per-request path: input columns are NumPy arrays, the preprocessor's
`transform_columns`, and the served model's compiled trees (margin and exact TreeSHAP). History
features come from `fraud_assets.core.features.card_history_features`, the function batch
training uses, run on the card state's segments (see `card_state`). Reasons are given in
business terms (the transaction's fields) and, on request, as the model's raw contributions.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import pydantic_core

from fraud_assets.core import columns as c
from fraud_assets.core.calendar import hour_and_weekday, is_weekend
from fraud_assets.core.contract import (
    LOG_CALL_FIELDS,
    LOG_FEATURES,
    LOG_SHADOW_FIELDS,
    LOG_TRANSACTION_FIELDS,
)
from fraud_assets.core.features import MERCHANT_FEATURES
from fraud_assets.core.models.reasons import top_contributions
from fraud_serving import responses
from fraud_serving.card_state import CardState, MerchantRiskStore
from fraud_serving.model_provider import ServedModel
from fraud_serving.schemas import ScoringOptions

DEFAULT_OPTIONS = ScoringOptions()

RISK_LEVELS = ("low", "medium", "high", "critical")
_RISK_BYTES = tuple(level.encode() for level in RISK_LEVELS)
TOP_REASONS = 3
LOG_PIECE_ROWS = 200  # from this many transactions a log line's features go a column a piece (`_LogItem`)
NO_MERCHANT = ""  # stands for an absent merchant id in the card state (never a real id)
_MERCHANT_DEPENDENT = frozenset((*MERCHANT_FEATURES, "is_new_merchant"))
# The prediction log line, in the contract's order (fraud_assets/core/contract.py): the call's
# fields and the transactions' columns up to the reason codes, then the reason codes as the
# answer had them, the model inputs.
_LOG_HEAD = (*LOG_CALL_FIELDS, *LOG_TRANSACTION_FIELDS[:-1])
if LOG_TRANSACTION_FIELDS[-1] != "reason_codes":  # written as the answer had them, after the rest
    raise RuntimeError("the prediction log's reason codes must be its last transaction column")
_LOG_REASONS = b',"' + LOG_TRANSACTION_FIELDS[-1].encode() + b'":[['
_LOG_FEATURES = b',"' + LOG_FEATURES.encode() + b'":'


def risk_index(p: np.ndarray, threshold: float) -> np.ndarray:
    """Index into RISK_LEVELS. low: p < t/2; medium: t/2 <= p < t; high: t <= p < (1+t)/2;
    critical: p >= (1+t)/2.

    With t the model's threshold, so high and critical are exactly the transactions flagged
    as fraud (is_fraud = 1), and critical the upper half of the flagged range.
    """
    t = float(threshold)
    return np.searchsorted(np.array([t / 2, t, (1 + t) / 2]), p, side="right")


_EPOCH = dt.datetime(1970, 1, 1)
_MS = dt.timedelta(milliseconds=1)
_NAT = np.iinfo(np.int64).min  # NaT as datetime64


def _column(rows: list[dict], key: str) -> list:
    """One field of every request row (None where absent), in one C-level pass."""
    return list(map(dict.get, rows, repeat(key)))


def _local_time(ts: dt.datetime | None) -> dt.datetime | None:
    """Timestamps are the card's local wall-clock time: an offset, if any, is dropped."""
    if ts is None:
        return None
    return ts.replace(tzinfo=None) if ts.tzinfo is not None else ts


@dataclass
class ScoreResult:
    rows: list[bytes]  # each transaction's prediction as JSON (the `Prediction` schema)
    probabilities: np.ndarray
    flagged: np.ndarray  # bool: fraud_probability >= threshold
    risk: np.ndarray  # index into RISK_LEVELS
    log_item: Any


class _LogItem:
    """What a request hands the prediction log; turned into a JSON line in the writer thread."""

    __slots__ = (
        "cols",
        "flagged",
        "ids",
        "latency_ms",
        "model",
        "probs",
        "reasons",
        "risk",
        "scored_at",
        "shadow",
        "stamps",
        "txs",
    )

    def __init__(self, model, txs, ids, stamps, cols, probs, flagged, risk, reasons, scored_at, latency_ms):
        self.model, self.txs, self.ids, self.stamps, self.cols = model, txs, ids, stamps, cols
        self.probs, self.flagged, self.risk, self.reasons = probs, flagged, risk, reasons
        self.scored_at, self.latency_ms = scored_at, latency_ms
        self.shadow: tuple[str, np.ndarray] | None = None  # (version, probabilities): `fraud_serving.shadow`

    def __len__(self) -> int:
        return len(self.txs)

    def line_pieces(self):
        """The request's JSON line, its transactions as columns (see `prediction_log`), in pieces
        of a pydantic-core call each, so the writer can pause between them; the reason codes'
        JSON as the response had it."""
        values = (
            self.scored_at, self.model.version, self.model.threshold, self.latency_ms,  # the call
            self.ids, _column(self.txs, "card_id"), _column(self.txs, "merchant_id"), self.stamps,
            self.probs.tolist(), self.flagged.astype(int).tolist(),  # is_fraud as answered
            [RISK_LEVELS[i] for i in self.risk.tolist()],
        )  # fmt: skip
        yield pydantic_core.to_json(dict(zip(_LOG_HEAD, values, strict=True)), inf_nan_mode="null")[:-1]
        yield _LOG_REASONS + b"],[".join(self.reasons) + b"]]"
        features = {name: values.tolist() for name, values in self.cols.items()}  # NaN -> null
        if len(self.txs) < LOG_PIECE_ROWS or not features:  # small: one call
            yield _LOG_FEATURES + pydantic_core.to_json(features, inf_nan_mode="null")
        else:  # a column a piece
            for i, (name, values) in enumerate(features.items()):
                column = pydantic_core.to_json({name: values}, inf_nan_mode="null")[1:-1]
                yield (_LOG_FEATURES + b"{" if i == 0 else b",") + column
            yield b"}"
        if self.shadow is not None:  # the challenger in shadow, after the features
            version, probs = self.shadow
            yield (
                b","
                + pydantic_core.to_json(
                    dict(zip(LOG_SHADOW_FIELDS, (version, probs.tolist()), strict=True)), inf_nan_mode="null"
                )[1:-1]
            )
        yield b"}"  # (the transactions as sent are the capture feed's, not this log's)


class Scorer:
    def __init__(self, cards: CardState, merchants: MerchantRiskStore) -> None:
        self.cards = cards
        self.merchants = merchants

    # -- history features ------------------------------------------------------------------

    def _history(self, rows: list[dict], ts_ms: np.ndarray, tracked: np.ndarray) -> dict[str, np.ndarray]:
        """History features of the rows with a card and a timestamp (``tracked``, in order),
        which the card state remembers first: each sees its card's strictly earlier rows, this
        request's included. Merchant risk from the latest snapshot (none without a merchant)."""
        everyone = bool(tracked.all())
        picked = rows if everyone else [rows[i] for i in np.flatnonzero(tracked)]
        merchants = [merchant or NO_MERCHANT for merchant in _column(picked, "merchant_id")]
        out = self.cards.remember(
            _column(picked, "card_id"),
            ts_ms if everyone else ts_ms[tracked],
            merchants,
            _column(picked, "amount"),
            _column(picked, "device_fingerprint"),
            _column(picked, "transaction_id"),  # a retried transaction is not added twice
        )
        snapshot = self.merchants.snapshot
        if snapshot is not None and MERCHANT_FEATURES[0] not in out:  # Redis's came with the history
            out.update(snapshot.lookup(merchants))
        if NO_MERCHANT in merchants:
            no_merchant = np.array([m == NO_MERCHANT for m in merchants])
            for name in _MERCHANT_DEPENDENT:
                if name in out:
                    out[name][no_merchant] = np.nan
        return out

    # -- scoring -----------------------------------------------------------------------------

    def _inputs(self, model: ServedModel, rows: list[dict], stamps: list) -> dict[str, np.ndarray]:
        """The model's input columns: client values win; absent history and calendar values are
        computed (history for rows with a card and a timestamp, which the card state follows)."""
        n = len(rows)
        ts_ms = np.fromiter(  # (1,000 datetimes through NumPy's object path cost a millisecond)
            ((stamp - _EPOCH) // _MS if stamp is not None else _NAT for stamp in stamps),
            dtype="int64",
            count=n,
        )
        hour, weekday, known = hour_and_weekday(ts_ms.view("datetime64[ms]"))
        tracked = known & np.array(_column(rows, "card_id"), dtype=bool)
        # One array per numeric input (None -> NaN); a column no row sent (history features,
        # usually) stays all NaN without a pass over the rows.
        sent = set().union(*rows)  # every key any row has (absent fields are absent keys)
        numeric = model.numeric_inputs
        values = np.full((len(numeric), n), np.nan)
        for j, col in enumerate(numeric):
            if col in sent:
                given = _column(rows, col)
                if given.count(None) < n:
                    values[j] = np.array(given, dtype="float64")
        cols: dict[str, np.ndarray] = dict(zip(numeric, values, strict=True))
        for col in model.categorical_inputs:
            cols[col] = np.array(_column(rows, col), dtype=object)

        # Calendar columns from the timestamp where the client left them out.
        given_day = (
            cols[c.DAY_OF_WEEK].copy()
            if c.DAY_OF_WEEK in cols
            else np.array(_column(rows, c.DAY_OF_WEEK), dtype="float64")
        )
        day = np.where(np.isnan(given_day) & known, weekday, given_day)
        derived = {
            c.HOUR_OF_DAY: np.where(known, hour, np.nan),
            c.DAY_OF_WEEK: day,
            c.IS_WEEKEND: np.where(np.isnan(day), np.nan, is_weekend(day)),
        }
        for col, computed in derived.items():
            if col in cols:
                np.copyto(cols[col], computed, where=np.isnan(cols[col]))

        # History features from the card state where the client left any out.
        if tracked.any():
            hist = self._history(rows, ts_ms, tracked)
            rows_at = None if tracked.all() else np.flatnonzero(tracked)
            for j, col in enumerate(numeric):
                if col not in hist:
                    continue
                if rows_at is None:  # the usual case (every row has card and time): no indexing
                    np.copyto(values[j], hist[col], where=np.isnan(values[j]))
                else:
                    sub = values[j, rows_at]
                    np.copyto(sub, hist[col], where=np.isnan(sub))
                    values[j, rows_at] = sub
        return cols

    def score(
        self,
        model: ServedModel,
        rows: list[dict],
        started: float | np.ndarray,
        options: ScoringOptions = DEFAULT_OPTIONS,
    ) -> ScoreResult:
        """Score validated request rows (dicts of `schemas.TransactionRow`; absent fields absent).

        ``started``: when the request arrived (``time.perf_counter()``), or one such time per row
        when single-transaction requests are scored together (`coalescing`); the prediction log
        then holds each row's own latency.
        """
        n = len(rows)
        stamps_dt = [_local_time(stamp) for stamp in _column(rows, "timestamp")]
        cols = self._inputs(model, rows, stamps_dt)

        x = model.preprocessor.transform_columns(cols)
        probs, contrib = model.predict(x, options.reasons)
        raw = None
        if contrib is None:
            why = [b""] * n
        else:
            fields, amounts, values, sentences = model.field_reasons.explain(contrib, cols, TOP_REASONS)
            why = responses.reason_codes(model.field_names_json, fields, amounts, values, sentences)
            if options.raw_reasons:
                top = top_contributions(contrib, TOP_REASONS)
                picked = (np.arange(n)[:, None], top)
                # back from the scaled matrix; rounded so an imputed 0 reads 0, not 5.6e-17
                top_value = np.round(x[picked] * model.scale[top] + model.center[top], 10)
                raw = responses.raw_reasons_members(
                    responses.raw_reason_codes(model.feature_names_json, top, contrib[picked], top_value)
                )
        risk = risk_index(probs, model.threshold)
        flagged = probs >= model.threshold

        now = dt.datetime.now(dt.UTC)
        scored_at = now.isoformat(timespec="microseconds")
        scored_at_s = now.replace(tzinfo=None).isoformat(timespec="seconds")
        ids = _column(rows, "transaction_id")
        if None in ids:  # 80 random bits each, drawn at once (uuid4 per row cost 5 ms a 1,000 batch)
            noise = os.urandom(10 * n).hex()
            ids = [tid or f"txn-{noise[20 * i : 20 * i + 20]}" for i, tid in enumerate(ids)]
        # datetimes serialize as ISO 8601 (= isoformat) in the JSON writer, 4x faster than in Python
        answered_stamps = [stamp or scored_at_s for stamp in stamps_dt] if None in stamps_dt else stamps_dt
        predictions = responses.predictions(
            ids, flagged, probs, [_RISK_BYTES[i] for i in risk.tolist()],
            answered_stamps, model.version, why, raw,
            responses.features_objects(cols) if options.include_features else None,
        )  # fmt: skip
        elapsed_ms = (time.perf_counter() - started) * 1000
        latency_ms = (
            np.round(elapsed_ms, 3).tolist() if isinstance(elapsed_ms, np.ndarray) else round(elapsed_ms, 3)
        )
        item = _LogItem(model, rows, ids, stamps_dt, cols, probs, flagged, risk, why, scored_at, latency_ms)
        return ScoreResult(predictions, probs, flagged, risk, item)
