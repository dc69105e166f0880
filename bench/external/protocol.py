"""The Handbook's evaluation protocol (chapters 4 and 5), the same for every model measured.

Prequential weeks: a model is trained on ``train_days`` days, then ``delay_days`` pass (labels
of the last training days are still unknown), then it is tested on ``test_days`` days. The book
takes four such folds, each a week earlier than the next (chapter 5, "Model selection": test
weeks from 2018-08-08 to 2018-09-04).

A test day leaves out the cards already known to be compromised: those with a fraud in the
training days or in the days up to ``delay_days + 1`` before the test day (their labels have
arrived; an investigator would already have blocked the card). Card Precision@k is computed per
day on what is left: each card scores its highest transaction score of the day and is fraudulent
when any of its transactions that day is; the k highest-scoring cards are investigated, the day's
precision is their number of fraudulent cards over k; cards found on one day are removed from
the next days of the week. AUC-ROC and average precision are over the week's test transactions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

TOP_K = 100
METRICS = ("auc_roc", "average_precision", "card_precision_at_100")


@dataclass(frozen=True)
class Week:
    """One prequential fold, in day numbers of the simulation (day 0 = its first day)."""

    train_start: int
    train_days: int = 7
    delay_days: int = 7
    test_days: int = 7

    @property
    def train_end(self) -> int:  # exclusive
        return self.train_start + self.train_days

    @property
    def test_start(self) -> int:
        return self.train_end + self.delay_days

    @property
    def test_end(self) -> int:  # exclusive
        return self.test_start + self.test_days


def prequential_weeks(
    first_test_day: int, n_weeks: int, train_days: int = 7, delay_days: int = 7, test_days: int = 7
) -> list[Week]:
    """``n_weeks`` consecutive test weeks from ``first_test_day``, each with its own training days."""
    return [
        Week(first_test_day + k * test_days - delay_days - train_days, train_days, delay_days, test_days)
        for k in range(n_weeks)
    ]


def split(transactions: pd.DataFrame, week: Week) -> tuple[np.ndarray, np.ndarray]:
    """Row positions of the week's training transactions and of its test transactions (known
    compromised cards left out), in ``transactions``' order.

    ``transactions`` needs TX_TIME_DAYS, CUSTOMER_ID and TX_FRAUD.
    """
    day = transactions["TX_TIME_DAYS"].to_numpy()
    card = transactions["CUSTOMER_ID"].to_numpy()
    fraud = transactions["TX_FRAUD"].to_numpy().astype(bool)
    train = np.flatnonzero((day >= week.train_start) & (day < week.train_end))
    test_parts = []
    for test_day in range(week.test_start, week.test_end):
        # Labels known by the start of the test day: frauds from the training start up to
        # delay + 1 days before (the book's "test day minus the delay period").
        known_until = test_day - week.delay_days  # exclusive
        known = np.unique(card[fraud & (day >= week.train_start) & (day < known_until)])
        today = np.flatnonzero(day == test_day)
        test_parts.append(today[~np.isin(card[today], known)])
    return train, np.concatenate(test_parts) if test_parts else np.zeros(0, dtype=np.int64)


def card_precision_at_k(
    days: np.ndarray, cards: np.ndarray, labels: np.ndarray, scores: np.ndarray, k: int = TOP_K
) -> tuple[list[float], float]:
    """Per-day Card Precision@k with the cards found on earlier days removed, and its mean.

    Ties between cards of equal score are broken by card id (ascending), so the figure does not
    depend on row order; a scorer with many tied scores is not rescued by luck.
    """
    frame = pd.DataFrame({"day": days, "card": cards, "y": labels.astype(np.int64), "s": scores})
    found: set = set()
    per_day: list[float] = []
    for _, today in frame.groupby("day", sort=True):
        today = today[~today["card"].isin(found)]
        per_card = today.groupby("card", sort=True).agg(s=("s", "max"), y=("y", "max"))
        top = per_card.sort_values("s", ascending=False, kind="mergesort").head(k)
        caught = top.index[top["y"] == 1]
        per_day.append(len(caught) / k)
        found.update(caught)
    return per_day, float(np.mean(per_day)) if per_day else float("nan")


def week_metrics(test: pd.DataFrame, scores: np.ndarray, k: int = TOP_K) -> dict[str, float]:
    """AUC-ROC, average precision and Card Precision@k of one test week's scores.

    ``test`` holds the week's test rows (TX_TIME_DAYS, CUSTOMER_ID, TX_FRAUD), aligned with
    ``scores``.
    """
    y = test["TX_FRAUD"].to_numpy().astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if len(y) != len(scores):
        raise ValueError(f"{len(scores)} scores for {len(y)} test rows")
    if np.isnan(scores).any():
        raise ValueError(f"{int(np.isnan(scores).sum())} test rows have no score")
    if y.min() == y.max():
        raise ValueError(f"the test week has only one class ({len(y)} rows, {int(y.sum())} frauds)")
    _, cp = card_precision_at_k(test["TX_TIME_DAYS"].to_numpy(), test["CUSTOMER_ID"].to_numpy(), y, scores, k)
    return {
        "auc_roc": float(roc_auc_score(y, scores)),
        "average_precision": float(average_precision_score(y, scores)),
        f"card_precision_at_{k}": cp,
        "test_rows": len(y),
        "test_frauds": int(y.sum()),
        "distinct_scores": int(np.unique(scores).size),
    }
