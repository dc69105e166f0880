"""``GET /alerts``: the analysts' review queue of a day, as the scoring API recorded it.

The queue itself is `fraud_assets.core.review_queue` (what the daily `review_queue` asset lists
too): the day's prediction log, the analysts' decisions posted to ``POST /labels`` (in the
capture feed, or filed by the pipeline), and the review capacity (``FRAUDOPS_REVIEW_CAPACITY``).
Reading them is file and stream I/O: it runs in a worker thread, never on the event loop that
scores requests. A transaction appears in the queue once the prediction log has written it (at
most ``FRAUDOPS_PREDICTION_LOG_FLUSH_SECONDS`` after it was scored, per worker).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from pydantic import BaseModel, Field

from fraud_assets.core import columns as c
from fraud_assets.core.capture import CaptureFeed
from fraud_assets.core.prediction_log import LogColumnsCache
from fraud_assets.core.review_queue import (
    SCORED_AT,
    alerts,
    decisions_since,
    review_queue,
    reviewed_transactions,
    with_cards,
)
from fraud_assets.core.storage import Location


class AlertTransaction(BaseModel):
    transaction_id: str
    timestamp: str | None = Field(description="the transaction's own time (the card's local clock)")
    scored_at: str | None = Field(description="when the API scored it (UTC)")
    fraud_probability: float | None
    risk_level: str | None = None
    amount: float | None = None
    merchant_id: str | None = None
    merchant_category: str | None = None
    is_online: float | None = None
    reasons: list[str] = Field(description="the reason sentences answered when it was scored")


class Alert(BaseModel):
    rank: int = Field(description="1 = the first card to review")
    card_id: str
    score: float = Field(description="the card's highest fraud probability of the day")
    transaction_id: str = Field(description="the transaction with that score")
    reasons: list[str] = Field(description="why that transaction scored so (the sentences /predict answered)")
    transactions_today: int = Field(description="the card's transactions scored that day")
    recent_transactions: list[AlertTransaction] = Field(
        description="its latest transactions of the day, latest first"
    )


class AlertsResponse(BaseModel):
    day: str = Field(description="the UTC day of scoring the queue is built from")
    capacity: int = Field(description="cards listed at most (FRAUDOPS_REVIEW_CAPACITY)")
    cards_scored: int = Field(description="cards the API scored that day")
    cards_reviewed: int = Field(description="of those, cards with an analyst's decision (left out)")
    scored_until: str | None = Field(description="the latest scoring the queue has read (UTC)")
    alerts: list[Alert]


def day_queue(
    scored_log: LogColumnsCache, storage: Location, feed: CaptureFeed | None, capacity: int, day: dt.date
) -> dict[str, Any]:
    """The queue of ``day`` as `AlertsResponse` fields (blocking: call it from a worker thread).

    ``scored_log`` (`review_queue.scored_reader` of the prediction log) parses each part of the
    log once, so asking again costs the parts written since, not the whole day."""
    key = day.isoformat()
    scored = scored_log.read(key)
    reviewed = reviewed_transactions(storage, feed, decisions_since(key, scored)) if len(scored) else set()
    queue = review_queue(scored, capacity, reviewed)
    carded = with_cards(scored)
    done = carded[c.TRANSACTION_ID].isin(reviewed).to_numpy() if len(carded) else []
    last = scored[SCORED_AT].max() if len(scored) else None
    return {
        "day": key,
        "capacity": capacity,
        "cards_scored": int(carded[c.CARD_ID].nunique()) if len(carded) else 0,
        "cards_reviewed": int(carded[c.CARD_ID][done].nunique()) if len(carded) else 0,
        "scored_until": None if last is None or pd.isna(last) else last.isoformat(),
        "alerts": alerts(queue, scored),
    }
