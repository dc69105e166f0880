"""The service's own memory of recent card activity and merchant risk, for history features.

`CardState` keeps the recent transactions (time, merchant, amount, device) of every card in the
layout the feature code reads (`fraud_assets.core.features.card_history_features`): one set of
arrays, each card owning a segment of them, its rows in time order. Bootstrapped at startup
from the last `LOOKBACK_DAYS` days of `validated_transactions` Parquet files (wherever the
pipeline stores them: the layout is `fraud_assets.core.contract`'s), then added to by
every scored transaction that has a card and a timestamp. `MerchantRiskStore` holds the latest
`merchant_risk` snapshot (one file a day, as of the end of that day) and swaps to a newer file
when one appears.

The features themselves are never computed here: the core's feature function runs on the
segments, the code batch training uses. The stored history is read by `recent_history`, which
the Redis store (`online_state`) bootstraps from too, so both stores start from the same rows.
"""

from __future__ import annotations

import logging
import threading

import numba
import numpy as np

from fraud_assets.core import columns as c
from fraud_assets.core.calendar import MS_PER_DAY
from fraud_assets.core.contract import MERCHANT_RISK, VALIDATED_TRANSACTIONS, asset_location, daily_partitions
from fraud_assets.core.features import (
    CARD_WINDOWS_MS,
    LOOKBACK_DAYS,
    NOVELTY_WINDOW_MS,
    MerchantRiskSnapshot,
    card_history_features,
)
from fraud_assets.core.storage import Location

log = logging.getLogger("fraud_serving.state")

# A card's rows older than this (before its newest row) can no longer enter any window.
KEEP_MS = max(max(CARD_WINDOWS_MS.values()), NOVELTY_WINDOW_MS) + MS_PER_DAY
MAX_ROWS_PER_CARD = 5_000  # a runaway client cannot grow one card without bound
STALE_SLACK_MS = 7 * MS_PER_DAY  # rows this far past every window are dropped on the next append
MIN_ROOM = 16  # rows a card's segment has room for at least


@numba.njit(cache=True, nogil=True)
def _first_kept(times, lo, hi, newest, floor):
    """The first row of ``lo:hi`` (one card, in time order) that a transaction at ``newest``, or
    one at ``floor`` (the oldest of the request being added), could still need."""
    return lo + np.searchsorted(times[lo:hi], min(newest, floor) - KEEP_MS)


@numba.njit(cache=True, nogil=True)
def _copy_rows(times, merchants, amounts, devices, src, to_times, to_merchants, to_amounts, to_devices, dst,
               count):  # fmt: skip
    """Rows ``src:src + count`` to ``dst:dst + count`` (the same arrays when moving down)."""
    for j in range(count):
        to_times[dst + j], to_merchants[dst + j] = times[src + j], merchants[src + j]
        to_amounts[dst + j], to_devices[dst + j] = amounts[src + j], devices[src + j]


@numba.njit(cache=True, nogil=True)
def _insert(card, ts, merchant, amount, device, floor, start, count, room, times, merchants, amounts, devices,
            used):  # fmt: skip
    """Insert rows into their cards' segments, each segment kept in time order (a row goes after
    the rows of the same millisecond). A full segment moves to the free end of the arrays with
    twice the room, leaving behind rows out of every window (and beyond MAX_ROWS_PER_CARD); a
    segment whose oldest row is a week past every window drops such rows in place. ``floor``,
    the request's oldest time, keeps what its earliest transaction needs.

    Returns ``(rows inserted, new end of the used part)``: fewer than all rows when the arrays
    are out of room (the caller compacts or grows them and calls again with the rest).
    """
    for r in range(card.shape[0]):
        code, t = card[r], ts[r]
        s, k = start[code], count[code]
        if k > 0 and times[s] < min(t, floor) - KEEP_MS - STALE_SLACK_MS:
            first = _first_kept(times, s, s + k, max(t, times[s + k - 1]), floor)
            kept = s + k - first
            _copy_rows(times, merchants, amounts, devices, first, times, merchants, amounts, devices, s, kept)
            k = kept
            count[code] = k
        if k == room[code]:
            first = s
            if k > 0:
                first = _first_kept(times, s, s + k, max(t, times[s + k - 1]), floor)
                first = max(first, s + k - MAX_ROWS_PER_CARD + 1)
            kept = s + k - first
            new_room = max(MIN_ROOM, 2 * (kept + 1))
            if used + new_room > times.shape[0]:
                return r, used
            _copy_rows(
                times, merchants, amounts, devices, first, times, merchants, amounts, devices, used, kept
            )
            start[code], room[code] = used, new_room
            s, k = used, kept
            used += new_room
        p = s + k
        while p > s and times[p - 1] > t:  # out of order: later rows move up one
            times[p], merchants[p] = times[p - 1], merchants[p - 1]
            amounts[p], devices[p] = amounts[p - 1], devices[p - 1]
            p -= 1
        times[p], merchants[p], amounts[p], devices[p] = t, merchant[r], amount[r], device[r]
        count[code] = k + 1
    return card.shape[0], used


@numba.njit(cache=True, nogil=True)
def _compact(floor, start, count, room, times, merchants, amounts, devices, new_times, new_merchants,
             new_amounts, new_devices):  # fmt: skip
    """Copy every card's rows that can still enter a window into new arrays, each segment with
    room to grow; a card with no such rows keeps no room. Returns the end of the used part."""
    used = 0
    for code in range(start.shape[0]):
        s, k = start[code], count[code]
        first = _first_kept(times, s, s + k, times[s + k - 1], floor) if k > 0 else s
        kept = s + k - first
        _copy_rows(times, merchants, amounts, devices, first, new_times, new_merchants, new_amounts, new_devices,
                   used, kept)  # fmt: skip
        start[code], count[code] = used, kept
        room[code] = max(MIN_ROOM, 2 * kept) if kept else 0
        used += room[code]
    return used


def _coded(table: dict, ids: list, add) -> list[int]:
    """The codes of ``ids`` (dict lookups in C); ``add`` codes the ones never seen."""
    codes = list(map(table.get, ids))
    if None in codes:
        codes = [code if code is not None else add(key) for code, key in zip(codes, ids, strict=True)]
    return codes


def recent_history(storage: Location, days: int, skipped: list[str]):
    """``(rows, days read)``: the card history rows (time, card, merchant, amount, device,
    transaction id) of the last ``days`` daily files of `validated_transactions` that any later
    transaction's windows can reach, or ``(None, days)`` when there are none. A file that cannot
    be read is skipped and noted in ``skipped``."""
    import pandas as pd

    files = daily_partitions(storage, VALIDATED_TRANSACTIONS)[-(days + 1) :]
    if not files:
        log.warning("no validated_transactions files under %s: card history starts empty", storage)
        return None, []
    wanted = [c.TIMESTAMP, c.CARD_ID, c.MERCHANT_ID, c.AMOUNT, c.DEVICE_FINGERPRINT, c.TRANSACTION_ID]
    frames = []
    for _, path in files:
        try:
            frame = path.read_parquet()
        except Exception as err:  # a foreign or corrupt file must not stop the API
            log.warning("skipping %s: %s", path, err)
            skipped.append(f"{path.name}: {err}")
            continue
        if any(col not in frame for col in wanted[:4]):
            continue
        frames.append(frame[[col for col in wanted if col in frame]])
    if not frames:
        return None, [day for day, _ in files]
    data = pd.concat(frames, ignore_index=True)
    if c.DEVICE_FINGERPRINT not in data:
        data[c.DEVICE_FINGERPRINT] = None
    data = data[data[c.TIMESTAMP].notna() & data[c.CARD_ID].notna()]
    newest = data[c.TIMESTAMP].max()
    return data[data[c.TIMESTAMP] >= newest - pd.Timedelta(milliseconds=KEEP_MS)], [day for day, _ in files]


class CardState:
    """Recent transactions per card, in segments of shared arrays (see the module docstring).

    Card, merchant and device ids are held as integer codes: the features only compare ids
    for equality (and devices for null), so codes give the same features. One lock makes
    adding a request's transactions and reading their history one step.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cards: dict[str, int] = {}
        self._merchants: dict[str, int] = {}
        self._devices: dict[str | None, int] = {None: -1}  # no device (card present): -1
        self._seen: dict[tuple[int, str], int] = {}  # (card code, transaction id) -> its time
        self._start = np.zeros(0, "int64")
        self._count = np.zeros(0, "int64")
        self._room = np.zeros(0, "int64")
        self._times = np.zeros(0, "int64")  # ms, naive local time
        self._merchant = np.zeros(0, "int64")
        self._amount = np.zeros(0, "float64")
        self._device = np.zeros(0, "int64")  # -1: no device (card present)
        self._used = 0
        self._newest = np.iinfo(np.int64).min
        self.bootstrapped_rows = 0
        self.bootstrapped_days: list[str] = []
        self.bootstrap_source: str | None = None  # where the bootstrap looked
        self.bootstrap_skipped: list[str] = []  # files it could not read, and why

    def __len__(self) -> int:
        return len(self._cards)

    @property
    def rows_held(self) -> int:
        return int(self._count.sum())

    def rows(self, card_id: str) -> dict[str, np.ndarray]:
        """A copy of the card's held rows (times in ms, merchants and devices as codes)."""
        with self._lock:
            code = self._cards.get(card_id)
            if code is None:
                return {name: np.zeros(0) for name in ("ts_ms", "merchant", "amount", "device")}
            s, e = self._start[code], self._start[code] + self._count[code]
            return {
                "ts_ms": self._times[s:e].copy(),
                "merchant": self._merchant[s:e].copy(),
                "amount": self._amount[s:e].copy(),
                "device": self._device[s:e].copy(),
            }

    def merchant_code(self, merchant_id: str) -> int:
        code = self._merchants.get(merchant_id)
        if code is None:
            code = self._merchants[merchant_id] = len(self._merchants)
        return code

    def device_code(self, device: str | None) -> int:
        code = self._devices.get(device)
        if code is None:
            code = self._devices[device] = len(self._devices) - 1  # codes from 0; None holds -1
        return code

    def _card_code(self, card_id: str) -> int:
        code = self._cards.get(card_id)
        if code is None:
            code = self._cards[card_id] = len(self._cards)
            if code == len(self._start):  # room for more cards: twice as many
                size = max(1024, 2 * code)
                for name in ("_start", "_count", "_room"):
                    grown = np.zeros(size, "int64")
                    grown[:code] = getattr(self, name)
                    setattr(self, name, grown)
        return code

    def remember(
        self, cards, ts_ms, merchants, amounts, devices, transaction_ids=None
    ) -> dict[str, np.ndarray]:
        """Add these transactions to their cards, then return their card and device history
        features: each sees its card's strictly earlier rows, those of this batch included (as
        if the batch had been sent one by one in time order).

        A transaction id the card already holds is not added again (a client's retry must not
        count as a second transaction); its features are still computed.
        """
        n = len(cards)
        times = np.asarray(ts_ms, dtype="int64")
        amount = np.asarray(amounts, dtype="float64")
        with self._lock:
            card_codes = _coded(self._cards, cards, self._card_code)
            merchant = np.array(_coded(self._merchants, merchants, self.merchant_code), dtype="int64")
            device = np.array(_coded(self._devices, devices, self.device_code), dtype="int64")
            fresh = np.ones(n, dtype=bool)
            if transaction_ids is not None:
                seen = self._seen
                keys = zip(card_codes, transaction_ids, strict=True)
                for i, key, at in zip(range(n), keys, times.tolist(), strict=True):
                    if key[1] is None:
                        continue
                    if key in seen:
                        fresh[i] = False
                    else:
                        seen[key] = at
            code = np.array(card_codes, dtype="int64")
            floor = int(times.min()) if n else 0
            if fresh.all():
                self._insert(code, times, merchant, amount, device, floor)
            else:
                self._insert(code[fresh], times[fresh], merchant[fresh], amount[fresh], device[fresh], floor)
            segment_start = self._start[code]
            return card_history_features(
                self._times, self._amount, self._merchant, self._device, segment_start,
                segment_start + self._count[code], times, amount, merchant, device,
            )  # fmt: skip

    @staticmethod
    def warm_up() -> None:
        """Compile the kernels on a scratch state (Numba compiles at first call; its disk cache
        then serves later processes), so the first request does not pay for it."""
        scratch = CardState()
        scratch.remember(["c", "c"], [0, 1_000], ["m", "n"], [1.0, 2.0], [None, "d"], ["t1", None])

    def _insert(self, code, times, merchant, amount, device, floor: int) -> None:
        if len(times):
            self._newest = max(self._newest, int(times.max()))
        done = 0
        while done < len(code):
            inserted, self._used = _insert(
                code[done:], times[done:], merchant[done:], amount[done:], device[done:], floor,
                self._start, self._count, self._room, self._times, self._merchant, self._amount,
                self._device, self._used,
            )  # fmt: skip
            done += inserted
            if done < len(code):
                self._make_room(len(code) - done, floor)

    def _make_room(self, pending: int, floor: int) -> None:
        """Compact the segments into new arrays with room for the moves still to come (twice the
        rows held, at least), and forget transaction ids older than every window."""
        held = int(self._room.sum()) + 2 * (MIN_ROOM + 2 * pending)
        size = max(1 << 16, 2 * held)
        new = [np.zeros(size, a.dtype) for a in (self._times, self._merchant, self._amount, self._device)]
        self._used = _compact(
            floor,
            self._start,
            self._count,
            self._room,
            self._times,
            self._merchant,
            self._amount,
            self._device,
            *new,
        )
        self._times, self._merchant, self._amount, self._device = new
        cutoff = min(self._newest, floor) - KEEP_MS - STALE_SLACK_MS
        if any(ts < cutoff for ts in self._seen.values()):
            self._seen = {key: ts for key, ts in self._seen.items() if ts >= cutoff}

    def bootstrap(self, storage: Location, days: int = LOOKBACK_DAYS) -> int:
        """Load the last ``days`` daily files of `validated_transactions` under ``storage`` (the
        pipeline's storage root, any location); the number of rows held. Raises StorageError when
        the storage cannot be read at all; a file that cannot be read is skipped and counted."""
        import pandas as pd

        self.bootstrap_source = str(asset_location(storage, VALIDATED_TRANSACTIONS))
        data, files = recent_history(storage, days, self.bootstrap_skipped)
        if data is None:
            return 0
        card_codes, card_ids = pd.factorize(data[c.CARD_ID].astype(str).to_numpy(object))
        order = np.lexsort((data[c.TIMESTAMP].to_numpy("datetime64[ms]").astype("int64"), card_codes))
        data, card = data.iloc[order], card_codes[order].astype("int64")
        times = data[c.TIMESTAMP].to_numpy("datetime64[ms]").astype("int64")
        merchant_codes, merchant_ids = pd.factorize(data[c.MERCHANT_ID].astype(str).to_numpy(object))
        device_codes, device_ids = pd.factorize(data[c.DEVICE_FINGERPRINT].astype(object).to_numpy(object))
        held = np.bincount(card, minlength=len(card_ids)).astype("int64")
        position = np.arange(len(card)) - np.r_[0, np.cumsum(held)[:-1]][card]  # within its card
        counts = np.minimum(held, MAX_ROWS_PER_CARD)  # a runaway card keeps its newest rows
        kept = position >= (held - counts)[card]
        room = np.maximum(MIN_ROOM, 2 * counts)
        start = np.r_[0, np.cumsum(room)[:-1]].astype("int64")
        place = (start[card] + position - (held - counts)[card])[kept]
        size = max(1 << 16, 2 * int(room.sum()))
        arrays = {
            "_times": (times, "int64"),
            "_merchant": (merchant_codes, "int64"),
            "_amount": (data[c.AMOUNT].to_numpy("float64"), "float64"),
            "_device": (device_codes, "int64"),  # -1: no device
        }
        tids = (
            data[c.TRANSACTION_ID].astype(object).where(data[c.TRANSACTION_ID].notna(), None).tolist()
            if c.TRANSACTION_ID in data
            else [None] * len(data)
        )
        seen = {(int(cd), t): int(ts) for cd, t, ts in zip(card, tids, times, strict=True) if t is not None}
        with self._lock:
            for name, (values, dtype) in arrays.items():
                column = np.zeros(size, dtype)
                column[place] = values[kept]
                setattr(self, name, column)
            self._start, self._count, self._room = start, counts, room.astype("int64")
            self._used = int(room.sum())
            self._cards = {str(card_id): i for i, card_id in enumerate(card_ids)}
            self._merchants = {str(m): i for i, m in enumerate(merchant_ids)}
            self._devices = {None: -1, **{str(d): i for i, d in enumerate(device_ids)}}
            self._seen = seen
            self._newest = int(times.max())
        self.bootstrapped_rows = int(counts.sum())
        self.bootstrapped_days = files
        log.info("card state: %d rows of %d cards from %d days", counts.sum(), len(card_ids), len(files))
        return int(counts.sum())


class MerchantRiskStore:
    """The latest merchant risk snapshot; `refresh` swaps to a newer daily file of
    `merchant_risk` under the storage root (any location)."""

    def __init__(self, storage: Location) -> None:
        self.storage = storage
        self.source = str(asset_location(storage, MERCHANT_RISK))
        self.snapshot: MerchantRiskSnapshot | None = None
        self.day: str | None = None
        self.error: str | None = None

    def refresh(self) -> bool:
        try:
            files = daily_partitions(self.storage, MERCHANT_RISK)
        except OSError as err:  # the store is away: keep the snapshot, say why
            self.error = str(err)
            log.warning(self.error)
            return False
        if not files or files[-1][0] == self.day:
            self.error = None
            return False
        day, path = files[-1]
        try:
            snapshot = MerchantRiskSnapshot.from_frame(path.read_parquet())
        except Exception as err:
            self.error = f"cannot read merchant risk {path}: {type(err).__name__}: {err}"
            log.warning(self.error)
            return False
        self.snapshot, self.day, self.error = snapshot, day, None
        log.info("merchant risk as of %s (%d merchants)", snapshot.as_of, len(snapshot.merchants))
        return True
