"""Error answers: 422 naming each bad field, an HTTP error's detail as JSON, 503 when a dependency
(Redis) is down, and the middleware that counts and times every request and answers any
unhandled failure with a 500 carrying the id of the error's log line.

500 is for our faults, 503 for what waiting can cure (no model yet, a dependency down), 422 for
the client's: each tells a client whether a retry can help.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import pydantic_core
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from fraud_serving.dependencies import STARTED
from fraud_serving.metrics import ServiceMetrics
from fraud_serving.online_state import DependencyUnavailable
from fraud_serving.prediction_log import PredictionLogger

log = logging.getLogger("fraud_serving")
ENDPOINTS = (
    "/",
    "/health",
    "/model",
    "/predict",
    "/predict/batch",
    "/labels",
    "/alerts",
    "/metrics",
    "/docs",
    "/openapi.json",
)


def internal_error(error_id: str) -> dict[str, str]:
    return {
        "detail": f"internal error {error_id}: the service logged it under this id; report it",
        "error_id": error_id,
    }


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(pydantic_core.to_json(content), status_code=status_code, media_type="application/json")


def validation_response(errors, prefix: tuple[str, ...] = ()) -> Response:
    """422 with one entry per problem, each naming its field (no echo of the input)."""
    out = []
    for err in errors:
        loc = [*prefix, *(str(part) for part in err.get("loc", ()))]
        field = ".".join(part for part in loc if part != "body") or "body"
        out.append(
            {"loc": loc, "field": field, "msg": err.get("msg", "invalid"), "type": err.get("type", "")}
        )
    return json_response({"detail": out}, status_code=422)


class MetricsAndSafetyMiddleware:
    """Counts and times every request per endpoint and status; answers any unhandled exception
    with a 500 carrying an error id, the id the log line of the traceback holds. (503 is kept for
    what waiting can cure: no model yet, a dependency down.)"""

    def __init__(self, app, metrics: ServiceMetrics, log: PredictionLogger) -> None:
        self.app = app
        self.metrics = metrics
        self.log = log  # told when requests start and finish: it writes in between

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = scope[STARTED] = time.perf_counter()
        state = {"status": 500, "sent": False}

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
            error_id = secrets.token_hex(6)
            log.exception("internal error %s on %s %s", error_id, scope.get("method"), path)
            self.metrics.internal_errors.labels(endpoint=endpoint).inc()
            if not state["sent"]:
                response = JSONResponse(internal_error(error_id), status_code=500)
                await response(scope, receive, tracking_send)
        finally:
            self.log.request_finished()
            labels = (endpoint, scope.get("method", ""), str(state["status"]))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)


def install(app: FastAPI, metrics: ServiceMetrics, log_writer: PredictionLogger) -> None:
    """The error handlers and the middleware, on ``app``."""
    app.add_middleware(MetricsAndSafetyMiddleware, metrics=metrics, log=log_writer)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return validation_response(exc.errors())

    @app.exception_handler(DependencyUnavailable)
    async def dependency_down(request: Request, exc: DependencyUnavailable):
        log.error("503 on %s: %s", request.url.path, exc)
        return json_response({"detail": f"dependency unavailable: {exc}"}, status_code=503)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        response = json_response({"detail": exc.detail}, status_code=exc.status_code)
        if headers := getattr(exc, "headers", None):
            response.headers.update(headers)
        return response
