"""Prometheus metrics of the scoring service, in a registry of its own (one per app)."""

from __future__ import annotations

import threading

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.utils import floatToGoString

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SCORE_BUCKETS = (*tuple(round(0.05 * i, 2) for i in range(1, 20)), 0.99, 1.0)


class ScoreHistogram:
    """A Prometheus histogram fed a request's scores in one NumPy call (prometheus_client's
    ``Histogram.observe`` is a Python call per value: 1,000 per batch)."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...], registry) -> None:
        self.name, self.documentation = name, documentation
        self._edges = np.asarray(buckets, dtype="float64")
        self._counts = np.zeros(len(buckets) + 1, dtype="int64")  # the last: above every edge
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype="float64")
        # a value v counts in every bucket with v <= le: its first such edge, cumulated when read
        counts = np.bincount(np.searchsorted(self._edges, values), minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(values.sum())

    def collect(self):
        with self._lock:
            cumulative, total = np.cumsum(self._counts).tolist(), self._sum
        les = [floatToGoString(edge) for edge in self._edges.tolist()] + ["+Inf"]
        yield HistogramMetricFamily(
            self.name, self.documentation, buckets=list(zip(les, cumulative, strict=True)), sum_value=total
        )

    def describe(self):
        yield HistogramMetricFamily(self.name, self.documentation)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "fraudops_http_requests",
            "HTTP requests by endpoint, method and status",
            ["endpoint", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "fraudops_http_request_duration_seconds",
            "HTTP request latency by endpoint, method and status",
            ["endpoint", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.scores = ScoreHistogram(
            "fraudops_fraud_probability", "Distribution of scored fraud probabilities", SCORE_BUCKETS, r
        )
        self.decisions = Counter(
            "fraudops_decisions",
            "Scored transactions by decision and risk level",
            ["decision", "risk_level"],
            registry=r,
        )
        self.scored = Counter("fraudops_transactions_scored", "Transactions scored", registry=r)
        self.model_calls = Histogram(
            "fraudops_model_call_transactions",
            "Transactions per model call by endpoint (/predict: concurrent requests scored together)",
            ["endpoint"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=r,
        )
        self.model_info = Gauge(
            "fraudops_model_info",
            "The served model (value 1): bundle version, sha256, MLflow version, Dagster storage id",
            ["bundle_version", "bundle_sha256", "algorithm", "mlflow_model_version", "dagster_storage_id"],
            registry=r,
        )
        self.model_loaded_at = Gauge(
            "fraudops_model_loaded_timestamp_seconds",
            "When the served model was loaded (unix time)",
            registry=r,
        )
        self.model_swaps = Counter("fraudops_model_swaps", "Models loaded and swapped in", registry=r)
        self.model_refusals = Counter(
            "fraudops_model_refusals", "Champion bundles refused (integrity or load failure)", registry=r
        )
        self.log_dropped = Counter(
            "fraudops_prediction_log_dropped",
            "Prediction log records dropped (queue full or write error)",
            registry=r,
        )
        self.log_written = Counter(
            "fraudops_prediction_log_written", "Prediction log records written", registry=r
        )
        self.log_queue = Gauge(
            "fraudops_prediction_log_queue_size", "Records waiting to be logged", registry=r
        )
        self.cards = Gauge("fraudops_card_state_cards", "Cards held in the history state", registry=r)
        self.internal_errors = Counter(
            "fraudops_internal_errors",
            "Requests that failed inside the service (answered 500 with an error id)",
            ["endpoint"],
            registry=r,
        )

    def set_model(self, served) -> None:
        info = served.info
        self.model_info.clear()
        self.model_info.labels(
            bundle_version=served.version,
            bundle_sha256=info["bundle_sha256"],
            algorithm=info["algorithm"],
            mlflow_model_version=str(info.get("mlflow_model_version") or ""),
            dagster_storage_id=str(info["dagster_storage_id"]),
        ).set(1)
        import time

        self.model_loaded_at.set(time.time())
        self.model_swaps.inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
