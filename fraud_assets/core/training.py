"""Model training: ``FraudClassifier``, prequential time folds, Optuna tuning, candidate training.

The code lives in ``fraud_assets.core.models`` (one small module per concern); this module is
the public entry point.
"""

from fraud_assets.core.models.backends import ALGORITHMS
from fraud_assets.core.models.calibration import CALIBRATION_METHODS, Calibrator
from fraud_assets.core.models.classifier import (
    IMBALANCE_METHODS,
    FraudClassifier,
    NotFittedError,
    smote_resample,
)
from fraud_assets.core.models.tuning import (
    DEFAULT_GAP,
    TUNING_METRICS,
    TuningPlan,
    TuningResult,
    refit_on_latest_labels,
    search_space,
    time_ordered_folds,
    train_candidate,
    tune,
)

__all__ = [
    "ALGORITHMS",
    "CALIBRATION_METHODS",
    "DEFAULT_GAP",
    "IMBALANCE_METHODS",
    "TUNING_METRICS",
    "Calibrator",
    "FraudClassifier",
    "NotFittedError",
    "TuningPlan",
    "TuningResult",
    "refit_on_latest_labels",
    "search_space",
    "smote_resample",
    "time_ordered_folds",
    "train_candidate",
    "tune",
]
