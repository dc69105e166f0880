"""`GET /model`: which champion serves, with its Dagster, MLflow and bundle facts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from fraud_serving.dependencies import ServiceDep, served_model
from fraud_serving.model_provider import ServedModel
from fraud_serving.schemas import ErrorResponse

router = APIRouter(tags=["model"])


@router.get(
    "/model",
    summary="The served model: Dagster, MLflow and bundle facts",
    responses={503: {"model": ErrorResponse, "description": "no champion model yet"}},
)
async def model_info(
    service: ServiceDep, model: Annotated[ServedModel, Depends(served_model)]
) -> dict[str, Any]:
    return {**model.info, "status": service.provider.status, "error": service.provider.error}
