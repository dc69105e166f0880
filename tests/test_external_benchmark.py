"""The external benchmark's instrument (bench/external): the Handbook's simulator, its features
and protocol, a leakage guard on those features, and a smoke run of the whole benchmark."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench.external import run as benchmark
from bench.external.features import DELAY_DAYS, FEATURES, SECONDS_PER_DAY, baseline_features
from bench.external.protocol import Week, card_precision_at_k, prequential_weeks, split
from bench.external.simulator import SimulatorConfig, simulate, terminals_within_radius

SMALL = SimulatorConfig.scaled(n_customers=300, n_terminals=600, n_days=60, seed=1)


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    return simulate(SMALL)


def test_simulator_is_seeded_and_follows_the_books_rules(small):
    pd.testing.assert_frame_equal(small, simulate(SMALL))
    assert not small.equals(simulate(SimulatorConfig.scaled(300, 600, 60, seed=2)))
    assert small["TX_DATETIME"].is_monotonic_increasing
    assert (small["TRANSACTION_ID"] == np.arange(len(small))).all()
    seconds_of_day = small["TX_TIME_SECONDS"] % SECONDS_PER_DAY
    assert seconds_of_day.between(1, SECONDS_PER_DAY - 1).all()
    assert (small["TX_TIME_SECONDS"] // SECONDS_PER_DAY == small["TX_TIME_DAYS"]).all()
    # Scenario 1 labels every amount above 220; every scenario's rows are fraud, the rest not.
    assert (small.loc[small["TX_AMOUNT"] > 220, "TX_FRAUD"] == 1).all()
    assert ((small["TX_FRAUD_SCENARIO"] > 0) == (small["TX_FRAUD"] == 1)).all()
    assert set(small["TX_FRAUD_SCENARIO"].unique()) == {0, 1, 2, 3}
    # Scenario 3: the fraudster spends five times the customer's usual amount. Per customer,
    # stolen amounts over the same customer's genuine ones average ~5 (noisy: a handful of rows).
    stolen = small[small["TX_FRAUD_SCENARIO"] == 3].groupby("CUSTOMER_ID")["TX_AMOUNT"].mean()
    genuine = small[small["TX_FRAUD"] == 0].groupby("CUSTOMER_ID")["TX_AMOUNT"].mean()
    assert 4 < (stolen / genuine[stolen.index]).median() < 6


def test_terminals_within_radius_is_exact():
    rng = np.random.default_rng(0)
    customers, terminals = rng.uniform(0, 100, (200, 2)), rng.uniform(0, 100, (700, 2))
    found, offsets = terminals_within_radius(customers, terminals, radius=9.0, chunk=37)
    distance = np.sqrt(((customers[:, None, :] - terminals[None, :, :]) ** 2).sum(-1))
    for c in range(len(customers)):
        np.testing.assert_array_equal(found[offsets[c] : offsets[c + 1]], np.flatnonzero(distance[c] < 9.0))


def _rolling_reference(tx: pd.DataFrame) -> pd.DataFrame:
    """The book's definitions with pandas time-based rolling windows, one entity at a time."""
    out = pd.DataFrame(index=tx["TRANSACTION_ID"].to_numpy())
    indexed = tx.set_index("TX_DATETIME")
    for _, rows in indexed.groupby("CUSTOMER_ID"):
        for w in (1, 7, 30):
            window = rows["TX_AMOUNT"].rolling(f"{w}D")
            ids = rows["TRANSACTION_ID"].to_numpy()
            out.loc[ids, f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"] = window.count().to_numpy()
            out.loc[ids, f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"] = window.mean().to_numpy()
    for _, rows in indexed.groupby("TERMINAL_ID"):
        ids = rows["TRANSACTION_ID"].to_numpy()
        delayed = rows["TX_FRAUD"].rolling(f"{DELAY_DAYS}D")
        for w in (1, 7, 30):
            wide = rows["TX_FRAUD"].rolling(f"{DELAY_DAYS + w}D")
            count = wide.count().to_numpy() - delayed.count().to_numpy()
            frauds = wide.sum().to_numpy() - delayed.sum().to_numpy()
            out.loc[ids, f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW"] = count
            out.loc[ids, f"TERMINAL_ID_RISK_{w}DAY_WINDOW"] = np.where(
                count > 0, frauds / np.maximum(count, 1), 0
            )
    return out


def test_features_are_the_books_rolling_windows(small):
    tx = small[small["CUSTOMER_ID"] < 60].reset_index(drop=True)  # a slice keeps pandas quick
    ours = baseline_features(tx)
    assert list(ours.columns) == list(FEATURES) and len(FEATURES) == 15
    reference = _rolling_reference(tx)
    for name in reference.columns:
        # Window sums from cumulative sums differ from pandas' own running sums by rounding only:
        # amounts up to ~1e3, at most ~1e4 terms -> absolute error far below 1e-6.
        np.testing.assert_allclose(ours[name].to_numpy(), reference[name].to_numpy(), rtol=0, atol=1e-6)
    assert ((ours["TX_DURING_NIGHT"] == 1) == (tx["TX_DATETIME"].dt.hour <= 6)).all()
    assert ((ours["TX_DURING_WEEKEND"] == 1) == (tx["TX_DATETIME"].dt.dayofweek >= 5)).all()


@pytest.mark.parametrize("cut", ["2018-05-10 00:00:00", "2018-05-10 12:34:56", "2018-05-20 23:59:59"])
def test_a_label_known_after_a_transaction_never_reaches_its_features(small, cut):
    """Leakage guard: a label becomes known DELAY_DAYS after its transaction. Rewriting every
    label not yet known at time ``cut`` must leave the features of all transactions up to ``cut``
    unchanged, so nothing that arrives after a day can reach that day's features."""
    cut = pd.Timestamp(cut)
    known_at = small["TX_DATETIME"] + pd.Timedelta(days=DELAY_DAYS)
    unknown = (known_at > cut).to_numpy()
    rewritten = small.copy()
    rewritten.loc[unknown, "TX_FRAUD"] = 1 - rewritten.loc[unknown, "TX_FRAUD"]
    up_to_cut = (small["TX_DATETIME"] <= cut).to_numpy()
    before = baseline_features(small)[up_to_cut]
    after = baseline_features(rewritten)[up_to_cut]
    pd.testing.assert_frame_equal(before, after)
    # The guard can fail: windows one day too recent do see the rewritten labels.
    leaky = baseline_features(rewritten, delay_days=DELAY_DAYS - 1)[up_to_cut]
    assert not leaky.equals(baseline_features(small, delay_days=DELAY_DAYS - 1)[up_to_cut])


def test_protocol_leaves_out_known_cards_and_counts_found_cards_once():
    # Card 1 is a known fraud in training (day 0); card 2's fraud on day 9 is known from day 17.
    tx = pd.DataFrame(
        {
            "TX_TIME_DAYS": [0, 0, 9, 14, 14, 15, 16, 17, 17],
            "CUSTOMER_ID": [1, 2, 2, 1, 2, 3, 3, 2, 3],
            "TX_FRAUD": [1, 0, 1, 1, 1, 1, 1, 1, 0],
        }
    )
    week = Week(train_start=0, train_days=7, delay_days=7, test_days=4)
    train, test = split(tx, week)
    assert train.tolist() == [0, 1]
    assert test.tolist() == [4, 5, 6, 8]  # card 1 never; card 2 until its day-9 fraud is known
    # Day 14: card 2 is found; day 15: card 3 is found; days 16 and 17: card 3 was found
    # already, no card is left to investigate, and the day counts 0 (the book divides by k).
    days, cards = tx["TX_TIME_DAYS"].to_numpy()[test], tx["CUSTOMER_ID"].to_numpy()[test]
    per_day, mean = card_precision_at_k(days, cards, tx["TX_FRAUD"].to_numpy()[test], np.ones(len(test)), k=1)
    assert per_day == [1.0, 1.0, 0.0, 0.0] and mean == 0.5
    assert [w.test_start for w in prequential_weeks(129, 4)] == [129, 136, 143, 150]
    assert prequential_weeks(129, 1)[0].train_start == 115  # the book's 2018-07-25


def test_quick_benchmark_runs_end_to_end(tmp_path):
    """The whole benchmark on a small world: simulator, book models, the platform through its
    landing folder and its own jobs, the protocol's metrics."""
    assert benchmark.main(["--seeds", "1", "--quick", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    (seed,) = results["seeds"]
    models = {row["model"] for row in seed["weeks"]}
    assert models == {"book_xgboost", "book_random_forest", "platform", "platform_uncalibrated"}
    for row in seed["weeks"]:
        assert 0.5 < row["auc_roc"] <= 1, row
        assert 0 < row["average_precision"] <= 1, row
        assert 0 <= row["card_precision_at_100"] <= 1, row
    report = seed["platform"]
    assert report["rows"]["raw"] == report["rows"]["validated"] + report["rows"]["rejected"]
    assert report["days_from_training_end_to_first_test_day"] >= 7  # at least the label delay
    assert report["distinct_scores"] > 1 and "merchant_fraud_rate_30d" in report["features_computed"]
    assert (tmp_path / "results.md").read_text().startswith("# External benchmark (quick, ")
