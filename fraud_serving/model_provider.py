"""Which model serves: the latest `champion_model` materialization, verified, swapped atomically.

`ModelProvider` reads the latest materialization of the Dagster asset `champion_model`
(`fraud_assets.core.champion_history.latest_champion`, what the pipeline's gate and monitoring
read too; its metadata hold the bundle's path and SHA-256), loads the bundle with `ModelBundle.load` (which
verifies the SHA-256 before unpickling), warms it up, and publishes it as one immutable
`ServedModel` with a single reference assignment. A background thread polls the instance
every ``model_poll_seconds``; requests never touch the Dagster instance (SQLite), they read
``provider.current`` once and score with that object to the end, so a swap never mixes two
models inside a request and never blocks one.

A materialization whose bundle cannot be verified or loaded is refused: the previous model
keeps serving, the refusal is logged and counted, and ``status`` turns ``degraded`` (with the
error) until a newer champion loads. The refused materialization is not retried. A rollback
is a newer materialization holding an earlier champion's record: the provider swaps to it like
to any new champion.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pydantic_core

from fraud_assets.core.bundle import ModelBundle
from fraud_assets.core.champion_history import ChampionMaterialization, latest_champion
from fraud_assets.core.columns import AMOUNT
from fraud_assets.core.contract import ChampionRecord
from fraud_assets.core.explanations import FieldReasons
from fraud_assets.core.models.reasons import top_contributions
from fraud_assets.core.preprocessor import CATEGORICAL
from fraud_assets.core.storage import Location
from fraud_serving.compiled_trees import CompiledTrees
from fraud_serving.runtime import LibraryRuntime, ModelRuntime, runtime_for

log = logging.getLogger("fraud_serving.model")

NO_MODEL_MESSAGE = (
    "no champion model has been materialized yet: train one with `make run` (first look) or "
    "materialize the `train_models` job in the Dagster UI; the API picks it up within "
    "FRAUDOPS_MODEL_POLL_SECONDS"
)


def lazy_instance(dagster_home: str | None) -> Callable[[], Any]:
    """A function returning the Dagster instance at ``dagster_home`` (the environment's without
    it), opened on the first call (in the polling thread, not at import or start-up) and kept:
    the champion's and the shadow challenger's polls share it."""
    holder: dict[str, Any] = {}

    def instance() -> Any:
        if "instance" not in holder:
            import dagster as dg

            holder["instance"] = (
                dg.DagsterInstance.from_config(dagster_home) if dagster_home else dg.DagsterInstance.get()
            )
        return holder["instance"]

    return instance


def instance_source(instance: Callable[[], Any]) -> Callable[[], ChampionMaterialization | None]:
    """A function returning the latest champion record of ``instance()`` (`lazy_instance`)."""
    return lambda: latest_champion(instance())


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
    runtime: ModelRuntime | None = None  # what computes probabilities and contributions
    reference: LibraryRuntime | None = None  # the model's library (what the runtime is checked against)

    @property
    def trees(self) -> CompiledTrees | None:
        """The compiled trees, when the accelerator serves."""
        return getattr(self.runtime, "trees", None)

    @cached_property
    def field_reasons(self) -> FieldReasons:
        """The model's columns grouped back into transaction fields, for reason codes; amounts are
        set against its training data's median amount (the preprocessor's value for a missing one)."""
        names = list(self.preprocessor.feature_names_)
        typical = float(self.preprocessor.fill_values_[names.index(AMOUNT)]) if AMOUNT in names else None
        return FieldReasons.of(self.feature_names, typical)

    @cached_property
    def field_names_json(self) -> list[bytes]:
        return [pydantic_core.to_json(name) for name in self.field_reasons.fields]

    @cached_property
    def feature_names_json(self) -> list[bytes]:
        """The feature names as JSON strings, for the reason codes of responses."""
        return [pydantic_core.to_json(name) for name in self.feature_names]

    def predict(self, x: np.ndarray, reasons: str = "exact") -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated probabilities and, unless ``reasons`` is "none", per-feature contributions."""
        return self.runtime.predict(x, reasons)

    def contributions(self, x: np.ndarray, method: str = "exact") -> np.ndarray:
        """Per-feature contributions (n, n_features): ``exact`` TreeSHAP (or a model's own),
        ``approx`` Saabas path attribution (XGBoost's ``approx_contribs``)."""
        return self.runtime.contributions(x, method)

    @property
    def preprocessor(self):
        return self.bundle.preprocessor

    @property
    def classifier(self):
        return self.bundle.classifier

    @classmethod
    def load(
        cls, record: ChampionMaterialization, locate: Callable[[str], Location], runtime: str = "compiled"
    ) -> ServedModel:
        """The model a materialization's record names: its bundle read through ``locate`` and
        checked against the recorded SHA-256. Raises (ContractError for a malformed record,
        BundleLoadError for a bad bundle) rather than serve what the record does not name."""
        champion = record.champion()
        bundle = ModelBundle.load(locate(champion.bundle_uri), champion.bundle_sha256)
        return cls.from_bundle(bundle, champion, record, runtime)

    @classmethod
    def from_bundle(
        cls,
        bundle: ModelBundle,
        champion: ChampionRecord,
        materialization: ChampionMaterialization | None = None,
        runtime: str = "compiled",
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
            "promotion": champion.promotion,
            "promotion_reason": champion.reason,
            "replaced_version": champion.replaced_version,
            "loaded_at": loaded_at,
        }
        served_by, reference = runtime_for(bundle, runtime)
        trees = getattr(served_by, "trees", None)
        info["runtime"] = served_by.name
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
            runtime=served_by,
            reference=reference,
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

    def blank_inputs(self, n: int) -> dict[str, np.ndarray]:
        """``n`` rows of missing model inputs (imputed as in training), as columns."""
        cols: dict[str, np.ndarray] = {col: np.full(n, np.nan) for col in self.numeric_inputs}
        cols.update({col: np.full(n, None, dtype=object) for col in self.categorical_inputs})
        return cols

    def warm_up(self) -> None:
        """Score a row of missing values (and a small batch) once, so no request pays first-call costs."""
        for n in (1, 8, 300):  # 300: the multi-threaded kernels of big batches
            cols = self.blank_inputs(n)
            x = self.preprocessor.transform_columns(cols)
            self.predict(x, "none")
            served = self.contributions(x)
            self.contributions(x, "approx")
            top_contributions(served, 3)
            self.field_reasons.explain(served, cols, 3)


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
        runtime: str = "compiled",
    ) -> None:
        self.runtime = runtime  # FRAUDOPS_MODEL_RUNTIME
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
                served = ServedModel.load(record, self._locate, self.runtime)
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
