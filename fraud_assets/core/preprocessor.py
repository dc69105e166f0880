"""`FraudPreprocessor`: the model's input matrix from transactions and their history features.

scikit-learn compatible (fit / transform / fit_transform, save / load) and the seed guide's
API. Every feature is defined once, in `_feature_arrays`, on plain NumPy columns: batch
transforms pass a DataFrame's columns, serving passes one-element arrays through
`transform_columns`, so both run the same code without pandas in the per-request path.

    >>> pre = FraudPreprocessor(scaling_method="standard", create_interactions=True)
    >>> X_train_t = pre.fit_transform(X_train, y_train)
    >>> X_test_t = pre.transform(X_test)
    >>> pre.save("models/preprocessor.pkl"); pre = FraudPreprocessor.load("models/preprocessor.pkl")
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from fraud_assets.core import columns as c
from fraud_assets.core.features import HISTORY_FEATURES

SCALING_METHODS = ("standard", "robust", "none")
STATS_SAMPLE = 200_000
SMALL_BATCH = 256
# Categories are one-hot encoded over the contract's fixed vocabularies, so an unseen value
# (or a user's own category) maps to all zeros, the same in training and in serving.
CATEGORICAL: dict[str, tuple[str, ...]] = {
    c.MERCHANT_CATEGORY: c.MERCHANT_CATEGORIES,
    c.ENTRY_MODE: c.ENTRY_MODES,
}
_NIGHT = np.array(sorted(c.NIGHT_HOURS))

# feature -> the input columns it needs. Order here is the column order of the matrix.
BASE_FEATURES: dict[str, tuple[str, ...]] = {
    "amount": (c.AMOUNT,),
    "amount_log": (c.AMOUNT,),
    "amount_sqrt": (c.AMOUNT,),
    "amount_squared": (c.AMOUNT,),
    "hour_of_day": (c.HOUR_OF_DAY,),
    "day_of_week": (c.DAY_OF_WEEK,),
    "is_weekend": (c.IS_WEEKEND,),
    "is_night": (c.HOUR_OF_DAY,),
    "is_business_hours": (c.HOUR_OF_DAY, c.IS_WEEKEND),
    "is_online": (c.IS_ONLINE,),
    "is_foreign": (c.IS_FOREIGN,),
    "distance_from_home": (c.DISTANCE_FROM_HOME,),
    "distance_log": (c.DISTANCE_FROM_HOME,),
    **{name: (name,) for name in HISTORY_FEATURES},
    "velocity_ratio": ("transactions_last_1h", "transactions_last_24h"),
}
INTERACTIONS: dict[str, tuple[str, ...]] = {
    "amount_x_hour": (c.AMOUNT, c.HOUR_OF_DAY),
    "velocity_x_amount": ("transactions_last_24h", c.AMOUNT),
    "amount_x_night": (c.AMOUNT, c.HOUR_OF_DAY),
    "amount_x_foreign": (c.AMOUNT, c.IS_FOREIGN),
    "amount_x_new_device": (c.AMOUNT, "is_new_device"),
}


def _as_float(values) -> np.ndarray:
    """Any column (bool, nullable boolean/int, float) as float64 with NaN for missing."""
    if isinstance(values, pd.Series):
        if values.dtype == object:
            return pd.to_numeric(values, errors="coerce").to_numpy("float64")
        return values.to_numpy(dtype="float64", na_value=np.nan)
    array = np.asarray(values)
    if array.dtype == object:
        return pd.to_numeric(pd.Series(array), errors="coerce").to_numpy("float64")
    return array.astype("float64")


class _Terms:
    """Input columns plus the terms several features share, each computed once per call."""

    def __init__(self, cols: Mapping[str, np.ndarray]) -> None:
        self.cols = cols
        self._cache: dict[object, np.ndarray] = {}

    def __getitem__(self, column: str) -> np.ndarray:
        return self.cols[column]

    def _once(self, key, compute) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def log_amount(self) -> np.ndarray:
        return self._once("log_amount", lambda: np.log1p(np.maximum(self[c.AMOUNT], 0)))

    def night(self) -> np.ndarray:
        return self._once(
            "night", lambda: (self[c.HOUR_OF_DAY][:, None] == _NIGHT).any(axis=1).astype("float64")
        )

    def one_hot(self, column: str, category: str) -> np.ndarray:
        """The 0/1 column of ``column == category`` (an unknown category or None: all zeros)."""
        vocabulary = CATEGORICAL.get(column, ())
        if category not in vocabulary:
            return (self[column] == category).astype("float64")
        block = self._once(("one_hot", column), lambda: self._one_hot_block(column, vocabulary))
        return block[vocabulary.index(category)]

    def _one_hot_block(self, column: str, vocabulary: tuple[str, ...]) -> np.ndarray:
        """All of a column's one-hots at once: row k is ``column == vocabulary[k]``."""
        index = {v: i for i, v in enumerate(vocabulary)}
        values = self[column]
        codes = np.fromiter((index.get(v, -1) for v in values), dtype=np.intp, count=len(values))
        return (np.arange(len(vocabulary))[:, None] == codes).astype("float64")


# The computed features (the others are input columns as they are, or one-hots "column=value").
_DEFINITIONS: dict[str, Callable[[_Terms], np.ndarray]] = {
    "amount_log": lambda t: t.log_amount(),
    "amount_sqrt": lambda t: np.sqrt(np.maximum(t[c.AMOUNT], 0)),
    "amount_squared": lambda t: t[c.AMOUNT] ** 2,
    "is_night": lambda t: t.night(),
    "is_business_hours": lambda t: (
        (t[c.HOUR_OF_DAY] >= 9) & (t[c.HOUR_OF_DAY] < 17) & (t[c.IS_WEEKEND] == 0)
    ).astype("float64"),
    "distance_log": lambda t: np.log1p(np.maximum(t[c.DISTANCE_FROM_HOME], 0)),
    "velocity_ratio": lambda t: t["transactions_last_1h"] / np.maximum(t["transactions_last_24h"], 1.0),
    "amount_x_hour": lambda t: t.log_amount() * t[c.HOUR_OF_DAY],
    "velocity_x_amount": lambda t: t["transactions_last_24h"] * t.log_amount(),
    "amount_x_night": lambda t: t.log_amount() * t.night(),
    "amount_x_foreign": lambda t: t.log_amount() * t[c.IS_FOREIGN],
    "amount_x_new_device": lambda t: t.log_amount() * t["is_new_device"],
}


def _feature_arrays(cols: Mapping[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """The named features from input columns (float arrays); the one definition of each."""
    terms = _Terms(cols)
    out: dict[str, np.ndarray] = {}
    for name in names:
        define = _DEFINITIONS.get(name)
        if define is not None:
            value = define(terms)
        elif "=" in name:  # one-hot: "merchant_category=travel"
            column, _, category = name.partition("=")
            value = terms.one_hot(column, category)
        else:
            value = cols[name]
        out[name] = value
    return out


class FraudPreprocessor(TransformerMixin, BaseEstimator):
    """Engineered features, one-hot categories, imputation and scaling, fitted on training rows.

    Input: transactions with the canonical columns and the history features of
    `fraud_assets.core.features` (other columns are ignored). A feature whose inputs the data
    lacks is left out; `missing_features_` says which and why.
    """

    def __init__(self, scaling_method: str = "standard", create_interactions: bool = True):
        self.scaling_method = scaling_method
        self.create_interactions = create_interactions

    # -- fitting -------------------------------------------------------------------------------

    def fit(self, X: pd.DataFrame, y=None) -> FraudPreprocessor:
        if self.scaling_method not in SCALING_METHODS:
            raise ValueError(f"scaling_method must be one of {SCALING_METHODS}, not {self.scaling_method!r}")
        if not isinstance(X, pd.DataFrame):
            raise TypeError("FraudPreprocessor.fit expects a pandas DataFrame of transactions")
        if len(X) == 0:
            raise ValueError("cannot fit FraudPreprocessor on an empty DataFrame")
        present = set(X.columns)
        candidates = dict(BASE_FEATURES)
        if self.create_interactions:
            candidates.update(INTERACTIONS)
        names, missing = [], {}
        for name, inputs in candidates.items():
            lacking = [col for col in inputs if col not in present]
            if lacking:
                missing[name] = lacking
            else:
                names.append(name)
        if c.AMOUNT not in present:
            raise ValueError("FraudPreprocessor needs at least the 'amount' column")
        for column, vocabulary in CATEGORICAL.items():
            if column in present:
                names += [f"{column}={category}" for category in vocabulary]
            else:
                missing[f"{column}=*"] = [column]
        self.input_columns_ = sorted({col for n in names for col in self.inputs_of(n)})
        self.feature_names_ = names
        self.missing_features_ = missing
        values = _feature_arrays(self._columns(X), names)
        # Statistics from at most STATS_SAMPLE evenly spaced rows: as good, and fast on millions.
        step = max(1, len(X) // STATS_SAMPLE)
        fills, centers, scales = [], [], []
        for name in names:
            column = values[name][::step]
            fill = float(np.nan_to_num(np.nanmedian(column))) if np.isnan(column).any() else None
            column = np.where(np.isnan(column), fill, column) if fill is not None else column
            fills.append(fill if fill is not None else float(np.median(column)))
            center, scale = self._scaling(column)
            centers.append(center)
            scales.append(scale)
        self.fill_values_ = np.array(fills)
        self.center_, self.scale_ = np.array(centers), np.array(scales)
        self.n_features_in_ = len(self.input_columns_)
        return self

    def _scaling(self, column: np.ndarray) -> tuple[float, float]:
        if self.scaling_method == "none":
            return 0.0, 1.0
        if self.scaling_method == "standard":
            center, scale = float(column.mean()), float(column.std())
        else:
            q25, center, q75 = np.percentile(column, [25, 50, 75])
            scale = float(q75 - q25)
        return float(center), scale if scale > 0 else 1.0

    @staticmethod
    def inputs_of(name: str) -> tuple[str, ...]:
        """The input columns a model column is computed from."""
        if "=" in name:
            return (name.partition("=")[0],)
        return BASE_FEATURES.get(name) or INTERACTIONS[name]

    # -- transforming --------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "feature_names_"):
            raise RuntimeError("FraudPreprocessor is not fitted yet: call fit(X_train) first")

    def _columns(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        lacking = [col for col in self.input_columns_ if col not in X.columns]
        if lacking:
            raise ValueError(
                f"input lacks column(s) {lacking} that the fitted preprocessor uses; compute the "
                "history features first (fraud_assets.core.features.add_history_features)"
            )
        cols: dict[str, np.ndarray] = {}
        for col in self.input_columns_:
            if col in CATEGORICAL:
                cols[col] = X[col].astype(object).to_numpy()
            else:
                cols[col] = _as_float(X[col])
        return cols

    def transform_columns(self, cols: Mapping[str, np.ndarray]) -> np.ndarray:
        """The scaled feature matrix from NumPy input columns (float arrays; categories as str).

        The serving hot path: no pandas; one row costs a few microseconds per feature.
        """
        self._check_fitted()
        values = _feature_arrays(cols, self.feature_names_)
        n = len(next(iter(values.values())))
        if n <= SMALL_BATCH:
            matrix = np.array([values[name] for name in self.feature_names_], dtype="float64").T
            matrix = np.where(np.isnan(matrix), self.fill_values_, matrix)
            return (matrix - self.center_) / self.scale_
        # Large batches: fill a column-major matrix column by column (one pass over memory).
        matrix = np.empty((n, len(self.feature_names_)), order="F")
        for j, name in enumerate(self.feature_names_):
            column = values[name]
            missing = np.isnan(column)
            if missing.any():
                column = np.where(missing, self.fill_values_[j], column)
            np.subtract(column, self.center_[j], out=matrix[:, j])
            matrix[:, j] /= self.scale_[j]
        return matrix

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        self._check_fitted()
        if not isinstance(X, pd.DataFrame):
            raise TypeError("FraudPreprocessor.transform expects a pandas DataFrame of transactions")
        matrix = self.transform_columns(self._columns(X))
        return pd.DataFrame(matrix, columns=self.feature_names_, index=X.index)

    def fit_transform(self, X: pd.DataFrame, y=None, **fit_params) -> pd.DataFrame:
        return self.fit(X, y).transform(X)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        self._check_fitted()
        return np.asarray(self.feature_names_, dtype=object)

    # -- persistence ---------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            pickle.dump(self, handle, protocol=5)
        return path

    @classmethod
    def load(cls, path: str | Path) -> FraudPreprocessor:
        with Path(path).open("rb") as handle:
            obj = pickle.load(handle)
        if not isinstance(obj, cls):
            raise TypeError(f"{path} holds a {type(obj).__name__}, not a FraudPreprocessor")
        return obj
