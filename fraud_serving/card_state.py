"""The service's own memory of recent card activity and merchant risk, for history features.

`CardState` keeps, per card, the recent transactions (time, merchant, amount, device) that the
history features look at: bootstrapped at startup from the last `LOOKBACK_DAYS` days of
`validated_transactions` Parquet files, then appended with every scored transaction that has a
card and a timestamp. `MerchantRiskStore` holds the latest `merchant_risk` snapshot (one file a
day, as of the end of that day) and swaps to a newer file when one appears.

The features themselves are never computed here: `fraud_assets.core.features` does it, with the
code batch training uses.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path

import numpy as np

from fraud_assets.core import columns as c
from fraud_assets.core.features import (
    CARD_WINDOWS_MS,
    LOOKBACK_DAYS,
    MS_PER_DAY,
    NOVELTY_WINDOW_MS,
    MerchantRiskSnapshot,
)

log = logging.getLogger("fraud_serving.state")

# A card's rows older than this (before its newest row) can no longer enter any window.
KEEP_MS = max(max(CARD_WINDOWS_MS.values()), NOVELTY_WINDOW_MS) + MS_PER_DAY
MAX_ROWS_PER_CARD = 5_000  # a runaway client cannot grow one card without bound
STALE_SLACK_MS = 7 * MS_PER_DAY  # rows this far past every window are dropped on the next append
_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.parquet$")


class CardRows:
    """One card's recent transactions in growable arrays (appending is O(1), amortized).

    The properties are views of the first ``len`` rows; an append writes past them (or, when
    the arrays are full, into new arrays that drop rows too old to matter), so a view taken by
    a request never changes under it.
    """

    __slots__ = ("_amount", "_device", "_merchant", "_tids", "_ts", "n", "oldest", "seen")

    def __init__(self, ts_ms: np.ndarray, merchant: np.ndarray, amount: np.ndarray, device: np.ndarray,
                 transaction_ids: list | None = None):  # fmt: skip
        self._ts, self._merchant, self._amount, self._device = ts_ms, merchant, amount, device
        self.n = len(ts_ms)
        self.oldest = int(ts_ms.min()) if len(ts_ms) else None
        self._tids = list(transaction_ids) if transaction_ids is not None else [None] * self.n
        self.seen = {t for t in self._tids if t is not None}  # the held rows' transaction ids

    def __len__(self) -> int:
        return self.n

    @property
    def ts_ms(self) -> np.ndarray:  # int64 milliseconds (naive local time)
        return self._ts[: self.n]

    @property
    def merchant(self) -> np.ndarray:  # int64 merchant codes (see CardState.merchant_code)
        return self._merchant[: self.n]

    @property
    def amount(self) -> np.ndarray:  # float64
        return self._amount[: self.n]

    @property
    def device(self) -> np.ndarray:  # int64 device codes, -1 when there is no device (card present)
        return self._device[: self.n]

    def append(self, ts_ms: int, merchant: int, amount: float, device: int, transaction_id=None) -> bool:
        """Add a row; a transaction id the card already holds is not added twice (a client's
        retry must not count as a second transaction). True if added."""
        if transaction_id is not None and transaction_id in self.seen:
            return False
        full = self.n == len(self._ts)
        stale = self.oldest is not None and self.oldest < ts_ms - KEEP_MS - STALE_SLACK_MS
        if full or stale:  # rows a week past every window make each request pay for them
            self._regrow(max(ts_ms, int(self._ts[: self.n].max(initial=ts_ms))))
        i = self.n
        self._ts[i], self._merchant[i], self._amount[i], self._device[i] = ts_ms, merchant, amount, device
        self.n = i + 1
        self.oldest = ts_ms if self.oldest is None else min(self.oldest, ts_ms)
        self._tids.append(transaction_id)
        if transaction_id is not None:
            self.seen.add(transaction_id)
        return True

    def _regrow(self, newest_ms: int) -> None:
        """New arrays with room to spare, keeping only rows that can still enter a window."""
        keep = np.flatnonzero(self.ts_ms >= newest_ms - KEEP_MS)[-(MAX_ROWS_PER_CARD - 1) :]
        capacity = max(16, 2 * len(keep))
        arrays = []
        for old in (self._ts, self._merchant, self._amount, self._device):
            new = np.empty(capacity, dtype=old.dtype)
            new[: len(keep)] = old[keep]
            arrays.append(new)
        self._ts, self._merchant, self._amount, self._device = arrays
        self.n = len(keep)
        self.oldest = int(self._ts[: self.n].min()) if self.n else None
        self._tids = [self._tids[i] for i in keep]
        self.seen = {t for t in self._tids if t is not None}


_NO_ROWS = CardRows(np.zeros(0, "int64"), np.zeros(0, "int64"), np.zeros(0), np.zeros(0, "int64"))


def day_files(directory: str | os.PathLike) -> list[tuple[str, Path]]:
    """``(YYYY-MM-DD, path)`` of the daily Parquet files in a folder, oldest first."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    found = [(m.group(1), p) for p in folder.iterdir() if (m := _DAY_FILE.match(p.name))]
    return sorted(found)


class CardState:
    """Recent transactions per card. Merchant and device ids are held as integer codes: the
    history features only compare ids for equality (and devices for null), so codes give the
    same features, and NumPy factorizes integers much faster than strings."""

    def __init__(self) -> None:
        self._cards: dict[str, CardRows] = {}
        self._merchants: dict[str, int] = {}
        self._devices: dict[str, int] = {}
        self._lock = threading.Lock()
        self.bootstrapped_rows = 0
        self.bootstrapped_days: list[str] = []

    def __len__(self) -> int:
        return len(self._cards)

    def get(self, card_id: str) -> CardRows | None:
        return self._cards.get(card_id)

    def merchant_code(self, merchant_id: str) -> int:
        code = self._merchants.get(merchant_id)
        if code is None:
            code = self._merchants[merchant_id] = len(self._merchants)
        return code

    def device_code(self, device: str | None) -> int:
        if device is None:
            return -1
        code = self._devices.get(device)
        if code is None:
            code = self._devices[device] = len(self._devices)
        return code

    def history(self, card_id: str) -> dict[str, np.ndarray]:
        """The card's rows as the columns `transaction_history_features` takes (ids as codes;
        the card itself as code 0; timestamps as datetime64[ms], a view of the held int64 ms)."""
        rows = self._cards.get(card_id)
        if rows is None:
            rows = _NO_ROWS
        return {
            c.TIMESTAMP: rows.ts_ms.view("datetime64[ms]"),
            c.CARD_ID: np.zeros(len(rows), dtype="int64"),
            c.MERCHANT_ID: rows.merchant,
            c.AMOUNT: rows.amount,
            c.DEVICE_FINGERPRINT: rows.device,
        }

    def append(self, card_id: str, ts_ms: int, merchant, amount: float, device, transaction_id=None) -> None:
        self.append_many([card_id], [ts_ms], [merchant], [amount], [device], [transaction_id])

    def append_many(self, cards, ts_ms, merchants, amounts, devices, transaction_ids=None) -> None:
        """Add scored transactions (any order, any cards); rows too old to matter are dropped as
        a card's arrays fill up, and a transaction id the card already holds is skipped."""
        tids = transaction_ids if transaction_ids is not None else [None] * len(cards)
        with self._lock:
            for card, ts, merchant, amount, device, tid in zip(
                cards, ts_ms, merchants, amounts, devices, tids, strict=True
            ):
                rows = self._cards.get(card)
                if rows is None:
                    rows = self._cards[card] = CardRows(
                        np.empty(16, "int64"), np.empty(16, "int64"), np.empty(16), np.empty(16, "int64")
                    )
                    rows.n, rows.oldest, rows._tids = 0, None, []
                rows.append(
                    int(ts), self.merchant_code(merchant), float(amount), self.device_code(device), tid
                )

    def bootstrap(self, validated_dir: str | os.PathLike, days: int = LOOKBACK_DAYS) -> int:
        """Load the last ``days`` daily files of `validated_transactions`; the number of rows read."""
        import pandas as pd

        files = day_files(validated_dir)[-(days + 1) :]
        if not files:
            log.info("no validated_transactions files under %s: card history starts empty", validated_dir)
            return 0
        wanted = [c.TIMESTAMP, c.CARD_ID, c.MERCHANT_ID, c.AMOUNT, c.DEVICE_FINGERPRINT, c.TRANSACTION_ID]
        frames = []
        for _, path in files:
            try:
                frame = pd.read_parquet(path)
            except Exception as err:  # a half-written or foreign file must not stop the API
                log.warning("skipping %s: %s", path, err)
                continue
            if any(col not in frame for col in wanted[:4]):
                continue
            frames.append(frame[[col for col in wanted if col in frame]])
        if not frames:
            return 0
        data = pd.concat(frames, ignore_index=True)
        if c.DEVICE_FINGERPRINT not in data:
            data[c.DEVICE_FINGERPRINT] = None
        newest = data[c.TIMESTAMP].max()
        data = data[data[c.TIMESTAMP] >= newest - pd.Timedelta(milliseconds=KEEP_MS)]
        data = data.sort_values([c.CARD_ID, c.TIMESTAMP], kind="stable")
        cards = data[c.CARD_ID].astype(str).to_numpy(dtype=object)
        ts = data[c.TIMESTAMP].to_numpy("datetime64[ms]").astype("int64")
        merchant_codes, merchant_ids = pd.factorize(data[c.MERCHANT_ID].astype(str).to_numpy(object))
        device_codes, device_ids = pd.factorize(data[c.DEVICE_FINGERPRINT].astype(object).to_numpy(object))
        merchant = merchant_codes.astype("int64")
        device = device_codes.astype("int64")  # -1: no device
        amount = data[c.AMOUNT].to_numpy("float64")
        tids = (
            data[c.TRANSACTION_ID].astype(object).where(data[c.TRANSACTION_ID].notna(), None).tolist()
            if c.TRANSACTION_ID in data
            else [None] * len(data)
        )
        starts = np.flatnonzero(np.r_[True, cards[1:] != cards[:-1]])
        ends = np.r_[starts[1:], len(cards)]
        loaded = {}
        for s, e in zip(starts, ends, strict=True):
            s = max(s, e - MAX_ROWS_PER_CARD)
            loaded[cards[s]] = CardRows(ts[s:e], merchant[s:e], amount[s:e], device[s:e], tids[s:e])
        with self._lock:
            self._cards = loaded
            self._merchants = {str(m): i for i, m in enumerate(merchant_ids)}
            self._devices = {str(d): i for i, d in enumerate(device_ids)}
        self.bootstrapped_rows = len(data)
        self.bootstrapped_days = [day for day, _ in files]
        log.info("card state: %d rows of %d cards from %d days", len(data), len(loaded), len(files))
        return len(data)


class MerchantRiskStore:
    """The latest merchant risk snapshot; `refresh` swaps to a newer daily file."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.snapshot: MerchantRiskSnapshot | None = None
        self.day: str | None = None
        self.error: str | None = None

    def refresh(self) -> bool:
        files = day_files(self.directory)
        if not files or files[-1][0] == self.day:
            return False
        day, path = files[-1]
        try:
            import pandas as pd

            snapshot = MerchantRiskSnapshot.from_frame(pd.read_parquet(path))
        except Exception as err:
            self.error = f"cannot read merchant risk {path}: {type(err).__name__}: {err}"
            log.warning(self.error)
            return False
        self.snapshot, self.day, self.error = snapshot, day, None
        log.info("merchant risk as of %s (%d merchants)", snapshot.as_of, len(snapshot.merchants))
        return True
