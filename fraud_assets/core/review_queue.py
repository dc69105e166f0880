"""The analysts' review queue: each day, the k cards most likely fraud that nobody has reviewed yet.

A fraud team works alerts, not probabilities: as many cards a day as its analysts can review
(k, the review capacity, ``FRAUDOPS_REVIEW_CAPACITY``). What the platform scored is the scoring
API's prediction log (`fraud_assets.core.prediction_log`), filed by the UTC day of scoring: a
day's queue is built from that day's log. A card's score is the highest fraud probability among
its transactions scored that day (the Handbook's Card Precision@k ranks cards the same way); the
queue lists the ``capacity`` cards with the highest scores, ties broken by card id so that every
reader (each API worker, the daily asset) lists the same cards in the same order. A transaction
without a card id cannot be reviewed as a card and is left out.

A card is reviewed, and leaves the day's queue, once an analyst's decision (a label whose source
is ``analyst``, `fraud_assets.core.labels.API_SOURCE`: fraud or genuine) names one of its
transactions of that day. Chargebacks and reversals are not reviews. The decisions are read
where ``POST /labels`` leaves them: the capture feed's ``labels`` stream (records not filed yet)
and the filed ``api_labels`` days (`reviewed_transactions`).

Each alert carries the reasons the API answered when it scored the card's top transaction (the
prediction log keeps the reason codes as answered, sentences included: they are never computed a
second time), and the card's latest transactions of the day.

How good the queue was is known once labels arrive (`queue_outcome`): the share of listed cards
with a known fraud that day (Card Precision@k on the queue actually listed), the fraud cards it
missed, and the expected cost of both with evaluation's costs (missed fraud, false alarm).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fraud_assets.core import columns as c
from fraud_assets.core.capture import LABELS, CaptureFeed, decode, filed_folder, read_filed
from fraud_assets.core.labels import API_SOURCE, SOURCE, join_labels
from fraud_assets.core.prediction_log import LogColumnsCache, read_log_columns
from fraud_assets.core.storage import Location
from fraud_assets.core.validation import PARTITION_DATE

RECENT_TRANSACTIONS = 10  # the card's latest transactions of the day shown with its alert
FEED_READ_LIMIT = 10_000  # records per read of the capture feed's labels stream
SCORE = "fraud_probability"
SCORED_AT = "scored_at"
REASON_CODES = "reason_codes"
# The card-level columns of a listed queue, and of a day's stored transactions.
RANK, CARD_SCORE, TRANSACTIONS = "rank", "score", "transactions"
CARD_RANK = "card_rank"  # a day's transaction: its card's rank in the queue (null: not listed)
# What a day's stored queue keeps of each scored transaction (enough to judge it later).
STORED_COLUMNS = (c.TRANSACTION_ID, c.CARD_ID, c.TIMESTAMP, SCORED_AT, SCORE, CARD_RANK)
# What the queue reads of a day's prediction log: the transactions' columns and model inputs.
LOG_COLUMNS = (c.TRANSACTION_ID, c.CARD_ID, c.MERCHANT_ID, c.TIMESTAMP, SCORE, "risk_level", REASON_CODES)
LOG_INPUTS = (c.AMOUNT, c.MERCHANT_CATEGORY, c.IS_ONLINE)
# What an alert shows of each recent transaction, when the log has it.
SHOWN = (c.TRANSACTION_ID, c.TIMESTAMP, SCORED_AT, SCORE, "risk_level", c.AMOUNT, c.MERCHANT_ID,
         c.MERCHANT_CATEGORY, c.IS_ONLINE)  # fmt: skip


def read_scored(prediction_log: Location, day: str) -> pd.DataFrame:
    """What the queue needs of ``day``'s prediction log (`LOG_COLUMNS`, `LOG_INPUTS`)."""
    return read_log_columns(prediction_log, day, LOG_COLUMNS, LOG_INPUTS)


def scored_reader(prediction_log: Location) -> LogColumnsCache:
    """`read_scored` for a reader that asks again (``GET /alerts``): ``.read(day)`` parses only
    the log's parts written since its last read."""
    return LogColumnsCache(prediction_log, LOG_COLUMNS, LOG_INPUTS)


def check_capacity(capacity: int) -> int:
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValueError(f"the review capacity must be a whole number of cards, at least 1; got {capacity!r}")
    return capacity


def with_cards(scored: pd.DataFrame) -> pd.DataFrame:
    """The scored transactions that belong to a card (a card id that is not empty)."""
    if c.CARD_ID not in scored or scored.empty:
        return scored.iloc[0:0]
    cards = scored[c.CARD_ID]
    has_card = cards.notna().to_numpy() & (cards.to_numpy(dtype=object) != "")
    return scored[has_card]


def _by_score(scored: pd.DataFrame) -> pd.DataFrame:
    """Highest score first; among equal scores the earlier scored, then the smaller id."""
    keys = [col for col in (SCORE, SCORED_AT, c.TRANSACTION_ID) if col in scored]
    ascending = [col != SCORE for col in keys]
    return scored.sort_values(keys, ascending=ascending, kind="mergesort", na_position="last")


def review_queue(scored: pd.DataFrame, capacity: int, reviewed: Iterable[str] = ()) -> pd.DataFrame:
    """The day's queue: the ``capacity`` highest-scored cards of ``scored`` (one day's prediction
    log, `read_prediction_log`) none of whose transactions is in ``reviewed`` (transaction ids with
    an analyst's decision).

    One row per listed card, in queue order: ``rank`` (1..), ``card_id``, ``score`` (its highest
    fraud probability), ``transaction_id`` (the transaction with that score: the earliest scored
    among equals) and ``transactions`` (its transactions that day). Cards with equal scores are
    listed by card id.
    """
    check_capacity(capacity)
    rows = with_cards(scored)
    rows = rows[rows[SCORE].notna().to_numpy()] if len(rows) else rows
    if len(rows):
        done = rows[c.TRANSACTION_ID].isin(set(reviewed)).to_numpy()
        if done.any():
            rows = rows[~rows[c.CARD_ID].isin(set(rows[c.CARD_ID][done])).to_numpy()]
    if rows.empty:
        return pd.DataFrame(
            {
                RANK: pd.Series([], dtype="int64"),
                c.CARD_ID: pd.Series([], dtype=object),
                CARD_SCORE: pd.Series([], dtype="float64"),
                c.TRANSACTION_ID: pd.Series([], dtype=object),
                TRANSACTIONS: pd.Series([], dtype="int64"),
            }
        )
    top = _by_score(rows).drop_duplicates(c.CARD_ID, keep="first")
    counts = rows[c.CARD_ID].value_counts()
    cards = pd.DataFrame(
        {
            c.CARD_ID: top[c.CARD_ID].astype(str).to_numpy(),
            CARD_SCORE: top[SCORE].to_numpy("float64"),
            c.TRANSACTION_ID: top[c.TRANSACTION_ID].to_numpy(),
            TRANSACTIONS: counts.reindex(top[c.CARD_ID]).to_numpy("int64"),
        }
    )
    cards = cards.sort_values([CARD_SCORE, c.CARD_ID], ascending=[False, True], kind="mergesort")
    cards = cards.head(capacity).reset_index(drop=True)
    cards.insert(0, RANK, np.arange(1, len(cards) + 1, dtype="int64"))
    return cards


# --- alerts: what an analyst sees -------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-ready value: NaN/NaT/NA -> None, timestamps as ISO 8601, NumPy scalars as Python's."""
    if value is None:
        return None
    if isinstance(value, pd.Timestamp | dt.datetime):
        return None if pd.isna(value) else value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def reason_sentences(codes: Any) -> list[str]:
    """The sentences of reason codes as the API answered them (each code's ``explanation``)."""
    if not isinstance(codes, list | tuple | np.ndarray):
        return []
    return [str(code["explanation"]) for code in codes if isinstance(code, dict) and code.get("explanation")]


def alerts(queue: pd.DataFrame, scored: pd.DataFrame, recent: int = RECENT_TRANSACTIONS) -> list[dict]:
    """The listed cards as alerts (JSON-ready): rank, card, score, the top transaction and the
    reason sentences answered for it, and the card's ``recent`` latest transactions of the day
    (each with its own score and reasons), latest first."""
    if queue.empty:
        return []
    rows = with_cards(scored)
    rows = rows[rows[c.CARD_ID].isin(set(queue[c.CARD_ID])).to_numpy()]
    when = [col for col in (c.TIMESTAMP, SCORED_AT, c.TRANSACTION_ID) if col in rows]
    rows = rows.sort_values(when, ascending=False, kind="mergesort", na_position="last")
    shown = [col for col in SHOWN if col in rows]
    reasons = (
        dict(zip(rows[c.TRANSACTION_ID], rows[REASON_CODES], strict=True)) if REASON_CODES in rows else {}
    )
    by_card: dict[str, list[dict]] = {}
    for record in rows[[*shown, c.CARD_ID]].to_dict("records"):
        card = str(record.pop(c.CARD_ID))
        listed = by_card.setdefault(card, [])
        if len(listed) < recent:
            listed.append(
                {key: _plain(value) for key, value in record.items()}
                | {"reasons": reason_sentences(reasons.get(record[c.TRANSACTION_ID]))}
            )
    return [
        {
            RANK: int(card.rank),
            c.CARD_ID: card.card_id,
            CARD_SCORE: float(card.score),
            c.TRANSACTION_ID: card.transaction_id,
            "reasons": reason_sentences(reasons.get(card.transaction_id)),
            "transactions_today": int(card.transactions),
            "recent_transactions": by_card.get(card.card_id, []),
        }
        for card in queue.itertuples(index=False)
    ]


# --- reviews: the analysts' decisions ---------------------------------------------------------


def analyst_decisions(rows: Iterable[dict]) -> set[str]:
    """The transaction ids that label rows (the feed's records) name with an analyst's decision."""
    return {
        str(row[c.TRANSACTION_ID])
        for row in rows
        if row.get(SOURCE, API_SOURCE) == API_SOURCE and row.get(c.TRANSACTION_ID) is not None
    }


def _filed_days(storage: Location, since: str) -> list[str]:
    """The days of filed API labels from ``since`` on."""
    days = []
    for entry in filed_folder(storage, LABELS).list():
        try:
            day = dt.date.fromisoformat(entry.name).isoformat()
        except ValueError:
            continue
        if day >= since:
            days.append(day)
    return days


def decisions_since(day: str, scored: pd.DataFrame) -> str:
    """The first day a decision on ``day``'s scored transactions can be filed under: the day
    before the earlier of the scoring day and the oldest transaction's own day (a decision is
    reported after its transaction, in the card's local clock, which may run a day ahead of UTC;
    a replayed day is scored long after it happened)."""
    first = dt.date.fromisoformat(day)
    if len(scored) and c.TIMESTAMP in scored:
        oldest = pd.to_datetime(scored[c.TIMESTAMP], errors="coerce").min()
        if not pd.isna(oldest):
            first = min(first, oldest.date())
    return (first - dt.timedelta(days=1) if first > dt.date.min else first).isoformat()


def reviewed_transactions(storage: Location, feed: CaptureFeed | None, since: str) -> set[str]:
    """The transactions with an analyst's decision reported from the day ``since`` on (see
    `decisions_since`), filed under ``<storage>/api_labels/`` or still in the capture feed's
    ``labels`` stream (read from its start: what the sensor released from it was filed before).
    ``feed`` None (capture off): only what was filed."""
    if not filed_folder(storage, LABELS).exists():
        decided: set[str] = set()
    else:
        decided = analyst_decisions(read_filed(storage, LABELS, _filed_days(storage, since)))
    if feed is None:
        return decided
    cursor, more = None, True
    while more:
        batch = feed.read(LABELS, cursor, FEED_READ_LIMIT)
        for record in batch.records:
            try:
                decided |= analyst_decisions(decode(LABELS, record.line)[1])
            except ValueError:
                continue  # a damaged record: the sensor reports it when it files the stream
        cursor, more = batch.cursor, batch.more and bool(batch.records)
    return decided


# --- how good the listed queue was ------------------------------------------------------------


def stored_queue(day: str, scored: pd.DataFrame, queue: pd.DataFrame) -> pd.DataFrame:
    """The day's scored transactions with a card (`STORED_COLUMNS`) and their card's rank in
    ``queue`` (null: not listed): what `queue_outcome` judges once labels arrive."""
    rows = with_cards(scored)
    rank = dict(zip(queue[c.CARD_ID], queue[RANK], strict=True))
    out = pd.DataFrame(
        {col: rows[col].to_numpy() for col in STORED_COLUMNS if col != CARD_RANK and col in rows}
    )
    out[c.CARD_ID] = out[c.CARD_ID].astype(str)
    out[CARD_RANK] = pd.array(out[c.CARD_ID].map(rank), dtype="Int64")
    if SCORED_AT in out:
        out[SCORED_AT] = pd.to_datetime(out[SCORED_AT], utc=True).dt.tz_localize(None)
    return out.assign(**{PARTITION_DATE: day})


@dataclass(frozen=True)
class QueueOutcome:
    """One day's queue judged on the labels known at ``as_of``. A card is fraud that day when one
    of its transactions of the day is labelled fraud; genuine when all of them are labelled
    genuine (reported, or no chargeback within the label delay); unknown otherwise."""

    day: str
    listed: int
    frauds_listed: int
    genuine_listed: int
    unknown_listed: int
    fraud_cards: int  # every card of the day with a known fraud, listed or not
    cost_missed_fraud: float
    cost_false_alarm: float

    @property
    def precision(self) -> float | None:
        """Card Precision@k of the listed queue: known fraud cards among those listed."""
        return self.frauds_listed / self.listed if self.listed else None

    @property
    def missed(self) -> int:
        return self.fraud_cards - self.frauds_listed

    @property
    def false_alarms(self) -> int:
        """Listed cards with no known fraud (reviewed for nothing, as known so far)."""
        return self.listed - self.frauds_listed

    @property
    def expected_cost(self) -> float:
        """Missed fraud and review effort, priced as evaluation prices them."""
        return self.cost_missed_fraud * self.missed + self.cost_false_alarm * self.false_alarms

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "listed": self.listed,
            "frauds_listed": self.frauds_listed,
            "genuine_listed": self.genuine_listed,
            "unknown_listed": self.unknown_listed,
            "fraud_cards": self.fraud_cards,
            "missed": self.missed,
            "precision": self.precision,
            "expected_cost": self.expected_cost,
        }


def queue_outcome(
    stored: pd.DataFrame,
    labels: pd.DataFrame,
    as_of: pd.Timestamp,
    *,
    genuine_after: pd.Timedelta | None,
    cost_missed_fraud: float,
    cost_false_alarm: float,
    day: str | None = None,
) -> QueueOutcome:
    """``stored`` (a day's `stored_queue`) judged on ``labels`` (`fraud_labels` rows) as of
    ``as_of``: each transaction's latest label reported before then (`join_labels`), genuine by
    silence after ``genuine_after``."""
    day = day or (str(stored[PARTITION_DATE].iloc[0]) if len(stored) else "")
    if stored.empty:
        return QueueOutcome(day, 0, 0, 0, 0, 0, cost_missed_fraud, cost_false_alarm)
    times = pd.to_datetime(stored[c.TIMESTAMP], errors="coerce")
    if SCORED_AT in stored:  # a transaction sent without its time: the time it was scored
        times = times.fillna(pd.to_datetime(stored[SCORED_AT]))
    frame = pd.DataFrame(
        {c.TRANSACTION_ID: stored[c.TRANSACTION_ID].to_numpy(), c.TIMESTAMP: times.to_numpy()}
    )
    now = join_labels(frame, labels, genuine_after).events.as_of(as_of)
    per_card = (
        pd.DataFrame(
            {"card": stored[c.CARD_ID].to_numpy(), "fraud": now.is_fraud == 1, "known": now.labelled()}
        )
        .groupby("card", sort=False)
        .agg(fraud=("fraud", "any"), known=("known", "all"))
    )
    listed = set(stored.loc[stored[CARD_RANK].notna().to_numpy(), c.CARD_ID])
    on_queue = per_card.index.isin(listed)
    fraud, known = per_card["fraud"].to_numpy(), per_card["known"].to_numpy()
    return QueueOutcome(
        day=day,
        listed=int(on_queue.sum()),
        frauds_listed=int((on_queue & fraud).sum()),
        genuine_listed=int((on_queue & ~fraud & known).sum()),
        unknown_listed=int((on_queue & ~fraud & ~known).sum()),
        fraud_cards=int(fraud.sum()),
        cost_missed_fraud=cost_missed_fraud,
        cost_false_alarm=cost_false_alarm,
    )
