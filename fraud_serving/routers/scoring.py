"""`POST /predict` and `POST /predict/batch`: score transactions, explain each decision."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError

from fraud_serving import responses
from fraud_serving.dependencies import (
    MAX_TRANSACTION_BYTES,
    ServiceDep,
    batch_body,
    require_api_key,
    served_model,
    started,
    too_many,
    transaction_body,
)
from fraud_serving.errors import validation_response
from fraud_serving.model_provider import ServedModel
from fraud_serving.schemas import (
    BATCH_ROWS,
    BatchResponse,
    ErrorResponse,
    Prediction,
    ScoringOptions,
    TransactionRow,
)

router = APIRouter(
    tags=["scoring"],
    dependencies=[Depends(require_api_key)],
    responses={code: {"model": ErrorResponse} for code in (401, 413, 415, 422, 500)}
    | {503: {"model": ErrorResponse, "description": "no champion model yet, or a dependency is down"}},
)
Options = Annotated[ScoringOptions, Query()]
Model = Annotated[ServedModel, Depends(served_model)]
Started = Annotated[float, Depends(started)]


@router.post(
    "/predict",
    summary="Score one transaction",
    response_model=Prediction,
    dependencies=[Depends(transaction_body)],
    max_body_size=MAX_TRANSACTION_BYTES,
)
async def predict(
    transaction: Annotated[TransactionRow, Body()], options: Options, service: ServiceDep, model: Model,
    at: Started,
) -> Response:  # fmt: skip
    # scored with the other transactions parsed in this event-loop turn (see `coalescing`)
    answer = await service.singles.score(model, transaction, at, options)
    return Response(answer, media_type="application/json")


_batch_schema = BATCH_ROWS.json_schema(
    ref_template="#/components/schemas/{model}"
)  # its Transaction: /predict's


@router.post(
    "/predict/batch",
    summary="Score several transactions (in one model call)",
    response_model=BatchResponse,
    dependencies=[Depends(batch_body)],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {k: v for k, v in _batch_schema.items() if k != "$defs"}}
            },
        }
    },
)
async def predict_batch(
    request: Request, options: Options, service: ServiceDep, model: Model, at: Started
) -> Response:
    limit = service.settings.max_batch
    try:  # fast path: parsed and validated by pydantic-core in one call (1.5 ms vs FastAPI's 2.6 ms, 1,000 rows)
        transactions = BATCH_ROWS.validate_json(await request.body())["transactions"]
    except ValidationError as exc:
        if any(e.get("type") == "too_long" for e in exc.errors()):
            raise HTTPException(status_code=413, detail=too_many(limit)) from None
        return validation_response(exc.errors(), prefix=("body",))
    if len(transactions) > limit:
        raise HTTPException(status_code=413, detail=too_many(limit))
    result = service.score(model, transactions, at, options, "/predict/batch")
    return Response(responses.batch(result.rows, model.version), media_type="application/json")
