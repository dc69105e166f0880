"""The fraudops scoring API: ``uvicorn fraud_serving.app:app``.

Serves the latest materialized `champion_model` of the Dagster instance (``DAGSTER_HOME``),
swaps to a newer one without dropping a request, explains each decision with the model's own
per-feature contributions, and logs every scored transaction for monitoring. See docs/serving.md.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import secrets
import time
from typing import Any, Literal

import numpy as np
import pydantic_core
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from fraud_serving import responses
from fraud_serving.card_state import CardState, MerchantRiskStore
from fraud_serving.coalescing import Coalescer
from fraud_serving.metrics import ServiceMetrics
from fraud_serving.model_provider import NO_MODEL_MESSAGE, ModelProvider, instance_source
from fraud_serving.prediction_log import PredictionLogger
from fraud_serving.schemas import (
    BATCH_ROWS,
    TRANSACTION_ROWS,
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    Prediction,
    Transaction,
)
from fraud_serving.scoring import RISK_LEVELS, Scorer
from fraud_serving.settings import Settings

log = logging.getLogger("fraud_serving")
SERVICE = "fraudops scoring API"
API_VERSION = "1.0.0"
ENDPOINTS = ("/", "/health", "/model", "/predict", "/predict/batch", "/metrics", "/docs", "/openapi.json")
API_KEY_HEADER = "X-API-Key"
ReasonMethod = Literal["exact", "approx", "none"]
REASONS_HELP = (
    "reason codes from exact TreeSHAP contributions (default), XGBoost's approximate path "
    "attribution, or none"
)


class ScoringOptions(BaseModel):
    """The scoring endpoints' query parameters (parsed by the endpoints themselves: FastAPI's
    per-request dependency machinery cost more than scoring a transaction's features)."""

    model_config = ConfigDict(extra="ignore")

    include_features: bool = Field(default=False, description="also return the model's input values")
    reasons: ReasonMethod = Field(default="exact", description=REASONS_HELP)


def _scoring_openapi(body: dict) -> dict:
    """The OpenAPI of a scoring endpoint: its body, query parameters and optional API key."""
    parameters = [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": field.description,
            "schema": ScoringOptions.model_json_schema()["properties"][name],
        }
        for name, field in ScoringOptions.model_fields.items()
    ]
    return {**body, "parameters": parameters, "security": [{"APIKeyHeader": []}]}


DEFAULT_OPTIONS = ScoringOptions()
UNAVAILABLE = "scoring unavailable: an internal error occurred (logged); retry shortly"


class Service:
    """The app's moving parts, shared by the endpoints (``app.state.service``)."""

    def __init__(self, settings: Settings, source=None) -> None:
        self.settings = settings
        self.started = False
        self.metrics = ServiceMetrics()
        self.storage = settings.location(settings.storage)  # the pipeline's storage root
        self.storage_error: str | None = None
        self.bootstrap = "off"  # the card history's start: off, loaded, empty or failed
        self.bootstrap_error: str | None = None
        self.cards = CardState()
        self.merchants = MerchantRiskStore(self.storage)
        self.scorer = Scorer(self.cards, self.merchants)
        self.log = PredictionLogger(
            settings.location(settings.prediction_log_dir),
            settings.log_queue_size,
            self.metrics,
            settings.log_flush_seconds,
        )
        self.provider = ModelProvider(
            source or instance_source(settings.dagster_home),
            settings.model_poll_seconds,
            on_swap=self.metrics.set_model,
            on_refused=lambda record, error: self.metrics.model_refusals.inc(),
            on_poll=self.poll_storage,
            locate=settings.location,
        )

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        self.log.start()
        self.poll_storage()
        self.cards.warm_up()
        if self.settings.bootstrap_card_state:
            self._bootstrap()
        self.provider.refresh()
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
        self.check_storage()
        self.merchants.refresh()

    def _bootstrap(self) -> None:
        """The card history from the stored `validated_transactions`; what happened is told in
        /health (and logged), never an empty history without a word."""
        try:
            rows = self.cards.bootstrap(self.storage)
        except Exception as err:
            self.bootstrap, self.bootstrap_error = "failed", f"{type(err).__name__}: {err}"
            log.error("card state bootstrap failed, card history starts empty: %s", err)
            return
        self.bootstrap = "loaded" if rows else "empty"
        if not rows:
            self.bootstrap_error = (
                f"no validated_transactions under {self.cards.bootstrap_source}: card history starts "
                "empty (materialize the data first, or check FRAUDOPS_STORAGE)"
            )

    @property
    def status(self) -> str:
        """ok, degraded (serving, but something is wrong: see /health) or no_model."""
        status = self.provider.status
        if status == "ok" and (self.storage_error or self.bootstrap == "failed" or self.merchants.error):
            return "degraded"
        return status

    def health(self) -> dict[str, Any]:
        provider, cards = self.provider, self.cards
        model = provider.current
        return {
            "status": self.status,
            "model_version": model.version if model else None,
            "model_loaded_at": model.loaded_at if model else None,
            "dagster_storage_id": model.materialization.storage_id if model else None,
            "error": provider.error or provider.poll_error or (None if model else NO_MODEL_MESSAGE),
            "last_poll": provider.last_poll,
            # where the champion is looked up: the Dagster instance (SQLite or PostgreSQL)
            "dagster_instance": {"home": self.settings.dagster_home, "error": provider.poll_error},
            "storage": {**self.storage.describe(), "error": self.storage_error},
            "card_state": {
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
        self.provider.stop()
        self.log.close()


class MetricsAndSafetyMiddleware:
    """Counts and times every request per endpoint and status; turns any unhandled exception
    into a 503 "scoring unavailable" (logged), never a 500."""

    def __init__(self, app, metrics: ServiceMetrics, log: PredictionLogger) -> None:
        self.app = app
        self.metrics = metrics
        self.log = log  # told when requests start and finish: it writes in between

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = {"status": 503, "sent": False}

        async def tracking_send(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["sent"] = True
            await send(message)

        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        self.log.request_started()
        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), path)
            self.metrics.internal_errors.labels(endpoint=endpoint).inc()
            if not state["sent"]:
                response = JSONResponse({"detail": UNAVAILABLE}, status_code=503)
                await response(scope, receive, tracking_send)
        finally:
            self.log.request_finished()
            labels = (endpoint, scope.get("method", ""), str(state["status"]))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)


def validation_response(errors, prefix: tuple[str, ...] = ()) -> Response:
    """422 with one entry per problem, each naming its field (no echo of the input)."""
    out = []
    for err in errors:
        loc = [*prefix, *(str(part) for part in err.get("loc", ()))]
        field = ".".join(part for part in loc if part != "body") or "body"
        out.append(
            {"loc": loc, "field": field, "msg": err.get("msg", "invalid"), "type": err.get("type", "")}
        )
    return _json({"detail": out}, status_code=422)


MAX_TRANSACTION_BYTES = 64 * 1024


def _too_large(request: Request, limit: int) -> bool:
    """Refuse a declared body above ``limit`` bytes before reading it."""
    length = request.headers.get("content-length", "")
    return length.isdigit() and int(length) > limit


def too_many(limit: int) -> str:
    return f"a batch holds at most {limit} transactions (FRAUDOPS_MAX_BATCH)"


PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": Transaction.model_json_schema(ref_template="#/components/schemas/{model}")
            }
        },
    }
}


_batch_schema = BatchRequest.model_json_schema(ref_template="#/components/schemas/{model}")
BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {k: v for k, v in _batch_schema.items() if k != "$defs"}}},
    }
}


def _json(content: Any, status_code: int = 200) -> Response:
    return Response(pydantic_core.to_json(content), status_code=status_code, media_type="application/json")


def create_app(settings: Settings | None = None, *, source=None) -> FastAPI:
    """The FastAPI app. ``settings`` default to the environment; ``source`` (tests) replaces the
    Dagster instance as the place champion records come from."""
    settings = settings or Settings.from_env()
    service = Service(settings, source)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        # What is loaded so far (Dagster, the card state, the first model) lives about as long as
        # the process: moved out of the collector's reach, a full collection no longer walks it
        # in the middle of a request (it cost 250-350 ms on the second big batch). Frozen objects
        # are still freed by reference counting: a swapped-out first model goes (tested); only
        # garbage in reference cycles among them would stay.
        gc.freeze()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title=SERVICE,
        version=API_VERSION,
        description=(
            "Scores card transactions with the latest materialized `champion_model` of the fraudops "
            "Dagster instance and explains each decision. See docs/serving.md."
        ),
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(MetricsAndSafetyMiddleware, metrics=service.metrics, log=service.log)

    def refused(request: Request) -> Response | None:
        """401 when an API key is configured and the request lacks it (constant-time compare)."""
        expected = settings.api_key
        if not expected:
            return None
        key = request.headers.get(API_KEY_HEADER)
        if key and secrets.compare_digest(key.encode(), expected.encode()):
            return None
        return _json({"detail": "missing or wrong X-API-Key header"}, status_code=401)

    def options(request: Request) -> ScoringOptions | Response:
        query = request.query_params
        if not query:
            return DEFAULT_OPTIONS
        try:
            return ScoringOptions.model_validate(dict(query))
        except ValidationError as exc:
            return validation_response(exc.errors(), prefix=("query",))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return validation_response(exc.errors())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        headers = getattr(exc, "headers", None)
        response = _json({"detail": exc.detail}, status_code=exc.status_code)
        if headers:
            response.headers.update(headers)
        return response

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):  # reached only outside endpoints
        log.error("internal error: %r", exc)
        return _json({"detail": UNAVAILABLE}, status_code=503)

    def served_or_503():
        model = service.provider.current
        if model is None:
            raise StarletteHTTPException(status_code=503, detail=NO_MODEL_MESSAGE)
        return model

    def run_scoring(model, txs, started, include_features, reasons, endpoint, requests=1):
        try:
            result = service.scorer.score(model, txs, started, include_features, reasons)
        except Exception:
            log.exception("scoring failed on %s", endpoint)
            service.metrics.internal_errors.labels(endpoint=endpoint).inc(requests)
            raise StarletteHTTPException(status_code=503, detail=UNAVAILABLE) from None
        service.log.submit(result.log_item)
        m = service.metrics
        m.scores.observe_many(result.probabilities)
        # decisions per (flagged, risk level): a few label lookups, not one per transaction
        counts = np.bincount(result.flagged * len(RISK_LEVELS) + result.risk, minlength=2 * len(RISK_LEVELS))
        for cell in np.flatnonzero(counts).tolist():
            flagged, risk = divmod(cell, len(RISK_LEVELS))
            m.decisions.labels("fraud" if flagged else "legit", RISK_LEVELS[risk]).inc(int(counts[cell]))
        m.scored.inc(len(result.rows))
        m.model_calls.labels(endpoint=endpoint).observe(len(result.rows))
        return result

    singles = Coalescer(
        lambda model, rows, started, include_features, reasons, requests: run_scoring(
            model, rows, started, include_features, reasons, "/predict", requests
        )
    )

    no_model = {"model": ErrorResponse, "description": "no champion model yet, or scoring unavailable"}

    @app.get("/", summary="Service description")
    async def root() -> dict:
        model = service.provider.current
        return {
            "service": SERVICE,
            "version": API_VERSION,
            "status": service.status,
            "model_version": model.version if model else None,
            "endpoints": {
                "health": "GET /health",
                "model": "GET /model",
                "predict": "POST /predict",
                "predict_batch": "POST /predict/batch",
                "metrics": "GET /metrics",
                "docs": "GET /docs",
            },
        }

    @app.get(
        "/health",
        summary="Liveness, which model serves, what storage the API reads and what it found there "
        "(status ok, degraded or no_model)",
    )
    async def health() -> dict:
        return service.health()

    @app.get(
        "/model", summary="The served model: Dagster, MLflow and bundle facts", responses={503: no_model}
    )
    async def model_info() -> dict:
        model = served_or_503()
        return {**model.info, "status": service.provider.status, "error": service.provider.error}

    scoring_responses = {
        401: {"model": ErrorResponse},
        413: {"model": ErrorResponse},
        415: {"model": ErrorResponse},
        422: {"model": ErrorResponse},
        503: no_model,
    }

    def admitted(request: Request, what: str, max_bytes: int, too_big: str) -> ScoringOptions | Response:
        """Key, query options, content type and declared size, checked before the body is read
        (the hot path: FastAPI's dependency machinery cost more than a transaction's features)."""
        if (denied := refused(request)) is not None:
            return denied
        opts = options(request)
        if isinstance(opts, Response):
            return opts
        if "json" not in request.headers.get("content-type", "application/json").lower():
            raise StarletteHTTPException(status_code=415, detail=f"send the {what} as application/json")
        if _too_large(request, max_bytes):
            raise StarletteHTTPException(status_code=413, detail=too_big)
        return opts

    @app.post(
        "/predict",
        summary="Score one transaction",
        response_model=Prediction,
        responses=scoring_responses,
        openapi_extra=_scoring_openapi(PREDICT_BODY),
    )
    async def predict(request: Request):
        started = time.perf_counter()
        opts = admitted(request, "transaction", MAX_TRANSACTION_BYTES, "a transaction body is at most 64 KiB")
        if isinstance(opts, Response):
            return opts
        try:  # parsed and validated in one step by pydantic-core; errors answered like FastAPI's 422s
            transaction = TRANSACTION_ROWS.validate_json(await request.body())
        except ValidationError as exc:
            return validation_response(exc.errors(), prefix=("body",))
        model = served_or_503()
        # scored with the other transactions parsed in this event-loop turn (see `coalescing`)
        answer = await singles.score(model, transaction, started, opts.include_features, opts.reasons)
        return Response(answer, media_type="application/json")

    @app.post(
        "/predict/batch",
        summary="Score several transactions (in one model call)",
        response_model=BatchResponse,
        responses=scoring_responses,
        openapi_extra=_scoring_openapi(BATCH_BODY),
    )
    async def predict_batch(request: Request):
        started = time.perf_counter()
        limit = settings.max_batch
        opts = admitted(request, "batch", MAX_TRANSACTION_BYTES * limit, too_many(limit))
        if isinstance(opts, Response):
            return opts
        try:
            transactions = BATCH_ROWS.validate_json(await request.body())["transactions"]
        except ValidationError as exc:
            if any(e.get("type") == "too_long" for e in exc.errors()):
                raise StarletteHTTPException(status_code=413, detail=too_many(limit)) from None
            return validation_response(exc.errors(), prefix=("body",))
        if len(transactions) > limit:
            raise StarletteHTTPException(status_code=413, detail=too_many(limit))
        model = served_or_503()
        result = run_scoring(
            model, transactions, started, opts.include_features, opts.reasons, "/predict/batch"
        )
        return Response(responses.batch(result.rows, model.version), media_type="application/json")

    def openapi() -> dict:
        """FastAPI's schema, plus the request bodies the scoring endpoints parse themselves."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {})["Transaction"] = Transaction.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            components.setdefault("securitySchemes", {})["APIKeyHeader"] = {
                "type": "apiKey",
                "in": "header",
                "name": API_KEY_HEADER,
                "description": "needed when FRAUDOPS_API_KEY is set",
            }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        m = service.metrics
        m.log_queue.set(service.log.queue.qsize())
        m.cards.set(len(service.cards))
        body, content_type = m.render()
        return Response(body, media_type=content_type)

    return app


@functools.cache
def _default_app() -> FastAPI:
    logger = logging.getLogger("fraud_serving")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return create_app()


def __getattr__(name: str) -> Any:
    """``fraud_serving.app:app`` is created when uvicorn asks for it, at the API's startup: the
    settings are read then, not when a test or a script imports this module."""
    if name == "app":
        return _default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
