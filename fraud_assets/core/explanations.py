"""Reason codes in a fraud analyst's terms, from a model's per-feature contributions.

A tree model explains itself in its own columns: ``merchant_category=electronics`` with value 0,
``amount_log``, ``amount_x_hour``. An analyst needs the transaction's fields: the contributions
of every model column are summed back into the input fields it is computed from (the one-hots of
``merchant_category`` into ``merchant_category``; ``amount``, ``amount_log``, ``amount_sqrt``
into ``amount``; an interaction shared equally among its fields, as the Shapley value of a
product of two fields is split between them), so the reasons name fields with the transaction's
own values (``merchant_category: online_retail``), a direction and a sentence.

Only fields the transaction has (sent, or computed: calendar from its timestamp, history from the
card state) are reasons: a missing value was imputed by the model, and "typical value assumed"
explains nothing about this transaction. Contributions stay additive (log-odds): a field's is the
sum of its columns' (and its shares of interactions), so the fields' contributions still add up
to the model's margin minus its base value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fraud_assets.core import columns as c
from fraud_assets.core.models.reasons import top_contributions
from fraud_assets.core.preprocessor import CATEGORICAL, FraudPreprocessor

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_UNITS = {"h": ("hour", "hours"), "d": ("day", "days")}
_WINDOWED = re.compile(r"^(?P<what>.+)_(?P<count>\d+)(?P<unit>[hd])$")


def _window(count: str, unit: str) -> str:
    one, many = _UNITS[unit]
    return one if count == "1" else f"{count} {many}"


def _duration(seconds: float) -> str:
    for size, unit in ((86_400, "days"), (3_600, "hours"), (60, "minutes")):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} seconds"


def _hour(value: float) -> str:
    night = " (night)" if int(value) in c.NIGHT_HOURS else ""
    return f"made at {int(value):02d}:00 local time{night}"


# field -> its sentence from the transaction's value (yes/no fields get 1.0 / 0.0)
SENTENCES: dict[str, Callable[[Any], str]] = {
    c.AMOUNT: lambda v: f"amount is {v:,.2f}",
    "amount_to_avg_30d": lambda v: f"amount is {v:.1f}x this card's 30-day average",
    "avg_amount_last_30d": lambda v: f"this card's 30-day average amount is {v:,.2f}",
    c.MERCHANT_CATEGORY: lambda v: f"merchant category is {v}",
    c.ENTRY_MODE: lambda v: f"entry mode is {v}",
    c.HOUR_OF_DAY: _hour,
    c.DAY_OF_WEEK: lambda v: f"made on a {_DAYS[int(v)]}",
    c.IS_WEEKEND: lambda v: "made on a weekend" if v else "made on a weekday",
    c.IS_ONLINE: lambda v: "online purchase (card not present)" if v else "card-present purchase",
    c.IS_FOREIGN: lambda v: "made abroad" if v else "made in the card's home country",
    c.DISTANCE_FROM_HOME: lambda v: f"{v:,.0f} km from the cardholder's home",
    "seconds_since_last_txn": lambda v: f"{_duration(v)} since this card's previous transaction",
    "is_new_merchant": lambda v: (
        "first purchase of this card at this merchant" if v else "a merchant this card has used before"
    ),
    "is_new_device": lambda v: (
        "a device this card has not used before" if v else "a device this card has used"
    ),
}
# windowed history features, by what precedes the window ("transactions_last" + "_24h")
WINDOWED: dict[str, Callable[[Any, str], str]] = {
    "transactions_last": lambda v, w: f"{v:.0f} earlier transactions on this card in the last {w}",
    "total_amount_last": lambda v, w: f"{v:,.2f} spent on this card in the last {w}",
    "merchant_fraud_rate": lambda v, w: f"the merchant's fraud rate over {w} is {v:.1%}",
    "merchant_labelled": lambda v, w: f"{v:.0f} labelled transactions at the merchant over {w}",
}
COUNTS = (c.HOUR_OF_DAY, c.DAY_OF_WEEK)  # whole numbers shown as such


def sentence(field: str) -> Callable[[Any], str]:
    """The sentence of a field's value (a generic one for a field without its own)."""
    if field in SENTENCES:
        return SENTENCES[field]
    match = _WINDOWED.match(field)
    if match and match["what"] in WINDOWED:
        window, say = _window(match["count"], match["unit"]), WINDOWED[match["what"]]
        return lambda v: say(v, window)
    return lambda v: f"{field.replace('_', ' ')} is {v}"


def shown(field: str) -> Callable[[Any], Any]:
    """How the answer shows a field's value: text for categories, yes/no as booleans, counts as
    whole numbers, other numbers as they are."""
    if field in CATEGORICAL:
        return str
    if field.startswith("is_"):
        return bool
    if field in COUNTS or field.startswith(("transactions_last_", "merchant_labelled_")):
        return int
    return float


def describe(field: str, value: Any) -> str:
    """The sentence for one value of a field, as a reason shows it (``amount``: see
    `amount_sentence`, which says more when it knows the card and the model's typical amount)."""
    return sentence(field)(shown(field)(value))


CARD_COUNT, CARD_AVERAGE = "transactions_last_30d", "avg_amount_last_30d"  # what an amount is set against


def amount_sentence(amount: float, card_count: float, card_average: float, typical: float | None) -> str:
    """An amount against what the service knows: this card's 30-day average when the card has
    earlier transactions in those 30 days; otherwise that it is the card's first in 30 days (when
    the card is followed: ``card_count`` 0, not NaN), beside the model's typical amount (its
    training data's median), so a card without history is still put in proportion."""
    said = f"amount is {amount:,.2f}"
    if card_count > 0 and card_average > 0:
        return f"{said}, {amount / card_average:.1f}x this card's 30-day average ({card_average:,.2f})"
    if card_count == 0:
        said += ", the first transaction seen for this card in 30 days"
    if typical:
        said += f", {amount / typical:.1f}x the median transaction ({typical:,.2f})"
    return said


@dataclass(frozen=True)
class FieldReasons:
    """A model's columns mapped to the transaction fields they come from."""

    fields: tuple[str, ...]
    weights: np.ndarray  # (model columns, fields): each column's share of each field
    typical_amount: float | None = None  # the model's typical amount (training median), for sentences

    @classmethod
    def of(cls, feature_names: Sequence[str], typical_amount: float | None = None) -> FieldReasons:
        inputs = [FraudPreprocessor.inputs_of(name) for name in feature_names]
        fields = tuple(dict.fromkeys(field for needed in inputs for field in needed))
        weights = np.zeros((len(feature_names), len(fields)))
        for j, needed in enumerate(inputs):
            for field in needed:
                weights[j, fields.index(field)] = 1.0 / len(needed)
        return cls(fields, weights, typical_amount)

    def present(self, cols: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        """(n, fields) True where the transaction has the field's value."""
        out = np.ones((n, len(self.fields)), dtype=bool)
        for k, field in enumerate(self.fields):
            values = cols[field]
            out[:, k] = np.not_equal(values, None) if values.dtype == object else ~np.isnan(values)
        return out

    def explain(
        self, contributions: np.ndarray, cols: Mapping[str, np.ndarray], k: int
    ) -> tuple[np.ndarray, np.ndarray, list[Any], list[str]]:
        """Each transaction's ``k`` fields that pushed its score up the most (largest first; a
        field may lower it when fewer push it up): ``(field index (n, k), contribution (n, k),
        values, sentences)``, the last two flat, row by row."""
        n = contributions.shape[0]
        grouped = contributions @ self.weights
        present = self.present(cols, n)
        k = min(k, len(self.fields))
        top = top_contributions(np.where(present, grouped, -np.inf), k)
        picked = grouped[np.arange(n)[:, None], top]
        if not present.all():  # fewer present fields than k: drop the absent picks
            keep = present[np.arange(n)[:, None], top]
            if not keep.all():
                k = int(keep.sum(axis=1).min())
                top, picked = top[:, :k], picked[:, :k]
        flat = top.ravel()
        rows = np.repeat(np.arange(n), k)
        values, sentences = np.empty(flat.size, dtype=object), np.empty(flat.size, dtype=object)
        order = np.argsort(flat, kind="stable")  # the reasons field by field
        bounds = np.flatnonzero(np.diff(flat[order])) + 1
        for at in np.split(order, bounds) if flat.size else []:  # a pass per field
            field = self.fields[flat[at[0]]]
            if field == c.AMOUNT:  # said against the card's history: each row its own sentence
                values[at], sentences[at] = self._amounts(rows[at], cols)
                continue
            # each distinct value described once (no Python step per reason: 3,000 in a batch)
            distinct, which = np.unique(cols[field][rows[at]], return_inverse=True)
            show, say = shown(field), sentence(field)
            described = [show(raw) for raw in distinct.tolist()]
            values[at] = _objects(described)[which]
            sentences[at] = _objects([say(value) for value in described])[which]
        return top, picked, values.tolist(), sentences.tolist()

    def _amounts(self, rows: np.ndarray, cols: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The values and sentences (`amount_sentence`) of amount reasons on these rows."""
        unknown = np.full(len(rows), np.nan)
        context = [
            cols[name][rows] if name in cols else unknown for name in (c.AMOUNT, CARD_COUNT, CARD_AVERAGE)
        ]
        amounts, counts, averages = (part.tolist() for part in context)
        said = [
            amount_sentence(*known, self.typical_amount)
            for known in zip(amounts, counts, averages, strict=True)
        ]
        return _objects(amounts), _objects(said)


def _objects(items: list) -> np.ndarray:
    """A list as a 1-d object array (``np.array`` would make a list of lists 2-d)."""
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out
