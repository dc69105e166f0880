"""The analysts' review queue, day by day, and how good it was once the labels came in.

`review_queue` lists each day's queue with the same core function as the scoring API's
``GET /alerts`` (`fraud_assets.core.review_queue`), on the same prediction log: the ``capacity``
highest-scored cards of the day's whole log, before any decision took a card out (the cards the
analysts are given for the day). It keeps the day's scored transactions with their card's rank,
and judges the listed queue on the labels known so far (`fraud_labels`, point in time): Card
Precision@k on the queue actually listed, the fraud cards it missed, and the expected cost of
both with evaluation's costs, for the day and the days before it (a plot in the UI).
"""

import datetime as dt

import dagster as dg
import pandas as pd

from fraud_assets.core import columns as c
from fraud_assets.core.contract import partition_location
from fraud_assets.core.plots import png_markdown, review_queue_png
from fraud_assets.core.review_queue import (
    QueueOutcome,
    queue_outcome,
    read_scored,
    review_queue,
    stored_queue,
)
from fraud_assets.core.validation import PARTITION_DATE
from fraud_assets.defs.evaluation import CostConfig
from fraud_assets.defs.label_feed import fed_labels, labels_input
from fraud_assets.defs.metadata import preview
from fraud_assets.defs.partitions import daily_partitions
from fraud_assets.defs.resources import LabelFeedResource, PredictionLogResource, ReviewQueueResource

REVIEW_QUEUE = "review_queue"
HISTORY_DAYS = 30  # the days judged and plotted with each materialization (the day included)
LABEL_HORIZON_DAYS = 120  # labels of a day's transactions come within this (chargebacks: 60 days)


class ReviewQueueConfig(CostConfig):
    """The costs evaluation uses, and when to judge the queue."""

    labels_as_of: str | None = None  # ISO date-time (UTC): judge on labels reported before it; default now


def _as_of(config: ReviewQueueConfig) -> pd.Timestamp:
    if config.labels_as_of:
        return pd.Timestamp(config.labels_as_of).tz_localize(None)
    return pd.Timestamp.now(tz="UTC").tz_localize(None)


def _earlier_days(review: ReviewQueueResource, day: str) -> list[tuple[str, pd.DataFrame]]:
    """The stored queues of the days before ``day`` within `HISTORY_DAYS` (those materialized)."""
    first = pd.Timestamp(day)
    found = []
    for back in range(HISTORY_DAYS - 1, 0, -1):
        earlier = (first - pd.Timedelta(days=back)).date().isoformat()
        path = partition_location(review.location(), REVIEW_QUEUE, earlier)
        if path.exists():
            found.append((earlier, path.read_parquet()))
    return found


def _outcomes_table(outcomes: list[QueueOutcome]) -> pd.DataFrame:
    return pd.DataFrame([outcome.as_dict() for outcome in outcomes]).sort_values("day", kind="stable")


@dg.asset(
    name=REVIEW_QUEUE,
    ins={"fraud_labels": labels_input(-HISTORY_DAYS, LABEL_HORIZON_DAYS)},
    partitions_def=daily_partitions,
    group_name="review",
    kinds={"pandas", "parquet", "matplotlib"},
    metadata={"partition_expr": PARTITION_DATE},
    description=(
        "The analysts' review queue of the day (the UTC day the scoring API scored the traffic): "
        "the FRAUDOPS_REVIEW_CAPACITY cards with the highest fraud probability of the day, listed by "
        "the core function GET /alerts uses, before any decision. Stored: the day's scored "
        "transactions with their card's rank (null: not listed). Metadata: the queue, its Card "
        "Precision@k on the labels known so far (fraud_labels, point in time), the fraud cards it "
        "missed and the expected cost (missed fraud vs review effort, evaluation's costs), for the "
        f"day and the {HISTORY_DAYS - 1} days before it, with a plot."
    ),
)
def review_queue_asset(
    context: dg.AssetExecutionContext,
    config: ReviewQueueConfig,
    fraud_labels: pd.DataFrame,
    prediction_log: PredictionLogResource,
    review: ReviewQueueResource,
    label_feed: LabelFeedResource,
) -> pd.DataFrame:
    day = context.partition_key
    scored = read_scored(prediction_log.location(), day)
    queue = review_queue(scored, review.capacity)
    today = stored_queue(day, scored, queue)
    as_of = _as_of(config)
    labels = fed_labels(fraud_labels)

    def judged(stored: pd.DataFrame, on: str) -> QueueOutcome:
        return queue_outcome(
            stored,
            labels,
            as_of,
            genuine_after=label_feed.genuine_after(),
            cost_missed_fraud=config.cost_missed_fraud,
            cost_false_alarm=config.cost_false_alarm,
            day=on,
        )

    mine = judged(today, day)
    history = [judged(frame, earlier) for earlier, frame in _earlier_days(review, day)]
    table = _outcomes_table([*history, mine])
    meta: dict = {
        "dagster/row_count": len(today),
        "capacity": review.capacity,
        "cards_scored": int(today[c.CARD_ID].nunique()) if len(today) else 0,
        "cards_listed": mine.listed,
        "frauds_listed": mine.frauds_listed,
        "genuine_listed": mine.genuine_listed,
        "unknown_listed": mine.unknown_listed,
        "fraud_cards": mine.fraud_cards,
        "missed_fraud_cards": mine.missed,
        "expected_cost": dg.MetadataValue.float(mine.expected_cost),
        "costs": f"missed fraud {config.cost_missed_fraud:g}, false alarm {config.cost_false_alarm:g}",
        "labels_as_of": as_of.isoformat(),
        "queue": preview(queue, rows=min(review.capacity, 100)),
        "by_day": dg.MetadataValue.md(table.round(4).to_markdown(index=False)),
    }
    if mine.precision is not None:
        meta["card_precision_at_k"] = dg.MetadataValue.float(round(mine.precision, 4))
    else:
        meta["note"] = f"no card scored on {day} in {prediction_log.path}: an empty queue"
    if table["listed"].sum():
        meta["plot"] = dg.MetadataValue.md(
            png_markdown(review_queue_png(table, review.capacity), "review queue")
        )
    context.add_output_metadata(meta)
    return today


review_queue_job = dg.define_asset_job(
    "list_review_queue",
    selection=dg.AssetSelection.assets(REVIEW_QUEUE),
    description="The day's review queue, judged with its earlier days on the labels known now.",
)


@dg.schedule(
    job=review_queue_job,
    cron_schedule="30 0 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Every night (00:30 UTC): yesterday's review queue from its complete prediction log, and the "
        "precision of the queues before it on the labels known by then."
    ),
)
def daily_review_schedule(context: dg.ScheduleEvaluationContext):
    day = (context.scheduled_execution_time.date() - dt.timedelta(days=1)).isoformat()
    return dg.RunRequest(run_key=f"review-{day}", partition_key=day)
