"""One small adapter per algorithm: build, fit, raw probabilities, fast path, importance, contributions.

"Raw" means before calibration. Contributions explain the raw model output per feature, bias
column dropped:

- xgboost / lightgbm: exact TreeSHAP on the margin (log-odds), ``pred_contribs`` / ``pred_contrib``;
- logistic_regression: ``coef * standardized x`` (its margin, minus the intercept);
- random_forest: Saabas path attribution on the probability (each split's change of the
  node's fraud share is credited to the split feature, averaged over trees). It is an
  approximation of SHAP, in probability units rather than log-odds.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from fraud_assets.core.models.forest_paths import forest_paths


class Backend:
    name: ClassVar[str]

    def __init__(self, *, n_estimators: int, max_depth: int, learning_rate: float, random_state: int,
                 n_jobs: int, params: dict[str, Any]) -> None:  # fmt: skip
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.params = dict(params)
        self.model: Any = None

    def fit(self, X: pd.DataFrame, y: np.ndarray, *, pos_weight: float | None) -> None:
        """``pos_weight``: neg/pos weight of fraud rows (class weighting), None for no weighting."""
        raise NotImplementedError

    def raw_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.model.predict_proba(X)[:, 1].astype(np.float64)

    def raw_proba_fast(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def importance(self) -> np.ndarray:
        raise NotImplementedError

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def explain(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw probabilities and contributions of the rows ``x``, in one pass where the model allows."""
        return self.raw_proba_fast(x), self.contributions(x)


class LogisticBackend(Backend):
    name = "logistic_regression"

    def fit(self, X, y, *, pos_weight):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        params = {"C": 1.0, "max_iter": 2000, **self.params}
        lr = LogisticRegression(
            class_weight="balanced" if pos_weight else None, random_state=self.random_state, **params
        )
        self.model = make_pipeline(StandardScaler(), lr)
        self.model.fit(X, y)
        scaler, lr = self.model[0], self.model[-1]
        self.mean_ = scaler.mean_.astype(np.float64)
        self.scale_ = scaler.scale_.astype(np.float64)
        self.coef_ = lr.coef_[0].astype(np.float64)
        self.intercept_ = float(lr.intercept_[0])

    def _margin_terms(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean_) / self.scale_ * self.coef_

    def raw_proba_fast(self, x):
        z = ((x - self.mean_) / self.scale_) @ self.coef_ + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))

    def importance(self):
        return np.abs(self.coef_)

    def contributions(self, X):
        return self._margin_terms(np.asarray(X, dtype=np.float64))


class RandomForestBackend(Backend):
    name = "random_forest"

    def fit(self, X, y, *, pos_weight):
        from sklearn.ensemble import RandomForestClassifier

        params = {"min_samples_leaf": 5, "max_features": "sqrt", "max_samples": 0.3, **self.params}
        self.model = RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            class_weight="balanced" if pos_weight else None,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            **params,
        )
        self.model.fit(X.to_numpy(dtype=np.float64), y)
        # Threaded prediction sums trees in a racy order; one thread keeps scores bit-for-bit stable.
        self.model.n_jobs = 1
        self._flatten()

    def _flatten(self) -> None:
        """All trees as flat node arrays for `forest_paths` (leaves point to themselves)."""
        feats, thrs, lefts, rights, shares, roots = [], [], [], [], [], []
        offset = 0
        for est in self.model.estimators_:
            tree = est.tree_
            nodes = np.arange(tree.node_count)
            leaf = tree.children_left < 0
            feats.append(np.where(leaf, 0, tree.feature))
            thrs.append(np.where(leaf, np.inf, tree.threshold))
            lefts.append(np.where(leaf, nodes, tree.children_left) + offset)
            rights.append(np.where(leaf, nodes, tree.children_right) + offset)
            values = tree.value[:, 0, :]
            shares.append(values[:, 1] / values.sum(axis=1))
            roots.append(offset)
            offset += tree.node_count
        self.flat_ = {
            "feature": np.concatenate(feats).astype(np.intp),
            "threshold": np.concatenate(thrs).astype(np.float64),
            "left": np.concatenate(lefts).astype(np.intp),
            "right": np.concatenate(rights).astype(np.intp),
            "share": np.concatenate(shares).astype(np.float64),
            "roots": np.asarray(roots, dtype=np.intp),
        }

    def raw_proba(self, X):
        return self.model.predict_proba(np.asarray(X, dtype=np.float64))[:, 1].astype(np.float64)

    def raw_proba_fast(self, x):
        return forest_paths(self.flat_, x)[0]

    def importance(self):
        return self.model.feature_importances_

    def contributions(self, X):
        """Saabas path attribution in probability units (`forest_paths`): trees this deep are
        beyond tabulated TreeSHAP, and a row's walk costs microseconds."""
        return forest_paths(self.flat_, X)[1]

    def explain(self, x):
        return forest_paths(self.flat_, x)


class XGBoostBackend(Backend):
    name = "xgboost"

    def fit(self, X, y, *, pos_weight):
        import xgboost as xgb

        params = {"tree_method": "hist", "eval_metric": "aucpr", **self.params}
        self.model = xgb.XGBClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            scale_pos_weight=pos_weight or 1.0,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            **params,
        )
        self.model.fit(X, y)
        self.fast_booster = self.model.get_booster().copy()
        self.fast_booster.set_param({"nthread": 1})

    def raw_proba_fast(self, x):
        return self.fast_booster.inplace_predict(x, validate_features=False).astype(np.float64)

    def importance(self):
        scores = self.model.get_booster().get_score(importance_type="total_gain")
        return np.array([scores.get(f, 0.0) for f in self.model.get_booster().feature_names], dtype=float)

    def contributions(self, X):
        import xgboost as xgb

        booster = self.model.get_booster()
        dmat = xgb.DMatrix(np.asarray(X, dtype=np.float32), feature_names=booster.feature_names, nthread=1)
        return booster.predict(dmat, pred_contribs=True)[:, :-1].astype(np.float64)


class LightGBMBackend(Backend):
    name = "lightgbm"

    def fit(self, X, y, *, pos_weight):
        import lightgbm as lgb

        num_leaves = min(31, 2**self.max_depth) if self.max_depth and self.max_depth > 0 else 31
        params = {
            "num_leaves": num_leaves,
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
            **self.params,
        }
        self.model = lgb.LGBMClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            scale_pos_weight=pos_weight or 1.0,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            **params,
        )
        self.model.fit(X, y)

    def raw_proba(self, X):
        return self.model.booster_.predict(np.asarray(X, dtype=np.float64), num_threads=self.n_jobs)

    def raw_proba_fast(self, x):
        return self.model.booster_.predict(x, num_threads=1)

    def importance(self):
        return self.model.booster_.feature_importance(importance_type="gain").astype(float)

    def contributions(self, X):
        out = self.model.booster_.predict(np.asarray(X, dtype=np.float64), pred_contrib=True, num_threads=1)
        return np.asarray(out)[:, :-1].astype(np.float64)


BACKENDS: dict[str, type[Backend]] = {
    b.name: b for b in (LogisticBackend, RandomForestBackend, XGBoostBackend, LightGBMBackend)
}
ALGORITHMS: tuple[str, ...] = tuple(BACKENDS)
