"""Scoring: request bodies -> model inputs (with history features) -> probabilities and reasons.

No pandas in the per-request path: input columns are NumPy arrays, the preprocessor's
`transform_columns`, the classifier's `predict_proba_fast` (one thread) and `contributions`
(TreeSHAP). History features come from `fraud_assets.core.features`, the code batch training
uses: `transaction_history_features` for one transaction, `history_features` for a batch (all
its cards at once: the same function, on the cards' recent rows plus the batch's rows).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydantic_core

from fraud_assets.core import columns as c
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
_DERIVED = frozenset((c.HOUR_OF_DAY, c.DAY_OF_WEEK, c.IS_WEEKEND))


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


def _ms(ts: dt.datetime) -> int:
    return int(np.datetime64(ts, "ms").astype("int64"))


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

    def to_records(self) -> list[dict[str, Any]]:
        model = self.model
        names = list(self.cols)
        columns = [self.cols[name].tolist() for name in names]  # NaN stays NaN: written as null
        probs = self.probs.tolist()
        out = []
        for i, tx in enumerate(self.txs):
            p = probs[i]
            out.append(
                {
                    "scored_at": self.scored_at,
                    "transaction_id": self.ids[i],
                    "card_id": tx.card_id,
                    "merchant_id": tx.merchant_id,
                    "timestamp": self.stamps[i],
                    "model_version": model.version,
                    "threshold": model.threshold,
                    "fraud_probability": p,
                    "is_fraud": int(p >= model.threshold),
                    "risk_level": self.risks[i],
                    "latency_ms": self.latency_ms,
                    "reason_codes": self.reasons[i],
                    "features": dict(zip(names, [col[i] for col in columns], strict=True)),
                    "input": tx,
                }
            )
        return out

    def to_lines(self) -> list[bytes]:
        """The records as JSON lines; the request body is serialized by pydantic-core directly."""
        lines = []
        for record in self.to_records():
            tx = record.pop("input")
            head = pydantic_core.to_json(record, inf_nan_mode="null", fallback=str)
            lines.append(head[:-1] + b',"input":' + tx.model_dump_json(exclude_none=True).encode() + b"}")
        return lines


class Scorer:
    def __init__(self, cards: CardState, merchants: MerchantRiskStore) -> None:
        self.cards = cards
        self.merchants = merchants

    # -- history features ------------------------------------------------------------------

    def _history_one(self, tx, ts: dt.datetime) -> dict[str, float]:
        merchant = tx.merchant_id or NO_MERCHANT
        transaction = {
            c.TIMESTAMP: _ms(ts) * 1_000_000,  # ns, like the card's history
            c.CARD_ID: 0,
            c.MERCHANT_ID: self.cards.merchant_code(merchant),
            c.AMOUNT: float(tx.amount),
            c.DEVICE_FINGERPRINT: self.cards.device_code(tx.device_fingerprint),
        }
        # Merchant risk is looked up for this transaction's merchant only (what
        # `history_features` does row by row with a snapshot), ids being codes in the state.
        features = transaction_history_features(self.cards.history(tx.card_id), transaction, None)
        snapshot = self.merchants.snapshot
        if snapshot is not None and tx.merchant_id:
            for name, values in snapshot.lookup(np.array([tx.merchant_id], dtype=object)).items():
                features[name] = float(values[0])
        if not tx.merchant_id:
            for name in _MERCHANT_DEPENDENT:
                features[name] = np.nan
        return features

    def _history_many(self, rows: list[tuple[int, Any, dt.datetime]], n: int) -> dict[str, np.ndarray]:
        """History features of several transactions: one `history_features` call over their cards'
        recent rows plus the transactions themselves (each sees only strictly earlier rows, as if
        the batch had been sent one by one in time order)."""
        state = self.cards
        cards: dict[str, int] = {}
        for _, tx, _ in rows:
            cards.setdefault(tx.card_id, len(cards))
        parts_ts, parts_card, parts_m, parts_a, parts_d = [], [], [], [], []
        for card, code in cards.items():
            held = state.get(card)
            if held is None or not len(held):
                continue
            parts_ts.append(held.ts_ms)
            parts_card.append(np.full(len(held), code, dtype="int64"))
            parts_m.append(held.merchant)
            parts_a.append(held.amount)
            parts_d.append(held.device)
        k = len(rows)
        merchants_new = np.array([tx.merchant_id or NO_MERCHANT for _, tx, _ in rows], dtype=object)
        parts_ts.append(np.fromiter((_ms(ts) for _, _, ts in rows), dtype="int64", count=k))
        parts_card.append(np.fromiter((cards[tx.card_id] for _, tx, _ in rows), dtype="int64", count=k))
        parts_m.append(np.fromiter((state.merchant_code(m) for m in merchants_new), dtype="int64", count=k))
        parts_a.append(np.fromiter((tx.amount for _, tx, _ in rows), dtype="float64", count=k))
        parts_d.append(
            np.fromiter(
                (state.device_code(tx.device_fingerprint) for _, tx, _ in rows), dtype="float64", count=k
            )
        )
        frame = {
            c.TIMESTAMP: np.concatenate(parts_ts).astype("datetime64[ms]"),
            c.CARD_ID: np.concatenate(parts_card),
            c.MERCHANT_ID: np.concatenate(parts_m),
            c.AMOUNT: np.concatenate(parts_a),
            c.DEVICE_FINGERPRINT: np.concatenate(parts_d),
        }
        # Card and device features over all rows; merchant risk looked up for the batch's own
        # rows only (`history_features` would look up every history row, then keep these).
        computed = history_features(frame, None)
        out = {name: np.full(n, np.nan) for name in HISTORY_FEATURES}
        where = np.fromiter((i for i, _, _ in rows), dtype="int64", count=k)
        for name, values in computed.items():
            out[name][where] = values[-k:]
        snapshot = self.merchants.snapshot
        if snapshot is not None:
            for name, values in snapshot.lookup(merchants_new).items():
                out[name][where] = values
        no_merchant = where[merchants_new == NO_MERCHANT]
        for name in _MERCHANT_DEPENDENT:
            out[name][no_merchant] = np.nan
        return out

    # -- scoring -----------------------------------------------------------------------------

    def score(
        self,
        model: ServedModel,
        txs: list,
        started: float,
        include_features: bool = False,
        reasons: str = "exact",
    ) -> ScoreResult:
        n = len(txs)
        stamps_dt = [_local_time(tx.timestamp) for tx in txs]
        needed = [col for col in model.numeric_inputs if col in _HISTORY]

        # Which transactions need history features from the state.
        todo = [
            (i, tx, ts)
            for i, (tx, ts) in enumerate(zip(txs, stamps_dt, strict=True))
            if ts is not None and tx.card_id and any(getattr(tx, f) is None for f in needed)
        ]
        hist: dict[str, np.ndarray] | None = None
        if todo:
            if n == 1:
                one = self._history_one(todo[0][1], todo[0][2])
                hist = {name: np.array([one.get(name, np.nan)]) for name in HISTORY_FEATURES}
            else:
                hist = self._history_many(todo, n)

        cols: dict[str, np.ndarray] = {}
        for col in model.categorical_inputs:
            cols[col] = np.array([getattr(tx, col) for tx in txs], dtype=object)
        for col in model.numeric_inputs:
            values = np.array(
                [np.nan if (v := getattr(tx, col)) is None else float(v) for tx in txs], dtype="float64"
            )
            if col in _DERIVED:
                self._derive(col, values, txs, stamps_dt)
            elif hist is not None and col in _HISTORY:
                missing = np.isnan(values)
                if missing.any():
                    values[missing] = hist[col][missing]
            cols[col] = values

        pre, clf = model.preprocessor, model.classifier
        x = pre.transform_columns(cols)
        probs = clf.predict_proba_fast(x)
        if reasons == "none":
            contrib = np.zeros((n, 0))
            top = np.zeros((n, 0), dtype="int64")
        else:
            contrib = model.contributions(x, reasons)
            top = np.argsort(-contrib, axis=1, kind="stable")[:, :TOP_REASONS]
        raw = x * model.scale + model.center
        risks = risk_levels(probs, model.threshold)
        names = model.feature_names

        # Remember every transaction with a card and a timestamp, for the next ones.
        keep = [i for i in range(n) if stamps_dt[i] is not None and txs[i].card_id]
        if keep:
            self.cards.append_many(
                [txs[i].card_id for i in keep],
                [_ms(stamps_dt[i]) for i in keep],
                [txs[i].merchant_id or NO_MERCHANT for i in keep],
                [txs[i].amount for i in keep],
                [txs[i].device_fingerprint for i in keep],
            )

        now = dt.datetime.now(dt.UTC)
        scored_at = now.isoformat(timespec="microseconds")
        scored_at_s = now.replace(tzinfo=None).isoformat(timespec="seconds")
        ids, stamps, predictions, reasons = [], [], [], []
        threshold = model.threshold
        for i, tx in enumerate(txs):
            tid = tx.transaction_id or f"txn-{uuid.uuid4().hex[:20]}"
            stamp = stamps_dt[i].isoformat() if stamps_dt[i] is not None else scored_at_s
            p = float(probs[i])
            row_reasons = [
                {"feature": names[j], "contribution": float(contrib[i, j]), "value": float(raw[i, j])}
                for j in top[i]
            ]
            pred = {
                "transaction_id": tid,
                "is_fraud": int(p >= threshold),
                "fraud_probability": p,
                "risk_level": risks[i],
                "timestamp": stamp,
                "model_version": model.version,
                "reason_codes": row_reasons,
            }
            if include_features:
                pred["features"] = {
                    col: (None if isinstance(v, float) and v != v else v)
                    for col, v in (
                        (col, values[i].item() if hasattr(values[i], "item") else values[i])
                        for col, values in cols.items()
                    )
                }
            ids.append(tid)
            stamps.append(stamps_dt[i].isoformat() if stamps_dt[i] is not None else None)
            predictions.append(pred)
            reasons.append(row_reasons)
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        item = _LogItem(model, txs, ids, stamps, cols, probs, risks, reasons, scored_at, latency_ms)
        return ScoreResult(predictions, item)

    @staticmethod
    def _derive(col: str, values: np.ndarray, txs, stamps_dt) -> None:
        """hour_of_day, day_of_week from the timestamp and is_weekend from the day, when absent."""
        for i, v in enumerate(values):
            if v == v:  # given by the client: it wins
                continue
            ts = stamps_dt[i]
            if col == c.HOUR_OF_DAY and ts is not None:
                values[i] = ts.hour
            elif col == c.DAY_OF_WEEK and ts is not None:
                values[i] = ts.weekday()
            elif col == c.IS_WEEKEND:
                day = txs[i].day_of_week if txs[i].day_of_week is not None else (ts.weekday() if ts else None)
                if day is not None:
                    values[i] = float(day >= 5)
