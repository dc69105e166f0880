"""Leakage guard: a label that arrives after a transaction's day began never reaches its features.

For several cut days D, every label that becomes known at or after D 00:00 is flipped (fraud <->
legit). The features of every transaction before D + 1 day (the day D itself included, whose
features may only use labels known before it began) must not change, to the last bit; those of
later days must change somewhere, or the check would prove nothing. The same guard runs on the
platform's generated data and on the Handbook simulator's file read through the landing path
(six columns, ``label_known_at`` = transaction time + the label delay).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.external.platform_run import LABEL_DELAY_DAYS, MAPPING, write_landing_csv
from bench.external.simulator import SimulatorConfig, simulate
from fraud_assets.core import columns as c
from fraud_assets.core.features import HISTORY_FEATURES, MERCHANT_FEATURES, history_features
from fraud_assets.core.generator import SimulationConfig, TransactionSimulator
from fraud_assets.core.ingest import LandingSettings, read_landing_file
from fraud_assets.core.validation import split_transactions


def generated() -> pd.DataFrame:
    sim = TransactionSimulator(SimulationConfig(seed=5, n_cardholders=300))
    return sim.generate_days(dt.date(2026, 2, 1), dt.date(2026, 3, 25))


def handbook_through_landing(tmp_path: Path) -> pd.DataFrame:
    transactions = simulate(SimulatorConfig.scaled(n_customers=400, n_terminals=800, n_days=55, seed=3))
    path = write_landing_csv(transactions, tmp_path / "handbook.csv")
    raw = read_landing_file(path, LandingSettings(column_mapping=MAPPING, label_delay_days=LABEL_DELAY_DAYS))
    return split_transactions(raw).validated.reset_index(drop=True)


def features_of(frame: pd.DataFrame) -> pd.DataFrame:
    out = history_features(frame)
    return pd.DataFrame({name: out[name] for name in HISTORY_FEATURES if name in out})


def assert_late_labels_never_reach_earlier_features(frame: pd.DataFrame) -> None:
    assert set(MERCHANT_FEATURES) <= set(features_of(frame.head(50)).columns)  # labels are used
    before = features_of(frame)
    first, last = frame[c.TIMESTAMP].min().normalize(), frame[c.TIMESTAMP].max().normalize()
    changed_later = 0
    for fraction in (0.45, 0.6, 0.8):
        cut = first + pd.Timedelta(days=round((last - first).days * fraction))
        flipped = frame.copy()
        late = (flipped[c.LABEL_KNOWN_AT] >= cut).to_numpy() & flipped[c.IS_FRAUD].notna().to_numpy()
        labels = flipped[c.IS_FRAUD].astype("Int8")
        flipped[c.IS_FRAUD] = labels.where(~late, 1 - labels)
        after = features_of(flipped)
        early = (frame[c.TIMESTAMP] < cut + pd.Timedelta(days=1)).to_numpy()
        # Equal, not close: the same rows and labels enter each early feature, summed in the same order.
        pd.testing.assert_frame_equal(after[early], before[early], check_exact=True)
        changed_later += int((after[~early] != before[~early]).any(axis=1).sum())
    assert changed_later > 0, "no later feature moved: the labels flipped were never used"


def test_late_labels_never_reach_earlier_features_on_generated_data():
    assert_late_labels_never_reach_earlier_features(generated())


def test_late_labels_never_reach_earlier_features_on_the_handbook_file(tmp_path):
    frame = handbook_through_landing(tmp_path)
    delay = frame[c.LABEL_KNOWN_AT] - frame[c.TIMESTAMP]
    assert (delay == pd.Timedelta(days=LABEL_DELAY_DAYS)).all()  # what the landing path promises
    assert_late_labels_never_reach_earlier_features(frame)


@pytest.mark.parametrize("early_fraud_days", [0.5, 2.0])
def test_a_label_known_during_the_day_waits_for_the_next_day(early_fraud_days):
    """A chargeback known a few hours after its transaction still only counts from the next
    day on: features are computed per day, from the labels known when the day began."""
    frame = generated()
    frauds = frame[c.IS_FRAUD].eq(1).to_numpy()
    fast = frame.copy()
    fast.loc[frauds, c.LABEL_KNOWN_AT] = fast.loc[frauds, c.TIMESTAMP] + pd.Timedelta(days=early_fraud_days)
    features = features_of(fast)
    day = fast[c.TIMESTAMP].dt.normalize()
    # Recompute each day's rows with every label known at or after that day's start removed:
    # identical, for a sample of days.
    for d in np.unique(day)[20:50:7]:
        unknown = (fast[c.LABEL_KNOWN_AT] >= d).to_numpy()
        hidden = fast.copy()
        hidden[c.IS_FRAUD] = hidden[c.IS_FRAUD].astype("Int8").where(~unknown, pd.NA)
        rows = (day == d).to_numpy()
        pd.testing.assert_frame_equal(features_of(hidden)[rows], features[rows], check_exact=True)
