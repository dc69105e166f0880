"""Compiled trees (fraud_serving.compiled_trees) give XGBoost's own margin and TreeSHAP."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from fraud_serving import compiled_trees
from fraud_serving.compiled_trees import compile_booster, probe_rows
from tests.tolerances import half_ulp, library_tolerances


def _booster(depth: int, n_trees: int = 60, seed: int = 0, **params) -> tuple[xgb.Booster, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3_000, 12))
    x[:, 3] = np.round(x[:, 3])  # ties at thresholds
    x[rng.random(x.shape) < 0.08] = np.nan  # learned default directions
    logit = 1.5 * np.nan_to_num(x[:, 0]) - np.nan_to_num(x[:, 1]) * np.nan_to_num(x[:, 2]) + (x[:, 3] > 0)
    y = (rng.random(len(x)) < 1 / (1 + np.exp(-logit))).astype(int)
    booster = xgb.train(
        {
            "max_depth": depth,
            "eta": 0.2,
            "objective": "binary:logistic",
            "nthread": 1,
            "seed": seed,
            **params,
        },
        xgb.DMatrix(x, label=y),
        num_boost_round=n_trees,
    )
    return booster, x


@pytest.mark.parametrize("depth", [2, 4, 6])
def test_margin_and_shap_equal_xgboost(depth):
    booster, x = _booster(depth)
    trees, why = compile_booster(booster)
    assert trees is not None, why
    assert trees.max_depth() == depth  # 3,000 rows fill every level
    rows = np.vstack([x[:500], probe_rows(trees, 300, seed=3)])  # data and values at the cuts
    dmat = xgb.DMatrix(rows.astype(np.float32))
    margin = booster.predict(dmat, output_margin=True)
    shap = booster.predict(dmat, pred_contribs=True)
    margin_tol, shap_tol = library_tolerances(trees, "xgboost", depth)  # ~3e-5 and ~1e-4 here
    np.testing.assert_allclose(trees.margin(rows), margin, rtol=0, atol=margin_tol)
    np.testing.assert_allclose(trees.contributions(rows), shap[:, :-1], rtol=0, atol=shap_tol)
    assert trees.expected_value == pytest.approx(float(shap[0, -1]), abs=margin_tol)  # a margin-like sum
    # The logistic's slope is at most 1/4; XGBoost's probability is float32 (half an ulp of 1).
    proba_tol = margin_tol / 4 + half_ulp(1.0, np.float32)
    np.testing.assert_allclose(trees.proba(rows), booster.predict(dmat), rtol=0, atol=proba_tol)
    # The TreeSHAP pass's margin, the walk's and the Saabas walk's: the same float64 leaf values
    # added to the base margin in tree order, whatever the kernel (table pass, walk, few rows).
    explained, contributions = trees.explain(rows)
    walked, saabas = trees.approximate(rows)
    np.testing.assert_array_equal(explained, trees.margin(rows))  # the table pass without contributions
    np.testing.assert_array_equal(walked, trees.margin(rows))
    np.testing.assert_array_equal(walked[:20], trees.margin(rows[:20]))  # the tree walk
    # One row at a time, a few dozen and blocks of any size equal the batch bit for bit: every
    # row's sums take the same terms in the same order in each kernel.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compiled_trees, "TABLE_BLOCK_ROWS", 37)  # 800 rows: 21 blocks and a remainder
        np.testing.assert_array_equal(trees.explain(rows)[1], contributions)
        np.testing.assert_array_equal(trees.explain(rows)[0], explained)
        np.testing.assert_array_equal(trees.margin(rows), explained)
    for i in (0, 7, 501):
        np.testing.assert_array_equal(trees.contributions(rows[i]), contributions[i : i + 1])
        np.testing.assert_array_equal(trees.margin(rows[i : i + 1]), trees.margin(rows)[i : i + 1])
        np.testing.assert_array_equal(trees.explain(rows[i])[0], explained[i : i + 1])
    for lo, hi in ((0, 3), (10, 80), (490, 560)):
        np.testing.assert_array_equal(trees.contributions(rows[lo:hi]), contributions[lo:hi])
        np.testing.assert_array_equal(trees.explain(rows[lo:hi])[0], explained[lo:hi])
    # reasons=approx: XGBoost's Saabas attribution (node means and their float32 differences
    # summed over the trees in float32, like the margin), the margin from the same walk
    np.testing.assert_allclose(
        saabas, booster.predict(dmat, pred_contribs=True, approx_contribs=True)[:, :-1], rtol=0, atol=shap_tol
    )
    assert not np.allclose(saabas, contributions, atol=1e-3)  # a different attribution than TreeSHAP
    np.testing.assert_array_equal(trees.approximate(rows[:50])[1], saabas[:50])  # the serial kernel


def test_a_threshold_tie_goes_right_like_xgboost():
    """x == threshold is not < threshold: the compiled walk must send it right, as XGBoost does."""
    booster, _ = _booster(3, n_trees=5)
    trees, _ = compile_booster(booster)
    node = int(np.flatnonzero(trees.feature >= 0)[0])
    row = np.zeros((1, trees.n_features))
    row[0, trees.feature[node]] = trees.threshold[node]
    dmat = xgb.DMatrix(row.astype(np.float32))
    # A tie sent the other way would move the margin by a leaf difference (~0.1), far above
    # XGBoost's float32 summation of 5 trees (2e-6 at worst).
    assert trees.margin(row)[0] == pytest.approx(
        float(booster.predict(dmat, output_margin=True)[0]), abs=library_tolerances(trees, "xgboost", 3)[0]
    )


def test_out_of_scope_models_are_not_compiled(monkeypatch):
    dart, _ = _booster(3, n_trees=5, booster="dart")
    trees, why = compile_booster(dart)
    assert trees is None and "dart" in why
    booster, _ = _booster(6)
    monkeypatch.setattr(compiled_trees, "MAX_TABLE_ENTRIES", 1_000)
    trees, why = compile_booster(booster)
    assert trees is None and "exceed" in why


def test_wrong_shapes_are_refused():
    booster, _ = _booster(2, n_trees=3)
    trees, _ = compile_booster(booster)
    with pytest.raises(ValueError, match="shape"):
        trees.contributions(np.zeros((2, trees.n_features + 1)))


@pytest.mark.parametrize("missing_seen", [True, False])
def test_lightgbm_margin_and_shap_equal_lightgbm(missing_seen):
    import lightgbm as lgb

    rng = np.random.default_rng(1)
    x = rng.normal(size=(3_000, 10))
    x[:, 4] = np.round(x[:, 4])
    if missing_seen:
        x[rng.random(x.shape) < 0.08] = np.nan
    y = (
        rng.random(len(x)) < 1 / (1 + np.exp(-(2 * np.nan_to_num(x[:, 0]) - np.nan_to_num(x[:, 4]))))
    ).astype(int)
    model = lgb.LGBMClassifier(n_estimators=40, num_leaves=15, verbose=-1, n_jobs=1).fit(x, y)
    booster = model.booster_
    trees, why = compiled_trees.compile_lightgbm(booster)
    assert trees is not None, why
    rows = np.vstack([x[:300], probe_rows(trees, 300, seed=5)])
    rows[::7, 2] = np.nan  # missing values also where training had none
    # LightGBM adds its float64 leaf values tree by tree from 0, as the compiled walk does: equal.
    raw_score = booster.predict(rows, raw_score=True)
    np.testing.assert_array_equal(trees.margin(rows), raw_score)
    np.testing.assert_array_equal(trees.explain(rows)[0], raw_score)
    # LightGBM's TreeSHAP runs in float64 (error ~1e-16); ours rounds each group's table entry
    # to float32 once, and a row takes one entry per group for a feature at most.
    shap = booster.predict(rows, pred_contrib=True)
    shap_tol = library_tolerances(trees, "lightgbm")[1]
    np.testing.assert_allclose(trees.contributions(rows), shap[:, :-1], rtol=0, atol=shap_tol)


def test_top_contributions_equal_a_stable_sort():
    from fraud_assets.core.models.reasons import top_contributions

    rng = np.random.default_rng(1)
    contrib = np.round(rng.normal(size=(500, 12)), 1)  # rounded: many ties
    contrib[0] = 0.0
    for k in (0, 1, 3, 12, 20):
        expected = np.argsort(-contrib, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(top_contributions(contrib, k), expected)
    np.testing.assert_array_equal(top_contributions(contrib.T.copy().T, 3), top_contributions(contrib, 3))
