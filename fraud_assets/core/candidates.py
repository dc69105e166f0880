"""What the training assets hand each other: a trained candidate and the evaluation's verdict.

Frozen records, pickled by the model IO manager, read by name: each `<algorithm>_model` asset
makes a :class:`Candidate`; `model_evaluation` scores them all on the held-out days and makes a
:class:`ModelEvaluation`; `challenger_model` refits and registers its ``best`` candidate, and
`champion_gate` compares the challenger's held-out scores with the champion's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from fraud_assets.core.models.classifier import FraudClassifier
from fraud_assets.core.preprocessor import FraudPreprocessor


@dataclass(frozen=True, eq=False)
class Candidate:
    """One algorithm's tuned, calibrated model and how it was trained."""

    algorithm: str
    preprocessor: FraudPreprocessor
    classifier: FraudClassifier
    # `train_candidate`'s report: parameters, tuning (trials, score, whether the safety cap cut
    # it short), row counts, windows, the held-out slice's metrics, timings.
    report: Mapping[str, Any] = field(default_factory=dict)

    @property
    def imbalance_method(self) -> str:
        return str(self.report.get("imbalance_method", self.classifier.imbalance_method))

    @property
    def tuning_capped(self) -> bool:
        return bool(self.report.get("tuning_capped", False))

    @property
    def tuning_cap_note(self) -> str:
        return str(self.report.get("tuning_cap_note", ""))


@dataclass(frozen=True, eq=False)
class ModelEvaluation:
    """Every candidate on the same held-out days, and the one chosen as the challenger."""

    best: str  # the chosen candidate's algorithm
    selected_by: str  # the metric that chose it
    metrics: dict[str, dict[str, float]]  # per algorithm
    segments: list[dict[str, Any]]  # the best candidate's metrics per segment
    test_window: tuple[str, str]
    imbalance_methods: dict[str, str]  # per algorithm
    tuning: dict[str, dict[str, Any]]  # per algorithm: trials run and requested, cap, time
    reproducible: bool  # False when a safety cap cut a tuning short (the machine's speed decided)
    warnings: list[str]
    # The best candidate's scores of the held-out rows, in their order: what `champion_gate`
    # compares with the champion's (the model before any refit on those days).
    best_test_scores: np.ndarray = field(repr=False)

    @property
    def best_metrics(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.metrics[self.best].items()}

    def report(self) -> dict[str, Any]:
        """Every field but the scores (a long array): the evaluation report logged to MLflow."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "best_test_scores"}


def candidates_of(inputs: Mapping[str, Any]) -> list[Candidate]:
    """The candidate assets' values, checked: a stored value of another kind (a pickle written by
    an earlier fraudops held a dict) is refused with the asset to materialize again."""
    found = []
    for name, value in inputs.items():
        if not isinstance(value, Candidate):
            raise TypeError(
                f"{name} holds a {type(value).__name__}, not a Candidate (stored by an earlier "
                f"version of fraudops?): materialize {name} again (the train_models job)"
            )
        found.append(value)
    return found
