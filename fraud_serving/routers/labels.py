"""`POST /labels`: labels (analysts' decisions, chargebacks, reversals) into the label feed."""

from __future__ import annotations

import datetime as dt

import pydantic_core
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import Response

from fraud_serving.dependencies import ServiceDep, json_body, require_api_key
from fraud_serving.errors import json_response, validation_response
from fraud_serving.labels import BODY_SCHEMA, LabelsAccepted, ValidationError, label_rows, parse_labels
from fraud_serving.schemas import ErrorResponse

MAX_LABEL_BYTES = 2 * 1024  # a label's fields at their longest, as JSON


def too_many_labels(limit: int) -> str:
    return f"a request holds at most {limit} labels (FRAUDOPS_MAX_BATCH)"


router = APIRouter(
    tags=["labels"],
    dependencies=[Depends(require_api_key)],
    responses={code: {"model": ErrorResponse} for code in (401, 413, 415, 422, 500)}
    | {503: {"model": ErrorResponse, "description": "the capture feed cannot keep the labels (none kept)"}},
)
labels_body = json_body(
    "labels", lambda s: MAX_LABEL_BYTES * s.max_batch, lambda s: too_many_labels(s.max_batch)
)


@router.post(
    "/labels",
    summary='Label transactions as fraud or genuine: one label, or {"labels": [...]}',
    response_model=LabelsAccepted,
    dependencies=[Depends(labels_body)],
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": BODY_SCHEMA}}}
    },
)
async def post_labels(request: Request, service: ServiceDep) -> Response:
    """Checks every label (422 naming each bad field and item: then none is kept), appends them
    to the capture feed's `labels` stream and answers once they are there (503 if they cannot be)."""
    try:
        body = pydantic_core.from_json(await request.body())
    except ValueError as err:
        return validation_response([{"msg": f"not JSON: {err}", "type": "json_invalid"}], ("body",))
    try:
        labels = parse_labels(body)
    except ValidationError as exc:
        return validation_response(exc.errors(), prefix=("body",))
    limit = service.settings.max_batch
    if len(labels) > limit:
        raise HTTPException(status_code=413, detail=too_many_labels(limit))
    if service.capture is None:
        raise HTTPException(
            status_code=503,
            detail="the capture feed is off (FRAUDOPS_CAPTURE=off): labels cannot be kept; turn it on",
        )
    rows = label_rows(labels, dt.datetime.now(dt.UTC))
    service.capture.labels(rows)  # 503 (CaptureUnavailable) if the feed refuses them
    accepted = LabelsAccepted(
        received=len(rows),
        label_ids=[row["label_id"] for row in rows],
        reported_days=[row["reported_at"][:10] for row in rows],
    )
    return json_response(accepted.model_dump())
