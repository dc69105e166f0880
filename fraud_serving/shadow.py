"""The shadow challenger: scored beside the champion, off the request path, never answered.

`ShadowScorer` finds the challenger the way `ModelProvider` finds the champion: it polls the
Dagster instance (`fraud_assets.core.shadow.shadow_challenger`: the latest `challenger_model`
materialization that is neither the champion nor refused by `champion_gate`), loads its bundle
(SHA-256 verified) into a `ServedModel`, the same code the champion scores with, and swaps it in
with one reference assignment.

It scores in the prediction log's writer thread: at every round of the writer, the model
inputs the champion's calls logged (`_LogItem.cols`) are joined and scored in one vectorised
call, and each log line gets the challenger's version and probabilities
(`contract.LOG_SHADOW_FIELDS`). A request never waits for it; its cost is one model call per
writer round (at most every 50 ms). An input the challenger needs that the champion's calls do
not hold is missing for it (imputed as in training), and named in /health. A failure (loading
or scoring) never reaches a request: the lines are written without shadow fields, the failure
counted (``fraudops_shadow_failures`` in /metrics) and told in /health.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from prometheus_client import Counter

from fraud_assets.core.champion_history import ChampionMaterialization
from fraud_assets.core.contract import CHALLENGER_MODEL, CHAMPION_GATE
from fraud_assets.core.shadow import shadow_challenger
from fraud_assets.core.storage import Location
from fraud_serving.model_provider import ServedModel

log = logging.getLogger("fraud_serving.shadow")


def shadow_source(instance: Callable[[], Any]) -> Callable[[], ChampionMaterialization | None]:
    """A function returning the challenger in shadow of ``instance()`` (`lazy_instance`), or None."""
    holder: dict[str, Any] = {}

    def fetch() -> ChampionMaterialization | None:
        if "gate" not in holder:
            import dagster as dg

            holder["gate"] = dg.AssetCheckKey(dg.AssetKey(CHALLENGER_MODEL), CHAMPION_GATE)
        return shadow_challenger(instance(), holder["gate"])

    return fetch


class ShadowScorer:
    """Holds the challenger in shadow (``current``, or None) and scores logged calls with it."""

    def __init__(
        self,
        source: Callable[[], ChampionMaterialization | None],
        locate: Callable[[str], Location] = Location.of,
        runtime: str = "compiled",
        registry=None,
    ) -> None:
        self._source = source
        self._locate = locate
        self.runtime = runtime
        self.current: ServedModel | None = None
        self._storage_id: int | None = None  # the materialization ``current`` (or a refusal) came from
        self.error: str | None = None  # the last failure to load or to score
        self.scored = 0
        self.failed = 0
        self.missing_inputs: list[str] = []
        self.last_poll: str | None = None
        self._lock = threading.Lock()
        self.failures = Counter(
            "fraudops_shadow_failures",
            "Transactions the shadow challenger could not score (or polls that failed); requests never see it",
            registry=registry,
        )
        self.shadow_scored = Counter(
            "fraudops_shadow_scored", "Transactions scored by the challenger in shadow", registry=registry
        )

    def refresh(self) -> None:
        """Look for the challenger in shadow and load it when it changed (from the poll thread)."""
        with self._lock:
            try:
                record = self._source()
            except Exception as err:
                self._fail(
                    f"cannot read the challenger from the Dagster instance: {type(err).__name__}: {err}", 0
                )
                return
            self.last_poll = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            if record is None:
                if self.current is not None:
                    log.info(
                        "no challenger in shadow any more (promoted or refused): %s", self.current.version
                    )
                self.current, self._storage_id, self.error = None, None, None
                return
            if record.storage_id == self._storage_id:
                return
            self._storage_id = record.storage_id  # a refused bundle is not retried
            try:
                served = ServedModel.load(record, self._locate, self.runtime)
                served.predict(served.preprocessor.transform_columns(served.blank_inputs(1)), "none")
            except Exception as err:
                self.current = None
                self._fail(
                    f"challenger_model materialization {record.storage_id} not loaded: {type(err).__name__}: {err}",
                    0,
                )
                return
            self.current, self.error = served, None
            log.info("scoring challenger %s in shadow", served.version)

    def annotate(self, items: list) -> None:
        """Score the logged calls ``items`` (with ``cols`` and ``model``) with the challenger in one
        call and set each one's ``shadow`` to ``(version, probabilities)``. Never raises."""
        model = self.current
        if model is None:
            return
        todo = [item for item in items if getattr(item, "cols", None) and item.model.version != model.version]
        if not todo:
            return
        n = sum(len(item) for item in todo)
        try:
            cols, missing = {}, []
            for name in (*model.numeric_inputs, *model.categorical_inputs):
                parts = [item.cols.get(name) for item in todo]
                if any(part is None for part in parts):
                    missing.append(name)
                    blank = np.nan if name in model.numeric_inputs else None
                    dtype = "float64" if name in model.numeric_inputs else object
                    parts = [
                        np.full(len(item), blank, dtype=dtype) if p is None else p
                        for item, p in zip(todo, parts, strict=True)
                    ]
                cols[name] = np.concatenate(parts)
            probs, _ = model.predict(model.preprocessor.transform_columns(cols), "none")
            probs = np.asarray(probs, dtype="float64")
        except Exception as err:
            self._fail(f"shadow scoring with {model.version} failed: {type(err).__name__}: {err}", n)
            return
        self.missing_inputs = missing
        start = 0
        for item in todo:
            item.shadow = (model.version, probs[start : start + len(item)])
            start += len(item)
        self.scored += n
        self.shadow_scored.inc(n)

    def _fail(self, error: str, n: int) -> None:
        self.error = error
        self.failed += n
        self.failures.inc(max(n, 1))
        log.error(error)

    def health(self) -> dict[str, Any]:
        model = self.current
        return {
            "challenger": model.version if model else None,
            "mlflow_model_version": model.champion.mlflow_model_version if model else None,
            "scored": self.scored,
            "failed": self.failed,
            "missing_inputs": self.missing_inputs,
            "last_poll": self.last_poll,
            "error": self.error,
        }
