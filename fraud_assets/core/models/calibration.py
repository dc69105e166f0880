"""Probability calibrators that apply in plain NumPy (the serving hot path needs no sklearn call).

Both map the model's raw fraud probability to a calibrated one:

- isotonic: sklearn's ``IsotonicRegression`` is fitted, then only its breakpoints are kept and
  applied with ``np.interp`` (the same piecewise-linear map, clipped at both ends);
- sigmoid (Platt): ``p' = 1 / (1 + exp(-(a * logit(p) + b)))`` with ``a, b`` fitted by
  logistic regression on the calibration rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

CALIBRATION_METHODS: tuple[str, ...] = ("isotonic", "sigmoid", "none")
_EPS = 1e-12


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


@dataclass
class Calibrator:
    """A fitted calibrator; ``method`` is "isotonic", "sigmoid" or "none" (identity)."""

    method: str = "none"
    x_thresholds: np.ndarray = field(default_factory=lambda: np.empty(0))
    y_thresholds: np.ndarray = field(default_factory=lambda: np.empty(0))
    a: float = 1.0
    b: float = 0.0

    @classmethod
    def fit(cls, method: str, raw_proba: np.ndarray, y: np.ndarray) -> Calibrator:
        if method not in CALIBRATION_METHODS:
            raise ValueError(f"unknown calibration {method!r}; valid: {', '.join(CALIBRATION_METHODS)}")
        if method == "none":
            return cls()
        raw = np.asarray(raw_proba, dtype=np.float64)
        y = np.asarray(y)
        if method == "isotonic":
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip", increasing=True)
            iso.fit(raw, y)
            return cls(
                method="isotonic",
                x_thresholds=np.asarray(iso.X_thresholds_, dtype=np.float64),
                y_thresholds=np.asarray(iso.y_thresholds_, dtype=np.float64),
            )
        platt = LogisticRegression(C=1e6, max_iter=1000)
        platt.fit(_logit(raw).reshape(-1, 1), y)
        return cls(method="sigmoid", a=float(platt.coef_[0, 0]), b=float(platt.intercept_[0]))

    def transform(self, raw_proba: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw_proba, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(raw, self.x_thresholds, self.y_thresholds)
        if self.method == "sigmoid":
            return 1.0 / (1.0 + np.exp(-(self.a * _logit(raw) + self.b)))
        return raw
