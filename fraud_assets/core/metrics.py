"""Evaluation of fraud scores: ranking, operating point, cost and card-level precision.

Every function takes the true labels (0/1) and the scores (higher = more likely fraud) of
the same rows. A transaction is flagged when ``score >= threshold``.

Degenerate inputs fail loudly: labels and scores of different lengths, NaN scores, labels
other than 0/1, and a set with only one class (AUC and average precision are undefined)
raise ``ValueError`` with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from fraud_assets.core.columns import CARD_ID, IS_ONLINE, MERCHANT_CATEGORY, TIMESTAMP

THRESHOLD_OBJECTIVES: tuple[str, ...] = ("f1", "recall", "precision", "cost")
# The "precision" objective maximises precision among thresholds that keep at least this recall.
DEFAULT_MIN_RECALL_FOR_PRECISION = 0.5


def _as_labels_and_scores(y_true: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"y_true has {y.shape[0]} rows but scores has {s.shape[0]}: they must be aligned")
    if y.shape[0] == 0:
        raise ValueError("no rows to evaluate: y_true and scores are empty")
    if np.isnan(s).any():
        raise ValueError(f"scores contain {int(np.isnan(s).sum())} NaN value(s)")
    if y.dtype == bool:
        y = y.astype(np.int64)
    try:
        y_num = y.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"y_true must be 0/1 labels, got dtype {y.dtype}") from err
    bad = ~np.isin(y_num, (0.0, 1.0))
    if bad.any():
        raise ValueError(f"y_true must be 0/1 labels; found {np.unique(y[bad])[:5].tolist()}")
    return y_num.astype(np.int64), s


def _require_both_classes(y: np.ndarray) -> None:
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError(
            f"y_true has no positives (no fraud among {len(y)} rows): AUC and average precision are undefined"
        )
    if n_pos == len(y):
        raise ValueError(
            f"y_true has no negatives (all {len(y)} rows are fraud): AUC and average precision are undefined"
        )


def operating_curve(y_true: Any, scores: Any) -> pd.DataFrame:
    """Confusion counts at every distinct threshold (flag when ``score >= threshold``).

    Rows go from the highest threshold (fewest flags) down to the lowest (everything flagged).
    Columns: threshold, tp, fp, fn, tn, precision, recall.
    """
    y, s = _as_labels_and_scores(y_true, scores)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # Last position of each run of equal scores: flagging down to that score flags the whole run.
    ends = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    tp = np.cumsum(y_sorted)[ends]
    fp = (ends + 1) - tp
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    flagged = tp + fp
    precision = np.divide(tp, flagged, out=np.zeros(len(tp), dtype=np.float64), where=flagged > 0)
    recall = tp / n_pos if n_pos else np.zeros(len(tp), dtype=np.float64)
    return pd.DataFrame(
        {
            "threshold": s_sorted[ends],
            "tp": tp,
            "fp": fp,
            "fn": n_pos - tp,
            "tn": n_neg - fp,
            "precision": precision,
            "recall": recall,
        }
    )


def precision_at_recall(y_true: Any, scores: Any, min_recall: float = 0.9) -> float:
    """Highest precision among operating points whose recall is at least ``min_recall``."""
    curve = operating_curve(y_true, scores)
    ok = curve["recall"] >= min_recall - 1e-12
    return float(curve.loc[ok, "precision"].max()) if ok.any() else 0.0


def card_precision_at_k(y_true: Any, scores: Any, timestamps: Any, card_ids: Any, k: int = 100) -> float:
    """Card precision@k (Le Borgne et al., Fraud Detection Handbook), averaged over days.

    Each day, a card's score is its highest transaction score that day and the card is
    fraudulent that day when at least one of its transactions that day is fraud. The ``k``
    cards with the highest scores are "investigated"; the day's precision is the share of
    them that were fraudulent. On a day with fewer than ``k`` cards all are taken and the
    share is over those (the handbook divides by ``k`` regardless). The handbook's variant
    that drops cards already caught on earlier days is not applied here.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    y, s = _as_labels_and_scores(y_true, scores)
    ts = pd.to_datetime(pd.Series(np.asarray(timestamps)))
    cards = pd.Series(np.asarray(card_ids))
    if len(ts) != len(y) or len(cards) != len(y):
        raise ValueError(
            f"timestamps ({len(ts)}) and card_ids ({len(cards)}) must have one value per row ({len(y)})"
        )
    if ts.isna().any():
        raise ValueError("timestamps contain missing values")
    frame = pd.DataFrame({"day": ts.dt.floor("D").to_numpy(), "card": cards.to_numpy(), "y": y, "s": s})
    per_card = frame.groupby(["day", "card"], sort=False).agg(score=("s", "max"), fraud=("y", "max"))
    per_card = per_card.reset_index().sort_values(["day", "score"], ascending=[True, False], kind="mergesort")
    top = per_card.groupby("day", sort=True).head(k)
    return float(top.groupby("day")["fraud"].mean().mean())


def evaluate_scores(
    y_true: Any,
    scores: Any,
    threshold: float,
    *,
    context: pd.DataFrame | None = None,
    cost_fn: float = 100.0,
    cost_fp: float = 5.0,
    card_top_k: int = 100,
) -> dict[str, float | int]:
    """All headline metrics of one set of scores at one threshold.

    Returns floats/ints: auc_roc, average_precision, precision_at_90_recall, precision,
    recall, f1 (at ``threshold``; precision is 0 when nothing is flagged), tn, fp, fn, tp,
    expected_cost (``cost_fn * fn + cost_fp * fp``), expected_cost_per_txn, n, n_fraud, and,
    when ``context`` (aligned row for row) has ``timestamp`` and ``card_id`` columns,
    ``card_precision_at_100`` (see :func:`card_precision_at_k`; the key follows ``card_top_k``).
    """
    y, s = _as_labels_and_scores(y_true, scores)
    _require_both_classes(y)
    flagged = s >= threshold
    tp = int(np.sum(flagged & (y == 1)))
    fp = int(np.sum(flagged & (y == 0)))
    fn = int(np.sum(~flagged & (y == 1)))
    tn = int(np.sum(~flagged & (y == 0)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    cost = cost_fn * fn + cost_fp * fp
    result: dict[str, float | int] = {
        "auc_roc": float(roc_auc_score(y, s)),
        "average_precision": float(average_precision_score(y, s)),
        "precision_at_90_recall": precision_at_recall(y, s, 0.9),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "tp": tp,
        "expected_cost": float(cost),
        "expected_cost_per_txn": float(cost / len(y)),
        "n": len(y),
        "n_fraud": int(y.sum()),
        "threshold": float(threshold),
    }
    if context is not None:
        if len(context) != len(y):
            raise ValueError(f"context has {len(context)} rows but y_true has {len(y)}: they must be aligned")
        if TIMESTAMP in context.columns and CARD_ID in context.columns:
            result[f"card_precision_at_{card_top_k}"] = card_precision_at_k(
                y, s, context[TIMESTAMP].to_numpy(), context[CARD_ID].to_numpy(), k=card_top_k
            )
    return result


def segment_metrics(
    y_true: Any,
    scores: Any,
    threshold: float,
    context: pd.DataFrame,
    segments: Sequence[str] = (IS_ONLINE, MERCHANT_CATEGORY),
) -> pd.DataFrame:
    """One row per (segment column, value): n, n_fraud, auc_roc, average_precision, precision, recall.

    Undefined metrics are NaN: auc_roc when the segment has a single class, average_precision
    and recall when it has no fraud, precision when nothing in it is flagged. Segment columns
    absent from ``context`` are skipped; none present gives an empty frame.
    """
    y, s = _as_labels_and_scores(y_true, scores)
    if len(context) != len(y):
        raise ValueError(f"context has {len(context)} rows but y_true has {len(y)}: they must be aligned")
    columns = ["segment", "value", "n", "n_fraud", "auc_roc", "average_precision", "precision", "recall"]
    rows: list[dict[str, Any]] = []
    for segment in segments:
        if segment not in context.columns:
            continue
        values = context[segment].to_numpy()
        for value in pd.unique(values):
            mask = pd.isna(values) if pd.isna(value) else values == value
            ys, ss = y[mask], s[mask]
            n_pos = int(ys.sum())
            flagged = ss >= threshold
            tp = int(np.sum(flagged & (ys == 1)))
            both = 0 < n_pos < len(ys)
            rows.append(
                {
                    "segment": segment,
                    "value": value,
                    "n": len(ys),
                    "n_fraud": n_pos,
                    "auc_roc": float(roc_auc_score(ys, ss)) if both else np.nan,
                    "average_precision": float(average_precision_score(ys, ss)) if n_pos else np.nan,
                    "precision": tp / int(flagged.sum()) if flagged.any() else np.nan,
                    "recall": tp / n_pos if n_pos else np.nan,
                }
            )
    return pd.DataFrame(rows, columns=columns)


def threshold_for(
    y_true: Any,
    scores: Any,
    objective: str,
    *,
    target_recall: float = 0.9,
    min_recall: float = DEFAULT_MIN_RECALL_FOR_PRECISION,
    cost_fn: float = 100.0,
    cost_fp: float = 5.0,
) -> float:
    """The decision threshold (flag when ``score >= threshold``) that best serves ``objective``.

    - ``"f1"``: maximises F1.
    - ``"recall"``: the highest threshold whose recall reaches ``target_recall``.
    - ``"precision"``: maximises precision among thresholds with recall >= ``min_recall``
      (0.5 by default); ties go to the lowest such threshold (more recall for free).
    - ``"cost"``: minimises ``cost_fn * fn + cost_fp * fp``; flagging nothing is a candidate
      too (then the threshold is just above the highest score).

    Candidates are the distinct scores themselves.
    """
    if objective not in THRESHOLD_OBJECTIVES:
        raise ValueError(
            f"unknown threshold objective {objective!r}; valid: {', '.join(THRESHOLD_OBJECTIVES)}"
        )
    y, s = _as_labels_and_scores(y_true, scores)
    _require_both_classes(y)
    curve = operating_curve(y, s)
    thr = curve["threshold"].to_numpy()
    precision = curve["precision"].to_numpy()
    recall = curve["recall"].to_numpy()
    if objective == "f1":
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
        return float(thr[int(np.argmax(f1))])  # first max = highest threshold among ties
    if objective == "recall":
        if not 0 < target_recall <= 1:
            raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
        reach = np.flatnonzero(recall >= target_recall - 1e-12)
        return float(thr[reach[0]])  # recall is non-decreasing down the curve; full recall always exists
    if objective == "precision":
        ok = np.flatnonzero(recall >= min_recall - 1e-12)
        best = precision[ok].max()
        return float(thr[ok[precision[ok] >= best - 1e-12][-1]])
    cost = cost_fn * curve["fn"].to_numpy() + cost_fp * curve["fp"].to_numpy()
    flag_nothing = cost_fn * int(y.sum())
    i = int(np.argmin(cost))
    if flag_nothing < cost[i]:
        return float(np.nextafter(s.max(), np.inf))
    return float(thr[i])
