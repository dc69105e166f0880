"""FraudClassifier, time folds and tuning on small synthetic, imbalanced, time-stamped data."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import average_precision_score

from fraud_assets.core.models import classifier as classifier_module
from fraud_assets.core.models.tuning import cap_note
from fraud_assets.core.training import (
    ALGORITHMS,
    Calibrator,
    FraudClassifier,
    NotFittedError,
    TuningPlan,
    time_ordered_folds,
    train_candidate,
    tune,
)
from fraud_assets.fraud_classifier import FraudClassifier as SeedFraudClassifier
from fraud_serving.compiled_trees import compile_booster
from tests.tolerances import (
    FEW_OPS_F64,
    assert_calibrated_within,
    fast_path_tolerance,
    half_ulp,
    library_tolerances,
    summation_error,
)

FAST = {"n_estimators": 40}  # small ensembles keep the suite quick


def make_problem(n: int = 4000, n_features: int = 8, days: int = 60, seed: int = 0):
    """About 2% fraud driven mostly by f0 (then f1, and an f2*f3 interaction), over ``days`` days."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_features))
    z = -6.5 + 2.2 * X[:, 0] + 1.0 * X[:, 1] - 0.7 * X[:, 2] * X[:, 3]
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.int64)
    ts = pd.Timestamp("2025-01-01") + pd.to_timedelta(np.sort(rng.uniform(0, days, n)), unit="D")
    return pd.DataFrame(X, columns=[f"f{i}" for i in range(n_features)]), y, pd.Series(ts)


@pytest.fixture(scope="module")
def problem():
    X, y, ts = make_problem()
    assert 0.01 < y.mean() < 0.04
    cut = 3000  # time-ordered: train on the past, test on the later rows
    return X.iloc[:cut], y[:cut], X.iloc[cut:], y[cut:], ts


@pytest.fixture(scope="module")
def fitted(problem):
    X_tr, y_tr, *_ = problem
    return {algo: FraudClassifier(algo, **FAST).fit(X_tr, y_tr) for algo in ALGORITHMS}


def test_seed_import_path():
    assert SeedFraudClassifier is FraudClassifier


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_each_algorithm_beats_random(fitted, problem, algorithm):
    *_, X_te, y_te, _ = problem
    clf = fitted[algorithm]
    proba = clf.predict_proba(X_te)
    assert proba.shape == (len(X_te), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=FEW_OPS_F64)  # (1 - p) + p: two roundings
    m = clf.evaluate(X_te, y_te)
    assert m["auc_roc"] > 0.8
    assert m["average_precision"] > 3 * y_te.mean()
    assert set(np.unique(clf.predict(X_te))) <= {0, 1}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_fast_path_equals_predict_proba(fitted, problem, algorithm):
    *_, X_te, _, _ = problem
    clf = fitted[algorithm]
    x = X_te.to_numpy()
    raw = clf.backend_.raw_proba(X_te)
    tolerance = fast_path_tolerance(clf.backend_, x)
    assert_calibrated_within(clf.calibrator_, clf.predict_proba_fast(x), raw, tolerance)
    one = clf.predict_proba_fast(x[3])  # a 1-D row works too
    assert one.shape == (1,)
    assert_calibrated_within(clf.calibrator_, one, raw[3:4], tolerance)
    with pytest.raises(ValueError, match="shape"):
        clf.predict_proba_fast(x[:, :-1])


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_contributions_and_importance_find_the_driver(fitted, problem, algorithm):
    *_, X_te, _, _ = problem
    clf = fitted[algorithm]
    contrib = clf.contributions(X_te)
    assert contrib.shape == X_te.shape
    mean_abs = pd.Series(np.abs(contrib).mean(axis=0), index=X_te.columns)
    assert mean_abs.idxmax() == "f0"
    # For the riskiest rows, f0 pushes towards fraud.
    top = np.argsort(-clf.predict_proba(X_te)[:, 1])[:20]
    assert np.median(contrib[top, 0]) > 0
    imp = clf.get_feature_importance(top_n=3)
    assert list(imp.columns) == ["feature", "importance"]
    assert len(imp) == 3 and imp["feature"].iloc[0] == "f0"
    codes = clf.reason_codes(X_te.iloc[top[:2]], top_k=2)
    assert len(codes) == 2 and len(codes[0]) == 2


def test_xgboost_contributions_sum_to_the_margin(fitted, problem):
    *_, X_te, _, _ = problem
    clf = fitted["xgboost"]
    raw = clf.backend_.raw_proba(X_te)
    booster = clf.backend_.model.get_booster()
    margin = booster.inplace_predict(X_te.to_numpy(), predict_type="margin", validate_features=False)
    bias = margin - clf.contributions(X_te).sum(axis=1)
    # The dropped bias column is the same for every row, up to XGBoost's float32 arithmetic: its
    # margin's and each feature's contribution's rounding (see `library_tolerances`), both rows.
    trees, _ = compile_booster(booster)
    margin_tol, shap_tol = library_tolerances(trees, "xgboost", depth=clf.max_depth)
    assert np.ptp(bias) <= 2 * (margin_tol + X_te.shape[1] * shap_tol)
    # XGBoost's own sigmoid of the same float32 margin, in float32: a few float32 roundings of p <= 1.
    np.testing.assert_allclose(1 / (1 + np.exp(-margin)), raw, rtol=0, atol=4 * half_ulp(1.0, np.float32))


def test_random_forest_walk_equals_sklearn(fitted, problem):
    """The compiled walk gives sklearn's probabilities and the Saabas attribution that sklearn's
    own decision paths give, for one row and for a batch spread over the cores."""
    import scipy.sparse as sp

    *_, X_te, _, _ = problem
    forest = fitted["random_forest"].backend_
    x = X_te.to_numpy(dtype=np.float64)
    assert len(x) >= 128  # the threaded kernel
    expected_p = forest.model.predict_proba(x)[:, 1]
    expected_c = np.zeros(x.shape)
    for est in forest.model.estimators_:
        tree = est.tree_
        share = tree.value[:, 0, 1] / tree.value[:, 0, :].sum(axis=1)
        inner = np.flatnonzero(tree.children_left >= 0)
        children = np.r_[tree.children_left[inner], tree.children_right[inner]]
        parents = np.r_[inner, inner]
        edges = sp.csr_matrix(
            (share[children] - share[parents], (children, tree.feature[parents])),
            shape=(tree.node_count, x.shape[1]),
        )
        expected_c += (est.decision_path(x.astype(np.float32)) @ edges).toarray()
    expected_c /= len(forest.model.estimators_)
    np.testing.assert_allclose(
        forest.raw_proba_fast(x), expected_p, rtol=0, atol=fast_path_tolerance(forest, x)
    )
    # Per feature, each side adds at most trees x depth share differences scaled by 1/trees,
    # partial sums within ±1 (changes of a probability); each term rounds twice more
    # (difference, scaling): four summation bounds cover both sides.
    n_terms = len(forest.model.estimators_) * max(e.tree_.max_depth for e in forest.model.estimators_)
    contribution_tol = 4 * summation_error(n_terms, 1.0)
    np.testing.assert_allclose(forest.contributions(x), expected_c, rtol=0, atol=contribution_tol)
    np.testing.assert_array_equal(forest.contributions(x[:1]), forest.contributions(x)[:1])  # same sums
    roots = forest.flat_["share"][forest.flat_["roots"]].mean()
    # Saabas telescopes: the contributions add up to the probability minus the mean root share.
    sum_tol = contribution_tol + summation_error(x.shape[1], 1.0) + fast_path_tolerance(forest, x)
    np.testing.assert_allclose(forest.contributions(x).sum(axis=1), expected_p - roots, rtol=0, atol=sum_tol)


def test_deterministic_given_random_state(problem):
    X_tr, y_tr, X_te, *_ = problem
    for algo in ("xgboost", "lightgbm", "random_forest"):
        a = FraudClassifier(algo, **FAST).fit(X_tr, y_tr).predict_proba(X_te)
        b = FraudClassifier(algo, **FAST).fit(X_tr, y_tr).predict_proba(X_te)
        np.testing.assert_array_equal(a, b)


def test_smote_touches_training_rows_only(problem, monkeypatch):
    X_tr, y_tr, X_te, y_te, _ = problem
    calls = []
    real = classifier_module.smote_resample

    def spy(X, y, **kw):
        calls.append(len(X))
        X_res, y_res = real(X, y, **kw)
        calls.append(len(X_res))
        return X_res, y_res

    monkeypatch.setattr(classifier_module, "smote_resample", spy)
    clf = FraudClassifier("xgboost", imbalance_method="smote", **FAST).fit(X_tr, y_tr)
    # The latest 20% calibrates; SMOTE sees the first 80% only and adds rows to it alone.
    assert calls[0] == 2400 and calls[1] > 2400
    assert clf.fit_info_["n_calibration_rows"] == 600
    assert clf.fit_info_["n_train_rows"] == 2400
    assert clf.fit_info_["n_train_rows_after_resampling"] == calls[1]
    calls.clear()
    clf = FraudClassifier("lightgbm", imbalance_method="smote", **FAST).fit(X_tr, y_tr, X_te, y_te)
    assert calls[0] == len(X_tr) and clf.fit_info_["n_calibration_rows"] == len(X_te)
    assert clf.evaluate(X_te, y_te)["auc_roc"] > 0.8


def test_handle_imbalance_false_means_none(problem):
    X_tr, y_tr, *_ = problem
    clf = FraudClassifier("xgboost", handle_imbalance=False, imbalance_method="smote", **FAST).fit(X_tr, y_tr)
    # The parameter stays as given (scikit-learn's convention); the method applied is "none".
    assert clf.imbalance_method_ == "none" and clf.fit_info_["pos_weight"] is None
    assert clf.fit_info_["n_train_rows_after_resampling"] == clf.fit_info_["n_train_rows"]  # no SMOTE
    assert clf.get_params()["imbalance_method"] == "smote"


def _brier(y, p):
    return float(np.mean((p - y) ** 2))


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_calibration_improves_brier(problem, method):
    X_tr, y_tr, X_te, y_te, _ = problem
    # class weighting inflates raw probabilities; the calibrator, fitted on the latest slice, undoes it
    raw = FraudClassifier("xgboost", calibration="none", **FAST).fit(X_tr, y_tr)
    cal = FraudClassifier("xgboost", calibration=method, **FAST).fit(X_tr, y_tr)
    p_raw, p_cal = raw.predict_proba(X_te)[:, 1], cal.predict_proba(X_te)[:, 1]
    assert _brier(y_te, p_cal) < 0.8 * _brier(y_te, p_raw)
    assert abs(p_cal.mean() - y_te.mean()) < abs(p_raw.mean() - y_te.mean())
    # XGBoost's own prediction both ways (one thread, same trees), then the same calibrator: equal.
    np.testing.assert_array_equal(cal.predict_proba_fast(X_te.to_numpy()), p_cal)


@pytest.mark.parametrize("algorithm", ["xgboost", "random_forest"])
def test_isotonic_calibration_keeps_the_ranking_on_held_out_days(problem, algorithm):
    X_tr, y_tr, X_te, y_te, _ = problem  # X_te: the later days, never seen in fit or calibration
    clf = FraudClassifier(algorithm, calibration="isotonic", **FAST).fit(X_tr, y_tr)
    raw = clf.backend_.raw_proba(X_te.astype(np.float64))
    calibrated = clf.predict_proba(X_te)[:, 1]
    # The calibrated map is strictly increasing: the same order and the same ties as the raw
    # scores (a step function would merge hundreds of raw values into a few dozen steps).
    assert np.unique(calibrated).size == np.unique(raw).size
    np.testing.assert_array_equal(np.argsort(calibrated, kind="stable"), np.argsort(raw, kind="stable"))
    ap_raw = average_precision_score(y_te, raw)
    ap_calibrated = average_precision_score(y_te, calibrated)
    # Same order and ties, so the same precision/recall steps summed in the same order: equal
    # to the last bit; 1e-12 only allows for a differently ordered sum in a future sklearn.
    assert ap_calibrated >= ap_raw - 1e-12
    # Still probabilities: within TIE_BREAK of the knots' map, which is inside [0, 1].
    assert calibrated.min() >= 0.0 and calibrated.max() <= 1.0


def test_isotonic_map_is_strictly_increasing_and_close_to_the_steps():
    rng = np.random.default_rng(3)
    raw = np.sort(rng.uniform(0, 1, 5_000))
    y = (rng.uniform(0, 1, raw.size) < raw**3).astype(int)
    calibrator = Calibrator.fit("isotonic", raw, y)
    grid = np.linspace(0.0, 1.0, 20_001)  # the whole range of raw probabilities, where the knots are flat too
    assert (np.diff(calibrator.transform(grid)) > 0).all()
    steps = IsotonicRegression(out_of_bounds="clip").fit(raw, y).predict(raw)
    # Midpoint interpolation moves a value at most to a neighbouring step's height; on average
    # it stays close to the fitted steps (and both track raw**3 within sampling error).
    assert np.mean(np.abs(calibrator.transform(raw) - steps)) < 0.02
    assert np.mean(np.abs(calibrator.transform(raw) - raw**3)) < 0.05
    assert abs(calibrator.transform(raw).mean() - y.mean()) < 0.01


def test_optimize_threshold_sets_predict_threshold(problem):
    X_tr, y_tr, X_te, y_te, _ = problem
    clf = FraudClassifier("lightgbm", **FAST).fit(X_tr, y_tr)
    assert clf.threshold == 0.5
    for metric in ("f1", "precision", "recall", "cost"):
        t = clf.optimize_threshold(X_te, y_te, metric=metric)
        assert clf.threshold == t and 0 <= t <= 1
    t = clf.optimize_threshold(X_te, y_te, metric="recall", target_recall=0.9)
    assert clf.evaluate(X_te, y_te)["recall"] >= 0.9
    assert clf.predict(X_te).sum() == (clf.predict_proba(X_te)[:, 1] >= t).sum()
    with pytest.raises(ValueError, match="valid"):
        clf.optimize_threshold(X_te, y_te, metric="accuracy")


def test_save_load_round_trip(fitted, problem, tmp_path):
    *_, X_te, _, _ = problem
    clf = fitted["lightgbm"]
    clf.threshold = 0.3
    path = clf.save(tmp_path / "m" / "clf.pkl")
    loaded = FraudClassifier.load(path)
    assert loaded.threshold == 0.3
    np.testing.assert_array_equal(loaded.predict_proba(X_te), clf.predict_proba(X_te))


def test_errors(problem):
    X_tr, y_tr, X_te, *_ = problem
    # Constructor arguments are judged by fit (scikit-learn's convention), before any work.
    with pytest.raises(ValueError, match="logistic_regression, random_forest, xgboost, lightgbm"):
        FraudClassifier("catboost").fit(X_tr, y_tr)
    with pytest.raises(ValueError, match="imbalance_method"):
        FraudClassifier(imbalance_method="adasyn").fit(X_tr, y_tr)
    with pytest.raises(NotFittedError, match="call fit first"):
        FraudClassifier().predict_proba(X_te)
    with pytest.raises(NotFittedError, match="call fit first"):
        FraudClassifier().predict_proba_fast(X_te.to_numpy())
    with pytest.raises(ValueError, match="no fraud"):
        FraudClassifier("logistic_regression").fit(X_tr, np.zeros(len(X_tr), dtype=int))
    with pytest.raises(ValueError, match=r"all .* rows are fraud"):
        FraudClassifier("logistic_regression").fit(X_tr, np.ones(len(X_tr), dtype=int))
    with pytest.raises(ValueError, match="no rows"):
        FraudClassifier("logistic_regression").fit(X_tr.iloc[:0], y_tr[:0])
    y_late_clean = y_tr.copy()
    y_late_clean[-700:] = 0  # no fraud in the latest slice: nothing to calibrate on
    with pytest.raises(ValueError, match="calibration"):
        FraudClassifier("logistic_regression").fit(X_tr, y_late_clean)
    clf = FraudClassifier("logistic_regression").fit(X_tr, y_tr)
    with pytest.raises(ValueError, match=r"missing \['f7'\], extra \[\]"):
        clf.predict_proba(X_te.drop(columns="f7"))
    with pytest.raises(ValueError, match=r"extra \['zz'\]"):
        clf.predict_proba(X_te.assign(zz=1.0))
    with pytest.raises(ValueError, match="different order"):
        clf.predict_proba(X_te[X_te.columns[::-1]])
    with pytest.raises(TypeError, match="DataFrame"):
        clf.predict_proba(X_te.to_numpy())
    with pytest.raises(ValueError, match="NaN"):
        FraudClassifier("logistic_regression").fit(X_tr.assign(f0=np.nan), y_tr)


def test_time_ordered_folds_respect_time_and_gap():
    _, _, ts = make_problem(n=3000, days=90)
    shuffled = ts.sample(frac=1.0, random_state=1).reset_index(drop=True)  # positions need not be sorted
    gap = pd.Timedelta("7D")
    for stamps in (ts, shuffled):
        folds = time_ordered_folds(stamps, n_folds=3, gap=gap)
        assert len(folds) == 3
        values = stamps.to_numpy()
        prev_train = 0
        for train, val in folds:
            assert len(train) > prev_train  # expanding window
            prev_train = len(train)
            assert not set(train) & set(val)
            assert values[val].min() - values[train].max() >= gap
        assert values[folds[-1][1]].max() == values.max()  # the last block reaches the end
    with pytest.raises(ValueError, match="more"):
        time_ordered_folds(ts, n_folds=3, gap=pd.Timedelta("60D"))


def test_tune_respects_n_trials(problem):
    X_tr, y_tr, _, _, ts = problem
    result = tune("lightgbm", X_tr, y_tr, ts.iloc[:3000], TuningPlan(n_trials=3, gap="3D"))
    assert len(result.trials) == 3 and (result.trials["state"] == "COMPLETE").all()
    assert result.imbalance_method in ("class_weight", "smote")
    assert result.best_score == result.trials["score"].max()  # the same float, copied
    assert {"n_estimators", "num_leaves", "learning_rate"} <= set(result.best_params)
    assert result.n_folds == 3 and result.elapsed_seconds > 0
    # Seeded: the same budget gives the same trials.
    again = tune("lightgbm", X_tr, y_tr, ts.iloc[:3000], TuningPlan(n_trials=3, gap="3D"))
    assert again.trials["score"].tolist() == result.trials["score"].tolist()


def test_model_selection_by_card_precision_at_100(problem):
    X_tr, y_tr, _, _, ts = problem
    cards = np.arange(len(X_tr)) % 400  # 400 cards, each with rows on many days
    plan = TuningPlan(
        n_trials=2, gap="3D", metric="card_precision_at_100", imbalance_methods=("class_weight",)
    )
    result = tune("xgboost", X_tr, y_tr, ts.iloc[:3000], plan, card_ids=cards)
    assert result.metric == "card_precision_at_100"
    # Each fold's figure is a mean over days of (fraudulent cards among the top) / (cards taken).
    best = result.trials.loc[result.trials["score"].idxmax()]
    assert all(0.0 <= s <= 1.0 for s in best["fold_scores"]) and best["score"] > 0
    with pytest.raises(ValueError, match="card id"):
        tune("xgboost", X_tr, y_tr, ts.iloc[:3000], replace(plan, n_trials=1))


def test_the_budget_is_a_count_of_trials_whatever_the_speed(problem, monkeypatch):
    """Slower fits (another machine, a busy one) run the same trials; only the safety cap can cut
    a search short, and then the result says so."""
    X_tr, y_tr, _, _, ts = problem
    args = ("logistic_regression", X_tr, y_tr, ts.iloc[:3000])
    quick = tune(*args, TuningPlan(n_trials=3, gap="3D"))
    real_fit = classifier_module.FraudClassifier.fit

    def slow_fit(self, *a, **kw):
        time.sleep(0.2)  # a machine several times slower
        return real_fit(self, *a, **kw)

    monkeypatch.setattr(classifier_module.FraudClassifier, "fit", slow_fit)
    slow = tune(*args, TuningPlan(n_trials=3, cap_seconds=600.0, gap="3D"))
    assert len(slow.trials) == slow.n_trials_requested == 3 and not slow.capped and slow.cap_note == ""
    assert slow.trials["score"].tolist() == quick.trials["score"].tolist()
    assert slow.best_params == quick.best_params
    # A cap shorter than a trial: the first trial runs, then the search stops and says why.
    capped = tune(*args, TuningPlan(n_trials=3, cap_seconds=1e-9, gap="3D"))
    assert len(capped.trials) == 1 and capped.capped and capped.n_trials_requested == 3
    assert "1 of 3 trials" in capped.cap_note and "machine" in capped.cap_note
    _, report = train_candidate(*args, TuningPlan(n_trials=2, cap_seconds=1e-9, gap="3D"))
    assert report["n_trials"] == 1 and report["n_trials_requested"] == 2 and report["tuning_capped"]
    assert report["tuning_cap_note"] == cap_note("logistic_regression", 1, 2, 1e-9)
    for bad in (None, -1, 2.5, True):
        with pytest.raises(ValueError, match="whole number of trials"):
            TuningPlan(n_trials=bad)
    with pytest.raises(ValueError, match="whole number of trials"):
        tune(*args, TuningPlan(n_trials=0))  # 0 skips tuning in train_candidate; tune needs a trial
    with pytest.raises(ValueError, match="cap_seconds"):
        TuningPlan(n_trials=1, cap_seconds=0)


def test_tune_applies_smote_inside_training_folds_only(problem, monkeypatch):
    X_tr, y_tr, _, _, ts = problem
    seen = []
    real = classifier_module.smote_resample
    monkeypatch.setattr(
        classifier_module, "smote_resample", lambda X, y, **kw: (seen.append(len(X)), real(X, y, **kw))[1]
    )
    folds = time_ordered_folds(ts.iloc[:3000], n_folds=3, gap="3D")
    tune(
        "logistic_regression",
        X_tr,
        y_tr,
        ts.iloc[:3000],
        TuningPlan(n_trials=2, imbalance_methods=("smote",), gap="3D"),
    )
    assert sorted(set(seen)) == sorted({len(train) for train, _ in folds})


def test_tune_errors(problem):
    X_tr, y_tr, _, _, ts = problem
    with pytest.raises(ValueError, match="valid"):
        tune("catboost", X_tr, y_tr, ts.iloc[:3000], TuningPlan(n_trials=1))
    with pytest.raises(ValueError, match="no time fold has fraud"):
        tune(
            "logistic_regression",
            X_tr,
            np.r_[y_tr[:100], np.zeros(2900, int)],
            ts.iloc[:3000],
            TuningPlan(n_trials=1),
        )


def test_train_candidate(problem):
    X_tr, y_tr, X_te, y_te, ts = problem
    # Shuffle the rows: train_candidate puts them back in time order itself.
    order = np.random.default_rng(3).permutation(3000)
    clf, report = train_candidate(
        "xgboost", X_tr.iloc[order], y_tr[order], ts.iloc[:3000].iloc[order], TuningPlan(n_trials=2, gap="3D"),
        calibration="sigmoid", threshold_objective="recall", threshold_kwargs={"target_recall": 0.8},
    )  # fmt: skip
    assert clf.is_fitted and clf.threshold == report["threshold"]
    assert report["n_trials"] == 2 and report["imbalance_method"] in ("class_weight", "smote")
    assert report["n_train_rows"] == 2400 and report["n_holdout_rows"] == 600
    assert report["train_window"][1] < report["holdout_window"][0]
    assert report["holdout_metrics"]["recall"] >= 0.8
    assert clf.evaluate(X_te, y_te)["auc_roc"] > 0.8
    quick, quick_report = train_candidate(
        "logistic_regression", X_tr, y_tr, ts.iloc[:3000], TuningPlan(n_trials=0)
    )
    assert quick_report["tuning_score"] is None and quick.is_fitted


@pytest.mark.parametrize("algorithm", ["xgboost", "lightgbm"])
def test_tuned_boosted_trees_stay_cheap_to_explain(problem, algorithm):
    """Tuning never proposes trees deeper than SERVING_MAX_DEPTH, so even the deepest candidate's
    exact TreeSHAP groups hold at most GROUP_BITS decisions (2^GROUP_BITS patterns): deeper trees
    cost the API's reasons several times more per batch."""
    import optuna

    from fraud_assets.core.models.tuning import SERVING_MAX_DEPTH, search_space
    from fraud_serving.compiled_trees import GROUP_BITS, compile_booster, compile_lightgbm

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    proposals = [search_space(study.ask(), algorithm) for _ in range(200)]
    for params in proposals:
        assert 1 <= params["max_depth"] <= SERVING_MAX_DEPTH
        assert params.get("num_leaves", 0) <= 2 ** params["max_depth"]
    deepest = max(proposals, key=lambda p: (p["max_depth"], p.get("num_leaves", 0)))
    assert deepest["max_depth"] == SERVING_MAX_DEPTH
    loose = {"min_child_weight": 0.0} if algorithm == "xgboost" else {"min_child_samples": 2}
    clf = FraudClassifier(algorithm, **{**deepest, **loose, "n_estimators": 30}).fit(*problem[:2])
    if algorithm == "xgboost":
        trees, why = compile_booster(clf.backend_.fast_booster)
    else:
        trees, why = compile_lightgbm(clf.backend_.model.booster_)
    assert trees is not None, why
    group_decisions = np.diff(trees.group_offset)
    assert group_decisions.max() <= GROUP_BITS
    assert np.diff(trees.tree_nodes).max() > 2**SERVING_MAX_DEPTH  # the trees did grow to the cap


def test_a_tie_goes_to_the_simpler_candidate_whatever_the_order_they_arrive_in():
    from fraud_assets.core.evaluation import CandidateEvaluation, best_candidate

    def evaluation(name: str, ap: float) -> CandidateEvaluation:
        return CandidateEvaluation(name, {"average_precision": ap}, pd.DataFrame(), np.zeros(0))

    for order in (["lightgbm", "xgboost", "random_forest"], ["random_forest", "lightgbm", "xgboost"]):
        evaluations = {name: evaluation(name, 0.8 if name == "random_forest" else 0.9) for name in order}
        assert best_candidate(evaluations) == "xgboost"  # before lightgbm in ALGORITHMS


def test_a_model_does_not_depend_on_the_thread_pools_it_finds():
    """BLAS splits X.T @ gradient over its threads and sums the parts in an order that depends
    on their number: logistic regression's coefficients differed in the last bits between one
    and two OpenBLAS threads. Training limits BLAS and OpenMP to its own thread count."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    # ~60 features like the platform's (with 40, OpenBLAS kept this product on one thread)
    X = pd.DataFrame(rng.normal(size=(100_000, 60)), columns=[f"f{i}" for i in range(60)])
    y = (rng.random(len(X)) < 1 / (1 + np.exp(4 - X["f0"]))).astype(int)
    coefficients = []
    for threads in (2, 1):
        with threadpool_limits(limits=threads):  # what another machine's pools would hold
            clf = FraudClassifier("logistic_regression", calibration="none").fit(X, y)
        coefficients.append(clf.backend_.coef_)
    np.testing.assert_array_equal(*coefficients)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_scores_in_chunks_equal_scores_at_once(fitted, problem, algorithm):
    """Each row's score is its own: chunks of 97 rows give the scores of all rows at once
    (trees and the calibrator per row exactly; the linear model's dot products per row, within
    a few ulps should BLAS block the rows differently)."""
    from fraud_assets.core.evaluation import fraud_scores

    *_, X_te, _, _ = problem

    class Identity:
        def transform(self, frame):
            return frame

    at_once = fraud_scores(Identity(), fitted[algorithm], X_te)
    chunked = fraud_scores(Identity(), fitted[algorithm], X_te, chunk_rows=97)
    np.testing.assert_allclose(chunked, at_once, rtol=1e-12, atol=1e-15)
