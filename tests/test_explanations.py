"""Reason codes in business terms (fraud_assets.core.explanations): the amount's sentence."""

from __future__ import annotations

import numpy as np

from fraud_assets.core.explanations import CARD_AVERAGE, CARD_COUNT, FieldReasons

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
