"""Card shards: a day's features computed one group of cards at a time, with bounded memory.

Every card belongs to exactly one of ``shards`` shards, by a stable hash of its id
(`card_shards`), so each shard holds the whole history of its cards and computes their card
features alone. Merchant risk crosses cards: each shard counts its labels per merchant
(`MerchantLabelCounts`) and the day's snapshot adds the shards' counts up
(`MerchantRiskSnapshot.combine`), exactly as if all rows had been counted at once. One shard is
the whole day: the same rows, in the same order, as without sharding.
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
class ShardedDay:
    """What the shards of a range of days give: per ``as_of`` time the merchants' snapshot (all
    shards added up), and the rows each shard kept with its card features."""

    snapshots: list[MerchantRiskSnapshot]
    rows: pd.DataFrame  # the kept rows, shard after shard (in history order within a shard)
    history_rows: int
    history_from: pd.Timestamp | None
    columns: tuple[str, ...]  # the history's columns (the first non-empty shard's)


def by_card_shard(
    read: Callable[[int], pd.DataFrame],
    shards: int,
    events_of: Callable[[pd.DataFrame], LabelEvents],
    as_of: Sequence[pd.Timestamp],
    keep: Callable[[pd.DataFrame], np.ndarray] | None = None,
) -> ShardedDay:
    """Read each shard's history (``read(shard)``: the rows of its cards only), count its labels
    per merchant as of each time of ``as_of`` (``events_of``: the label events of its rows) and,
    with ``keep`` (a mask of the rows to keep), keep those rows with their card features. One
    shard's history is in memory at a time, plus the kept rows and the counts."""
    parts: list[list[MerchantLabelCounts]] = [[] for _ in as_of]
    kept: list[pd.DataFrame] = []
    history_rows, history_from, columns = 0, None, ()
    for shard in range(shards):
        history = read(shard)
        if not len(history.columns):
            continue
        columns = columns or tuple(history.columns)
        history_rows += len(history)
        if len(history):
            first = history[c.TIMESTAMP].min()
            history_from = first if history_from is None else min(history_from, first)
        events = events_of(history)
        for i, time in enumerate(as_of):
            parts[i].append(MerchantLabelCounts.compute(history, time, events))
        if keep is not None:
            rows = np.flatnonzero(keep(history))
            inputs = {name: history[name].to_numpy() for name in CARD_INPUTS if name in history}
            # card (and device) features only (no labels given), of the kept rows only
            card = history_features(inputs, targets=rows)
            kept.append(history.iloc[rows].assign(**card))
        del history, events
    snapshots = [MerchantRiskSnapshot.combine(p) for p in parts] if all(parts) else []
    out = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()
    return ShardedDay(snapshots, out, history_rows, history_from, columns)


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
