"""Fraud models: the classifier, its per-algorithm backends, calibration and time-aware tuning.

``fraud_assets.core.training`` re-exports the public API.
"""
