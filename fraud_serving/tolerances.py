"""How far two computations of the same model may differ, derived from the arithmetic.

The rounding facts used (IEEE 754, round to nearest): one operation's result is off by at most
half an ulp of itself; adding ``n`` numbers one by one while every partial sum stays within
``±magnitude`` is off by at most ``n`` half-ulps of ``magnitude``. Used by serving, which checks
its compiled trees against the model's library when it loads a model, and by the tests.
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
