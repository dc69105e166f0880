"""Evaluation of candidate models on the held-out days: the metrics that matter for fraud."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fraud_assets.core import columns as c
from fraud_assets.core.metrics import evaluate_scores, segment_metrics
from fraud_assets.core.models.backends import ALGORITHMS

HEADLINE = ("auc_roc", "average_precision", "precision_at_90_recall", "card_precision_at_100")
# The seed's model performance targets.
TARGETS = {"auc_roc": 0.90, "average_precision": 0.85, "precision_at_90_recall": 0.80}
CONTEXT_COLUMNS = (c.TIMESTAMP, c.CARD_ID, c.IS_ONLINE, c.MERCHANT_CATEGORY)


# Held-out rows are scored this many at a time: the model matrix of one chunk is held, not of all.
SCORE_CHUNK_ROWS = 100_000


def fraud_scores(
    preprocessor: Any, classifier: Any, frame: pd.DataFrame, chunk_rows: int = SCORE_CHUNK_ROWS
) -> np.ndarray:
    """Calibrated fraud probabilities of transactions (with their history features), ``chunk_rows``
    rows at a time (each row's score is its own: the preprocessor and the model work row by row)."""
    if len(frame) <= chunk_rows:
        return classifier.predict_proba(preprocessor.transform(frame))[:, 1]
    return np.concatenate(
        [
            classifier.predict_proba(preprocessor.transform(frame.iloc[start : start + chunk_rows]))[:, 1]
            for start in range(0, len(frame), chunk_rows)
        ]
    )


@dataclass
class CandidateEvaluation:
    algorithm: str
    metrics: dict[str, float]
    segments: pd.DataFrame
    scores: np.ndarray


def evaluate_candidate(
    algorithm: str,
    preprocessor: Any,
    classifier: Any,
    test: pd.DataFrame,
    *,
    cost_fn: float = 100.0,
    cost_fp: float = 5.0,
) -> CandidateEvaluation:
    y = test[c.IS_FRAUD].astype("int64").to_numpy()
    scores = fraud_scores(preprocessor, classifier, test)
    context = test[[col for col in CONTEXT_COLUMNS if col in test]].reset_index(drop=True)
    threshold = classifier.threshold
    metrics = evaluate_scores(y, scores, threshold, context=context, cost_fn=cost_fn, cost_fp=cost_fp)
    segments = segment_metrics(y, scores, threshold, context)
    return CandidateEvaluation(algorithm, metrics, segments, scores)


def comparison_table(evaluations: dict[str, CandidateEvaluation]) -> pd.DataFrame:
    columns = [*HEADLINE, "precision", "recall", "f1", "expected_cost", "threshold"]
    rows = {name: {k: e.metrics.get(k, np.nan) for k in columns} for name, e in evaluations.items()}
    return pd.DataFrame.from_dict(rows, orient="index").sort_values("average_precision", ascending=False)


def tuning_budgets(reports: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per candidate (``train_candidate`` reports by algorithm): trials run and requested, the
    safety cap, and whether the cap cut tuning short (then the result depends on the machine)."""
    rows = {
        name: {
            "trials": int(report.get("n_trials", 0)),
            "trials_requested": int(report.get("n_trials_requested", report.get("n_trials", 0))),
            "cap_seconds": report.get("tuning_cap_seconds"),
            "capped": bool(report.get("tuning_capped", False)),
            "tuning_seconds": round(float(report.get("tuning_seconds", 0.0)), 1),
        }
        for name, report in reports.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def best_candidate(evaluations: dict[str, CandidateEvaluation], metric: str = "average_precision") -> str:
    """The candidate with the highest ``metric``; on a tie the simpler one, earlier in
    ``ALGORITHMS`` (never the order the candidates happen to arrive in)."""
    if not evaluations:
        raise ValueError("no candidate models to choose from")
    rank = {name: i for i, name in enumerate(ALGORITHMS)}
    by_simplicity = sorted(evaluations, key=lambda name: (rank.get(name, len(rank)), name))
    return max(by_simplicity, key=lambda name: evaluations[name].metrics[metric])  # max keeps the first


def missed_targets(metrics: dict[str, float]) -> dict[str, tuple[float, float]]:
    return {k: (metrics[k], target) for k, target in TARGETS.items() if not metrics[k] > target}
