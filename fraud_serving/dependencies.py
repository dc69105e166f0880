"""What the endpoints ask FastAPI for: the service, the served model, the API key check and the
request-size and content-type limits, as dependencies (declared once, shown in the OpenAPI).

All ``async``: FastAPI runs a plain ``def`` dependency in a worker thread, a hop per request
that also reorders concurrent requests.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from fraud_serving.model_provider import NO_MODEL_MESSAGE, ServedModel
from fraud_serving.service import Service
from fraud_serving.settings import Settings

API_KEY_HEADER = "X-API-Key"
MAX_TRANSACTION_BYTES = 64 * 1024
STARTED = "fraudops.started"  # the scope key holding when the request arrived (perf_counter)

_api_key = APIKeyHeader(
    name=API_KEY_HEADER, auto_error=False, description="needed when FRAUDOPS_API_KEY is set"
)


async def get_service(request: Request) -> Service:
    return request.app.state.service


ServiceDep = Annotated[Service, Depends(get_service)]


async def started(request: Request) -> float:
    """When the request reached the app (set by the metrics middleware), for the logged latency."""
    return request.scope.get(STARTED) or time.perf_counter()


async def served_model(service: ServiceDep) -> ServedModel:
    """The model serving now (one read: a swap never changes it within a request), else 503."""
    model = service.provider.current
    if model is None:
        raise HTTPException(status_code=503, detail=NO_MODEL_MESSAGE)
    return model


async def require_api_key(service: ServiceDep, key: Annotated[str | None, Security(_api_key)] = None) -> None:
    """401 when an API key is configured and the request lacks it (constant-time compare)."""
    expected = service.settings.api_key
    if expected and not (key and secrets.compare_digest(key.encode(), expected.encode())):
        raise HTTPException(status_code=401, detail="missing or wrong X-API-Key header")


def too_many(limit: int) -> str:
    return f"a batch holds at most {limit} transactions (FRAUDOPS_MAX_BATCH)"


def json_body(what: str, max_bytes: Callable[[Settings], int], too_big: Callable[[Settings], str]):
    """A dependency refusing a body that is not JSON (415) or declares more than ``max_bytes``
    (413), from the headers alone."""

    async def check(request: Request, service: ServiceDep) -> None:
        if "json" not in request.headers.get("content-type", "application/json").lower():
            raise HTTPException(status_code=415, detail=f"send the {what} as application/json")
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_bytes(service.settings):
            raise HTTPException(status_code=413, detail=too_big(service.settings))

    return check


transaction_body = json_body(
    "transaction", lambda _: MAX_TRANSACTION_BYTES, lambda _: "a transaction body is at most 64 KiB"
)
batch_body = json_body(
    "batch", lambda s: MAX_TRANSACTION_BYTES * s.max_batch, lambda s: too_many(s.max_batch)
)
