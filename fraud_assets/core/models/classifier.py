"""``FraudClassifier``: the seed guide's model API on time-ordered, heavily imbalanced data.

Fitting never shuffles. With calibration on, the calibrator is fitted on rows the model did
not train on: ``X_val``/``y_val`` when given, else the last 20% of the rows as given (callers
keep them in time order), and the model then trains on the first 80% only. Imbalance handling
("class_weight" or "smote") touches the model's training rows only, never calibration rows.
"""

from __future__ import annotations

import functools
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sklearn.exceptions
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import column_or_1d, validate_data
from threadpoolctl import ThreadpoolController

from fraud_assets.core import metrics
from fraud_assets.core.models.backends import ALGORITHMS, BACKENDS, Backend
from fraud_assets.core.models.calibration import CALIBRATION_METHODS, Calibrator
from fraud_assets.core.models.reasons import top_contributions

IMBALANCE_METHODS: tuple[str, ...] = ("class_weight", "smote", "none")
# Fixed so results do not depend on the machine. One thread by default: on the 2-core target,
# shared with Dagster runs and the API, OpenMP's spinning threads made 2-thread xgboost/lightgbm
# fits 3-7x slower than 1 thread (measured); pass n_jobs=2 to a FraudClassifier on a quiet machine.
TRAIN_THREADS = 1


@functools.cache
def _thread_pools() -> ThreadpoolController:
    """The process's BLAS and OpenMP pools (NumPy's, SciPy's and scikit-learn's are loaded with
    this module; XGBoost and LightGBM take their thread count explicitly)."""
    return ThreadpoolController()


def fixed_threads(n_threads: int):
    """Limit BLAS and OpenMP to ``n_threads`` while a model trains or scores.

    Why: a BLAS product split over threads sums in an order that depends on their number, so
    logistic regression's coefficients (lbfgs on ``X.T @ gradient``) and SMOTE's neighbours
    came out different in the last bits on a machine with another core count, which can move
    a tuning score, a threshold, and the champion. One thread by default, on every machine.
    """
    return _thread_pools().limit(limits=n_threads)


class NotFittedError(sklearn.exceptions.NotFittedError, RuntimeError):
    """The classifier was used before ``fit`` (scikit-learn's ``NotFittedError``, so its tools
    recognise it)."""


def smote_resample(
    X: pd.DataFrame, y: np.ndarray, *, ratio: float, random_state: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """Oversample fraud with SMOTE until fraud/legit reaches ``ratio`` (no-op when already there)."""
    from imblearn.over_sampling import SMOTE

    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos < 2:
        raise ValueError(f"SMOTE needs at least 2 fraud rows in the training rows, got {n_pos}")
    if n_pos / n_neg >= ratio:
        return X, y
    smote = SMOTE(sampling_strategy=ratio, k_neighbors=min(5, n_pos - 1), random_state=random_state)
    X_res, y_res = smote.fit_resample(X, y)
    return pd.DataFrame(np.asarray(X_res, dtype=np.float64), columns=X.columns), np.asarray(y_res)


def _check_labels(y: Any, n_rows: int, what: str) -> np.ndarray:
    if y is None:
        raise ValueError(f"{what}: FraudClassifier requires y to be passed, but the target y is None")
    y = column_or_1d(y, warn=True)
    if len(y) != n_rows:
        raise ValueError(f"{what}: X has {n_rows} rows but y has {len(y)}")
    check_classification_targets(y)  # "Unknown label type: continuous" for amounts or scores
    if not np.isin(y, (0, 1)).all():
        kind = type_of_target(y)
        binary = "" if kind == "binary" else f"Only binary classification is supported (y is {kind}): "
        raise ValueError(
            f"{what}: {binary}y must be 0/1 labels (1 = fraud), found {np.unique(y)[:5].tolist()}"
        )
    y = y.astype(np.int64)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise ValueError(
            f"{what}: no fraud among the {len(y)} rows, one class only (no fraud in the training window?)"
        )
    if n_pos == len(y):
        raise ValueError(
            f"{what}: all {len(y)} rows are fraud, one class only; there is nothing legitimate to learn from"
        )
    return y


def _check_choice(name: str, value: Any, valid: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in valid:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(valid)}")


class FraudClassifier(ClassifierMixin, BaseEstimator):
    """A fraud model: one of ``ALGORITHMS``, imbalance handling, a calibrator and a threshold.

    A scikit-learn estimator: the constructor only stores its arguments, ``fit`` checks them
    (an unknown algorithm is refused there, before any work), so ``clone``, ``Pipeline`` and
    ``GridSearchCV`` work on it. Labels are 0/1 with 1 = fraud (``classes_`` is ``[0, 1]``).

    Args:
        algorithm: "logistic_regression", "random_forest", "xgboost" or "lightgbm".
        handle_imbalance: False means no imbalance handling, whatever ``imbalance_method`` says.
        n_estimators, max_depth, learning_rate: tree ensembles' size (ignored by logistic regression).
        imbalance_method: "class_weight" (balanced weights / ``scale_pos_weight = neg/pos``),
            "smote" (imbalanced-learn, training rows only) or "none".
        calibration: "isotonic", "sigmoid" or "none".
        random_state: seeds everything; training uses a fixed thread count (``n_jobs``) so
            results are reproducible.
        smote_ratio: fraud/legit after SMOTE.
        calibration_fraction: share of the latest rows held out to calibrate (without ``X_val``).
        threshold: the calibrated fraud probability from which ``predict`` says fraud;
            ``optimize_threshold`` sets it from held-out rows.
        n_jobs: threads for training and batch scoring; None means ``TRAIN_THREADS`` (1).
        **params: passed to the underlying estimator (e.g. ``subsample``, ``num_leaves``, ``C``);
            ``get_params``/``set_params`` list and set them like the named ones.

    Fitted attributes: ``classes_``, ``n_features_in_``, ``feature_names_in_`` (fitted on a
    DataFrame with string column names), ``feature_names_`` (the columns, ``x0``... for an
    array), ``imbalance_method_`` (the method applied), ``backend_``, ``calibrator_``,
    ``fit_info_``.
    """

    ALGORITHMS = ALGORITHMS

    def __init__(
        self,
        algorithm: str = "xgboost",
        handle_imbalance: bool = True,
        n_estimators: int = 100,
        max_depth: int = 6,
        learning_rate: float = 0.1,
        imbalance_method: str = "class_weight",
        calibration: str = "isotonic",
        random_state: int = 42,
        *,
        smote_ratio: float = 0.1,
        calibration_fraction: float = 0.2,
        threshold: float = 0.5,
        n_jobs: int | None = None,
        **params: Any,
    ) -> None:
        self.algorithm = algorithm
        self.handle_imbalance = handle_imbalance
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.imbalance_method = imbalance_method
        self.calibration = calibration
        self.random_state = random_state
        self.smote_ratio = smote_ratio
        self.calibration_fraction = calibration_fraction
        self.threshold = threshold
        self.n_jobs = n_jobs
        self._backend_params = params

    # ------------------------------------------------------- scikit-learn protocol

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments, the underlying estimator's (``**params``) included."""
        return {**super().get_params(deep=deep), **self._backend_params}

    def set_params(self, **params: Any) -> FraudClassifier:
        """Set constructor arguments; a name that is not one is passed to the underlying estimator."""
        named = set(self._get_param_names())
        extra = {k: params.pop(k) for k in list(params) if k not in named and "__" not in k}
        super().set_params(**params)
        self._backend_params = {**self._backend_params, **extra}
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # fraud or not: 0/1 labels
        tags.input_tags.allow_nan = False
        return tags

    def __sklearn_is_fitted__(self) -> bool:
        return self.is_fitted

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Also reads the layout that keeps the estimator's arguments and ``n_jobs`` in one
        ``params`` dict, the applied imbalance method in ``imbalance_method`` and no
        ``classes_``: champions saved that way stay servable and comparable by the gate."""
        if "params" in state and "_backend_params" not in state:
            extra = dict(state.pop("params"))
            state["n_jobs"] = extra.pop("n_jobs", None)
            state["_backend_params"] = extra
            if state.get("backend_") is None:
                for name in ("backend_", "calibrator_", "feature_names_", "fit_info_"):
                    state.pop(name, None)
            else:
                state["imbalance_method_"] = state["imbalance_method"]
                state["classes_"] = np.array([0, 1])
                state["n_features_in_"] = len(state["feature_names_"])
                state["feature_names_in_"] = np.asarray(state["feature_names_"], dtype=object)
        super().__setstate__(state)

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "backend_")

    @property
    def n_threads(self) -> int:
        """Threads for training and batch scoring: ``n_jobs`` if given, else ``TRAIN_THREADS``."""
        return TRAIN_THREADS if self.n_jobs is None else int(self.n_jobs)

    # ------------------------------------------------------------------ fitting

    def _check_params(self) -> str:
        """Judge the constructor arguments; the imbalance method that applies."""
        _check_choice("algorithm", self.algorithm, ALGORITHMS)
        _check_choice("imbalance_method", self.imbalance_method, IMBALANCE_METHODS)
        _check_choice("calibration", self.calibration, CALIBRATION_METHODS)
        if not 0 < float(self.calibration_fraction) < 1:
            raise ValueError(f"calibration_fraction must be in (0, 1), got {self.calibration_fraction}")
        if not float(self.smote_ratio) > 0:
            raise ValueError(
                f"smote_ratio must be positive (fraud/legit after SMOTE), got {self.smote_ratio}"
            )
        if not 0 <= float(self.threshold) <= 1:
            raise ValueError(f"threshold must be a probability in [0, 1], got {self.threshold}")
        return self.imbalance_method if self.handle_imbalance else "none"

    @staticmethod
    def _check_frame(X: Any, what: str, columns: list[str] | None = None) -> pd.DataFrame:
        """``X`` as a DataFrame of finite numbers: a DataFrame as given, an array (validated by
        ``check_array``) with ``columns`` (``x0``, ``x1``... when None)."""
        if not isinstance(X, pd.DataFrame):
            values = check_array(X, dtype=np.float64, ensure_all_finite=False, input_name="X")
            names = columns if columns is not None else [f"x{j}" for j in range(values.shape[1])]
            if values.shape[1] != len(names):
                raise ValueError(f"{what}: X has {values.shape[1]} columns, expected {len(names)}")
            X = pd.DataFrame(values, columns=names)
        if X.shape[0] == 0:
            raise ValueError(f"{what}: X has no rows")
        if X.shape[1] == 0:
            raise ValueError(f"{what}: X has no columns")
        values = X.to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            bad = X.columns[~np.isfinite(values).all(axis=0)].tolist()
            raise ValueError(f"{what}: X has NaN or infinite values in column(s) {bad}")
        return X

    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None) -> FraudClassifier:
        """Train on time-ordered rows; see the module docstring for which rows calibrate.

        ``X``: a DataFrame of numeric features (or a 2-D array); ``y``: 0/1 labels, 1 = fraud.
        """
        imbalance_method = self._check_params()
        X_given = X if isinstance(X, pd.DataFrame) else check_array(X, dtype=None, ensure_all_finite=False)
        X = self._check_frame(X_given, "fit")
        y = _check_labels(y, len(X), "fit")
        if (X_val is None) != (y_val is None):
            raise ValueError("fit: give both X_val and y_val, or neither")
        if X.columns.duplicated().any():
            raise ValueError(f"fit: duplicated column names {X.columns[X.columns.duplicated()].tolist()}")
        X_cal = y_cal = None
        if X_val is not None:
            X_cal = self._check_frame(X_val, "fit (X_val)", columns=list(X.columns))
            if list(X_cal.columns) != list(X.columns):
                raise ValueError("fit: X_val must have the same columns, in the same order, as X")
            y_cal = _check_labels(y_val, len(X_cal), "fit (calibration rows X_val/y_val)")
            X_train, y_train = X, y
        elif self.calibration != "none":
            n_cal = round(len(X) * self.calibration_fraction)
            cut = len(X) - n_cal
            X_train, y_train = X.iloc[:cut], y[:cut]
            X_cal, y_cal = X.iloc[cut:], y[cut:]
            y_train = _check_labels(
                y_train, len(X_train), "fit (first 80% of rows, the model's training rows)"
            )
            y_cal = _check_labels(
                y_cal, len(X_cal), "fit (latest rows held out for calibration; pass X_val/y_val or more data)"
            )
        else:
            X_train, y_train = X, y

        n_pos = int(y_train.sum())
        n_neg = len(y_train) - n_pos
        n_train_rows = len(y_train)
        pos_weight = None
        with fixed_threads(self.n_threads):
            if imbalance_method == "class_weight":
                pos_weight = n_neg / n_pos
            elif imbalance_method == "smote":
                X_train, y_train = smote_resample(
                    X_train, y_train, ratio=float(self.smote_ratio), random_state=self.random_state
                )
            backend = BACKENDS[self.algorithm](
                n_estimators=self.n_estimators,
                max_depth=self.max_depth,
                learning_rate=self.learning_rate,
                random_state=self.random_state,
                n_jobs=self.n_threads,
                params=self._backend_params,
            )
            backend.fit(X_train.astype(np.float64), y_train, pos_weight=pos_weight)
            if self.calibration != "none" and X_cal is not None:
                raw_cal = backend.raw_proba(X_cal.astype(np.float64))
                calibrator = Calibrator.fit(self.calibration, raw_cal, y_cal)
            else:
                calibrator = Calibrator()
        validate_data(self, X_given, reset=True, skip_check_array=True)  # n_features_in_, feature_names_in_
        self.backend_ = backend
        self.calibrator_ = calibrator
        self.feature_names_ = [str(c) for c in X.columns]
        self.imbalance_method_ = imbalance_method
        self.classes_ = np.array([0, 1])
        self.fit_info_ = {
            "n_train_rows": n_train_rows,
            "n_train_rows_after_resampling": len(y_train),
            "n_calibration_rows": 0 if self.calibration == "none" or X_cal is None else len(X_cal),
            "train_fraud_rate": n_pos / (n_pos + n_neg),
            "pos_weight": pos_weight,
        }
        return self

    # --------------------------------------------------------------- prediction

    def _require_fitted(self) -> Backend:
        if not self.is_fitted:
            raise NotFittedError(f"this FraudClassifier ({self.algorithm}) is not fitted yet: call fit first")
        return self.backend_

    def _check_columns(self, X: Any) -> pd.DataFrame:
        """``X`` as the DataFrame the model scores: the fit columns, in their order.

        A model fitted on named columns wants them by name: an array (whose columns could be in
        any order) is refused. A model fitted on an array takes an array of as many columns.
        """
        self._require_fitted()
        if not isinstance(X, pd.DataFrame):
            if hasattr(self, "feature_names_in_"):
                raise TypeError(
                    f"X must be a pandas DataFrame with the fit columns, got {type(X).__name__} "
                    "(use predict_proba_fast for a plain NumPy array)"
                )
            x = check_array(X, dtype=np.float64, ensure_all_finite=False, input_name="X")
            validate_data(self, x, reset=False, skip_check_array=True)  # the column count
            return self._check_frame(x, "predict", columns=self.feature_names_)
        got = [str(c) for c in X.columns]
        try:
            validate_data(self, X, reset=False, skip_check_array=True)  # scikit-learn's own words
        except ValueError as err:
            if got == self.feature_names_:
                raise
            missing = [c for c in self.feature_names_ if c not in got]
            extra = [c for c in got if c not in self.feature_names_]
            detail = (
                f"missing {missing}, extra {extra}" if missing or extra else "same columns, different order"
            )
            raise ValueError(
                f"{err}\nX columns do not match the columns the model was fitted on: {detail}"
            ) from None
        if got != self.feature_names_:  # a DataFrame on a model fitted on an array: x0, x1...
            raise ValueError(
                f"X columns {got} do not match the columns the model was fitted on: {self.feature_names_}"
            )
        return self._check_frame(X, "predict")

    def _check_array(self, x: Any) -> np.ndarray:
        self._require_fitted()
        if isinstance(x, pd.DataFrame):
            x = self._check_columns(x).to_numpy(dtype=np.float64)
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names_):
            raise ValueError(f"x must have shape (n, {len(self.feature_names_)}), got {x.shape}")
        return x

    def predict_proba(self, X: Any) -> np.ndarray:
        """Calibrated probabilities, shape (n, 2): column 1 is fraud (like sklearn)."""
        X = self._check_columns(X)
        with fixed_threads(self.n_threads):  # the scores that pick the champion: the same everywhere
            raw = self.backend_.raw_proba(X.astype(np.float64))
        p = self.calibrator_.transform(raw)
        return np.column_stack([1.0 - p, p])

    def predict_proba_fast(self, x: np.ndarray) -> np.ndarray:
        """Calibrated fraud probabilities for a 2-D float array (1-D = one row), without pandas.

        The serving hot path: single-threaded booster prediction, calibration in NumPy. Equals
        ``predict_proba(X)[:, 1]`` for the same values.
        """
        backend = self._require_fitted()
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x.reshape(1, -1)
        if x.ndim != 2 or x.shape[1] != len(self.feature_names_):
            raise ValueError(f"x must have shape (n, {len(self.feature_names_)}), got {x.shape}")
        return self.calibrator_.transform(backend.raw_proba_fast(x))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """0/1 decisions: fraud when the calibrated probability is at least ``self.threshold``."""
        return (self.predict_proba(X)[:, 1] >= self.threshold).astype(np.int64)

    def evaluate(
        self, X: pd.DataFrame, y: Any, context: pd.DataFrame | None = None, **kw: Any
    ) -> dict[str, float | int]:
        """``metrics.evaluate_scores`` at ``self.threshold`` (kw: cost_fn, cost_fp, card_top_k)."""
        return metrics.evaluate_scores(y, self.predict_proba(X)[:, 1], self.threshold, context=context, **kw)

    def optimize_threshold(self, X_val: pd.DataFrame, y_val: Any, metric: str = "f1", **kw: Any) -> float:
        """Set and return ``self.threshold`` per ``metrics.threshold_for`` (objective ``metric``)."""
        self.threshold = metrics.threshold_for(y_val, self.predict_proba(X_val)[:, 1], metric, **kw)
        return self.threshold

    # ---------------------------------------------------------- explanations

    def get_feature_importance(self, top_n: int | None = 20) -> pd.DataFrame:
        """Columns feature, importance (normalised to sum 1), most important first.

        Trees: total split gain (xgboost, lightgbm) or impurity decrease (random forest);
        logistic regression: |coef| on standardized features.
        """
        imp = np.asarray(self._require_fitted().importance(), dtype=np.float64)
        total = imp.sum()
        if total > 0:
            imp = imp / total
        df = pd.DataFrame({"feature": self.feature_names_, "importance": imp})
        df = df.sort_values("importance", ascending=False, kind="mergesort").reset_index(drop=True)
        return df if top_n is None else df.head(top_n)

    def contributions(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Per-feature contributions (n, n_features) to the raw (uncalibrated) output, bias dropped.

        Log-odds SHAP for xgboost/lightgbm, ``coef * standardized x`` for logistic regression,
        Saabas path attribution in probability units for random forest (see ``backends``).
        Positive values push towards fraud.
        """
        return self._require_fitted().contributions(self._check_array(X))

    def reason_codes(self, X: pd.DataFrame | np.ndarray, top_k: int = 3) -> list[list[tuple[str, float]]]:
        """For each row, the ``top_k`` features pushing hardest towards fraud, with their contributions."""
        contrib = self.contributions(X)
        order = top_contributions(contrib, top_k)
        return [
            [(self.feature_names_[j], float(row[j])) for j in idx]
            for row, idx in zip(contrib, order, strict=True)
        ]

    # ------------------------------------------------------------ persistence

    def save(self, path: str | Path) -> Path:
        """Pickle (protocol 5) to ``path``; parent folders are created."""
        self._require_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(self, protocol=5))
        return path

    @classmethod
    def load(cls, path: str | Path) -> FraudClassifier:
        """Load a classifier written by ``save`` (only load files you trust: this unpickles)."""
        obj = pickle.loads(Path(path).read_bytes())
        if not isinstance(obj, cls):
            raise TypeError(f"{path} holds a {type(obj).__name__}, not a FraudClassifier")
        return obj
