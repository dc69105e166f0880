"""The shadow comparison's arithmetic: both models' figures on the same labelled rows, the paired
bootstrap's intervals, the decision, and which logged rows are compared."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from fraud_assets.core.prediction_log import read_prediction_log
from fraud_assets.core.shadow import PROMOTE, REFUSE, compare_on_labels, shadow_pairs

DAY = pd.Timestamp("2026-03-01 12:00")


def population(n: int, seed: int, fraud_rate: float = 0.1):
    """Labels, two noisy scorers of them (the challenger less noisy), days and cards."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < fraud_rate).astype(int)
    champion = y + rng.normal(0, 1.0, n)
    challenger = y + rng.normal(0, 0.5, n)
    stamps = DAY + pd.to_timedelta(rng.integers(0, 5, n), unit="D")
    cards = np.array([f"c{i}" for i in rng.integers(0, n // 3, n)], dtype=object)
    return y, champion, challenger, stamps, cards


def test_the_figures_are_those_of_each_model_on_the_same_rows():
    y, s0, s1, stamps, cards = population(600, seed=1)
    result = compare_on_labels(y, s0, s1, stamps, cards, capacity=10, resamples=20, seed=3)
    # sklearn on the same arrays: the same floating-point operations, so equal to the last bit
    assert result.champion["average_precision"].value == average_precision_score(y, s0)
    assert result.challenger["auc_roc"].value == roc_auc_score(y, s1)
    assert result.difference["average_precision"].value == pytest.approx(
        average_precision_score(y, s1) - average_precision_score(y, s0), abs=1e-15
    )
    assert (result.labelled, result.frauds, result.days) == (600, int(y.sum()), 5)
    for side in (result.champion, result.challenger, result.difference):
        for estimate in side.values():
            assert estimate.low <= estimate.high
    assert result.decision()[0] == PROMOTE  # the less noisy challenger ranks better


def test_precision_at_capacity_takes_the_top_cards_of_each_day():
    # day 1: card a (0.9, fraud) above b (0.1) -> 1/1; day 2: b (0.8, genuine) above a -> 0/1
    y = [1, 0, 0, 0]
    scores = [0.9, 0.1, 0.2, 0.8]
    stamps = [DAY, DAY, DAY + pd.Timedelta(days=1), DAY + pd.Timedelta(days=1)]
    cards = ["a", "b", "a", "b"]
    result = compare_on_labels(y, scores, scores, stamps, cards, capacity=1, resamples=0)
    assert result.champion["precision_at_capacity"].value == 0.5
    assert np.isnan(result.champion["precision_at_capacity"].low)  # no resamples: no interval
    assert result.usable_resamples == 0


def test_the_bootstrap_is_paired_seeded_and_narrows_with_more_labels():
    y, s0, _, stamps, cards = population(400, seed=2)
    same = compare_on_labels(y, s0, s0, stamps, cards, capacity=10, resamples=30, seed=0)
    # the same rows drawn for both models: identical scorers differ by exactly zero in every resample
    for estimate in same.difference.values():
        assert (estimate.value, estimate.low, estimate.high) == (0.0, 0.0, 0.0)

    again = compare_on_labels(y, s0, s0, stamps, cards, capacity=10, resamples=30, seed=0)
    assert again == same  # seeded: the same intervals
    other = compare_on_labels(y, s0, s0, stamps, cards, capacity=10, resamples=30, seed=1)
    assert other.champion["auc_roc"] != same.champion["auc_roc"]  # the seed is what decides them

    def width(n: int) -> float:
        ys, a, b, ts, cs = population(n, seed=5)
        estimate = compare_on_labels(ys, a, b, ts, cs, capacity=10, resamples=100, seed=0).difference
        return estimate["average_precision"].high - estimate["average_precision"].low

    # the interval's width goes as 1/sqrt(n): ten times the labels, about a third of the width
    assert width(4000) < 0.6 * width(400)


def test_the_decision_needs_at_least_the_champions_average_precision_and_enough_labels():
    y, s0, s1, stamps, cards = population(300, seed=4)
    better = compare_on_labels(y, s0, s1, stamps, cards, capacity=10, resamples=10)
    worse = compare_on_labels(y, s1, s0, stamps, cards, capacity=10, resamples=10)
    assert better.decision()[0] == PROMOTE and worse.decision()[0] == REFUSE
    assert "challenger average_precision" in worse.decision()[1] and " < champion " in worse.decision()[1]
    frauds = int(y.sum())
    assert (
        better.enough(300, frauds) and not better.enough(301, frauds) and not better.enough(300, frauds + 1)
    )


def test_a_single_class_is_refused_with_the_counts():
    with pytest.raises(ValueError, match="3 labelled transactions, 0 frauds"):
        compare_on_labels([0, 0, 0], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3], [DAY] * 3, ["a", "b", "c"])


def test_only_rows_both_models_scored_are_compared_once_each(tmp_path):
    def line(version, shadow, ids, probs, shadow_probs, at="2026-03-01T10:00:00"):
        body = {
            "scored_at": at,
            "model_version": version,
            "threshold": 0.5,
            "latency_ms": 1.0,
            "transaction_id": ids,
            "card_id": ["c"] * len(ids),
            "merchant_id": ["m"] * len(ids),
            "timestamp": ["2026-03-01T09:00:00"] * len(ids),
            "fraud_probability": probs,
            "is_fraud": [0] * len(ids),
            "risk_level": ["low"] * len(ids),
            "reason_codes": [[] for _ in ids],
            "features": {"amount": [1.0] * len(ids)},
        }
        if shadow:
            body |= {"shadow_version": shadow, "shadow_probability": shadow_probs}
        return pd.io.json.ujson_dumps(body)

    day = tmp_path / "2026-03-01"
    day.mkdir()
    lines = [
        line("v1", None, ["old"], [0.1], None),  # logged before the challenger: no shadow fields
        line("v1", "v2", ["t1", "t2"], [0.2, 0.3], [0.4, 0.5]),
        line("v1", "v2", ["t1"], [0.2], [0.4], at="2026-03-01T10:00:01"),  # a retry
        line("v1", "v3", ["t3"], [0.2], [0.9]),  # another challenger
        line("v0", "v2", ["t4"], [0.2], [0.9]),  # another champion
        line("v1", "v2", ["t5"], [0.2], [None]),  # shadow scoring failed for it
    ]
    (day / "100000.000000-a.jsonl").write_text("\n".join(lines) + "\n")
    log = read_prediction_log(tmp_path)
    assert log.loc[log["transaction_id"] == "old", "shadow_version"].isna().all()  # old lines still read
    pairs = shadow_pairs(log, "v1", "v2")
    assert pairs["transaction_id"].tolist() == ["t1", "t2"]
    assert pairs["shadow_probability"].tolist() == [0.4, 0.5]
