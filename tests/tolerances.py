"""Tolerances for tests that compare two code paths, each derived from the arithmetic.

The rounding facts used (IEEE 754, round to nearest): one operation's result is off by at most
half an ulp of itself; adding ``n`` numbers one by one while every partial sum stays within
``±magnitude`` is off by at most ``n`` half-ulps of ``magnitude``. Two paths that do the same
operations in the same order are bit-identical and are compared exactly instead.
"""

from __future__ import annotations

import numpy as np

# A handful of float64 operations on values of order one (a ratio, an interpolation, 1 - p + p):
# each rounds by at most half an ulp, 2^-53 ~ 1.1e-16; a few of them stay below 4 ulps.
FEW_OPS_F64 = 4 * float(np.finfo(np.float64).eps)


def half_ulp(magnitude: float, dtype=np.float64) -> float:
    """Half the distance between ``dtype`` numbers at ``magnitude``: one rounding's worst error."""
    return 0.5 * float(np.spacing(np.asarray(abs(magnitude), dtype=dtype)))


def summation_error(n_terms: int, magnitude: float, dtype=np.float64) -> float:
    """Worst rounding error of adding ``n_terms`` numbers one by one in ``dtype`` when every
    partial sum stays within ``±magnitude``."""
    return n_terms * half_ulp(magnitude, dtype)


def tree_margin_bound(trees) -> float:
    """A bound on every partial sum of a compiled ensemble's margin: the base margin plus each
    tree's largest leaf, in absolute value."""
    leaf_max = np.maximum.reduceat(np.abs(trees.value), trees.tree_nodes[:-1])
    return abs(trees.base_margin) + float(leaf_max.sum())


def table_rounding_error(trees) -> float:
    """Compiled TreeSHAP's own error: each group's table entry is rounded to float32 once, and a
    row takes at most one entry per group for a feature (then sums them in float64)."""
    return len(trees.table_offset) * half_ulp(float(np.abs(trees.table).max()), np.float32)


def library_tolerances(trees, library: str, depth: int = 0) -> tuple[float, float]:
    """``(margin, contributions)``: how far the library's own results may be from the compiled
    trees' (``depth``: the trees' maximum depth, for XGBoost).

    LightGBM adds its float64 leaf values tree by tree from 0, as the compiled walk does: the
    margins are equal; its TreeSHAP runs in float64, so only our table rounding remains.
    XGBoost adds the base score and the trees' float32 leaf values in float32, every partial sum
    within `tree_margin_bound` (ours: the same values in float64); its TreeSHAP runs in float32,
    about (depth + 1)^2 operations per tree on numbers no larger than the tree's largest leaf,
    then sums the trees in float32. Its Saabas values (node-mean differences along the path,
    summed over the trees in float32) stay within the same bound.
    """
    if library == "lightgbm":
        return 0.0, table_rounding_error(trees)
    if library != "xgboost":
        raise ValueError(f"no tolerance argued for {library!r}")
    n_trees, bound = len(trees.roots), tree_margin_bound(trees)
    largest_leaf = float(np.abs(trees.value).max())
    margin = summation_error(n_trees + 1, bound, np.float32) + summation_error(n_trees + 1, bound)
    shap = (
        summation_error(n_trees, bound, np.float32)
        + n_trees * (depth + 1) ** 2 * half_ulp(largest_leaf, np.float32)
        + table_rounding_error(trees)
    )
    return margin, shap


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
