"""FraudClassifier is a scikit-learn estimator: the library's own checks, clone, Pipeline, GridSearchCV."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fraud_assets.core.training import ALGORITHMS, FraudClassifier, NotFittedError
from fraud_assets.generator import FraudDataGenerator
from fraud_assets.preprocessor import FraudPreprocessor, prepare_train_test_split
from tests.test_training import make_problem

# Labels are 0/1 with 1 = fraud (the platform's `is_fraud`; metrics and thresholds speak it).
# These checks fit on labels {1, 2} or on strings: guessing which of two arbitrary labels means
# fraud could invert a model without a word, so fit refuses them. What the checks test besides
# the labels (dtypes, one feature, non-array containers) is tested below with 0/1 labels.
ONLY_0_1_LABELS = (
    "labels must be 0/1 (1 = fraud); the check fits on labels {1, 2} or strings, and a model that "
    "guessed which of two arbitrary labels means fraud could be inverted silently"
)
LABEL_CHECKS = (
    "check_estimators_dtypes",
    "check_classifier_data_not_an_array",
    "check_classifiers_classes",
    "check_fit2d_1feature",
)
# Calibration fits on the latest rows (time order, module docstring of the classifier). These
# checks' rows are sorted by class, so the latest 20% hold one class and fit says so; the same
# checks pass on the uncalibrated estimators.
LATEST_ROWS_CALIBRATE = (
    "calibration fits on the latest 20% of the rows (time order); the check's rows are sorted by "
    "class, so those rows hold one class and fit refuses them (passes with calibration='none')"
)
CALIBRATION_CHECKS = ("check_positive_only_tag_during_fit", "check_estimators_nan_inf")


def expected_failed_checks(estimator: FraudClassifier) -> dict[str, str]:
    failed = dict.fromkeys(LABEL_CHECKS, ONLY_0_1_LABELS)
    if estimator.calibration != "none":
        failed.update(dict.fromkeys(CALIBRATION_CHECKS, LATEST_ROWS_CALIBRATE))
    return failed


CHECKED = [
    *(FraudClassifier(algorithm, calibration="none", n_estimators=20) for algorithm in ALGORITHMS),
    FraudClassifier(n_estimators=20),  # the defaults: xgboost, class weights, isotonic calibration
    FraudClassifier("lightgbm", imbalance_method="smote", calibration="sigmoid", n_estimators=20),
]


@parametrize_with_checks(CHECKED, expected_failed_checks=expected_failed_checks, xfail_strict=True)
def test_scikit_learn_estimator_checks(estimator, check):
    """Every check of `sklearn.utils.estimator_checks`; the expected failures are strict: a check
    listed above that starts passing fails here, so the reasons stay true."""
    check(estimator)


# --- what the label checks test besides the labels -------------------------------------------


@pytest.fixture(scope="module")
def problem():
    X, y, _ = make_problem(n=2000)
    return X.iloc[:1500], y[:1500], X.iloc[1500:], y[1500:]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_arrays_of_any_numeric_dtype_and_frames_give_the_same_model(problem, algorithm):
    X_tr, y_tr, X_te, _ = problem
    on_frame = FraudClassifier(algorithm, n_estimators=20).fit(X_tr, y_tr)
    expected = on_frame.predict_proba(X_te)
    assert list(on_frame.feature_names_in_) == list(X_tr.columns) and on_frame.n_features_in_ == 8
    on_array = FraudClassifier(algorithm, n_estimators=20).fit(X_tr.to_numpy(), list(y_tr))
    assert not hasattr(on_array, "feature_names_in_") and on_array.feature_names_ == [
        f"x{j}" for j in range(8)
    ]
    # The same numbers in another container: the same model, to the last bit.
    np.testing.assert_array_equal(on_array.predict_proba(X_te.to_numpy()), expected)
    np.testing.assert_array_equal(on_array.predict_proba(X_te.to_numpy().tolist()), expected)
    small = np.round(X_tr.to_numpy() * 100)  # whole numbers, exact in every dtype below
    reference = FraudClassifier(algorithm, n_estimators=20).fit(small, y_tr).predict_proba(small)
    for dtype in (np.float32, np.int64, np.int32):
        fitted = FraudClassifier(algorithm, n_estimators=20).fit(small.astype(dtype), y_tr)
        np.testing.assert_array_equal(fitted.predict_proba(small.astype(dtype)), reference)
    one_feature = FraudClassifier(algorithm, n_estimators=20).fit(X_tr[["f0"]], y_tr)
    assert one_feature.predict(X_te[["f0"]]).shape == (len(X_te),)


def test_labels_are_0_1_with_1_for_fraud(problem):
    X_tr, y_tr, X_te, _ = problem
    clf = FraudClassifier("logistic_regression").fit(X_tr, y_tr.astype(bool))
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    assert clf.predict(X_te).dtype == np.int64
    for labels in (y_tr + 1, np.where(y_tr == 1, "fraud", "legit")):
        with pytest.raises(ValueError, match=r"y must be 0/1 labels \(1 = fraud\)"):
            FraudClassifier("logistic_regression").fit(X_tr, labels)
    with pytest.raises(ValueError, match="Only binary classification is supported"):
        FraudClassifier("logistic_regression").fit(X_tr, np.arange(len(y_tr)) % 3)
    with pytest.raises(ValueError, match="Unknown label type"):
        FraudClassifier("logistic_regression").fit(X_tr, y_tr + 0.5)


def test_a_model_fitted_on_named_columns_refuses_an_unnamed_array(problem):
    """scikit-learn only warns; here columns in another order would be scored silently wrong."""
    X_tr, y_tr, X_te, _ = problem
    clf = FraudClassifier("logistic_regression").fit(X_tr, y_tr)
    with pytest.raises(TypeError, match="DataFrame"):
        clf.predict(X_te.to_numpy())
    with pytest.raises(ValueError, match="The feature names should match those that were passed during fit"):
        clf.predict(X_te[X_te.columns[::-1]])


# --- parameters, clone, Pipeline, GridSearchCV ------------------------------------------------


def test_parameters_of_the_underlying_estimator_are_parameters_too():
    clf = FraudClassifier("lightgbm", subsample=0.8, num_leaves=8)
    params = clf.get_params()
    assert params["subsample"] == 0.8 and params["num_leaves"] == 8 and params["threshold"] == 0.5
    assert clf.set_params(num_leaves=16, max_depth=4, reg_lambda=1.0) is clf
    assert (
        clf.get_params()["num_leaves"] == 16 and clf.max_depth == 4 and clf.get_params()["reg_lambda"] == 1.0
    )
    with pytest.raises(ValueError, match="Invalid parameter"):
        clf.set_params(model__depth=3)  # no nested estimators
    # The constructor only stores: an unknown algorithm is judged by fit, before any work.
    assert FraudClassifier("catboost").algorithm == "catboost"
    with pytest.raises(NotFittedError, match="call fit first"):
        FraudClassifier().predict(pd.DataFrame({"f0": [1.0]}))


# One argument of each underlying estimator, passed through ``**params``.
OWN_PARAMETER = {
    "logistic_regression": {"C": 0.5},
    "random_forest": {"min_samples_leaf": 3},
    "xgboost": {"subsample": 0.9},
    "lightgbm": {"num_leaves": 8},
}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_clone_of_a_tuned_model_trains_the_same_model(problem, algorithm):
    X_tr, y_tr, X_te, y_te = problem
    fitted = FraudClassifier(
        algorithm, n_estimators=30, max_depth=3, random_state=3, **OWN_PARAMETER[algorithm]
    )
    fitted.fit(X_tr, y_tr)
    fitted.optimize_threshold(X_te, y_te)
    twin = clone(fitted)
    assert not twin.is_fitted and twin.get_params() == fitted.get_params()  # the threshold included
    twin.fit(X_tr, y_tr)
    np.testing.assert_array_equal(twin.predict_proba(X_te), fitted.predict_proba(X_te))
    np.testing.assert_array_equal(twin.predict(X_te), fitted.predict(X_te))
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict_proba(X_te), fitted.predict_proba(X_te))


def test_pipeline_from_transactions_to_decisions():
    """The seed guide's two steps as one scikit-learn Pipeline: the same numbers as step by step."""
    frame = FraudDataGenerator(n_samples=5000, fraud_rate=0.02, seed=3).generate()
    X_train, X_test, y_train, y_test = prepare_train_test_split(frame)
    pipeline = make_pipeline(FraudPreprocessor(), FraudClassifier("xgboost", n_estimators=50))
    pipeline.fit(X_train, y_train)
    preprocessor = FraudPreprocessor().fit(X_train, y_train)
    classifier = FraudClassifier("xgboost", n_estimators=50).fit(preprocessor.transform(X_train), y_train)
    expected = classifier.predict_proba(preprocessor.transform(X_test))
    np.testing.assert_array_equal(pipeline.predict_proba(X_test), expected)
    np.testing.assert_array_equal(
        pipeline.predict(X_test), classifier.predict(preprocessor.transform(X_test))
    )
    assert 0.0 <= pipeline.score(X_test, y_test) <= 1.0
    refit = clone(pipeline).fit(X_train, y_train)
    np.testing.assert_array_equal(refit.predict_proba(X_test), expected)


def test_grid_search_over_time_ordered_folds(problem):
    X_tr, y_tr, X_te, _ = problem
    base = FraudClassifier(n_estimators=30, max_depth=3, calibration="none")
    grid = [  # logistic regression takes no `subsample`: the grid gives it to XGBoost only
        {"algorithm": ["logistic_regression"]},
        {"algorithm": ["xgboost"], "subsample": [0.7, 1.0]},
    ]
    search = GridSearchCV(base, grid, cv=TimeSeriesSplit(n_splits=3), scoring="average_precision")
    search.fit(X_tr, y_tr)
    assert len(search.cv_results_["params"]) == 3
    assert 0 < search.best_score_ <= 1 and search.best_params_ in search.cv_results_["params"]
    # The refit best model is the constructor's model for the best parameters, to the last bit.
    direct = clone(base).set_params(**search.best_params_).fit(X_tr, y_tr)
    np.testing.assert_array_equal(search.predict_proba(X_te), direct.predict_proba(X_te))
    # In a pipeline, parameters are addressed by step.
    pipeline = make_pipeline(StandardScaler().set_output(transform="pandas"), base)
    in_pipeline = GridSearchCV(
        pipeline, {"fraudclassifier__max_depth": [2, 3]}, cv=TimeSeriesSplit(n_splits=2), scoring="roc_auc"
    ).fit(X_tr, y_tr)
    assert in_pipeline.best_params_["fraudclassifier__max_depth"] in (2, 3)
    assert list(in_pipeline.best_estimator_[-1].feature_names_in_) == list(X_tr.columns)


def test_classifiers_saved_with_all_parameters_in_one_dict_still_load(problem):
    """Bundles whose classifier keeps the estimator's arguments and ``n_jobs`` in ``params`` and
    the applied imbalance method in ``imbalance_method`` are unpickled into the estimator's layout:
    a champion saved so can still be served and compared by the champion gate."""
    X_tr, y_tr, X_te, _ = problem
    fitted = FraudClassifier("xgboost", n_estimators=20, handle_imbalance=False, subsample=0.9, n_jobs=1)
    fitted.fit(X_tr, y_tr)
    state = dict(fitted.__dict__)
    for name in (
        "_backend_params",
        "n_jobs",
        "imbalance_method_",
        "classes_",
        "n_features_in_",
        "feature_names_in_",
    ):
        state.pop(name)
    state.update(params={"subsample": 0.9, "n_jobs": 1}, imbalance_method="none")
    restored = FraudClassifier.__new__(FraudClassifier)
    restored.__setstate__(state)
    np.testing.assert_array_equal(restored.predict_proba(X_te), fitted.predict_proba(X_te))
    assert restored.get_params()["subsample"] == 0.9 and restored.n_jobs == 1
    assert restored.imbalance_method_ == "none" and restored.n_features_in_ == 8
    np.testing.assert_array_equal(restored.classes_, [0, 1])
    twin = clone(restored).fit(X_tr, y_tr)
    np.testing.assert_array_equal(twin.predict_proba(X_te), fitted.predict_proba(X_te))
