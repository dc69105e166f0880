"""Scoring: request bodies -> model inputs (with history features) -> probabilities and reasons.

No pandas in the per-request path: input columns are NumPy arrays, the preprocessor's
`transform_columns`, the classifier's `predict_proba_fast` (one thread) and `contributions`
(TreeSHAP). History features come from `fraud_assets.core.features`, the code batch training
uses: `transaction_history_features` for one transaction, `history_features` for a batch (all
its cards at once: the same function, on the cards' recent rows plus the batch's rows).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

import numpy as np
import pydantic_core

from fraud_assets.core import columns as c
from fraud_assets.core.calendar import hour_and_weekday, is_weekend
from fraud_assets.core.features import (
    HISTORY_FEATURES,
    MERCHANT_FEATURES,
    history_features,
    transaction_history_features,
)
from fraud_serving.card_state import CardState, MerchantRiskStore
from fraud_serving.model_provider import ServedModel

RISK_LEVELS = ("low", "medium", "high", "critical")
TOP_REASONS = 3
NO_MERCHANT = ""  # stands for an absent merchant id in the card state (never a real id)
_HISTORY = frozenset(HISTORY_FEATURES)
_MERCHANT_DEPENDENT = frozenset((*MERCHANT_FEATURES, "is_new_merchant"))


def risk_levels(p: np.ndarray, threshold: float) -> list[str]:
    """low: p < t/2; medium: t/2 <= p < t; high: t <= p < (1+t)/2; critical: p >= (1+t)/2.

    With t the model's threshold, so high and critical are exactly the transactions flagged
    as fraud (is_fraud = 1), and critical the upper half of the flagged range.
    """
    t = float(threshold)
    edges = np.array([t / 2, t, (1 + t) / 2])
    idx = np.searchsorted(edges, p, side="right")
    return [RISK_LEVELS[i] for i in idx]


def _local_time(ts: dt.datetime | None) -> dt.datetime | None:
    """Timestamps are the card's local wall-clock time: an offset, if any, is dropped."""
    if ts is None:
        return None
    return ts.replace(tzinfo=None) if ts.tzinfo is not None else ts


@dataclass
class ScoreResult:
    predictions: list[dict[str, Any]]
    log_item: Any


class _LogItem:
    """What a request hands the prediction log; turned into JSON records in the writer thread."""

    __slots__ = (
        "cols",
        "ids",
        "latency_ms",
        "model",
        "probs",
        "reasons",
        "risks",
        "scored_at",
        "stamps",
        "txs",
    )

    def __init__(self, model, txs, ids, stamps, cols, probs, risks, reasons, scored_at, latency_ms):
        self.model, self.txs, self.ids, self.stamps, self.cols = model, txs, ids, stamps, cols
        self.probs, self.risks, self.reasons = probs, risks, reasons
        self.scored_at, self.latency_ms = scored_at, latency_ms

    def __len__(self) -> int:
        return len(self.txs)

    def to_lines(self) -> list[bytes]:
        """The request as one JSON line, its transactions as columns (see `prediction_log`).

        One pydantic-core call on arrays turned into lists: a 1,000-transaction batch costs the
        writer thread about a millisecond of interpreter time, not one dict per transaction.
        """
        probs = self.probs.tolist()
        threshold = self.model.threshold
        line = {
            "scored_at": self.scored_at,
            "model_version": self.model.version,
            "threshold": threshold,
            "latency_ms": self.latency_ms,
            "transaction_id": self.ids,
            "card_id": [tx.card_id for tx in self.txs],
            "merchant_id": [tx.merchant_id for tx in self.txs],
            "timestamp": self.stamps,
            "fraud_probability": probs,
            "is_fraud": [int(p >= threshold) for p in probs],
            "risk_level": self.risks,
            "reason_codes": self.reasons,
            "features": {name: values.tolist() for name, values in self.cols.items()},  # NaN -> null
            "input": self.txs,  # the request bodies, as sent (absent fields left out)
        }
        return [pydantic_core.to_json(line, inf_nan_mode="null", exclude_none=True, fallback=str)]


class Scorer:
    def __init__(self, cards: CardState, merchants: MerchantRiskStore) -> None:
        self.cards = cards
        self.merchants = merchants

    # -- history features ------------------------------------------------------------------

    def _merchant_features(self, merchant_ids: np.ndarray) -> dict[str, np.ndarray] | None:
        snapshot = self.merchants.snapshot
        return None if snapshot is None else snapshot.lookup(merchant_ids)

    def _history_one(self, row: dict, ts_ms: int) -> dict[str, np.ndarray]:
        merchant = row["merchant_id"] or NO_MERCHANT
        transaction = {
            c.TIMESTAMP: np.datetime64(ts_ms, "ms"),
            c.CARD_ID: 0,
            c.MERCHANT_ID: self.cards.merchant_code(merchant),
            c.AMOUNT: float(row["amount"]),
            c.DEVICE_FINGERPRINT: self.cards.device_code(row["device_fingerprint"]),
        }
        # The state holds merchants as codes: merchant risk is looked up here, by id, for this
        # transaction only (what `history_features` does per row with a snapshot).
        one = transaction_history_features(self.cards.history(row["card_id"]), transaction, None)
        features = {name: np.array([value]) for name, value in one.items()}
        if row["merchant_id"]:
            features.update(self._merchant_features(np.array([row["merchant_id"]], dtype=object)) or {})
        else:
            features.update({name: np.array([np.nan]) for name in _MERCHANT_DEPENDENT})
        return features

    def _history_many(self, rows: list[dict], ts_ms: np.ndarray) -> dict[str, np.ndarray]:
        """History features of several transactions: one `history_features` call over their cards'
        recent rows plus the transactions themselves (each sees only strictly earlier rows, as if
        the batch had been sent one by one in time order)."""
        state = self.cards
        cards: dict[str, int] = {}
        for row in rows:
            cards.setdefault(row["card_id"], len(cards))
        held = [
            (code, rows_) for code, rows_ in zip(cards.values(), map(state.get, cards), strict=True) if rows_
        ]
        parts_ts = [h.ts_ms for _, h in held]
        parts_m = [h.merchant for _, h in held]
        parts_a = [h.amount for _, h in held]
        parts_d = [h.device for _, h in held]
        parts_card = [
            np.repeat(np.array([code for code, _ in held], dtype="int64"), [len(h) for _, h in held])
        ]
        k = len(rows)
        merchants = np.array([row["merchant_id"] or NO_MERCHANT for row in rows], dtype=object)
        parts_ts.append(ts_ms)
        parts_card.append(np.fromiter((cards[row["card_id"]] for row in rows), dtype="int64", count=k))
        parts_m.append(np.fromiter((state.merchant_code(m) for m in merchants), dtype="int64", count=k))
        parts_a.append(np.array([row["amount"] for row in rows], dtype="float64"))
        parts_d.append(
            np.fromiter(
                (state.device_code(row["device_fingerprint"]) for row in rows), dtype="int64", count=k
            )
        )
        frame = {
            c.TIMESTAMP: np.concatenate(parts_ts).astype("datetime64[ms]"),
            c.CARD_ID: np.concatenate(parts_card),
            c.MERCHANT_ID: np.concatenate(parts_m),
            c.AMOUNT: np.concatenate(parts_a),
            c.DEVICE_FINGERPRINT: np.concatenate(parts_d),
        }
        # The batch's own rows are the targets, the cards' held rows their history.
        n_rows = len(frame[c.TIMESTAMP])
        out = history_features(frame, None, targets=np.arange(n_rows - k, n_rows))
        out.update(self._merchant_features(merchants) or {})
        no_merchant = merchants == NO_MERCHANT
        if no_merchant.any():
            for name in _MERCHANT_DEPENDENT:
                if name in out:
                    out[name][no_merchant] = np.nan
        return out

    # -- scoring -----------------------------------------------------------------------------

    def _inputs(
        self, model: ServedModel, rows: list[dict], stamps: list
    ) -> tuple[dict, np.ndarray, np.ndarray]:
        """The model's input columns (client values win; absent history and calendar values are
        computed), each row's timestamp in ms (-1 where absent), and which rows the card state
        follows (a card and a timestamp)."""
        n = len(rows)
        ts = np.array(stamps, dtype="datetime64[ms]")
        hour, weekday, known = hour_and_weekday(ts)
        ts_ms = np.where(known, ts.astype("int64"), -1)
        tracked = known & np.array([bool(row["card_id"]) for row in rows])
        numeric = model.numeric_inputs
        # All numeric inputs in one conversion (None -> NaN), one contiguous row per column.
        pick = itemgetter(*numeric, "amount")  # a tuple per row, built in C ("amount": never a bare value)
        values = np.array(list(map(pick, rows)), dtype="float64")[:, :-1].T.copy()
        cols: dict[str, np.ndarray] = dict(zip(numeric, values, strict=True))
        for col in model.categorical_inputs:
            cols[col] = np.array([row[col] for row in rows], dtype=object)

        # Calendar columns from the timestamp where the client left them out.
        given_day = (
            cols[c.DAY_OF_WEEK].copy()
            if c.DAY_OF_WEEK in cols
            else np.array([row[c.DAY_OF_WEEK] for row in rows], dtype="float64")
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
        needed = [j for j, col in enumerate(numeric) if col in _HISTORY]
        if needed:
            lacking = tracked & np.isnan(values[needed]).any(axis=0)
            todo = np.flatnonzero(lacking)
            if len(todo) == n:  # the usual case (every row has card and time): no indexing
                hist = (
                    self._history_one(rows[0], int(ts_ms[0])) if n == 1 else self._history_many(rows, ts_ms)
                )
                for j in needed:
                    if numeric[j] in hist:
                        np.copyto(values[j], hist[numeric[j]], where=np.isnan(values[j]))
            elif len(todo):
                hist = self._history_many([rows[i] for i in todo], ts_ms[todo])
                for j in needed:
                    if numeric[j] in hist:
                        sub = values[j, todo]
                        np.copyto(sub, hist[numeric[j]], where=np.isnan(sub))
                        values[j, todo] = sub
        return cols, ts_ms, tracked

    def score(
        self,
        model: ServedModel,
        txs: list,
        started: float,
        include_features: bool = False,
        reasons: str = "exact",
    ) -> ScoreResult:
        n = len(txs)
        rows = [tx.__dict__ for tx in txs]
        stamps_dt = [_local_time(row["timestamp"]) for row in rows]
        cols, ts_ms, tracked = self._inputs(model, rows, stamps_dt)

        x = model.preprocessor.transform_columns(cols)
        probs, contrib = model.predict(x, reasons)
        if contrib is None:
            top = np.zeros((n, 0), dtype="int64")
            top_contrib = top_value = np.zeros((n, 0))
        else:
            top = np.argsort(-contrib, axis=1, kind="stable")[:, :TOP_REASONS]
            picked = (np.arange(n)[:, None], top)
            top_contrib = contrib[picked]
            # back from the scaled matrix; rounded so an imputed 0 reads 0, not 5.6e-17
            top_value = np.round(x[picked] * model.scale[top] + model.center[top], 10)
        risks = risk_levels(probs, model.threshold)

        # Remember every transaction with a card and a timestamp, for the next ones.
        keep = np.flatnonzero(tracked).tolist()
        if keep:
            self.cards.append_many(
                [rows[i]["card_id"] for i in keep],
                ts_ms[keep],
                [rows[i]["merchant_id"] or NO_MERCHANT for i in keep],
                [rows[i]["amount"] for i in keep],
                [rows[i]["device_fingerprint"] for i in keep],
                [rows[i]["transaction_id"] for i in keep],  # a retried transaction is not added twice
            )

        now = dt.datetime.now(dt.UTC)
        scored_at = now.isoformat(timespec="microseconds")
        scored_at_s = now.replace(tzinfo=None).isoformat(timespec="seconds")
        names = model.feature_names
        version = model.version
        flags = (probs >= model.threshold).astype(int).tolist()
        ids = [row["transaction_id"] for row in rows]
        if None in ids:  # 80 random bits each, drawn at once (uuid4 per row cost 5 ms a 1,000 batch)
            noise = os.urandom(10 * n).hex()
            ids = [tid or f"txn-{noise[20 * i : 20 * i + 20]}" for i, tid in enumerate(ids)]
        stamps = [ts.isoformat() if ts is not None else None for ts in stamps_dt]
        reason_rows = [
            [
                {"feature": names[j], "contribution": cv, "value": v}
                for j, cv, v in zip(js, cvs, vs, strict=True)
            ]
            for js, cvs, vs in zip(top.tolist(), top_contrib.tolist(), top_value.tolist(), strict=True)
        ]
        predictions = [
            {
                "transaction_id": tid,
                "is_fraud": flag,
                "fraud_probability": p,
                "risk_level": risk,
                "timestamp": stamp if stamp is not None else scored_at_s,
                "model_version": version,
                "reason_codes": why,
            }
            for tid, flag, p, risk, stamp, why in zip(
                ids, flags, probs.tolist(), risks, stamps, reason_rows, strict=True
            )
        ]
        if include_features:
            listed = {col: values.tolist() for col, values in cols.items()}
            for i, pred in enumerate(predictions):
                pred["features"] = {
                    col: (None if isinstance(v, float) and v != v else v) for col, v in
                    ((col, values[i]) for col, values in listed.items())
                }  # fmt: skip
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        item = _LogItem(model, txs, ids, stamps, cols, probs, risks, reason_rows, scored_at, latency_ms)
        return ScoreResult(predictions, item)
