"""How a served model computes probabilities and contributions: one interface, two runtimes.

- `LibraryRuntime`, the reference: the model's own library through `FraudClassifier`
  (XGBoost's and LightGBM's predict and ``pred_contribs``, scikit-learn's forest and logistic
  regression with their own contributions). Serves any model.
- `CompiledRuntime`, the accelerator: an XGBoost or LightGBM booster's trees compiled to arrays
  (`fraud_serving.compiled_trees`), margin and exact TreeSHAP in one Numba pass.
  Verified against the reference when loaded (on rows at and beside every split threshold),
  within the rounding the two arithmetics allow (`fraud_serving.tolerances`); a model
  that does not compile, or disagrees, is served by the reference.

``FRAUDOPS_MODEL_RUNTIME`` chooses: ``compiled`` (default) uses the accelerator when the model
compiles and the reference otherwise (logged, never refused); ``library`` always the reference.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import numpy as np

from fraud_serving.compiled_trees import (
    CompiledTrees,
    compile_booster,
    compile_lightgbm,
    logistic,
    probe_rows,
)
from fraud_serving.tolerances import FEW_OPS_F64, half_ulp, library_tolerances

log = logging.getLogger("fraud_serving.model")
RUNTIMES = ("compiled", "library")


class ModelRuntime(Protocol):
    name: str

    def predict(self, x: np.ndarray, reasons: str) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated probabilities and, unless ``reasons`` is "none", per-column contributions
        ("exact": TreeSHAP or the model's own; "approx": Saabas path attribution)."""
        ...


class LibraryRuntime:
    name = "library"

    def __init__(self, classifier, algorithm: str) -> None:
        self.classifier = classifier
        self.booster = None  # XGBoost: its booster, one thread, no feature-name checks
        backend = getattr(classifier, "backend_", None)
        if algorithm == "xgboost" and hasattr(backend, "fast_booster"):
            self.booster = backend.fast_booster.copy()
            self.booster.feature_names = None
            self.booster.feature_types = None
            self.booster.set_param({"nthread": 1})

    def predict(self, x, reasons="exact"):
        if reasons == "none":
            return self.classifier.predict_proba_fast(x), None
        if self.booster is None:
            raw, contributions = self.classifier.backend_.explain(x)  # a forest walks its trees once
            return self.classifier.calibrator_.transform(raw), contributions
        return self.classifier.predict_proba_fast(x), self.contributions(x, reasons)

    def contributions(self, x: np.ndarray, method: str = "exact") -> np.ndarray:
        if self.booster is None:
            return self.classifier.contributions(x)
        import xgboost as xgb

        dmat = xgb.DMatrix(np.asarray(x, dtype=np.float32), nthread=1)
        out = self.booster.predict(
            dmat, pred_contribs=True, approx_contribs=(method == "approx"), validate_features=False
        )
        return out[:, :-1].astype(np.float64)


class CompiledRuntime:
    name = "compiled"

    def __init__(self, trees: CompiledTrees, classifier, algorithm: str) -> None:
        self.trees, self.classifier, self.algorithm = trees, classifier, algorithm

    def predict(self, x, reasons="exact"):
        if reasons == "none":
            return self.classifier.calibrator_.transform(self.trees.proba(x)), None
        margin, contributions = self.trees.explain(x) if reasons == "exact" else self.trees.approximate(x)
        return self.classifier.calibrator_.transform(logistic(margin)), contributions

    def contributions(self, x: np.ndarray, method: str = "exact") -> np.ndarray:
        return self.trees.contributions(x) if method == "exact" else self.trees.approximate(x)[1]

    def verify(self, reference: LibraryRuntime, x: np.ndarray) -> None:
        """Raise ValueError unless the compiled trees give the library's raw probabilities and
        exact contributions on ``x``. The library's may differ by its own rounding only: XGBoost
        sums float32 leaves in float32 and its raw probability is a float32 (the logistic's
        slope is at most 1/4, so a margin error e moves it by at most e/4); LightGBM sums in
        float64 as we do (a few roundings of its sigmoid). TreeSHAP: see `library_tolerances`."""
        margin_tol, shap_tol = library_tolerances(self.trees, self.algorithm, self.trees.max_depth())
        raw_tol = margin_tol / 4 + half_ulp(1.0, np.float32) + FEW_OPS_F64
        margin, contributions = self.trees.explain(x)
        raw_gap = np.abs(logistic(margin) - self.classifier.backend_.raw_proba_fast(x)).max()
        shap_gap = np.abs(contributions - reference.contributions(x)).max()
        if raw_gap > raw_tol or shap_gap > shap_tol:
            raise ValueError(
                f"the compiled trees disagree with {self.algorithm}: raw probability off by {raw_gap:.2e} "
                f"(allowed {raw_tol:.2e}), contributions by {shap_gap:.2e} (allowed {shap_tol:.2e})"
            )


def runtime_for(bundle: Any, choice: str = "compiled") -> tuple[ModelRuntime, LibraryRuntime]:
    """``(the runtime serving the bundle, the reference)``; the accelerator when chosen and the
    model compiles, else the reference (with a log line saying why)."""
    reference = LibraryRuntime(bundle.classifier, bundle.algorithm)
    if choice not in RUNTIMES:
        raise ValueError(f"model runtime must be one of {RUNTIMES}, not {choice!r}")
    trees, why = None, "FRAUDOPS_MODEL_RUNTIME=library"
    if choice == "compiled":
        why = "only XGBoost and LightGBM boosters compile"
        if reference.booster is not None:
            trees, why = compile_booster(reference.booster)
        elif bundle.algorithm == "lightgbm" and getattr(bundle.classifier, "backend_", None) is not None:
            trees, why = compile_lightgbm(bundle.classifier.backend_.model.booster_)
    if trees is not None:
        compiled = CompiledRuntime(trees, bundle.classifier, bundle.algorithm)
        try:  # rows at, just below and just above every split threshold, and missing values
            compiled.verify(reference, probe_rows(trees))
            return compiled, reference
        except ValueError as err:
            why = str(err)
    log.info("serving %s through its library (%s): %s", bundle.version, bundle.algorithm, why)
    return reference, reference
