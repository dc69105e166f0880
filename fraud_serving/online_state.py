"""The card history in Redis, shared by every worker and replica, kept across API restarts.

`RedisCardState` has `card_state.CardState`'s interface (``remember`` adds a request's
transactions and returns their history features), chosen by ``FRAUDOPS_ONLINE_STATE`` (a
``redis://`` URL; ``memory``, the default, keeps the in-process store). Each card is a sorted set
(score: the transaction's time in ms; member: its JSON ``[transaction id, merchant, amount,
device]``). A request is one MULTI/EXEC transaction: for each transaction ``SET NX`` of its id
(a client's retry is not added twice), ``ZADD`` of the new rows, drop of rows out of every
window, then the read of its cards' rows. Redis runs transactions one at a time, so N workers
see the transactions in one order, and the features are the core's `card_history_features` on
those rows: what one worker alone computes.

Merchant risk is not here: every worker reads the same daily `merchant_risk` file from storage.

New (issue 14): the Redis store; the in-process one is unchanged.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pydantic_core

from fraud_assets.core.features import LOOKBACK_DAYS, card_history_features
from fraud_assets.core.storage import Location
from fraud_serving.card_state import KEEP_MS, MAX_ROWS_PER_CARD, STALE_SLACK_MS, recent_history

log = logging.getLogger("fraud_serving.state")
PREFIX = "fraudops:"
_SEEN_SECONDS = (KEEP_MS + STALE_SLACK_MS) // 1000  # how long a transaction id is remembered
BOOTSTRAP_CHUNK = 20_000
BOOTSTRAP_WAIT_SECONDS = 300  # a worker waits this long for another one's bootstrap


class DependencyUnavailable(Exception):
    """A service the API needs (the online state store) cannot be reached: 503, naming it."""


def _codes(values: list) -> np.ndarray:
    """Equality codes (the features only compare ids); None -> -1."""
    table: dict = {None: -1}
    return np.fromiter(
        (table.setdefault(v, len(table) - 1) for v in values), dtype="int64", count=len(values)
    )


class RedisCardState:
    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._errors = (redis.ConnectionError, redis.TimeoutError)
        self.bootstrapped_rows = 0
        self.bootstrapped_days: list[str] = []
        self.bootstrap_source: str | None = None
        self.bootstrap_skipped: list[str] = []

    def __len__(self) -> int:
        try:
            return int(self.redis.scard(PREFIX + "cards"))
        except self._errors:
            return 0

    @staticmethod
    def warm_up() -> None:
        card_history_features(*(np.zeros(1, "int64"),) * 4, np.zeros(1, "int64"), np.ones(1, "int64"),
                              *(np.zeros(1, "int64"),) * 4)  # fmt: skip

    def remember(
        self, cards, ts_ms, merchants, amounts, devices, transaction_ids=None
    ) -> dict[str, np.ndarray]:
        """As `CardState.remember`: add the transactions, return their card and device features."""
        n = len(cards)
        times = np.asarray(ts_ms, dtype="int64")
        tids = transaction_ids or [None] * n
        unique = list(dict.fromkeys(cards))
        floor = int(times.min()) - KEEP_MS if n else 0
        pipe = self.redis.pipeline(transaction=True)
        for card, tid in zip(cards, tids, strict=True):
            if tid is not None:
                pipe.set(f"{PREFIX}seen:{card}:{tid}", 1, nx=True, ex=_SEEN_SECONDS)
        try:
            seen = pipe.execute() if any(t is not None for t in tids) else []
        except self._errors as err:
            raise DependencyUnavailable(f"online state {self.url}: {err}") from err
        fresh = iter(seen)
        rows: dict[str, dict[bytes, int]] = {}
        for i, (card, tid) in enumerate(zip(cards, tids, strict=True)):
            if tid is None or next(fresh):  # a retried id (SET NX failed) is not added again
                member = pydantic_core.to_json(
                    [tid or os.urandom(8).hex(), merchants[i], amounts[i], devices[i]]
                )
                rows.setdefault(card, {})[member] = int(times[i])
        for card in unique:
            key = PREFIX + "card:" + card
            if card in rows:
                pipe.zadd(key, rows[card])
            pipe.zremrangebyscore(key, "-inf", f"({floor - STALE_SLACK_MS}")
            pipe.zremrangebyrank(key, 0, -MAX_ROWS_PER_CARD - 1)
            pipe.zrangebyscore(key, floor, "+inf", withscores=True)
        pipe.sadd(PREFIX + "cards", *unique)
        try:
            held = [result for result in pipe.execute() if isinstance(result, list)]  # the reads, in order
        except self._errors as err:
            raise DependencyUnavailable(f"online state {self.url}: {err}") from err
        return self._features(unique, held, cards, times, merchants, amounts, devices)

    @staticmethod
    def _features(unique, held, cards, times, merchants, amounts, devices) -> dict[str, np.ndarray]:
        """The core's features on the cards' rows laid out as segments (one per card)."""
        sizes = np.array([len(r) for r in held], dtype="int64")
        seg_hi = np.cumsum(sizes)
        seg_lo = seg_hi - sizes
        members = b"[" + b",".join(m for r in held for m, _ in r) + b"]"
        decoded = pydantic_core.from_json(members) if sizes.sum() else []
        row_times = np.fromiter((t for r in held for _, t in r), dtype="float64", count=int(sizes.sum()))
        merchant_ids = [row[1] for row in decoded] + list(merchants)
        device_ids = [row[3] for row in decoded] + list(devices)
        merchant_codes, device_codes = _codes(merchant_ids), _codes(device_ids)
        m = len(decoded)
        where = {card: k for k, card in enumerate(unique)}
        at = np.array([where[card] for card in cards], dtype="int64")
        return card_history_features(
            row_times.astype("int64"), np.array([row[2] for row in decoded], dtype="float64"),
            merchant_codes[:m], device_codes[:m], seg_lo[at], seg_hi[at], times,
            np.asarray(amounts, dtype="float64"), merchant_codes[m:], device_codes[m:],
        )  # fmt: skip

    def bootstrap(self, storage: Location, days: int = LOOKBACK_DAYS) -> int:
        """Load the recent `validated_transactions` once per Redis database (the first worker to
        start does it; the others, and later restarts, find the rows there)."""
        from fraud_assets.core import columns as c
        from fraud_assets.core.contract import VALIDATED_TRANSACTIONS, asset_location

        self.bootstrap_source = str(asset_location(storage, VALIDATED_TRANSACTIONS))
        if not self.redis.set(PREFIX + "bootstrapped", 1, nx=True):  # another worker loads (or did)
            deadline = time.monotonic() + BOOTSTRAP_WAIT_SECONDS
            while (
                rows := self.redis.get(PREFIX + "bootstrapped_rows")
            ) is None and time.monotonic() < deadline:
                time.sleep(0.1)
            self.bootstrapped_rows = int(rows or 0)
            return self.bootstrapped_rows
        data, self.bootstrapped_days = recent_history(storage, days, self.bootstrap_skipped)
        if data is None:
            self.redis.set(PREFIX + "bootstrapped_rows", 0)
            return 0
        data = data.sort_values(c.TIMESTAMP, kind="stable")
        times = data[c.TIMESTAMP].to_numpy("datetime64[ms]").astype("int64")
        columns = [data[col].astype(object).where(data[col].notna(), None).tolist() if col in data else
                   [None] * len(data) for col in (c.CARD_ID, c.MERCHANT_ID, c.DEVICE_FINGERPRINT, c.TRANSACTION_ID)]  # fmt: skip
        cards, merchants, devices, tids = columns
        amounts = data[c.AMOUNT].to_numpy("float64").tolist()
        for start in range(0, len(data), BOOTSTRAP_CHUNK):
            part = slice(start, start + BOOTSTRAP_CHUNK)
            self._load(cards[part], times[part], merchants[part], amounts[part], devices[part], tids[part])
        self.bootstrapped_rows = len(data)
        self.redis.set(PREFIX + "bootstrapped_rows", len(data))
        log.info("online state %s: %d rows from %d days", self.url, len(data), len(self.bootstrapped_days))
        return len(data)

    def _load(self, cards, times, merchants, amounts, devices, tids) -> None:
        """Add stored transactions without computing features (bootstrap)."""
        pipe = self.redis.pipeline(transaction=False)
        for i, card in enumerate(cards):
            tid = tids[i] or os.urandom(8).hex()
            pipe.zadd(
                PREFIX + "card:" + card,
                {pydantic_core.to_json([tid, merchants[i], amounts[i], devices[i]]): int(times[i])},
            )
            if tids[i] is not None:
                pipe.set(f"{PREFIX}seen:{card}:{tid}", 1, nx=True, ex=_SEEN_SECONDS)
        pipe.sadd(PREFIX + "cards", *set(cards))
        pipe.execute()
