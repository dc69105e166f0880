"""Compiled trees (fraud_assets.core.models.compiled_trees) give XGBoost's own margin and TreeSHAP."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from fraud_assets.core.models import compiled_trees
from fraud_assets.core.models.compiled_trees import compile_booster, probe_rows


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
    rows = np.vstack([x[:500], probe_rows(trees, 300, seed=3)])  # data and values at the cuts
    dmat = xgb.DMatrix(rows.astype(np.float32))
    margin = booster.predict(dmat, output_margin=True)
    shap = booster.predict(dmat, pred_contribs=True)
    np.testing.assert_allclose(trees.margin(rows), margin, atol=1e-4)
    np.testing.assert_allclose(trees.contributions(rows), shap[:, :-1], atol=1e-4)
    assert trees.expected_value == pytest.approx(float(shap[0, -1]), abs=1e-4)
    explained, contributions = trees.explain(rows)
    np.testing.assert_allclose(explained, margin, atol=1e-4)
    np.testing.assert_allclose(trees.proba(rows), booster.predict(dmat), atol=1e-6)
    # one row at a time and a few dozen (the serial kernels) equal the batch (the threaded ones)
    for i in (0, 7, 501):
        np.testing.assert_allclose(trees.contributions(rows[i]), contributions[i : i + 1], atol=1e-12)
        np.testing.assert_allclose(trees.margin(rows[i : i + 1]), trees.margin(rows)[i : i + 1], atol=1e-12)
    for lo, hi in ((0, 3), (10, 80), (490, 560)):
        np.testing.assert_allclose(trees.contributions(rows[lo:hi]), contributions[lo:hi], atol=1e-12)
    # reasons=approx: XGBoost's Saabas attribution from one walk per tree, the margin from the same walk
    walked, saabas = trees.approximate(rows)
    np.testing.assert_allclose(
        saabas, booster.predict(dmat, pred_contribs=True, approx_contribs=True)[:, :-1], atol=1e-4
    )
    np.testing.assert_allclose(walked, margin, atol=1e-4)
    assert not np.allclose(saabas, contributions, atol=1e-3)  # a different attribution than TreeSHAP
    np.testing.assert_allclose(trees.approximate(rows[:50])[1], saabas[:50], atol=1e-12)  # serial kernel


def test_a_threshold_tie_goes_right_like_xgboost():
    """x == threshold is not < threshold: the compiled walk must send it right, as XGBoost does."""
    booster, _ = _booster(3, n_trees=5)
    trees, _ = compile_booster(booster)
    node = int(np.flatnonzero(trees.feature >= 0)[0])
    row = np.zeros((1, trees.n_features))
    row[0, trees.feature[node]] = trees.threshold[node]
    dmat = xgb.DMatrix(row.astype(np.float32))
    assert trees.margin(row)[0] == pytest.approx(
        float(booster.predict(dmat, output_margin=True)[0]), abs=1e-5
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
    np.testing.assert_allclose(trees.margin(rows), booster.predict(rows, raw_score=True), atol=1e-6)
    shap = booster.predict(rows, pred_contrib=True)
    np.testing.assert_allclose(trees.contributions(rows), shap[:, :-1], atol=1e-5)
    np.testing.assert_allclose(trees.explain(rows)[0], booster.predict(rows, raw_score=True), atol=1e-5)


def test_top_contributions_equal_a_stable_sort():
    from fraud_assets.core.models.reasons import top_contributions

    rng = np.random.default_rng(1)
    contrib = np.round(rng.normal(size=(500, 12)), 1)  # rounded: many ties
    contrib[0] = 0.0
    for k in (0, 1, 3, 12, 20):
        expected = np.argsort(-contrib, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(top_contributions(contrib, k), expected)
    np.testing.assert_array_equal(top_contributions(contrib.T.copy().T, 3), top_contributions(contrib, 3))
