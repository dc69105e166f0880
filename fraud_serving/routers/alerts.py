"""`GET /alerts`: the day's review queue, the cards analysts should look at first."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool

from fraud_serving.alerts import AlertsResponse, day_queue
from fraud_serving.dependencies import ServiceDep, require_api_key
from fraud_serving.errors import json_response
from fraud_serving.schemas import ErrorResponse

router = APIRouter(
    tags=["review"],
    dependencies=[Depends(require_api_key)],
    responses={code: {"model": ErrorResponse} for code in (401, 422, 500)},
)


@router.get(
    "/alerts",
    summary="The day's review queue: the highest-scored cards not yet reviewed, with reasons",
    response_model=AlertsResponse,
)
async def get_alerts(
    service: ServiceDep,
    day: Annotated[
        dt.date | None,
        Query(description="YYYY-MM-DD, the UTC day the transactions were scored; default: today (UTC)"),
    ] = None,
):
    """At most `FRAUDOPS_REVIEW_CAPACITY` cards, highest score first, leaving out every card with
    an analyst's decision (`POST /labels`, source `analyst`) on one of its transactions of the day.
    A day without traffic is an empty queue."""
    settings = service.settings
    capture = service.capture
    answer = await run_in_threadpool(
        day_queue,
        service.scored_log,
        service.storage,
        capture.feed if capture is not None else None,
        settings.review_capacity,
        day or dt.datetime.now(dt.UTC).date(),
    )
    return json_response(answer)
