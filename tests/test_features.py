"""History features: point in time, no leakage, and the one-transaction path equals batch."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from fraud_assets.core import columns as c
from fraud_assets.core.features import (
    HISTORY_FEATURES,
    LOOKBACK_DAYS,
    MerchantRiskSnapshot,
    available_history_features,
    history_features,
)
from fraud_assets.core.generator import SimulationConfig, TransactionSimulator
from fraud_assets.core.labels import join_labels
from fraud_assets.core.preprocessor import FraudPreprocessor
from fraud_assets.core.shards import by_card_shard, card_shards, with_merchant_features
from fraud_assets.core.splitting import prepare_train_test_split


@pytest.fixture(scope="module")
def stream() -> pd.DataFrame:
    sim = TransactionSimulator(SimulationConfig(seed=11, n_cardholders=300))
    return sim.generate_days(dt.date(2026, 2, 1), dt.date(2026, 3, 20))


def frame_of(features: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame(features)[list(HISTORY_FEATURES)]


def test_hand_computed_card_windows():
    ts = pd.to_datetime(["2026-01-01 10:00", "2026-01-01 10:30", "2026-01-01 10:30", "2026-01-02 09:00"])
    frame = pd.DataFrame(
        {
            c.TIMESTAMP: ts,
            c.CARD_ID: ["A", "A", "B", "A"],
            c.MERCHANT_ID: ["m1", "m2", "m1", "m1"],
            c.AMOUNT: [10.0, 20.0, 5.0, 40.0],
            c.DEVICE_FINGERPRINT: [None, "d1", "d1", "d1"],
        }
    )
    f = history_features(frame)
    assert f["transactions_last_1h"].tolist() == [0, 1, 0, 0]
    assert f["transactions_last_24h"].tolist() == [0, 1, 0, 2]
    assert f["total_amount_last_24h"].tolist() == [0, 10, 0, 30]
    assert f["amount_to_avg_30d"].tolist() == [1, 2, 1, pytest.approx(40 / 15)]
    assert f["seconds_since_last_txn"][1] == 1800 and f["seconds_since_last_txn"][3] == 81000
    assert f["is_new_merchant"].tolist() == [1, 1, 1, 0]
    assert f["is_new_device"].tolist() == [0, 1, 1, 0]  # card-present rows are never "new device"
    assert "merchant_fraud_rate_30d" not in f  # no labels, no merchant risk
    assert available_history_features(frame.columns) == tuple(k for k in HISTORY_FEATURES if k in f)


def test_hand_computed_card_averages_and_merchant_fraud_runs():
    # Merchant M: fraud on days 1-2, legit on day 3, fraud on days 4-5, then a query on day 20
    # (labels known 7 days after each transaction, so all five are known by then).
    days = [1, 2, 3, 4, 5, 20]
    ts = pd.to_datetime([f"2026-01-{d:02d} 12:00" for d in days])
    frame = pd.DataFrame(
        {
            c.TIMESTAMP: ts,
            c.CARD_ID: ["A", "B", "C", "D", "E", "F"],
            c.MERCHANT_ID: ["M"] * 6,
            c.AMOUNT: [10.0] * 6,
            c.IS_FRAUD: pd.array([1, 1, 0, 1, 1, 0], dtype="Int8"),
            c.LABEL_KNOWN_AT: ts + pd.Timedelta(days=7),
        }
    )
    f = history_features(frame)
    assert f["merchant_known_fraud_streak"][5] == 2  # days 4 and 5, after the legit day 3
    assert f["merchant_days_since_fraud_run_began"][5] == 20 - 4 - 0.5  # as of day 20 00:00
    assert f["merchant_days_since_known_fraud"][5] == 20 - 5 - 0.5
    # On day 5 no label is known yet (the first arrives on day 8): no run, no recent fraud.
    assert f["merchant_known_fraud_streak"][4] == 0 and f["merchant_days_since_known_fraud"][4] == 37
    # 1-day window = the day that ended 7 days before: day 13 for the day-20 query (nothing).
    assert f["merchant_frauds_1d"][5] == 0 and f["merchant_frauds_30d"][5] == 4
    card = pd.DataFrame(
        {
            c.TIMESTAMP: pd.to_datetime(["2026-01-01 10:00", "2026-01-05 10:00", "2026-01-08 11:00"]),
            c.CARD_ID: ["A"] * 3,
            c.MERCHANT_ID: ["m"] * 3,
            c.AMOUNT: [10.0, 30.0, 100.0],
        }
    )
    g = history_features(card)
    assert g["avg_amount_last_7d"].tolist() == [0, 10, 30]  # day 1 10:00 is over 7 days before day 8 11:00
    assert g["amount_to_avg_7d"].tolist() == [1, 3, pytest.approx(100 / 30)]
    assert g["amount_to_avg_30d"][2] == pytest.approx(100 / 20)


def test_no_leakage_from_later_transactions_or_labels(stream):
    cut = pd.Timestamp("2026-03-05")
    early = stream[stream[c.TIMESTAMP] < cut].reset_index(drop=True)
    full = frame_of(history_features(stream)).iloc[: len(early)]
    alone = frame_of(history_features(early))
    # Equal, not close (here and below): a row's windows hold the same earlier rows either way,
    # and the kernel sums them in the same order (newest first); counts and rates are exact.
    pd.testing.assert_frame_equal(alone, full.reset_index(drop=True), check_exact=True)
    # flipping labels that only become known later changes nothing before then
    flipped = stream.copy()
    later_known = flipped[c.LABEL_KNOWN_AT] >= cut
    flipped.loc[later_known, c.IS_FRAUD] = 1 - flipped.loc[later_known, c.IS_FRAUD]
    again = frame_of(history_features(flipped)).iloc[: len(early)]
    pd.testing.assert_frame_equal(again.reset_index(drop=True), alone, check_exact=True)


def test_a_days_own_labels_never_reach_its_features(stream):
    day = (stream[c.TIMESTAMP] >= "2026-03-10") & (stream[c.TIMESTAMP] < "2026-03-11")
    flipped = stream.copy()
    flipped.loc[day, c.IS_FRAUD] = 1 - flipped.loc[day, c.IS_FRAUD]
    flipped.loc[day, c.LABEL_KNOWN_AT] = flipped.loc[day, c.TIMESTAMP]  # even if known at once
    before = frame_of(history_features(stream))[day.to_numpy()]
    after = frame_of(history_features(flipped))[day.to_numpy()]
    pd.testing.assert_frame_equal(before, after, check_exact=True)


def test_one_transaction_path_equals_batch(stream):
    batch = frame_of(history_features(stream))
    rng = np.random.default_rng(0)
    late = np.flatnonzero(stream[c.TIMESTAMP] >= pd.Timestamp("2026-03-15"))
    snapshots: dict[pd.Timestamp, MerchantRiskSnapshot] = {}
    for row in rng.choice(late, 60, replace=False):
        txn = stream.iloc[row]
        day = txn[c.TIMESTAMP].normalize()
        if day not in snapshots:
            snapshots[day] = MerchantRiskSnapshot.compute(stream, day)
        card = stream[
            (stream[c.CARD_ID] == txn[c.CARD_ID])
            & (stream[c.TIMESTAMP] < txn[c.TIMESTAMP])
            & (stream[c.TIMESTAMP] >= txn[c.TIMESTAMP] - pd.Timedelta(days=LOOKBACK_DAYS))
        ]
        rows = pd.concat([card, stream.iloc[[row]]], ignore_index=True)  # its card's history, then it
        single = history_features(rows, snapshots[day], targets=np.array([len(rows) - 1]))
        for name in HISTORY_FEATURES:  # the same kernel on the same rows: equal
            assert single[name][0] == batch.iloc[row][name], (row, name)


def test_partitioned_computation_with_lookback_equals_full(stream):
    day = pd.Timestamp("2026-03-18")
    lookback = stream[(stream[c.TIMESTAMP] >= day - pd.Timedelta(days=LOOKBACK_DAYS))].reset_index(drop=True)
    rows = (lookback[c.TIMESTAMP] >= day).to_numpy()
    part = frame_of(history_features(lookback))[rows].reset_index(drop=True)
    full = frame_of(history_features(stream))[(stream[c.TIMESTAMP] >= day).to_numpy()].reset_index(drop=True)
    pd.testing.assert_frame_equal(part, full, check_exact=True)


def test_preprocessor_batch_equals_column_path_and_handles_unknown_categories(stream):
    X_train, X_test, y_train, _ = prepare_train_test_split(stream)
    pre = FraudPreprocessor().fit(X_train, y_train)
    batch = pre.transform(X_test.head(50))
    one = X_test.iloc[[7]].copy()
    cols = {col: one[col].to_numpy() for col in pre.input_columns_}
    # `transform` is `transform_columns` on the frame's columns, element by element: equal.
    np.testing.assert_array_equal(pre.transform_columns(cols)[0], batch.iloc[7].to_numpy())
    odd = X_test.head(3).copy()
    odd[c.MERCHANT_CATEGORY] = "space_travel"
    encoded = pre.transform(odd).filter(like="merchant_category=")
    assert (encoded.to_numpy() == encoded.to_numpy()[0]).all()  # unknown: the all-zero one-hot, scaled


def test_preprocessor_errors_say_what_to_do(stream):
    pre = FraudPreprocessor()
    with pytest.raises(RuntimeError, match="call fit"):
        pre.transform(stream.head())
    with pytest.raises(ValueError, match="scaling_method"):
        FraudPreprocessor(scaling_method="minmax").fit(stream.head())
    with pytest.raises(ValueError, match="empty"):
        pre.fit(stream.head(0))
    pre.fit(prepare_train_test_split(stream)[0])
    with pytest.raises(ValueError, match="history features first"):
        pre.transform(stream.head())


def test_split_is_time_ordered_with_a_gap_and_known_labels(stream):
    X_train, X_test, y_train, y_test = prepare_train_test_split(stream, test_size=0.2, gap_days=7)
    assert X_train[c.TIMESTAMP].max() + pd.Timedelta(days=7) <= X_test[c.TIMESTAMP].min()
    assert (X_train[c.LABEL_KNOWN_AT] < X_test[c.TIMESTAMP].min()).all()
    assert y_train.sum() > 0 and y_test.sum() > 0
    with pytest.raises(ValueError, match="too short"):
        prepare_train_test_split(stream[stream[c.TIMESTAMP] < "2026-02-04"])


def test_a_window_without_fraud_fails_clearly(stream):
    no_fraud = stream.assign(**{c.IS_FRAUD: 0})
    with pytest.raises(ValueError, match="needs both classes"):
        prepare_train_test_split(no_fraud)
    with pytest.raises(ValueError, match="no 'is_fraud' column"):
        prepare_train_test_split(stream.drop(columns=[c.IS_FRAUD]))


def test_a_merchant_risk_table_from_an_older_version_is_refused_clearly(stream):
    table = MerchantRiskSnapshot.compute(stream, pd.Timestamp("2026-03-10")).to_frame()
    again = MerchantRiskSnapshot.from_frame(table)
    assert again.lookup(["nobody"])["merchant_known_fraud_streak"][0] == 0  # a merchant never seen
    with pytest.raises(ValueError, match=r"known_fraud_streak.*materialize merchant_risk again"):
        MerchantRiskSnapshot.from_frame(table.drop(columns=["known_fraud_streak", "frauds_1d"]))


# --- card shards ----------------------------------------------------------------------------------


def test_card_shards_are_stable_and_put_each_card_in_one_shard():
    ids = np.array(["card_000001", "card_000002", "C42", "card_000001", None], dtype=object)
    # pinned: the shard of a card must not change between processes, machines or releases
    assert card_shards(ids, 4).tolist() == [0, 2, 1, 0, 0]
    assert card_shards(ids, 7).tolist() == [0, 6, 4, 0, 0]
    assert card_shards(ids, 1).tolist() == [0] * 5
    many = np.array([f"card_{i:06d}" for i in range(10_000)], dtype=object)
    counts = np.bincount(card_shards(many, 4), minlength=4)
    assert counts.sum() == 10_000 and counts.min() > 2_300  # 2,500 each, give or take a few sigma


@pytest.mark.parametrize("shards", [1, 4])
def test_a_day_by_card_shard_equals_the_day_at_once(stream, shards):
    """Card features from each shard's own rows, merchant features from the shards' counts added
    up: exactly the features of the whole lookback computed at once (the same earlier rows in
    each window, the same kernel; merchant counts are whole numbers, so their sums are exact)."""
    day = pd.Timestamp("2026-03-18")
    lookback = stream[stream[c.TIMESTAMP] >= day - pd.Timedelta(days=LOOKBACK_DAYS)].reset_index(drop=True)
    events = join_labels(lookback, None, pd.Timedelta(days=7)).events
    rows = (lookback[c.TIMESTAMP] >= day).to_numpy()
    whole = frame_of(history_features(lookback, labels=events))[rows]
    whole.index = lookback.loc[rows, c.TRANSACTION_ID].to_numpy()

    shard_of = card_shards(lookback[c.CARD_ID].to_numpy(), shards)
    days = [day + pd.Timedelta(days=k) for k in range(3)]  # the stream ends on 2026-03-20
    result = by_card_shard(
        lambda shard: lookback[shard_of == shard].reset_index(drop=True),
        shards,
        lambda history: join_labels(history, None, pd.Timedelta(days=7)).events,
        days,
        keep=lambda history: (history[c.TIMESTAMP] >= day).to_numpy(),
    )
    assert result.history_rows == len(lookback)
    got = with_merchant_features(result.rows, dict(zip(days, result.snapshots, strict=True)))
    got = got.set_index(c.TRANSACTION_ID)[list(HISTORY_FEATURES)].loc[whole.index]
    pd.testing.assert_frame_equal(got, whole, check_exact=True)
    for snapshot in result.snapshots:  # and the day's merchant-risk table
        at_once = MerchantRiskSnapshot.compute(lookback, snapshot.as_of, events).to_frame()
        pd.testing.assert_frame_equal(snapshot.to_frame(), at_once, check_exact=True)
