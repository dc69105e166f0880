"""Card shards: a day's features computed one group of cards at a time, with bounded memory.

Every card belongs to exactly one of ``shards`` shards, by a stable hash of its id
(`card_shards`), so each shard holds the whole history of its cards and computes their card
features alone. Merchant risk crosses cards: each shard counts its labels per merchant
(`MerchantLabelCounts`) and the day's snapshot adds the shards' counts up
(`MerchantRiskSnapshot.combine`), exactly as if all rows had been counted at once. One shard is
the whole day: the same rows, in the same order, as without sharding.

`card_shard` computes one shard from its history (a step of its own in the feature assets, on
whichever worker), `combine_shards` puts the shards of a range of days together, and
`by_card_shard` does both in one process, one shard after another.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fraud_assets.core import columns as c
from fraud_assets.core.features import (
    MERCHANT_FEATURES,
    MerchantLabelCounts,
    MerchantRiskSnapshot,
    history_features,
)
from fraud_assets.core.labels import LabelEvents

# What the card features read of a transaction (the device when a source has one).
CARD_INPUTS: tuple[str, ...] = (c.TIMESTAMP, c.CARD_ID, c.MERCHANT_ID, c.AMOUNT, c.DEVICE_FINGERPRINT)


def card_shards(card_ids: np.ndarray | pd.Series, shards: int) -> np.ndarray:
    """The shard (``0..shards-1``) of each card id: SipHash (pandas' ``hash_array``, fixed key)
    of the id's text, modulo ``shards``. The same on every machine and in every process, unlike
    Python's ``hash``; each distinct id is hashed once. A missing id goes to shard 0."""
    values = np.asarray(card_ids, dtype=object)
    if shards == 1:
        return np.zeros(len(values), dtype=np.int64)
    codes, uniques = pd.factorize(values)
    hashed = pd.util.hash_array(np.asarray(uniques, dtype=str).astype(object), categorize=False)
    of_unique = (hashed % np.uint64(shards)).astype(np.int64)
    return np.where(codes >= 0, of_unique[np.maximum(codes, 0)], 0) if len(values) else codes.astype(np.int64)


@dataclass(frozen=True)
class CardShard:
    """What one shard of a range of days gives: its cards' label counts per merchant as of each
    ``as_of`` time, and the rows it kept with their card features. Small next to the shard's
    history: the kept rows (a day's, not the lookback's) and one count per merchant and window,
    as Arrow text and NumPy columns, so a shard computed in one process can be handed to another
    (one Dagster step per shard)."""

    counts: list[MerchantLabelCounts]  # one per as_of time; empty when the history had no columns
    rows: pd.DataFrame  # the kept rows, in history order
    history_rows: int
    history_from: pd.Timestamp | None
    columns: tuple[str, ...]  # the history's columns (none: no file to read)


@dataclass(frozen=True)
class ShardedDay:
    """What the shards of a range of days give together: per ``as_of`` time the merchants'
    snapshot (all shards added up), and the rows each shard kept with its card features."""

    snapshots: list[MerchantRiskSnapshot]
    rows: pd.DataFrame  # the kept rows, shard after shard (in history order within a shard)
    history_rows: int
    history_from: pd.Timestamp | None
    columns: tuple[str, ...]  # the history's columns (the first non-empty shard's)


def card_shard(
    history: pd.DataFrame,
    events_of: Callable[[pd.DataFrame], LabelEvents],
    as_of: Sequence[pd.Timestamp],
    keep: Callable[[pd.DataFrame], np.ndarray] | None = None,
) -> CardShard:
    """One shard from its history (the rows of its cards only): its labels counted per merchant
    as of each time of ``as_of`` (``events_of``: the label events of its rows) and, with ``keep``
    (a mask of the rows to keep), those rows with their card features."""
    if not len(history.columns):
        return CardShard([], pd.DataFrame(), 0, None, ())
    events = events_of(history)
    counts = [MerchantLabelCounts.compute(history, time, events) for time in as_of]
    rows = pd.DataFrame()
    if keep is not None:
        at = np.flatnonzero(keep(history))
        inputs = {name: history[name].to_numpy() for name in CARD_INPUTS if name in history}
        # card (and device) features only (no labels given), of the kept rows only
        rows = history.iloc[at].assign(**history_features(inputs, targets=at))
    first = history[c.TIMESTAMP].min() if len(history) else None
    return CardShard(counts, rows, len(history), first, tuple(history.columns))


def combine_shards(shards: Sequence[CardShard]) -> ShardedDay:
    """The shards of a range of days as one: the merchants' counts added up into one snapshot
    per time (`MerchantRiskSnapshot.combine`: exact in any order) and the kept rows shard after
    shard."""
    read = [shard for shard in shards if shard.columns]
    snapshots = [
        MerchantRiskSnapshot.combine(list(parts)) for parts in zip(*(s.counts for s in read), strict=True)
    ]
    kept = [shard.rows for shard in read if len(shard.rows.columns)]
    firsts = [shard.history_from for shard in read if shard.history_from is not None]
    return ShardedDay(
        snapshots,
        pd.concat(kept, ignore_index=True) if kept else pd.DataFrame(),
        sum(shard.history_rows for shard in read),
        min(firsts) if firsts else None,
        read[0].columns if read else (),
    )


def by_card_shard(
    read: Callable[[int], pd.DataFrame],
    shards: int,
    events_of: Callable[[pd.DataFrame], LabelEvents],
    as_of: Sequence[pd.Timestamp],
    keep: Callable[[pd.DataFrame], np.ndarray] | None = None,
) -> ShardedDay:
    """Every shard in this process, one after another (`card_shard` of ``read(shard)``: the rows
    of its cards only), then `combine_shards`: one shard's history in memory at a time, plus the
    kept rows and the counts."""
    return combine_shards([card_shard(read(shard), events_of, as_of, keep) for shard in range(shards)])


def with_merchant_features(
    rows: pd.DataFrame, snapshots: dict[pd.Timestamp, MerchantRiskSnapshot]
) -> pd.DataFrame:
    """``rows`` with the merchant features of their day: each row looks its merchant up in the
    snapshot as of its day's start (the labels known before its day began)."""
    if not len(rows):
        return rows.assign(**{name: np.zeros(0) for name in MERCHANT_FEATURES})
    day = rows[c.TIMESTAMP].dt.floor("D")
    out = {name: np.zeros(len(rows)) for name in MERCHANT_FEATURES}
    for start, positions in pd.Series(np.arange(len(rows))).groupby(day.to_numpy()).groups.items():
        at = np.asarray(positions)
        found = snapshots[pd.Timestamp(start)].lookup(rows[c.MERCHANT_ID].to_numpy()[at])
        for name in MERCHANT_FEATURES:
            out[name][at] = found[name]
    return rows.assign(**out)
