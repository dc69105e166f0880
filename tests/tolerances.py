"""Tolerances for tests that compare two code paths, each derived from the arithmetic.

The rounding facts used (IEEE 754, round to nearest): one operation's result is off by at most
half an ulp of itself; adding ``n`` numbers one by one while every partial sum stays within
``±magnitude`` is off by at most ``n`` half-ulps of ``magnitude``. Two paths that do the same
operations in the same order are bit-identical and are compared exactly instead.
"""

from __future__ import annotations

import numpy as np

from fraud_serving.tolerances import (  # noqa: F401  (the tests' tolerances too)
    FEW_OPS_F64,
    half_ulp,
    library_tolerances,
    summation_error,
    table_rounding_error,
    tree_margin_bound,
)


def fast_path_tolerance(backend, x: np.ndarray) -> float:
    """How far a backend's own fast path (`raw_proba_fast` / `explain`, what serving runs) may be
    from its library's ``raw_proba`` on the rows ``x``.

    XGBoost and LightGBM: the same library prediction with one thread (same trees, same order):
    equal. Random forest: the compiled walk adds the leaves' fraud shares (sklearn's leaf
    fractions divided by their total once more: 2 half-ulps each) and scales by 1/n; sklearn
    adds the trees' leaf probabilities and divides by n; partial sums stay below n.
    Logistic regression: x @ coef, ours and sklearn's (BLAS, possibly another order or FMA),
    are sums of k products within the sum of their absolute values, the logistic's slope is at
    most 1/4, and sklearn's expit and our 1/(1 + exp(-z)) round a few times each.
    """
    if backend.name in ("xgboost", "lightgbm"):
        return 0.0
    if backend.name == "random_forest":
        n = len(backend.model.estimators_)
        return (summation_error(n, n) + n * 2 * half_ulp(1.0)) / n + FEW_OPS_F64
    terms = np.abs((np.asarray(x) - backend.mean_) / backend.scale_ * backend.coef_).sum(axis=1).max()
    k = np.shape(x)[1]
    return 2 * summation_error(2 * k + 1, terms + abs(backend.intercept_)) / 4 + FEW_OPS_F64


def assert_calibrated_within(calibrator, got, raw, raw_error: float) -> None:
    """``got`` = the calibrated probabilities of raw scores within ``raw_error`` of ``raw``.

    Why not a tolerance on the calibrated values: an isotonic map is piecewise linear with
    slopes up to (step height) / (gap between neighbouring training scores), which can be huge,
    so a raw difference of 1e-16 may become 1e-8 after calibration. Both calibrators are
    monotone, so the calibrated value of any raw score in ``[raw - e, raw + e]`` lies between
    the calibrated values of the two ends (up to a few roundings of the interpolation).
    """
    raw = np.asarray(raw, dtype=np.float64)
    ends = np.stack([calibrator.transform(raw - raw_error), calibrator.transform(raw + raw_error)])
    lo, hi = ends.min(axis=0) - FEW_OPS_F64, ends.max(axis=0) + FEW_OPS_F64
    got = np.asarray(got, dtype=np.float64)
    outside = np.flatnonzero((got < lo) | (got > hi))
    assert not len(outside), (
        f"{len(outside)} calibrated values outside the calibrator's image of raw ± {raw_error:.2e}; "
        f"first: got {got[outside[0]]!r}, allowed [{lo[outside[0]]!r}, {hi[outside[0]]!r}]"
    )
