"""`GET /`, `GET /health` and `GET /metrics`: what the service is, how it is, what it counted."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from fraud_serving.dependencies import ServiceDep

SERVICE = "fraudops scoring API"
API_VERSION = "1.0.0"
router = APIRouter(tags=["operations"])


@router.get("/", summary="Service description")
async def root(service: ServiceDep) -> dict[str, Any]:
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
            "labels": "POST /labels",
            "alerts": "GET /alerts",
            "metrics": "GET /metrics",
            "docs": "GET /docs",
        },
    }


@router.get(
    "/health",
    summary="Liveness, which model serves, what storage the API reads and what it found there "
    "(status ok, degraded or no_model)",
)
async def health(service: ServiceDep) -> dict[str, Any]:
    return service.health()


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(service: ServiceDep) -> Response:
    m = service.metrics
    m.log_queue.set(service.log.queue.qsize())
    m.cards.set(len(service.cards))
    body, content_type = m.render()
    return Response(body, media_type=content_type)
