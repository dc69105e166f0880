"""Reason codes in business terms (fraud_assets.core.explanations): the amount's sentence."""

from __future__ import annotations

import numpy as np

from fraud_assets.core.explanations import CARD_AVERAGE, CARD_COUNT, FieldReasons, describe, shown

NAMES = ["amount", "amount_log", "hour_of_day", CARD_COUNT, CARD_AVERAGE]


def test_an_amount_is_said_against_the_card_history_or_else_the_models_median():
    """Three cards: one with a 30-day history, one followed but new (no earlier transaction),
    one unknown (no card id: history NaN). Only the amount pushes the score, so it is each
    row's first reason; the sentence uses what the service knows of each."""
    reasons = FieldReasons.of(NAMES, typical_amount=50.0)
    cols = {
        "amount": np.array([899.99, 899.99, 899.99]),
        "hour_of_day": np.array([3.0, 3.0, 3.0]),
        CARD_COUNT: np.array([4.0, 0.0, np.nan]),
        CARD_AVERAGE: np.array([145.16, 0.0, np.nan]),
    }
    contributions = np.zeros((3, len(NAMES)))
    contributions[:, 0], contributions[:, 1] = 1.0, 0.5  # amount and amount_log: the field amount
    fields, pushed, values, sentences = reasons.explain(contributions, cols, 1)
    assert [reasons.fields[j] for j in fields[:, 0]] == ["amount"] * 3
    np.testing.assert_array_equal(pushed[:, 0], 1.5)  # the field's columns summed (exact in binary)
    assert values == [899.99] * 3
    assert sentences == [
        "amount is 899.99, 6.2x this card's 30-day average (145.16)",
        "amount is 899.99, the first transaction seen for this card in 30 days, 18.0x the median "
        "transaction (50.00)",
        "amount is 899.99, 18.0x the median transaction (50.00)",
    ]
    assert (
        FieldReasons.of(NAMES).explain(contributions, cols, 1)[3][2] == "amount is 899.99"
    )  # no median known


def test_each_reason_shows_and_says_its_own_value():
    """Values described once per distinct value land on every reason that has them."""
    names = [
        "hour_of_day",
        "merchant_category=electronics",
        "merchant_category=grocery",
        "is_online",
        CARD_COUNT,
    ]
    reasons = FieldReasons.of(names)
    rng = np.random.default_rng(0)
    n = 300
    cols = {
        "hour_of_day": rng.integers(0, 24, n).astype(float),
        "merchant_category": rng.choice(["electronics", "grocery", "travel"], n).astype(object),
        "is_online": rng.integers(0, 2, n).astype(float),
        CARD_COUNT: rng.integers(0, 5, n).astype(float),
    }
    top, _, values, sentences = reasons.explain(rng.normal(size=(n, len(names))), cols, 3)
    assert len(values) == len(sentences) == 3 * n
    for j, row, value, said in zip(top.ravel(), np.repeat(np.arange(n), 3), values, sentences, strict=True):
        field = reasons.fields[j]
        raw = cols[field][row]
        assert value == shown(field)(raw) and type(value) is type(shown(field)(raw))
        assert said == describe(field, raw)
