"""Point-in-time history features: one implementation for training (batch) and serving (one row).

A transaction's features use only *earlier* transactions of its card (strictly earlier
timestamps, millisecond resolution) and only labels that were known before its day began
(label feeds arrive in daily batches). Nothing about the transaction's own label, or any later
event, can leak into them.

The card features come from one compiled (Numba) kernel over rows laid out by card, each
card's rows in time order: `card_history_features`. Training sorts a frame into that layout
(`history_features`: a million transactions in well under a second); the scoring service keeps
its card state in that layout and calls the same function on it, with the merchant risk taken
from the latest snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numba
import numpy as np
import pandas as pd

from fraud_assets.core import columns as c
from fraud_assets.core.calendar import MS_PER_DAY
from fraud_assets.core.labels import LabelEvents, carried_label_events

MS_PER_SECOND = 1_000
# Card windows of the seed (1h, 24h) and the Handbook (7d, 30d).
CARD_WINDOWS_MS: dict[str, int] = {
    "1h": 3_600_000,
    "24h": MS_PER_DAY,
    "7d": 7 * MS_PER_DAY,
    "30d": 30 * MS_PER_DAY,
}
# Merchant (terminal) windows: the Handbook's 1, 7 and 30 days. The 1-day window is the most
# recent day whose labels are all in; a merchant compromised then is most likely still bad.
MERCHANT_WINDOWS_DAYS: dict[str, int] = {"1d": 1, "7d": 7, "30d": 30}
# Merchant windows end this many days before the day they serve (the Handbook's delay period):
# a legit label is confirmed 7 days after its transaction, so a window closer to the present
# would hold known frauds but hardly any known legit transactions.
MERCHANT_WINDOW_OFFSET_DAYS = 7
NOVELTY_WINDOW_MS = 30 * MS_PER_DAY
# How many earlier days of transactions the features of a day need.
LOOKBACK_DAYS = max(MERCHANT_WINDOWS_DAYS.values()) + MERCHANT_WINDOW_OFFSET_DAYS
# Merchant fraud rate is smoothed towards 1% with the weight of 10 labels, so a merchant with
# one known fraud among two labels does not look 50% risky.
RISK_PRIOR_RATE = 0.01
RISK_PRIOR_WEIGHT = 10.0

# The card's average amount over these windows, and the transaction's amount against each: a
# stolen card spends unlike its owner, and a tree cannot divide a total by a count itself.
CARD_AVERAGE_WINDOWS: tuple[str, ...] = ("24h", "7d", "30d")
CARD_FEATURES: tuple[str, ...] = (
    *(f"transactions_last_{w}" for w in CARD_WINDOWS_MS),
    *(f"total_amount_last_{w}" for w in CARD_WINDOWS_MS),
    *(f"avg_amount_last_{w}" for w in CARD_AVERAGE_WINDOWS),
    *(f"amount_to_avg_{w}" for w in CARD_AVERAGE_WINDOWS),
    "seconds_since_last_txn",
    "is_new_merchant",
)
DEVICE_FEATURES: tuple[str, ...] = ("is_new_device",)
# How recently the merchant had a known fraud, how many of its latest known labels in a row
# are fraud, and how long ago that run of fraud began: a compromised merchant (a skimmer, a
# breached shop) yields a run of fraud until it is fixed, so a run that began long ago is likely
# over, while a stray fraud of a stolen card is one among legit labels. These use every label
# known before the day, with no window offset (a chargeback may arrive before the legit labels
# of its day), over the lookback's last MERCHANT_RECENCY_DAYS days.
MERCHANT_RECENCY_DAYS = max(MERCHANT_WINDOWS_DAYS.values()) + MERCHANT_WINDOW_OFFSET_DAYS
MERCHANT_RECENT: tuple[str, ...] = (
    "days_since_known_fraud",
    "known_fraud_streak",
    "days_since_fraud_run_began",
)
MERCHANT_FEATURES: tuple[str, ...] = (
    *(f"merchant_fraud_rate_{w}" for w in MERCHANT_WINDOWS_DAYS),
    *(f"merchant_labelled_{w}" for w in MERCHANT_WINDOWS_DAYS),
    *(f"merchant_frauds_{w}" for w in MERCHANT_WINDOWS_DAYS),
    *(f"merchant_{name}" for name in MERCHANT_RECENT),
)
HISTORY_FEATURES: tuple[str, ...] = (*CARD_FEATURES, *DEVICE_FEATURES, *MERCHANT_FEATURES)
# The event columns models read beside the history features; together, what drift monitoring watches.
EVENT_FEATURE_COLUMNS: tuple[str, ...] = (
    c.AMOUNT,
    c.HOUR_OF_DAY,
    c.DAY_OF_WEEK,
    c.IS_WEEKEND,
    c.IS_ONLINE,
    c.IS_FOREIGN,
    c.DISTANCE_FROM_HOME,
    c.MERCHANT_CATEGORY,
    c.ENTRY_MODE,
)
FEATURE_COLUMNS: tuple[str, ...] = (*EVENT_FEATURE_COLUMNS, *HISTORY_FEATURES)


def available_history_features(columns: set[str] | list[str], labels: bool = False) -> tuple[str, ...]:
    """The history features a source with these columns supports, and so which ones it lacks;
    ``labels``: a label feed is read beside the transactions (the merchant features need labels)."""
    cols = set(columns)
    out = list(CARD_FEATURES)
    if c.DEVICE_FINGERPRINT in cols:
        out += DEVICE_FEATURES
    if labels or (c.IS_FRAUD in cols and c.LABEL_KNOWN_AT in cols):
        out += MERCHANT_FEATURES
    return tuple(out)


# --- primitives ---------------------------------------------------------------------------------


def to_ms(timestamps: pd.Series | np.ndarray) -> np.ndarray:
    """datetime64 -> int64 milliseconds; NaT becomes the largest int (never "known")."""
    values = np.asarray(timestamps, dtype="datetime64[ms]")
    out = values.astype("int64")
    out[np.isnat(values)] = np.iinfo(np.int64).max
    return out


_BY_WIDTH = sorted(CARD_WINDOWS_MS, key=CARD_WINDOWS_MS.__getitem__)  # the widest last
_WIDTHS = np.array([CARD_WINDOWS_MS[w] for w in _BY_WIDTH], dtype=np.int64)


@numba.njit(cache=True, nogil=True)
def _card_windows(times, amount, merchant, device, seg_lo, seg_hi, query_time, query_merchant, query_device,
                  widths, none_seconds, novelty_width):  # fmt: skip
    """Per query: over the strictly earlier rows of its card (``times[seg_lo[q]:seg_hi[q]]``, in
    time order) within each width (ascending), the event count and amount sum; seconds since the
    latest of them in the widest window (``none_seconds`` if none); and whether the query's
    merchant, and its device (code >= 0), appear among the card's rows of the last
    ``novelty_width`` ms.

    Rows of the result: counts per width, sums per width, seconds since last, merchant seen,
    device seen. One binary search for the query's place, then a walk back through the windows
    (they nest: each sum continues the narrower one). Compiled: the same code for a million
    training rows, sorted by card and time, and for the service's card segments.
    """
    n_widths = widths.shape[0]
    out = np.zeros((2 * n_widths + 3, query_time.shape[0]))
    for q in range(query_time.shape[0]):
        first, t = seg_lo[q], query_time[q]
        hi = first + np.searchsorted(times[first : seg_hi[q]], t)  # rows at the same ms are not earlier
        j = hi - 1
        total = 0.0
        for w in range(n_widths):
            start = t - widths[w]
            while j >= first and times[j] >= start:
                total += amount[j]
                j -= 1
            out[w, q] = hi - 1 - j
            out[n_widths + w, q] = total
        out[2 * n_widths, q] = (t - times[hi - 1]) / MS_PER_SECOND if hi - 1 > j else none_seconds
        oldest = t - novelty_width
        for k in range(hi - 1, first - 1, -1):
            if times[k] < oldest:
                break
            if merchant[k] == query_merchant[q]:
                out[2 * n_widths + 1, q] = 1.0
                break
        if query_device[q] >= 0:
            for k in range(hi - 1, first - 1, -1):
                if times[k] < oldest:
                    break
                if device[k] == query_device[q]:
                    out[2 * n_widths + 2, q] = 1.0
                    break
    return out


def card_history_features(
    times: np.ndarray,
    amount: np.ndarray,
    merchant: np.ndarray,
    device: np.ndarray | None,
    seg_lo: np.ndarray,
    seg_hi: np.ndarray,
    query_time: np.ndarray,
    query_amount: np.ndarray,
    query_merchant: np.ndarray,
    query_device: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """The card features (and, with devices, the device feature) of each query transaction.

    Rows ``seg_lo[q]:seg_hi[q]`` of the row arrays are the query's card, in time order (int64
    ms; merchants and devices as int codes, device -1 for none); only rows strictly earlier than
    ``query_time[q]`` count. `history_features` lays a frame out this way; the scoring service
    keeps its card state in this layout and calls this function directly.
    """
    with_device = device is not None
    if not with_device:
        device = query_device = np.full(len(query_time), -1, dtype="int64")
    windows = _card_windows(
        times, amount, merchant, device, seg_lo, seg_hi, query_time, query_merchant, query_device,
        _WIDTHS, NOVELTY_WINDOW_MS / MS_PER_SECOND, NOVELTY_WINDOW_MS,
    )  # fmt: skip
    n_windows = len(_WIDTHS)
    totals = np.round(windows[n_windows : 2 * n_windows], 6)
    out: dict[str, np.ndarray] = {}
    for i, window in enumerate(_BY_WIDTH):
        out[f"transactions_last_{window}"] = windows[i]
        out[f"total_amount_last_{window}"] = totals[i]
    for window in CARD_AVERAGE_WINDOWS:
        count, total = out[f"transactions_last_{window}"], out[f"total_amount_last_{window}"]
        avg = np.divide(total, count, out=np.zeros_like(count), where=count > 0)
        out[f"avg_amount_last_{window}"] = avg
        out[f"amount_to_avg_{window}"] = np.divide(query_amount, avg, out=np.ones_like(avg), where=avg > 0)
    out["seconds_since_last_txn"] = windows[2 * n_windows]
    out["is_new_merchant"] = 1.0 - windows[2 * n_windows + 1]
    if with_device:  # a card-present row (no device) is never "new device"
        out["is_new_device"] = ((query_device >= 0) & (windows[2 * n_windows + 2] == 0)).astype("float64")
    return out


def _keys(groups: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Keys ``group * span + time``: one group's events are one contiguous, time-ordered range."""
    if not len(times):
        return np.zeros(0, "int64")
    t0 = times.min()
    span = int(times.max() - t0) + max(CARD_WINDOWS_MS.values()) + 1
    return groups.astype("int64") * span + (times - t0)


def _codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """An int code per distinct value (nulls share code -1) and the number of distinct values.

    Integer values are taken as codes already (the serving state holds ids as dense integer
    codes, -1 for null): only equality matters to the features, and factorizing costs more
    than the features themselves on a card's hundred rows.
    """
    if values.dtype.kind in "iu":
        return values.astype("int64", copy=False), int(values.max(initial=-1)) + 1
    codes, uniques = pd.factorize(values)
    return codes.astype("int64"), len(uniques)


# --- merchant risk ------------------------------------------------------------------------------


def merchant_fraud_rate(frauds: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    return (frauds + RISK_PRIOR_RATE * RISK_PRIOR_WEIGHT) / (labelled + RISK_PRIOR_WEIGHT)


def merchant_features_from_counts(
    frauds: Mapping[str, np.ndarray], labelled: Mapping[str, np.ndarray], recent: Mapping[str, np.ndarray]
):
    """The merchant features from known-fraud and known-label counts per window, and the
    recency statistics (``MERCHANT_RECENT``)."""
    out: dict[str, np.ndarray] = {}
    for window in MERCHANT_WINDOWS_DAYS:
        out[f"merchant_fraud_rate_{window}"] = merchant_fraud_rate(frauds[window], labelled[window])
        out[f"merchant_labelled_{window}"] = labelled[window].astype("float64")
        out[f"merchant_frauds_{window}"] = frauds[window].astype("float64")
    for name in MERCHANT_RECENT:
        out[f"merchant_{name}"] = recent[name].astype("float64")
    return out


# Beyond this many merchant ids, `MerchantRiskSnapshot.lookup` joins them at once.
MANY_MERCHANTS = 256

# A merchant without a known fraud in MERCHANT_RECENCY_DAYS (or never seen): the recency values.
NO_RECENT_FRAUD = {
    "days_since_known_fraud": float(MERCHANT_RECENCY_DAYS),
    "known_fraud_streak": 0.0,
    "days_since_fraud_run_began": float(MERCHANT_RECENCY_DAYS),
}


def _recent_fraud(merchant_codes, n_merchants, times_ms, held, is_fraud, as_of_ms) -> dict[str, np.ndarray]:
    """Per merchant code, as of a time: days since its latest transaction with a known fraud
    label, the number of its known frauds after its latest known legit transaction (the run of
    fraud its newest labels end with), and days since the first of that run; over the last
    MERCHANT_RECENCY_DAYS days. Arrays are per label event; ``held``: the labels that hold then."""
    fraud_codes, fraud_times, last_legit = _recent_labels(
        merchant_codes, n_merchants, times_ms, held, is_fraud, as_of_ms
    )
    return _recent_from(fraud_codes, fraud_times, last_legit, as_of_ms)


NEVER_MS = np.iinfo(np.int64).min  # no such label


def _recent_labels(merchant_codes, n_merchants, times_ms, held, is_fraud, as_of_ms):
    """The known frauds of the recency window (their merchant codes and times) and each
    merchant's latest known legit time in it (`NEVER_MS` if none): what `_recent_from` needs, and
    what parts of the labels (card shards) add up to exactly (concatenate; take the maximum)."""
    window = (times_ms >= as_of_ms - MERCHANT_RECENCY_DAYS * MS_PER_DAY) & (times_ms < as_of_ms)
    known = window & held
    fraud_rows = known & (is_fraud == 1)
    legit_rows = known & (is_fraud == 0)
    last_legit = np.full(n_merchants, NEVER_MS, dtype=np.int64)
    np.maximum.at(last_legit, merchant_codes[legit_rows], times_ms[legit_rows])
    return merchant_codes[fraud_rows], times_ms[fraud_rows], last_legit


def _recent_from(fraud_codes, fraud_times, last_legit, as_of_ms) -> dict[str, np.ndarray]:
    """The recency statistics (``MERCHANT_RECENT``) from `_recent_labels`' parts."""
    n_merchants = len(last_legit)
    last_fraud = np.full(n_merchants, NEVER_MS, dtype=np.int64)
    np.maximum.at(last_fraud, fraud_codes, fraud_times)
    after_legit = fraud_times > last_legit[fraud_codes]
    streak = np.bincount(fraud_codes[after_legit], minlength=n_merchants).astype("float64")
    run_began = np.full(n_merchants, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(run_began, fraud_codes[after_legit], fraud_times[after_legit])
    return {
        "days_since_known_fraud": _days_before(as_of_ms, last_fraud, last_fraud != NEVER_MS),
        "known_fraud_streak": streak,
        "days_since_fraud_run_began": _days_before(as_of_ms, run_began, streak > 0),
    }


def _days_before(as_of_ms: int, times_ms: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Days from each time to ``as_of``; MERCHANT_RECENCY_DAYS where ``present`` is False."""
    out = np.full(len(times_ms), float(MERCHANT_RECENCY_DAYS))
    out[present] = (as_of_ms - times_ms[present]) / MS_PER_DAY
    return out


def _label_counts(
    merchant_codes: np.ndarray,
    n_merchants: int,
    times_ms: np.ndarray,
    held: np.ndarray,
    is_fraud: np.ndarray,
    as_of_ms: int,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Known frauds and known labels per merchant code over each trailing window, as of a time
    (`_window_counts`), and the recency statistics of `_recent_fraud`."""
    frauds, labelled = _window_counts(merchant_codes, n_merchants, times_ms, held, is_fraud, as_of_ms)
    recent = _recent_fraud(merchant_codes, n_merchants, times_ms, held, is_fraud, as_of_ms)
    return frauds, labelled, recent


def _window_counts(merchant_codes, n_merchants, times_ms, held, is_fraud, as_of_ms):
    """Known frauds and known labels per merchant code over each trailing window, as of a time.

    Arrays are per label event (its transaction's merchant code and time, its label);
    ``held`` marks the labels that hold at ``as_of`` (the latest of each transaction reported
    before then). Counts transactions of ``[as_of - offset - days, as_of - offset)``. Whole
    numbers in float64: parts of the labels add up to exactly the count of all of them.
    """
    end = as_of_ms - MERCHANT_WINDOW_OFFSET_DAYS * MS_PER_DAY
    known = held & (times_ms < end)
    frauds, labelled = {}, {}
    for window, days in MERCHANT_WINDOWS_DAYS.items():
        rows = known & (times_ms >= end - days * MS_PER_DAY)
        codes = merchant_codes[rows]
        labelled[window] = np.bincount(codes, minlength=n_merchants).astype("float64")
        frauds[window] = np.bincount(codes, weights=is_fraud[rows], minlength=n_merchants)
    return frauds, labelled


def _event_columns(events: LabelEvents, merchant: np.ndarray, times: np.ndarray):
    """Each label event's merchant code and transaction time (ms)."""
    return merchant[events.row], times[events.row]


def _require_labels(frame, labels: LabelEvents | None) -> LabelEvents:
    events = labels if labels is not None else carried_label_events(frame)
    if events is None:
        raise ValueError(
            "merchant risk needs labels: a label feed (fraud_labels) or is_fraud with label_known_at"
        )
    return events


@dataclass(frozen=True, eq=False)
class MerchantLabelCounts:
    """What some of the transactions (one card shard's) say about their merchants as of
    ``as_of``: known frauds and known labels per window, each merchant's latest known legit
    label and the known frauds of the recency window. `MerchantRiskSnapshot.combine` adds parts
    up into the snapshot of all of them."""

    as_of: pd.Timestamp
    merchants: np.ndarray  # merchant ids of the part's rows, distinct
    frauds: dict[str, np.ndarray]  # window -> known frauds, aligned with merchants
    labelled: dict[str, np.ndarray]  # window -> known labels
    last_legit: np.ndarray  # int64 ms of the latest known legit label in the recency window
    fraud_merchant: np.ndarray  # per known fraud of the recency window: its row in merchants
    fraud_time: np.ndarray  # and its transaction's time (int64 ms)

    @property
    def as_of_ms(self) -> int:
        return int(to_ms(np.array([self.as_of], dtype="datetime64[ns]"))[0])

    @classmethod
    def compute(
        cls, frame: pd.DataFrame, as_of: pd.Timestamp, labels: LabelEvents | None = None
    ) -> MerchantLabelCounts:
        """The counts of ``frame``'s merchants from the labels known before ``as_of``: the
        ``labels`` read for ``frame`` (`fraud_assets.core.labels.join_labels`), or the labels
        its rows carry."""
        events = _require_labels(frame, labels)
        merchant_codes, uniques = pd.factorize(frame[c.MERCHANT_ID].to_numpy(dtype=object))
        at = int(to_ms(np.array([as_of], dtype="datetime64[ns]"))[0])
        codes, times = _event_columns(events, merchant_codes, to_ms(frame[c.TIMESTAMP]))
        held = events.holding(at)
        frauds, labelled = _window_counts(codes, len(uniques), times, held, events.is_fraud, at)
        fraud_codes, fraud_times, last_legit = _recent_labels(
            codes, len(uniques), times, held, events.is_fraud, at
        )
        return cls(
            as_of=pd.Timestamp(as_of),
            merchants=np.asarray(uniques, dtype=object),
            frauds=frauds,
            labelled=labelled,
            last_legit=last_legit,
            fraud_merchant=fraud_codes,
            fraud_time=fraud_times,
        )


@dataclass(frozen=True, eq=False)
class MerchantRiskSnapshot:
    """Known frauds and known labels per merchant as of ``as_of`` (the start of a day).

    The table serving looks merchants up in; the `merchant_risk` asset stores one per day.
    """

    as_of: pd.Timestamp
    merchants: np.ndarray  # merchant ids, sorted
    frauds: dict[str, np.ndarray]  # window -> known frauds, aligned with merchants
    labelled: dict[str, np.ndarray]  # window -> known labels
    recent: dict[str, np.ndarray]  # MERCHANT_RECENT name -> value, aligned with merchants

    @classmethod
    def compute(
        cls, frame: pd.DataFrame, as_of: pd.Timestamp, labels: LabelEvents | None = None
    ) -> MerchantRiskSnapshot:
        """The snapshot of ``frame``'s merchants: its counts (`MerchantLabelCounts.compute`) as
        the only part."""
        return cls.combine([MerchantLabelCounts.compute(frame, as_of, labels)])

    @classmethod
    def combine(cls, parts: list[MerchantLabelCounts]) -> MerchantRiskSnapshot:
        """The snapshot of the merchants of every part (parts of the transactions as of one
        time, e.g. one per card shard), exactly as if computed from all their rows at once: the
        counts are whole numbers (their float sums do not depend on the order), the latest
        legit label is a maximum, and the known frauds of the recency window are concatenated
        before the runs of fraud are counted."""
        as_of = {part.as_of for part in parts}
        if len(as_of) != 1:
            raise ValueError(f"merchant label counts of different times cannot be combined: {sorted(as_of)}")
        merchant_codes, uniques = pd.factorize(np.concatenate([part.merchants for part in parts]))
        n = len(uniques)
        frauds = {w: np.zeros(n) for w in MERCHANT_WINDOWS_DAYS}
        labelled = {w: np.zeros(n) for w in MERCHANT_WINDOWS_DAYS}
        last_legit = np.full(n, NEVER_MS, dtype=np.int64)
        fraud_codes, fraud_times, start = [], [], 0
        for part in parts:
            codes = merchant_codes[start : start + len(part.merchants)]
            start += len(part.merchants)
            for w in MERCHANT_WINDOWS_DAYS:
                np.add.at(frauds[w], codes, part.frauds[w])
                np.add.at(labelled[w], codes, part.labelled[w])
            np.maximum.at(last_legit, codes, part.last_legit)
            fraud_codes.append(codes[part.fraud_merchant])
            fraud_times.append(part.fraud_time)
        at = parts[0].as_of_ms
        recent = _recent_from(
            np.concatenate(fraud_codes).astype(np.int64), np.concatenate(fraud_times), last_legit, at
        )
        order = np.argsort(uniques.astype(str), kind="stable")
        return cls(
            as_of=parts[0].as_of,
            merchants=np.asarray(uniques, dtype=object)[order],
            frauds={w: v[order] for w, v in frauds.items()},
            labelled={w: v[order] for w, v in labelled.items()},
            recent={k: v[order] for k, v in recent.items()},
        )

    @cached_property
    def feature_table(self) -> tuple[dict[str, int], np.ndarray]:
        """Merchant id -> row, and the merchant features of every row; the last row is the prior
        (a merchant never seen: no known labels). Built once per snapshot; `lookup` reads it, and the
        Redis online state publishes it."""
        frauds = {w: np.append(v, 0.0) for w, v in self.frauds.items()}
        labelled = {w: np.append(v, 0.0) for w, v in self.labelled.items()}
        recent = {k: np.append(v, NO_RECENT_FRAUD[k]) for k, v in self.recent.items()}
        features = merchant_features_from_counts(frauds, labelled, recent)
        index = {str(m): i for i, m in enumerate(self.merchants)}
        return index, np.array([features[name] for name in MERCHANT_FEATURES])

    def lookup(self, merchant_ids) -> dict[str, np.ndarray]:
        """Merchant features for these merchant ids; a merchant never seen gets the prior."""
        index, table = self.feature_table
        unseen = len(table[0]) - 1
        if len(merchant_ids) > MANY_MERCHANTS:  # a day of rows: one hash join, not a loop
            rows = pd.Index(list(index)).get_indexer(np.asarray(merchant_ids, dtype=object).astype(str))
            rows[rows < 0] = unseen
        else:
            rows = np.fromiter(
                (index.get(m, unseen) for m in merchant_ids), dtype=np.intp, count=len(merchant_ids)
            )
        picked = table[:, rows]
        return {name: picked[i] for i, name in enumerate(MERCHANT_FEATURES)}

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame({c.MERCHANT_ID: pd.array(self.merchants, dtype="string")})
        for window in MERCHANT_WINDOWS_DAYS:
            frame[f"frauds_{window}"] = self.frauds[window]
            frame[f"labelled_{window}"] = self.labelled[window]
        for name in MERCHANT_RECENT:
            frame[name] = self.recent[name]
        frame["as_of"] = self.as_of
        return frame

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> MerchantRiskSnapshot:
        if frame.empty:
            raise ValueError("the merchant-risk table is empty")
        needed = [f"{kind}_{w}" for w in MERCHANT_WINDOWS_DAYS for kind in ("frauds", "labelled")]
        if missing := [col for col in (*needed, *MERCHANT_RECENT) if col not in frame]:
            raise ValueError(
                f"the merchant-risk table lacks column(s) {missing}: it was written by an older "
                "version; materialize merchant_risk again for its days"
            )
        frame = frame.sort_values(c.MERCHANT_ID, kind="stable")
        return cls(
            as_of=pd.Timestamp(frame["as_of"].iloc[0]),
            merchants=frame[c.MERCHANT_ID].to_numpy(dtype=object),
            frauds={w: frame[f"frauds_{w}"].to_numpy("float64") for w in MERCHANT_WINDOWS_DAYS},
            labelled={w: frame[f"labelled_{w}"].to_numpy("float64") for w in MERCHANT_WINDOWS_DAYS},
            recent={k: frame[k].to_numpy("float64") for k in MERCHANT_RECENT},
        )


# --- the features -------------------------------------------------------------------------------


def _column(frame: pd.DataFrame | Mapping[str, np.ndarray], name: str) -> np.ndarray:
    values = frame[name]
    return values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)


def history_features(
    frame: pd.DataFrame | Mapping[str, np.ndarray],
    merchant_risk: MerchantRiskSnapshot | None = None,
    targets: np.ndarray | None = None,
    labels: LabelEvents | None = None,
) -> dict[str, np.ndarray]:
    """History features of every row of ``frame`` (rows in any order), as float64 arrays.

    ``frame`` needs timestamp, card_id, merchant_id and amount; device_fingerprint adds the
    new-device feature, and labels the merchant-risk features, computed per day from the labels
    known before that day began: ``labels`` (the label feed read for ``frame``'s rows,
    `fraud_assets.core.labels.join_labels`), or else the labels the rows carry (is_fraud with
    label_known_at). Serving passes its cards' recent rows plus the new transactions as
    ``targets`` (row positions: only their features are computed, in that order, the other rows
    being their history) and the latest ``merchant_risk`` snapshot.
    """
    columns = set(frame.columns if isinstance(frame, pd.DataFrame) else frame.keys())
    times = to_ms(_column(frame, c.TIMESTAMP))
    amount = _column(frame, c.AMOUNT).astype("float64")
    card, _ = _codes(_column(frame, c.CARD_ID))
    order = np.argsort(_keys(card, times), kind="stable")  # by card, then time
    sorted_card = card[order]
    # Each sorted row's card segment [seg_lo, seg_hi) of the sorted arrays.
    starts = np.flatnonzero(np.r_[True, sorted_card[1:] != sorted_card[:-1]]) if len(order) else order
    sizes = np.diff(np.r_[starts, len(order)])
    seg_lo = np.repeat(starts, sizes)
    seg_hi = seg_lo + np.repeat(sizes, sizes)
    merchant, n_merchants = _codes(_column(frame, c.MERCHANT_ID))  # nulls share code -1
    has_device = c.DEVICE_FINGERPRINT in columns
    device = _codes(_column(frame, c.DEVICE_FINGERPRINT))[0] if has_device else None
    if targets is None:  # every row: query in sorted order (cache friendly), then put rows back
        query_rows, at = order, np.arange(len(order))

        def placed(values: np.ndarray) -> np.ndarray:
            out = np.empty(len(values), dtype="float64")
            out[order] = values
            return out
    else:
        query_rows = np.asarray(targets, dtype="int64")
        rank = np.empty(len(order), dtype="int64")
        rank[order] = np.arange(len(order))
        at = rank[query_rows]  # the targets' places in sorted order

        def placed(values: np.ndarray) -> np.ndarray:
            return values.astype("float64", copy=False)

    sorted_times = times[order]
    out = card_history_features(
        sorted_times, amount[order], merchant[order], None if device is None else device[order],
        seg_lo[at], seg_hi[at], sorted_times[at], amount[query_rows], merchant[query_rows],
        None if device is None else device[query_rows],
    )  # fmt: skip
    out = {name: placed(values) for name, values in out.items()}

    if merchant_risk is not None:
        ids = _column(frame, c.MERCHANT_ID)
        out.update(merchant_risk.lookup(ids if targets is None else ids[targets]))
    elif labels is not None or (c.IS_FRAUD in columns and c.LABEL_KNOWN_AT in columns):
        if targets is not None:
            raise ValueError("daily merchant features are computed for every row (targets must be None)")
        events = _require_labels(frame, labels)
        out.update(_daily_merchant_features(events, merchant, n_merchants, times))
    return out


def _daily_merchant_features(events: LabelEvents, merchant: np.ndarray, n_merchants: int, times: np.ndarray):
    """Merchant features of each row from the labels known at the start of the row's day."""
    codes_of_event, times_of_event = _event_columns(events, merchant, times)
    out = {name: np.zeros(len(times)) for name in MERCHANT_FEATURES}
    day_of = times // MS_PER_DAY
    by_day = np.argsort(day_of, kind="stable")
    days, starts = np.unique(day_of[by_day], return_index=True)
    for day, rows in zip(days, np.split(by_day, starts[1:]), strict=True):
        at = int(day) * MS_PER_DAY
        frauds, labelled, recent = _label_counts(
            codes_of_event, n_merchants, times_of_event, events.holding(at), events.is_fraud, at
        )
        codes = merchant[rows]
        for name, values in merchant_features_from_counts(
            {w: v[codes] for w, v in frauds.items()},
            {w: v[codes] for w, v in labelled.items()},
            {k: v[codes] for k, v in recent.items()},
        ).items():
            out[name][rows] = values
    return out


def terminal_recency(frame: pd.DataFrame | Mapping[str, np.ndarray]) -> np.ndarray:
    """Seconds since the merchant's (terminal's) previous transaction, strictly earlier; a
    merchant with none in the data gets the card features' "none" value (30 days).

    Not among the default features: the ablation (docs/ablation.md) found no gain from it on
    either dataset, and serving would need per-merchant state for it.
    """
    times = to_ms(_column(frame, c.TIMESTAMP))
    merchant, _ = _codes(_column(frame, c.MERCHANT_ID))
    keys = _keys(merchant, times)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    previous = np.searchsorted(sorted_keys, keys, side="left") - 1  # the latest strictly earlier key
    clipped = np.maximum(previous, 0)
    same = (previous >= 0) & (merchant[order[clipped]] == merchant)
    out = np.full(len(times), NOVELTY_WINDOW_MS / MS_PER_SECOND)
    out[same] = (times[same] - times[order[clipped[same]]]) / MS_PER_SECOND
    return np.minimum(out, NOVELTY_WINDOW_MS / MS_PER_SECOND)


def add_history_features(
    frame: pd.DataFrame, merchant_risk: MerchantRiskSnapshot | None = None, labels: LabelEvents | None = None
) -> pd.DataFrame:
    """``frame`` with the history features as extra columns (same row order)."""
    return frame.assign(**history_features(frame, merchant_risk, labels=labels))
