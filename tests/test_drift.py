"""Drift reports on generated data: no false alarm between drift-free days, each drift knob caught on
the features it moves, clear errors, reproducibility; performance levels on delayed labels."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from fraud_assets.core import columns as c
from fraud_assets.core.drift import (
    DriftThresholds,
    drift_report,
    performance_report,
    reference_profile,
)
from fraud_assets.core.features import FEATURE_COLUMNS, LOOKBACK_DAYS, add_history_features
from fraud_assets.core.generator import DriftKnobs, SimulationConfig, TransactionSimulator

COLUMNS = list(FEATURE_COLUMNS)
LEVELS_KNOWN = ("ok", "warning", "critical")
CARDHOLDERS = 1_500  # about 3,900 transactions a day
FIRST = dt.date(2026, 1, 1)
REF_FIRST = FIRST + dt.timedelta(days=LOOKBACK_DAYS)  # full feature history from here on
DRIFT_START = REF_FIRST + dt.timedelta(days=21)
LAST = DRIFT_START + dt.timedelta(days=6)
KNOBS = {
    "amount": DriftKnobs(start=DRIFT_START, amount_multiplier=2.0),
    "merchant": DriftKnobs(start=DRIFT_START, merchant_mix_shift=0.6),
    "device": DriftKnobs(start=DRIFT_START, device_mix_shift=0.8),
    "all": DriftKnobs(
        start=DRIFT_START,
        amount_multiplier=2.0,
        merchant_mix_shift=0.6,
        device_mix_shift=0.8,
        new_fraud_pattern=True,
    ),
}


def features(knobs: DriftKnobs | None = None, last: dt.date = LAST) -> pd.DataFrame:
    sim = TransactionSimulator(
        SimulationConfig(seed=11, n_cardholders=CARDHOLDERS, drift=knobs or DriftKnobs())
    )
    return add_history_features(sim.generate_days(FIRST, last))


def days(frame: pd.DataFrame, first: dt.date, last: dt.date) -> pd.DataFrame:
    ts = frame[c.TIMESTAMP]
    lo, hi = pd.Timestamp(first), pd.Timestamp(last + dt.timedelta(days=1))
    return frame.loc[(ts >= lo) & (ts < hi)].reset_index(drop=True)


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    return features()


@pytest.fixture(scope="module")
def reference(base) -> pd.DataFrame:
    """The champion's reference: three weeks of full-history rows before the drift starts."""
    return reference_profile(days(base, REF_FIRST, DRIFT_START - dt.timedelta(days=1)), COLUMNS)


def report(reference, current, **kw):
    return drift_report(reference, current, COLUMNS, html=kw.pop("html", False), **kw)


# --- no drift -----------------------------------------------------------------------------------


def test_drift_free_days_stay_well_below_warning(base, reference):
    shares = []
    for offset in range(7):  # a whole week after the reference period, every weekday once
        day = DRIFT_START + dt.timedelta(days=offset)
        result = report(reference, days(base, day, day))
        assert result.level == "ok" and not result.dataset_drift, (day, result.drifted_columns)
        shares.append(result.drift_share)
    assert max(shares) < 0.15
    assert np.mean(shares) < 0.05


def test_two_halves_of_one_period_do_not_drift(base):
    period = days(base, REF_FIRST, REF_FIRST + dt.timedelta(days=13))
    first, second = period.iloc[: len(period) // 2], period.iloc[len(period) // 2 :]
    result = report(first, second)
    assert result.drift_share < 0.15 and result.level == "ok", result.drifted_columns


def test_default_columns_leave_out_keys_times_and_labels(base, reference):
    day = DRIFT_START + dt.timedelta(days=2)
    result = drift_report(
        days(base, REF_FIRST, REF_FIRST + dt.timedelta(days=6)), days(base, day, day), html=False
    )
    compared = set(result.per_feature["column"])
    assert set(COLUMNS) <= compared
    assert not compared & {
        c.TRANSACTION_ID,
        c.TIMESTAMP,
        c.CARD_ID,
        c.IS_FRAUD,
        c.LABEL_KNOWN_AT,
        c.USER_AGENT,
    }
    assert result.level == "ok", result.drifted_columns


def test_calendar_columns_are_shown_but_never_counted(base, reference):
    day = DRIFT_START + dt.timedelta(days=1)
    table = report(reference, days(base, day, day)).per_feature.set_index("column")
    assert table.loc[c.DAY_OF_WEEK, "kind"] == "calendar"
    assert not table.loc[[c.DAY_OF_WEEK, c.IS_WEEKEND], "tested"].any()
    assert table.loc[c.DAY_OF_WEEK, "current"] == 1.0  # one weekday: it would "drift" every day
    assert table["tested"].sum() == len(COLUMNS) - 2


# --- each knob ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def drifted() -> dict[str, pd.DataFrame]:
    return {
        name: days(features(knobs), DRIFT_START + dt.timedelta(days=2), DRIFT_START + dt.timedelta(days=2))
        for name, knobs in KNOBS.items()
    }


def test_amount_knob_drifts_the_amount_features(reference, drifted):
    result = report(reference, drifted["amount"])
    assert {c.AMOUNT, "amount_to_avg_30d", "total_amount_last_24h"} <= set(result.drifted_columns)
    assert not {c.MERCHANT_CATEGORY, "is_new_device", c.IS_ONLINE} & set(result.drifted_columns)
    assert result.level in ("warning", "critical")
    row = result.per_feature.set_index("column").loc[c.AMOUNT]
    assert row["measure"] == "mean" and row["current"] > 1.6 * row["reference"]


def test_merchant_mix_knob_drifts_merchant_category(reference, drifted):
    result = report(reference, drifted["merchant"])
    assert {c.MERCHANT_CATEGORY, c.IS_ONLINE, c.ENTRY_MODE} <= set(result.drifted_columns)
    assert c.AMOUNT not in result.drifted_columns
    row = result.per_feature.set_index("column").loc[c.MERCHANT_CATEGORY]
    assert row["kind"] == "categorical" and row["method"] == "Jensen-Shannon distance"
    assert row["current"] > row["reference"]  # the category that moved most grew


def test_device_mix_knob_drifts_is_new_device(reference, drifted):
    result = report(reference, drifted["device"])
    assert "is_new_device" in result.drifted_columns
    row = result.per_feature.set_index("column").loc["is_new_device"]
    assert row["measure"] == "share of 1" and row["current"] > row["reference"] + 0.1
    assert c.AMOUNT not in result.drifted_columns


def test_strong_combined_shift_is_critical(reference, drifted):
    result = report(reference, drifted["all"])
    assert result.level == "critical" and result.dataset_drift
    assert result.drift_share > 0.35
    assert {c.AMOUNT, c.MERCHANT_CATEGORY, "is_new_device"} <= set(result.drifted_columns)


def test_level_follows_the_seed_thresholds(reference, drifted):
    result = report(reference, drifted["all"], thresholds=DriftThresholds(warning=0.9, critical=0.95))
    assert result.level == "ok" and not result.dataset_drift
    assert DriftThresholds().level(0.15) == "ok"  # strictly above
    assert DriftThresholds().level(0.16) == "warning"
    assert DriftThresholds().level(0.21) == "critical"


# --- HTML, sampling, reproducibility ------------------------------------------------------------


def test_html_report_matches_the_table_and_is_reproducible(reference, drifted):
    from fraud_assets.core.drift import _evidently_report

    current = drifted["all"]
    a = report(reference, current, html=True, max_rows=2_000)
    b = report(reference, current, html=False, max_rows=2_000)
    assert a.html and "<html" in a.html.lower() and "merchant_category" in a.html
    assert b.html is None
    pd.testing.assert_frame_equal(a.per_feature, b.per_feature, check_exact=True)  # same code, same sample
    assert (a.drift_share, a.n_reference, a.n_current) == (b.drift_share, 2_000, 2_000)

    # Evidently's own ValueDrift results are the table's statistics (same methods, thresholds, samples).
    ref = reference_profile(reference, COLUMNS, max_rows=2_000, seed=0)
    cur = reference_profile(current, COLUMNS, max_rows=2_000, seed=1)
    snapshot = _evidently_report(ref, cur, a.per_feature, DriftThresholds())
    values = {}
    for metric in snapshot.dict()["metrics"]:
        config = metric["config"]
        if config["type"].endswith("ValueDrift"):
            values[config["column"]] = float(metric["value"])
        else:
            assert metric["value"]["count"] == a.n_drifted
    tested = a.per_feature[a.per_feature["tested"]].set_index("column")["statistic"]
    assert values.keys() == set(tested.index)
    # Equal, not close: the report runs the very stattest the table ran, on the same sample.
    for column, value in values.items():
        assert value == tested[column], column


def test_same_seed_same_result_other_seed_other_sample(base, reference):
    day = DRIFT_START + dt.timedelta(days=3)
    current = days(base, day, day)
    one = report(reference, current, max_rows=1_000, seed=5)
    two = report(reference, current, max_rows=1_000, seed=5)
    pd.testing.assert_frame_equal(one.per_feature, two.per_feature, check_exact=True)  # same code and sample
    other = report(reference, current, max_rows=1_000, seed=6)
    assert not np.allclose(one.per_feature["statistic"], other.per_feature["statistic"], equal_nan=True)


def test_reference_profile_is_compact_and_typed(base):
    raw = days(base, REF_FIRST, DRIFT_START - dt.timedelta(days=1))
    profile = reference_profile(raw, COLUMNS, max_rows=5_000)
    assert len(profile) == 5_000 and list(profile.columns) == COLUMNS
    assert profile[c.IS_ONLINE].dtype == "float64" and profile[c.MERCHANT_CATEGORY].dtype == object
    # The profile stands in for the full rows: same sample, same report.
    current = days(base, DRIFT_START, DRIFT_START)
    full = drift_report(raw, current, COLUMNS, max_rows=5_000, html=False)
    stored = drift_report(profile, current, COLUMNS, max_rows=5_000, html=False)
    pd.testing.assert_frame_equal(full.per_feature, stored.per_feature, check_exact=True)  # the same rows


def test_recent_days_keeps_a_cold_start_reference_from_crying_drift():
    """Training rows that start with the data have history features still filling up: against
    all of them every later day drifts; against their last week it does not."""
    sim = TransactionSimulator(SimulationConfig(seed=3, n_cardholders=500))
    # 48 days: the last training week has every window full (30 days of card history, and the
    # merchant windows' labels, which arrive 7 days late, over 30 + 7 days).
    frame = add_history_features(sim.generate_days(dt.date(2026, 2, 1), dt.date(2026, 3, 21)))
    training = days(frame, dt.date(2026, 2, 1), dt.date(2026, 3, 19))
    today = days(frame, dt.date(2026, 3, 20), dt.date(2026, 3, 20))
    cold = report(reference_profile(training, COLUMNS), today)
    assert cold.level == "critical" and "transactions_last_30d" in cold.drifted_columns
    warm_profile = reference_profile(training, COLUMNS, recent_days=7)
    assert len(warm_profile) < len(training)
    warm = report(warm_profile, today)
    assert warm.level != "critical" and warm.drift_share < cold.drift_share / 2
    # What may still drift: the longest windows, and the merchant features of a single day's
    # labels (a 1-day window, a fraud run), which move from day to day on 500 cardholders.
    assert set(warm.drifted_columns) <= {
        "merchant_labelled_1d",
        "merchant_known_fraud_streak",
        "merchant_days_since_fraud_run_began",
        "transactions_last_30d",
        "total_amount_last_30d",
        "merchant_labelled_7d",
        "merchant_labelled_30d",
    }
    with pytest.raises(ValueError, match="timestamp"):
        reference_profile(training.drop(columns=[c.TIMESTAMP]), COLUMNS, recent_days=7)


# --- errors and awkward data --------------------------------------------------------------------


@pytest.mark.parametrize("missing", [None, pd.DataFrame(), pd.DataFrame(columns=COLUMNS)])
def test_missing_reference_says_what_to_do(base, missing):
    with pytest.raises(ValueError, match=r"champion's training reference is missing.*reference_profile"):
        drift_report(missing, days(base, DRIFT_START, DRIFT_START), COLUMNS)


def test_missing_columns_are_named(base, reference):
    current = days(base, DRIFT_START, DRIFT_START)
    with pytest.raises(ValueError, match=r"missing in the current data: \['amount'\]"):
        drift_report(reference, current.drop(columns=[c.AMOUNT]), COLUMNS)
    with pytest.raises(ValueError, match=r"missing in the reference: \['fraud_score'\]"):
        drift_report(reference, current.assign(fraud_score=0.1), [*COLUMNS, "fraud_score"])
    with pytest.raises(ValueError, match="no rows"):
        drift_report(reference, current.iloc[0:0], COLUMNS)


def test_all_nan_columns_and_nullable_types():
    rng = np.random.default_rng(0)
    n = 3_000
    ref = pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "empty_both": np.full(n, np.nan),
            "empty_now": rng.normal(size=n),
            "flag": pd.array(rng.random(n) < 0.3, dtype="boolean"),
            "cat": pd.array(rng.choice(["a", "b", "c"], n), dtype="string"),
            "count": pd.array(rng.poisson(3, n), dtype="Int64"),
        }
    )
    cur = ref.sample(frac=1.0, random_state=1).reset_index(drop=True)
    cur["empty_now"] = np.nan
    cur.loc[:100, "cat"] = pd.NA
    result = drift_report(ref, cur, html=True)
    table = result.per_feature.set_index("column")
    assert not table.loc["empty_both", "tested"] and "both sides" in table.loc["empty_both", "note"]
    assert table.loc["empty_now", "drifted"] and "current" in table.loc["empty_now", "note"]
    assert table.loc["empty_now", "missing_current"] == 1.0
    assert not table.loc[["x", "flag", "cat", "count"], "drifted"].any()
    assert table.loc["flag", "kind"] == "categorical" and table.loc["count", "kind"] == "numerical"
    assert result.n_tested == 5 and result.drift_share == 1 / 5  # 1 / 5 computed once either way
    assert result.html  # the HTML leaves the untestable columns out rather than failing
    with pytest.raises(ValueError, match="none of the columns"):
        drift_report(ref, cur, ["empty_both"], html=False)
    # A category column that only now has values: drifted, and still a category.
    late = drift_report(ref.assign(cat=np.nan), cur, ["x", "cat"], html=False).per_feature.set_index("column")
    assert late.loc["cat", "kind"] == "categorical" and late.loc["cat", "drifted"]
    with pytest.raises(ValueError, match="numeric in the reference but text"):
        drift_report(ref.assign(cat=1.0), cur, ["cat"], html=False)


# --- performance --------------------------------------------------------------------------------


def _scored(auc_target: float, n: int = 4_000, seed: int = 0):
    """Labels and scores whose AUC is about ``auc_target`` (binormal model)."""
    from scipy.stats import norm

    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(int)
    shift = np.sqrt(2) * norm.ppf(auc_target)
    scores = rng.normal(size=n) + shift * y
    return y, 1 / (1 + np.exp(-scores))


@pytest.mark.parametrize(("auc", "level"), [(0.93, "ok"), (0.78, "warning"), (0.65, "critical")])
def test_performance_levels_follow_the_seed(auc, level):
    y, s = _scored(auc)
    context = pd.DataFrame(
        {c.TIMESTAMP: pd.Timestamp("2026-03-01") + pd.to_timedelta(np.arange(len(y)) * 60, "s"),
         c.CARD_ID: [f"c{i % 900}" for i in range(len(y))]}
    )  # fmt: skip
    report = performance_report(y, s, 0.5, context=context)
    assert report["level"] == level, report["auc_roc"]
    assert {"auc_roc", "average_precision", "card_precision_at_100", "precision", "recall"} <= report.keys()
    assert (report["reason"] is None) == (level == "ok")


def test_performance_without_labels_is_unknown_not_a_crash():
    empty = performance_report(np.array([], dtype="int64"), np.array([]), 0.5)
    assert empty["level"] == "unknown" and "no labelled transactions yet" in empty["reason"]
    assert empty["auc_roc"] is None and empty["n"] == 0

    legit_only = performance_report(np.zeros(50, int), np.linspace(0, 1, 50), 0.5)
    assert legit_only["level"] == "unknown" and "no fraud among the 50" in legit_only["reason"]

    y, s = _scored(0.9, n=1_000)
    pending = np.where(np.arange(1_000) < 400, np.nan, y)  # 400 labels not in yet
    partial = performance_report(pending, s, 0.5)
    assert partial["n"] == 600 and partial["n_unlabelled"] == 400 and partial["level"] in LEVELS_KNOWN
    all_pending = performance_report(np.full(10, np.nan), np.zeros(10), 0.5)
    assert all_pending["level"] == "unknown" and all_pending["n_unlabelled"] == 10

    with pytest.raises(ValueError, match="aligned"):
        performance_report([0, 1], [0.1], 0.5)
