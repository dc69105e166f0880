"""Which model serves: the latest `champion_model` materialization, verified, swapped atomically.

`ModelProvider` reads the latest materialization of the Dagster asset `champion_model` (its
metadata holds the bundle's path and SHA-256), loads the bundle with `ModelBundle.load` (which
verifies the SHA-256 before unpickling), warms it up, and publishes it as one immutable
`ServedModel` with a single reference assignment. A background thread polls the instance
every ``model_poll_seconds``; requests never touch the Dagster instance (SQLite), they read
``provider.current`` once and score with that object to the end, so a swap never mixes two
models inside a request and never blocks one.

A materialization whose bundle cannot be verified or loaded is refused: the previous model
keeps serving, the refusal is logged and counted, and ``status`` turns ``degraded`` (with the
error) until a newer champion loads. The refused materialization is not retried.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pydantic_core

from fraud_assets.core.bundle import ModelBundle
from fraud_assets.core.contract import CHAMPION_MODEL, ChampionRecord, plain_metadata
from fraud_assets.core.models.compiled_trees import (
    CompiledTrees,
    compile_booster,
    compile_lightgbm,
    logistic,
)
from fraud_assets.core.models.reasons import top_contributions
from fraud_assets.core.preprocessor import CATEGORICAL
from fraud_assets.core.storage import Location

log = logging.getLogger("fraud_serving.model")

NO_MODEL_MESSAGE = (
    "no champion model has been materialized yet: train one with `make run` (first look) or "
    "materialize the `train_models` job in the Dagster UI; the API picks it up within "
    "FRAUDOPS_MODEL_POLL_SECONDS"
)


@dataclass(frozen=True)
class ChampionMaterialization:
    """One `champion_model` materialization as the instance stores it: its event and metadata.

    The metadata are read as a `ChampionRecord` (the contract, `fraud_assets.core.contract`)
    when the provider considers it, so a malformed one is refused like a bad bundle."""

    storage_id: int
    run_id: str
    metadata: dict[str, Any]
    materialized_at: float | None = None

    def champion(self) -> ChampionRecord:
        return ChampionRecord.from_metadata(self.metadata)


def latest_champion(instance) -> ChampionMaterialization | None:
    """The newest `champion_model` materialization of a Dagster instance (one indexed query)."""
    import dagster as dg

    result = instance.fetch_materializations(dg.AssetKey(CHAMPION_MODEL), limit=1)
    if not result.records:
        return None
    record = result.records[0]
    materialization = record.asset_materialization
    return ChampionMaterialization(
        storage_id=int(record.storage_id),
        run_id=record.run_id or "",
        metadata=plain_metadata(materialization.metadata or {}),
        materialized_at=record.timestamp,
    )


def instance_source(dagster_home: str | None) -> Callable[[], ChampionMaterialization | None]:
    """A function returning the latest champion record of the instance at ``dagster_home``.

    The instance is opened lazily, once, in the polling thread.
    """
    holder: dict[str, Any] = {}

    def fetch() -> ChampionMaterialization | None:
        if "instance" not in holder:
            import dagster as dg

            holder["instance"] = (
                dg.DagsterInstance.from_config(dagster_home) if dagster_home else dg.DagsterInstance.get()
            )
        return latest_champion(holder["instance"])

    return fetch


@dataclass(frozen=True, eq=False)
class ServedModel:
    """Everything a request needs, immutable; replaced as a whole on a swap."""

    bundle: ModelBundle
    champion: ChampionRecord  # what the pipeline recorded (the contract)
    materialization: ChampionMaterialization  # where the instance recorded it
    loaded_at: str
    input_columns: tuple[str, ...]
    numeric_inputs: tuple[str, ...]
    categorical_inputs: tuple[str, ...]
    feature_names: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray
    threshold: float
    version: str
    info: dict[str, Any] = field(default_factory=dict)
    explainer: Any = None  # XGBoost booster for contributions without feature-name overhead
    trees: CompiledTrees | None = None  # the booster compiled (verified against it at load)

    @cached_property
    def feature_names_json(self) -> list[bytes]:
        """The feature names as JSON strings, for the reason codes of responses."""
        return [pydantic_core.to_json(name) for name in self.feature_names]

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """Calibrated fraud probabilities (= ``FraudClassifier.predict_proba_fast``)."""
        if self.trees is None:
            return self.classifier.predict_proba_fast(x)
        return self.classifier.calibrator_.transform(self.trees.proba(x))

    def predict(self, x: np.ndarray, reasons: str = "exact") -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated probabilities and, unless ``reasons`` is "none", per-feature contributions.

        Compiled trees answer in one pass: TreeSHAP values add up to the margin, and the Saabas
        walk ("approx") reaches the leaves, so the probability needs no separate tree walk.
        """
        if self.trees is not None and reasons != "none":  # one pass gives the margin too
            margin, contributions = self.trees.explain(x) if reasons == "exact" else self.trees.approximate(x)
            return self.classifier.calibrator_.transform(logistic(margin)), contributions
        if self.trees is None and self.explainer is None and reasons != "none":
            raw, contributions = self.classifier.backend_.explain(x)  # a forest walks its trees once
            return self.classifier.calibrator_.transform(raw), contributions
        probs = self.probabilities(x)
        return probs, None if reasons == "none" else self.contributions(x, reasons)

    def contributions(self, x: np.ndarray, method: str = "exact") -> np.ndarray:
        """Per-feature contributions (n, n_features), the classifier's own.

        ``exact``: TreeSHAP (= ``FraudClassifier.contributions``; from the compiled trees when
        the model compiled); ``approx``: Saabas path attribution on the margin (= XGBoost's
        ``approx_contribs``; compiled for XGBoost and LightGBM, XGBoost's own for an XGBoost
        model that did not compile). Other models always give their own contributions.
        """
        if self.trees is not None:
            return self.trees.contributions(x) if method == "exact" else self.trees.approximate(x)[1]
        if self.explainer is None:
            return self.classifier.contributions(x)
        import xgboost as xgb

        dmat = xgb.DMatrix(np.asarray(x, dtype=np.float32), nthread=1)
        out = self.explainer.predict(
            dmat, pred_contribs=True, approx_contribs=(method == "approx"), validate_features=False
        )
        return out[:, :-1].astype(np.float64)

    @property
    def preprocessor(self):
        return self.bundle.preprocessor

    @property
    def classifier(self):
        return self.bundle.classifier

    @classmethod
    def from_bundle(
        cls,
        bundle: ModelBundle,
        champion: ChampionRecord,
        materialization: ChampionMaterialization | None = None,
    ) -> ServedModel:
        materialization = materialization or ChampionMaterialization(0, "", champion.to_metadata())
        pre = bundle.preprocessor
        inputs = tuple(pre.input_columns_)
        loaded_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        info = {
            "bundle_version": bundle.version,
            "bundle_sha256": champion.bundle_sha256,
            "bundle_uri": champion.bundle_uri,
            "algorithm": bundle.algorithm,
            "threshold": float(bundle.threshold),
            "training_window": list(bundle.training_window),
            "metrics": {k: float(v) for k, v in bundle.metrics.items()},
            "n_features": len(bundle.feature_names),
            "input_columns": list(inputs),
            "created_at": bundle.created_at,
            "dagster_storage_id": materialization.storage_id,
            "dagster_run_id": materialization.run_id or None,
            "materialized_at": (
                dt.datetime.fromtimestamp(materialization.materialized_at, dt.UTC).isoformat(
                    timespec="seconds"
                )
                if materialization.materialized_at
                else None
            ),
            "mlflow_model_version": champion.mlflow_model_version,
            "mlflow_run_id": champion.mlflow_run_id,
            "promoted_at": champion.promoted_at,
            "loaded_at": loaded_at,
        }
        explainer = trees = None
        why = "only XGBoost and LightGBM boosters compile"
        backend = getattr(bundle.classifier, "backend_", None)
        if bundle.algorithm == "xgboost" and hasattr(backend, "fast_booster"):
            explainer = backend.fast_booster.copy()
            explainer.feature_names = None
            explainer.feature_types = None
            explainer.set_param({"nthread": 1})
            trees, why = compile_booster(explainer)
        elif bundle.algorithm == "lightgbm" and backend is not None:
            trees, why = compile_lightgbm(backend.model.booster_)
        if trees is None:
            log.info("serving %s through its library (%s): %s", bundle.version, bundle.algorithm, why)
        info["compiled_trees"] = trees is not None
        if trees is not None:  # what exact reasons cost grows with (deep trees: big tables)
            info["compiled_tree_size"] = {
                "trees": len(trees.roots),
                "max_depth": trees.max_depth(),
                "nodes": len(trees.feature),
                "shap_groups": len(trees.table_offset),
                "shap_table_entries": int(trees.table.size),  # float32 each
            }
        return cls(
            explainer=explainer,
            trees=trees,
            bundle=bundle,
            champion=champion,
            materialization=materialization,
            loaded_at=loaded_at,
            input_columns=inputs,
            numeric_inputs=tuple(col for col in inputs if col not in CATEGORICAL),
            categorical_inputs=tuple(col for col in inputs if col in CATEGORICAL),
            feature_names=tuple(bundle.feature_names),
            center=np.asarray(pre.center_, dtype="float64"),
            scale=np.asarray(pre.scale_, dtype="float64"),
            threshold=float(bundle.threshold),
            version=bundle.version,
            info=info,
        )

    def warm_up(self) -> None:
        """Score a row of missing values (and a small batch) once, so no request pays first-call costs."""
        for n in (1, 8, 300):  # 300: the multi-threaded kernels of big batches
            cols: dict[str, np.ndarray] = {col: np.full(n, np.nan) for col in self.numeric_inputs}
            cols.update({col: np.full(n, None, dtype=object) for col in self.categorical_inputs})
            x = self.preprocessor.transform_columns(cols)
            expected_p = self.classifier.predict_proba_fast(x)
            if not np.allclose(self.probabilities(x), expected_p, atol=1e-4) or not np.allclose(
                self.predict(x)[0], expected_p, atol=1e-4
            ):
                raise ValueError("the served probabilities disagree with FraudClassifier.predict_proba_fast")
            served = self.contributions(x)
            if not np.allclose(served, self.classifier.contributions(x), rtol=1e-4, atol=1e-4):
                raise ValueError("the fast explainer disagrees with FraudClassifier.contributions")
            self.contributions(x, "approx")
            top_contributions(served, 3)


class ModelProvider:
    """Holds the served model and keeps it current with a polling thread."""

    def __init__(
        self,
        source: Callable[[], ChampionMaterialization | None],
        poll_seconds: float = 10.0,
        on_swap: Callable[[ServedModel], None] | None = None,
        on_refused: Callable[[ChampionMaterialization, str], None] | None = None,
        on_poll: Callable[[], None] | None = None,
        locate: Callable[[str], Location] = Location.of,
    ) -> None:
        self._source = source
        self._locate = locate  # a recorded bundle location -> a Location with its options
        self.poll_seconds = poll_seconds
        self._on_swap = on_swap
        self._on_refused = on_refused
        self._on_poll = on_poll  # other periodic refreshes (merchant risk) ride on the same thread
        self.current: ServedModel | None = None  # the one reference requests read
        self.error: str | None = None  # why the newest champion is not the one serving
        self.poll_error: str | None = None  # the last failure to read the instance, if any
        self.last_poll: str | None = None
        self._refused: set[int] = set()
        self._lock = threading.Lock()  # one refresh at a time (thread and explicit calls)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def status(self) -> str:
        if self.current is None:
            return "no_model"
        return "degraded" if (self.error or self.poll_error) else "ok"

    def refresh(self) -> bool:
        """Look for a newer champion and swap to it; True when the served model changed."""
        with self._lock:
            try:
                record = self._source()
            except Exception as err:  # the instance may be locked or briefly unavailable
                self.poll_error = f"cannot read the Dagster instance: {type(err).__name__}: {err}"
                log.warning(self.poll_error)
                return False
            self.poll_error = None
            self.last_poll = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            if record is None:
                return False
            current = self.current
            if current is not None and record.storage_id <= current.materialization.storage_id:
                return False
            if record.storage_id in self._refused:
                return False
            try:
                champion = record.champion()  # ContractError (a ValueError) if malformed
                bundle = ModelBundle.load(self._locate(champion.bundle_uri), champion.bundle_sha256)
                served = ServedModel.from_bundle(bundle, champion, record)
                served.warm_up()
            except Exception as err:  # a malformed record, a bad bundle: anything refuses it
                self._refuse(record, err)
                return False
            self.current = served  # the atomic swap
            self.error = None
            log.info(
                "serving model %s (champion_model materialization %s, run %s)",
                served.version,
                record.storage_id,
                record.run_id or "-",
            )
            if self._on_swap:
                self._on_swap(served)
            return True

    def _refuse(self, record: ChampionMaterialization, err: Exception) -> None:
        self._refused.add(record.storage_id)
        keeping = f"; still serving {self.current.version}" if self.current else "; no model is serving"
        self.error = (
            f"refused champion_model materialization {record.storage_id} "
            f"({record.metadata.get(ChampionRecord.KEYS['version'], '?')}): {type(err).__name__}: {err}{keeping}"
        )
        log.error(self.error)
        if self._on_refused:
            self._on_refused(record, self.error)

    def start(self) -> None:
        """Start polling in a daemon thread (the first refresh should already have run)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="fraudops-model-poll", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except Exception:  # never let the poller die
                log.exception("model refresh failed")
            if self._on_poll is not None:
                try:
                    self._on_poll()
                except Exception:
                    log.exception("periodic refresh failed")

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_for_model(self, timeout: float) -> ServedModel | None:
        deadline = time.monotonic() + timeout
        while self.current is None and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.current
