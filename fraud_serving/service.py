"""The scoring service's moving parts (settings, model, card state, prediction log, metrics),
created once per app and shared by the routers through `dependencies.get_service`, and the
bookkeeping around each scoring call (log line, metrics).

Card history and merchant risk live in the process (``FRAUDOPS_ONLINE_STATE=memory``) or in Redis,
where every worker and replica shares them. While started, BLAS and OpenMP run on one thread:
the API serves with one process per core, so extra threads only compete with the other workers.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from fraud_assets.core.models.classifier import fixed_threads
from fraud_assets.core.review_queue import scored_reader
from fraud_serving.capture import TrafficCapture
from fraud_serving.card_state import CardState, MerchantRiskStore
from fraud_serving.coalescing import Coalescer
from fraud_serving.metrics import ServiceMetrics
from fraud_serving.model_provider import (
    NO_MODEL_MESSAGE,
    ModelProvider,
    ServedModel,
    instance_source,
    lazy_instance,
)
from fraud_serving.online_state import RedisCardState, RedisMerchantRisk
from fraud_serving.prediction_log import PredictionLogger
from fraud_serving.schemas import ScoringOptions
from fraud_serving.scoring import RISK_LEVELS, Scorer, ScoreResult
from fraud_serving.settings import Settings
from fraud_serving.shadow import ShadowScorer
from fraud_serving.shadow import shadow_source as shadow_sources

log = logging.getLogger("fraud_serving")
EMPTY_HISTORY = (
    "no validated_transactions under {source}: every card looks new (no history features) until "
    "the pipeline stores some (materialize the data, or check FRAUDOPS_STORAGE); the API looks "
    "again at every poll (FRAUDOPS_MODEL_POLL_SECONDS)"
)


def _no_challenger() -> None:
    return None


class Service:
    """The app's moving parts, shared by the endpoints (``app.state.service``)."""

    def __init__(self, settings: Settings, source=None, shadow_source=None) -> None:
        self.settings = settings
        self.started = False
        self._threads = None  # the BLAS/OpenMP thread limit while started
        self.metrics = ServiceMetrics()
        self.storage = settings.location(settings.storage)  # the pipeline's storage root
        self.storage_error: str | None = None
        self.bootstrap = "off"  # the card history's start: off, loaded, empty or failed
        self.bootstrap_error: str | None = None
        if settings.online_state == "memory":
            self.cards, self.merchants = CardState(), MerchantRiskStore(self.storage)
        else:  # card history and merchant risk in Redis, shared by every worker
            self.cards = RedisCardState(settings.online_state)
            self.merchants = RedisMerchantRisk(self.storage, self.cards)
        self.scorer = Scorer(self.cards, self.merchants)
        # `/predict` transactions parsed in the same event-loop turn are scored in one call
        self.singles = Coalescer(
            lambda model, rows, started, options, requests: self.score(
                model, rows, started, options, "/predict", requests
            )
        )
        # accepted transactions (and labels) become data: appended before the answer is sent
        self.capture = TrafficCapture.open(
            settings.capture, fsync=settings.capture_fsync, registry=self.metrics.registry
        )
        # the challenger in shadow, scored in the prediction log's writer thread; a test giving
        # the champion's source without the shadow's has none
        if shadow_source is None and source is not None:
            shadow_source = _no_challenger
        instance = lazy_instance(settings.dagster_home)  # one for the champion's and the shadow's polls
        self.shadow = (
            ShadowScorer(
                shadow_source or shadow_sources(instance),
                locate=settings.location,
                runtime=settings.model_runtime,
                registry=self.metrics.registry,
            )
            if settings.shadow_scoring
            else None
        )
        self.log = PredictionLogger(
            settings.location(settings.prediction_log_dir),
            settings.prediction_log_queue,
            self.metrics,
            settings.prediction_log_flush_seconds,
            shadow=self.shadow,
        )
        self.scored_log = scored_reader(self.log.directory)  # what GET /alerts reads of the log
        self.provider = ModelProvider(
            source or instance_source(instance),
            settings.model_poll_seconds,
            on_swap=self.metrics.set_model,
            on_refused=lambda record, error: self.metrics.model_refusals.inc(),
            on_poll=self.poll_storage,
            locate=settings.location,
            runtime=settings.model_runtime,
        )

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        # BLAS and OpenMP on one thread, as the kernels are (uvicorn runs a process per core):
        # grouping a 1,000-row batch's reasons (a small matrix product) took 3.8 ms of CPU on
        # OpenBLAS's two threads against 0.1 ms on one, and their spinning slowed what came after.
        self._threads = fixed_threads(1)
        self.log.start()
        self.check_storage()
        self.merchants.refresh()
        self.cards.warm_up()
        if self.settings.bootstrap_card_state:
            self.load_history(wait=True)
        self.provider.refresh()
        if self.shadow is not None:
            self.shadow.refresh()
        if self.provider.current is None:
            log.warning(self.provider.error or NO_MODEL_MESSAGE)
        self.provider.start()

    def check_storage(self) -> None:
        """Whether the storage can be reached now: at the start and at every poll, so /health
        says when an object store goes away and when it is back."""
        try:
            self.storage.check()
        except OSError as err:
            if self.storage_error is None:
                log.error("storage %s cannot be used: %s", self.storage, err)
            self.storage_error = str(err)
        else:
            self.storage_error = None

    def poll_storage(self) -> None:
        """At every poll of the model provider's thread: the storage, a newer merchant risk day,
        and the days of card history stored since the last look."""
        self.check_storage()
        self.merchants.refresh()
        if self.shadow is not None:
            self.shadow.refresh()
        if self.settings.bootstrap_card_state:
            self.load_history(wait=False)

    def load_history(self, wait: bool) -> None:
        """The card history from the stored `validated_transactions` days not loaded yet (all of
        them at the start; then what the pipeline stores later, so an API started before the
        data still gets it); what it holds is told in /health (and logged when it changes),
        never an empty history without a word. ``wait``: for another worker's loading."""
        before = (self.bootstrap, self.bootstrap_error)
        try:
            rows = self.cards.bootstrap(self.storage, wait=wait)
        except Exception as err:
            self.bootstrap_error = f"{type(err).__name__}: {err}"
            if self.bootstrap != "loaded":
                self.bootstrap = "failed"
            if before[1] != self.bootstrap_error:
                log.error("card history cannot be read from %s: %s", self.storage, err)
            return
        self.bootstrap, self.bootstrap_error = (
            ("loaded", None) if rows else ("empty", EMPTY_HISTORY.format(source=self.cards.bootstrap_source))
        )
        if (self.bootstrap, self.bootstrap_error) != before and self.bootstrap_error:
            log.warning(self.bootstrap_error)

    @property
    def degraded_by(self) -> list[str]:
        """Why a serving API is not ``ok``: each part that cannot be used, in its own words."""
        reasons = [self.provider.error, self.provider.poll_error, self.storage_error, self.merchants.error]
        if self.bootstrap in ("empty", "failed"):
            reasons.append(f"card history {self.bootstrap}: {self.bootstrap_error}")
        return [reason for reason in reasons if reason]

    @property
    def status(self) -> str:
        """ok, degraded (serving, but something is wrong: see /health) or no_model."""
        if self.provider.current is None:
            return "no_model"
        return "degraded" if self.degraded_by else "ok"

    def health(self) -> dict[str, Any]:
        provider, cards = self.provider, self.cards
        model = provider.current
        return {
            "status": self.status,
            "model_version": model.version if model else None,
            "model_loaded_at": model.loaded_at if model else None,
            "dagster_storage_id": model.materialization.storage_id if model else None,
            "error": provider.error or provider.poll_error or (None if model else NO_MODEL_MESSAGE),
            "degraded_by": self.degraded_by if model else [],
            "last_poll": provider.last_poll,
            # where the champion is looked up: the Dagster instance (SQLite or PostgreSQL)
            "dagster_instance": {"home": self.settings.dagster_home, "error": provider.poll_error},
            "storage": {**self.storage.describe(), "error": self.storage_error},
            "card_state": {
                "store": cards.store,
                "cards": len(cards),
                "bootstrap": self.bootstrap,
                "bootstrapped_rows": cards.bootstrapped_rows,
                "bootstrapped_days": len(cards.bootstrapped_days),
                "days": [cards.bootstrapped_days[0], cards.bootstrapped_days[-1]]
                if cards.bootstrapped_days
                else None,
                "source": cards.bootstrap_source,
                "skipped_files": cards.bootstrap_skipped,
                "error": self.bootstrap_error,
            },
            "merchant_risk": {
                "day": self.merchants.day,
                "source": self.merchants.source,
                "error": self.merchants.error,
            },
            "capture": self.capture.health() if self.capture else {"feed": "off"},
            "shadow": self.shadow.health() if self.shadow else {"scoring": "off"},
            "prediction_log": {
                "location": str(self.log.directory),
                "written": self.log.written,
                "dropped": self.log.dropped,
                "queued": self.log.queue.qsize(),
                "error": self.log.error,
            },
        }

    def stop(self) -> None:
        self.started = False
        if self._threads is not None:
            self._threads.restore_original_limits()
            self._threads = None
        self.provider.stop()
        self.log.close()
        if self.capture is not None:
            self.capture.close()

    def score(
        self, model: ServedModel, rows: list[dict], started, options: ScoringOptions, endpoint: str,
        requests: int = 1,
    ) -> ScoreResult:  # fmt: skip
        """Score, capture the transactions (before anything is answered), hand the result to the
        prediction log and count it in the metrics."""
        result = self.scorer.score(model, rows, started, options)
        if self.capture is not None:
            item = result.log_item
            self.capture.transactions(item.scored_at, item.ids, rows)
        self.log.submit(result.log_item)
        m = self.metrics
        m.scores.observe_many(result.probabilities)
        # decisions per (flagged, risk level): a few label lookups, not one per transaction
        counts = np.bincount(result.flagged * len(RISK_LEVELS) + result.risk, minlength=2 * len(RISK_LEVELS))
        for cell in np.flatnonzero(counts).tolist():
            flagged, risk = divmod(cell, len(RISK_LEVELS))
            m.decisions.labels("fraud" if flagged else "legit", RISK_LEVELS[risk]).inc(int(counts[cell]))
        m.scored.inc(len(result.rows))
        m.model_calls.labels(endpoint=endpoint).observe(len(result.rows))
        return result
