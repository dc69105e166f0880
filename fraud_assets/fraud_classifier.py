"""The seed guide's import path for the model: ``from fraud_assets.fraud_classifier import FraudClassifier``.

Re-exports ``fraud_assets.core.training`` (no Dagster import).
"""

from fraud_assets.core.training import FraudClassifier, time_ordered_folds, train_candidate, tune

__all__ = ["FraudClassifier", "time_ordered_folds", "train_candidate", "tune"]
