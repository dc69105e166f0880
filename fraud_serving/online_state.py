"""The card history in Redis, shared by every worker and replica, kept across API restarts.

`RedisCardState` has `card_state.CardState`'s interface (``remember`` adds a request's
transactions and returns their history features), chosen by ``FRAUDOPS_ONLINE_STATE`` (a
``redis://`` URL; ``memory``, the default, keeps the in-process store). Each card is a sorted set
(score: the transaction's time in ms; member: its JSON ``[transaction id, merchant, amount,
device]``). A request is one Lua script (one round trip, atomic): for each transaction ``SET NX`` of
its id (a client's retry is not added twice) and ``ZADD`` of its row, then for each card the drop
of rows out of every window and the read of its rows. Redis runs scripts one at a time, so N
workers see the transactions in one order, and the features are the core's `card_history_features` on
those rows: what one worker alone computes.

Merchant risk is here too (`RedisMerchantRisk`): the daily `merchant_risk` snapshot is published
once into Redis (a hash per day, merchant -> its features; the first worker to find a newer day
writes it in one script, the others find it there), and the request's script reads the current
day's features of its merchants in the same round trip. So every worker and replica scores with
the same snapshot, and they switch to a new day together, at one script; with the in-process
store each worker reads the file itself, and two workers could answer from two days for a poll.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pydantic_core

from fraud_assets.core.features import LOOKBACK_DAYS, MERCHANT_FEATURES, card_history_features
from fraud_assets.core.storage import Location
from fraud_serving.card_state import (
    KEEP_MS,
    MAX_ROWS_PER_CARD,
    STALE_SLACK_MS,
    MerchantRiskStore,
    recent_history,
)

log = logging.getLogger("fraud_serving.state")
PREFIX = "fraudops:"
_SEEN_SECONDS = (KEEP_MS + STALE_SLACK_MS) // 1000  # how long a transaction id is remembered
BOOTSTRAP_CHUNK = 20_000
BOOTSTRAP_WAIT_SECONDS = 300  # a worker waits this long for another one's bootstrap
RISK_DAY = PREFIX + "merchant_risk_day"  # the day of the merchant risk snapshot every worker reads
RISK_HASH = PREFIX + "merchant_risk:"  # + day: that snapshot, merchant id -> its features (JSON)
_PRIOR = "\x00prior"  # the merchant-risk field of merchants the snapshot does not know (no id has it)


# A request, atomically: each new transaction id (SET NX; a retry fails it) adds its row, then
# each card drops rows out of every window and returns its rows (member, score, ...).
_REQUEST = """
local n, m = tonumber(ARGV[1]), tonumber(ARGV[2])
local floor, stale, keep, ttl = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
for i = 1, n do
  local p = 7 + 4 * (i - 1)
  if ARGV[p] == "0" or redis.call("SET", KEYS[i], 1, "NX", "EX", ttl) then
    redis.call("ZADD", KEYS[n + tonumber(ARGV[p + 1])], ARGV[p + 3], ARGV[p + 2])
  end
end
local out = {}
for j = 1, m do
  local card = KEYS[n + j]
  redis.call("ZREMRANGEBYSCORE", card, "-inf", "(" .. stale)
  redis.call("ZREMRANGEBYRANK", card, 0, -keep - 1)
  out[j] = redis.call("ZRANGEBYSCORE", card, floor, "+inf", "WITHSCORES")
end
redis.call("SADD", KEYS[n + m + 1], unpack(ARGV, 7 + 4 * n, 6 + 4 * n + m))
local day = redis.call("GET", KEYS[n + m + 2])  -- merchant risk: the current snapshot's rows
if day then
  out[m + 1] = day
  out[m + 2] = redis.call("HMGET", "RISK_HASH" .. day, unpack(ARGV, 7 + 4 * n + m, #ARGV))
end
return out
""".replace("RISK_HASH", RISK_HASH)

# A snapshot's publication, atomically: unless the current day is as new, the day's hash is
# written and becomes current, and the previous day's goes. Returns the current day.
_PUBLISH = """
local current = redis.call("GET", KEYS[1])
if current and current >= ARGV[1] then return current end
redis.call("DEL", KEYS[2])
for i = 2, #ARGV, 2 do redis.call("HSET", KEYS[2], ARGV[i], ARGV[i + 1]) end
redis.call("SET", KEYS[1], ARGV[1])
if current then redis.call("DEL", "RISK_HASH" .. current) end
return ARGV[1]
""".replace("RISK_HASH", RISK_HASH)


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
        self._request = self.redis.register_script(_REQUEST)  # one round trip per request (EVALSHA)
        self._publish = self.redis.register_script(_PUBLISH)
        self.bootstrapped_rows = 0
        self.bootstrapped_days: list[str] = []
        self.bootstrap_source: str | None = None
        self.bootstrap_skipped: list[str] = []
        self.merchant_risk_day: str | None = None  # of the snapshot the last request read

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
        where = {card: k for k, card in enumerate(unique)}
        floor = int(times.min()) - KEEP_MS if n else 0
        keys = [f"{PREFIX}seen:{card}:{tid}" for card, tid in zip(cards, tids, strict=True)]
        keys += [PREFIX + "card:" + card for card in unique] + [PREFIX + "cards", RISK_DAY]
        shops = list(dict.fromkeys(merchants))
        args: list = [n, len(unique), floor, floor - STALE_SLACK_MS, MAX_ROWS_PER_CARD, _SEEN_SECONDS]
        for i, card in enumerate(cards):
            tid = tids[i]
            member = pydantic_core.to_json([tid or os.urandom(8).hex(), merchants[i], amounts[i], devices[i]])
            args += [int(tid is not None), where[card] + 1, member, int(times[i])]
        try:  # the merchants' rows, then the prior (a merchant the snapshot does not know)
            held = self._request(keys=keys, args=[*args, *unique, *shops, _PRIOR])
        except self._errors as err:
            raise DependencyUnavailable(f"online state {self.url}: {err}") from err
        out = self._features(unique, held[: len(unique)], cards, times, merchants, amounts, devices)
        if len(held) > len(unique):  # a published merchant risk snapshot
            *rows, prior = held[-1]
            table = np.array(
                pydantic_core.from_json(b"[" + b",".join(r or prior for r in rows) + b"]"), "float64"
            )
            where = {shop: k for k, shop in enumerate(shops)}
            picked = table[[where[shop] for shop in merchants]]
            out.update(zip(MERCHANT_FEATURES, picked.T, strict=True))
            self.merchant_risk_day = held[-2].decode()
        return out

    def publish_merchant_risk(self, day: str, snapshot) -> str:
        """Publish a `MerchantRiskSnapshot` as of ``day`` unless Redis holds one as new; the day
        every worker now reads."""
        index, table = snapshot.feature_table
        rows = [pydantic_core.to_json(column, inf_nan_mode="null") for column in table.T.tolist()]
        args = [day, _PRIOR, rows[-1]]  # the last column: the prior of unknown merchants
        for merchant, at in index.items():
            args += [merchant, rows[at]]
        keys = [RISK_DAY, RISK_HASH + day]
        try:
            return self._publish(keys=keys, args=args).decode()
        except self._errors as err:
            raise DependencyUnavailable(f"online state {self.url}: {err}") from err

    @staticmethod
    def _features(unique, held, cards, times, merchants, amounts, devices) -> dict[str, np.ndarray]:
        """The core's features on the cards' rows laid out as segments (one per card)."""
        sizes = np.array([len(r) // 2 for r in held], dtype="int64")  # [member, score, member, ...]
        seg_hi = np.cumsum(sizes)
        seg_lo = seg_hi - sizes
        members = b"[" + b",".join(m for r in held for m in r[0::2]) + b"]"
        decoded = pydantic_core.from_json(members) if sizes.sum() else []
        count = int(sizes.sum())
        row_times = np.fromiter((float(t) for r in held for t in r[1::2]), dtype="float64", count=count)
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


class RedisMerchantRisk(MerchantRiskStore):
    """`MerchantRiskStore` whose snapshot every worker reads from Redis (see the module
    docstring): ``refresh`` publishes a newer daily file there; requests get its features from
    `RedisCardState.remember`, in their round trip."""

    def __init__(self, storage: Location, state: RedisCardState) -> None:
        super().__init__(storage)
        self.state = state

    def refresh(self) -> bool:
        newer = super().refresh()
        if newer:
            try:
                served = self.state.publish_merchant_risk(self.day, self.snapshot)
            except DependencyUnavailable as err:
                self.day, self.error = None, str(err)  # published at the next poll
                return False
            log.info("merchant risk in %s: %s (read %s)", self.state.url, served, self.day)
        return newer
