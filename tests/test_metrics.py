"""Metrics against hand-computed cases, degenerate inputs, threshold objectives, and the plots."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import pytest

from fraud_assets.core import plots
from fraud_assets.core.metrics import (
    card_precision_at_k,
    evaluate_scores,
    operating_curve,
    segment_metrics,
    threshold_for,
)

# Metrics of a few hand-made rows are a handful of float64 operations (ratios, sums of at most
# 16 terms) away from the fractions computed by hand: within 16 half-ulps, 1.8e-15 relative.
HAND = 16 * 2**-53

# Eight transactions, three frauds; scores in decreasing order.
Y = np.array([1, 0, 1, 0, 0, 1, 0, 0])
S = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])


def test_evaluate_scores_hand_computed():
    m = evaluate_scores(Y, S, 0.55)
    # Flagged: 0.9, 0.8, 0.7, 0.6 -> tp 2 (0.9, 0.7), fp 2; fn 1 (0.4); tn 3.
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (2, 2, 1, 3)
    assert m["precision"] == pytest.approx(0.5, rel=HAND)
    assert m["recall"] == pytest.approx(2 / 3, rel=HAND)
    assert m["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3), rel=HAND)
    # Positive-negative pairs ranked right: 0.9 beats 5, 0.7 beats 4, 0.4 beats 2 -> 11 of 15.
    assert m["auc_roc"] == pytest.approx(11 / 15, rel=HAND)
    # Precision at each fraud when walking down the ranking: 1/1, 2/3, 3/6.
    assert m["average_precision"] == pytest.approx((1 + 2 / 3 + 3 / 6) / 3, rel=HAND)
    # Recall >= 0.9 needs all three frauds: flag down to 0.4 -> 3 of 6.
    assert m["precision_at_90_recall"] == pytest.approx(0.5, rel=HAND)
    assert m["expected_cost"] == pytest.approx(100 * 1 + 5 * 2, rel=HAND)
    assert m["expected_cost_per_txn"] == pytest.approx(110 / 8, rel=HAND)
    assert (m["n"], m["n_fraud"]) == (8, 3)
    assert "card_precision_at_100" not in m
    assert all(isinstance(v, int | float) for v in m.values())


def test_custom_costs():
    m = evaluate_scores(Y, S, 0.55, cost_fn=10.0, cost_fp=1.0)
    assert m["expected_cost"] == pytest.approx(10 * 1 + 1 * 2, rel=HAND)


def test_precision_is_zero_when_nothing_flagged():
    m = evaluate_scores(Y, S, 0.99)
    assert (m["tp"], m["fp"], m["precision"], m["recall"], m["f1"]) == (0, 0, 0.0, 0.0, 0.0)


def _card_frame():
    # Day 1: A max 0.9 fraud; B max 0.8 with a fraud at 0.2 (card fraudulent that day); C 0.1 fraud.
    # Day 2: D 0.7 fraud; E 0.6 legit; F 0.5 fraud.
    rows = [
        ("2025-01-01 10:00", "A", 0.9, 1),
        ("2025-01-01 11:00", "B", 0.8, 0),
        ("2025-01-01 12:00", "B", 0.2, 1),
        ("2025-01-01 13:00", "C", 0.1, 1),
        ("2025-01-01 14:00", "E", 0.05, 0),
        ("2025-01-02 09:00", "D", 0.7, 1),
        ("2025-01-02 10:00", "E", 0.6, 0),
        ("2025-01-02 23:59", "F", 0.5, 1),
        ("2025-01-02 23:00", "A", 0.3, 0),
    ]
    df = pd.DataFrame(rows, columns=["timestamp", "card_id", "score", "is_fraud"])
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    return df


def test_card_precision_at_k_two_days():
    df = _card_frame()
    # k=2: day 1 top cards A, B -> both fraudulent that day -> 1.0; day 2 top D, E -> 0.5.
    got = card_precision_at_k(df["is_fraud"], df["score"], df["timestamp"], df["card_id"], k=2)
    assert got == pytest.approx((1.0 + 0.5) / 2, rel=HAND)
    # k=1: day 1 A (fraud), day 2 D (fraud).
    assert card_precision_at_k(df["is_fraud"], df["score"], df["timestamp"], df["card_id"], k=1) == 1.0
    # k larger than the cards of a day: the share over all of that day's cards (3/4 and 2/4).
    got = card_precision_at_k(df["is_fraud"], df["score"], df["timestamp"], df["card_id"], k=100)
    assert got == pytest.approx((3 / 4 + 2 / 4) / 2, rel=HAND)


def test_evaluate_scores_adds_card_precision_with_context():
    df = _card_frame()
    m = evaluate_scores(df["is_fraud"], df["score"], 0.5, context=df[["timestamp", "card_id"]], card_top_k=2)
    assert m["card_precision_at_2"] == pytest.approx(0.75, rel=HAND)
    m = evaluate_scores(df["is_fraud"], df["score"], 0.5, context=df[["timestamp", "card_id"]])
    assert m["card_precision_at_100"] == pytest.approx(0.625, rel=HAND)


@pytest.mark.parametrize(
    ("y", "s", "message"),
    [
        ([0, 0, 0], [0.1, 0.2, 0.3], "no positives"),
        ([1, 1], [0.1, 0.2], "no negatives"),
        ([0, 1, 0], [0.1, 0.2], "aligned"),
        ([], [], "empty"),
        ([0, 1], [0.1, np.nan], "NaN"),
        ([0, 2], [0.1, 0.2], "0/1"),
    ],
)
def test_degenerate_inputs_raise(y, s, message):
    with pytest.raises(ValueError, match=message):
        evaluate_scores(y, s, 0.5)


def test_context_length_mismatch_raises():
    with pytest.raises(ValueError, match="context"):
        evaluate_scores(Y, S, 0.5, context=pd.DataFrame({"timestamp": [pd.Timestamp(0)], "card_id": ["a"]}))


def test_operating_curve_groups_tied_scores():
    curve = operating_curve([1, 0, 1, 0], [0.8, 0.8, 0.5, 0.1])
    assert curve["threshold"].tolist() == [0.8, 0.5, 0.1]
    assert curve["tp"].tolist() == [1, 2, 2]
    assert curve["fp"].tolist() == [1, 1, 2]


def test_segment_metrics():
    context = pd.DataFrame(
        {
            "is_online": [True, True, True, True, False, False, False, False],
            "merchant_category": ["a", "a", "b", "b", "a", "a", "b", "c"],
        }
    )
    seg = segment_metrics(Y, S, 0.55, context)
    assert list(seg.columns) == [
        "segment", "value", "n", "n_fraud", "auc_roc", "average_precision", "precision", "recall"
    ]  # fmt: skip
    online = seg[(seg["segment"] == "is_online") & (seg["value"] == True)].iloc[0]  # noqa: E712
    # Online rows: y 1,0,1,0 with scores 0.9,0.8,0.7,0.6 -> AUC 3/4; all flagged -> precision 1/2, recall 1.
    assert (online["n"], online["n_fraud"]) == (4, 2)
    assert online["auc_roc"] == pytest.approx(0.75, rel=HAND)
    assert (online["precision"], online["recall"]) == (0.5, 1.0)
    c = seg[(seg["segment"] == "merchant_category") & (seg["value"] == "c")].iloc[0]
    assert (
        c["n"] == 1 and np.isnan(c["auc_roc"]) and np.isnan(c["average_precision"]) and np.isnan(c["recall"])
    )
    assert len(seg) == 2 + 3
    assert segment_metrics(Y, S, 0.5, context, segments=("missing",)).empty


def test_threshold_objectives_hand_computed():
    # F1 by threshold: .9 -> .5, .8 -> .4, .7 -> 2/3, .6 -> .571, .5 -> .5, .4 -> 2/3: tie goes to the higher.
    assert threshold_for(Y, S, "f1") == 0.7
    assert threshold_for(Y, S, "recall", target_recall=0.6) == 0.7
    assert threshold_for(Y, S, "recall", target_recall=0.9) == 0.4
    # Among thresholds with recall >= 0.5 (0.7 and below) precision peaks at 0.7 (2/3).
    assert threshold_for(Y, S, "precision") == 0.7
    assert threshold_for(Y, S, "precision", min_recall=1.0) == 0.4
    # Cost 100*fn + 5*fp: 0.4 -> 0 fn, 3 fp -> 15, the minimum.
    assert threshold_for(Y, S, "cost") == 0.4
    # When false positives cost more than all frauds, flagging nothing wins.
    y2, s2 = np.array([0, 1, 0, 1]), np.array([0.9, 0.8, 0.7, 0.6])
    t = threshold_for(y2, s2, "cost", cost_fn=1.0, cost_fp=100.0)
    assert t > s2.max()
    m = evaluate_scores(y2, s2, t, cost_fn=1.0, cost_fp=100.0)
    assert (m["tp"], m["fp"], m["expected_cost"]) == (0, 0, 2.0)


def test_threshold_unknown_objective_lists_valid_ones():
    with pytest.raises(ValueError, match="f1, recall, precision, cost"):
        threshold_for(Y, S, "accuracy")


def test_plots_are_small_pngs():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.02).astype(int)
    scores = {"a": y * 0.5 + rng.random(2000), "b": rng.random(2000)}
    imp = pd.DataFrame({"feature": [f"feature_{i}" for i in range(30)], "importance": rng.random(30)})
    for png in (
        plots.roc_curve_png(y, scores),
        plots.pr_curve_png(y, scores),
        plots.feature_importance_png(imp),
    ):
        assert png.startswith(b"\x89PNG")
        md = plots.png_markdown(png, "chart")
        assert md.startswith("![chart](data:image/png;base64,")
        assert len(md) < 60_000
        assert base64.b64decode(md.split(",", 1)[1][:-1]) == png
