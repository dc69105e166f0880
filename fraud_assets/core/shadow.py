"""The shadow challenger: which challenger the API scores beside the champion, and how the two
compare on the same live transactions once their labels are known.

Which one is derived from the Dagster instance, like the champion
(`fraud_assets.core.champion_history`): the latest `challenger_model` materialization, unless it
is the champion (promoted) or `champion_gate`'s latest evaluation of it refused it. A challenger
the gate holds (it passed on the held-out days and waits for evidence on live traffic) is the
one in shadow; so is one the gate has not judged yet. The gate's decision is its evaluation's
metadata value ``decision`` (`PROMOTE`, `HOLD`, `REFUSE`); an evaluation without it is read
from its outcome (passed: promote, failed: refuse).

The comparison (:func:`compare_on_labels`) is paired: both models scored the same
transactions, so each bootstrap resample draws the same rows for both and the interval of the
difference keeps their correlation. A bootstrap, not an analytical interval, because average
precision and the card precision at the review capacity have no closed-form variance; its
budget is a count of resamples (seeded), so the result never depends on machine speed.

Dagster objects are reached through the instance's public methods and keys the caller builds,
so this module imports no Dagster and serving reads it too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from fraud_assets.core.champion_history import (
    ChampionMaterialization,
    current_champion,
    latest_materialization,
)
from fraud_assets.core.contract import (
    CHALLENGER_MODEL,
    LOG_SHADOW_FIELDS,
    SHADOW_COMPARISON,
    ChampionRecord,
    ContractError,
)
from fraud_assets.core.metrics import card_precision_at_k

PROMOTE, HOLD, REFUSE = "promote", "hold", "refuse"
DECISION = "decision"  # the gate evaluation's metadata key holding one of the three
METRICS = ("average_precision", "auc_roc", "precision_at_capacity")
DECIDING_METRIC = "average_precision"  # as the offline gate


# --- which challenger is in shadow --------------------------------------------------------------


@dataclass(frozen=True)
class GateEvaluation:
    """`champion_gate`'s latest evaluation: its decision and the challenger materialization it judged."""

    decision: str
    target_storage_id: int | None
    description: str | None = None

    @classmethod
    def of(cls, execution_record: Any) -> GateEvaluation | None:
        """From the instance's `AssetCheckExecutionRecord` (None when it holds no evaluation yet)."""
        event = getattr(execution_record, "event", None)
        evaluation = getattr(getattr(event, "dagster_event", None), "event_specific_data", None)
        if evaluation is None or not hasattr(evaluation, "passed"):
            return None
        metadata = {key: getattr(value, "value", value) for key, value in (evaluation.metadata or {}).items()}
        decision = metadata.get(DECISION) or (PROMOTE if evaluation.passed else REFUSE)
        target = getattr(evaluation, "target_materialization_data", None)
        return cls(str(decision), None if target is None else int(target.storage_id), evaluation.description)


def shadow_challenger(instance: Any, gate_check_key: Any) -> ChampionMaterialization | None:
    """The challenger to score in shadow: the latest `challenger_model` materialization unless it
    is the champion or the gate refused it; None when there is none.

    ``gate_check_key`` is `champion_gate`'s `AssetCheckKey` (built by the caller, who imports
    Dagster)."""
    latest = latest_materialization(instance, CHALLENGER_MODEL)
    if latest is None:
        return None
    try:
        challenger = latest.champion()
        champion = current_champion(instance)
    except ContractError:
        return None
    if champion is not None and champion.version == challenger.version:
        return None  # promoted
    verdict = GateEvaluation.of(instance.get_latest_asset_check_evaluation_record(gate_check_key))
    if verdict is not None and verdict.target_storage_id == latest.storage_id and verdict.decision == REFUSE:
        return None
    return latest


def shadow_evidence(instance: Any, challenger: ChampionRecord, champion: ChampionRecord) -> dict | None:
    """The latest `shadow_comparison` metadata about this challenger against this champion, if any."""
    latest = latest_materialization(instance, SHADOW_COMPARISON)
    if latest is None:
        return None
    metadata = latest.metadata
    same = (metadata.get("challenger_version"), metadata.get("champion_version")) == (
        challenger.version,
        champion.version,
    )
    return metadata if same else None


# --- the comparison ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A figure and its bootstrap interval (NaN bounds: too few usable resamples)."""

    value: float
    low: float
    high: float

    def text(self) -> str:
        return f"{self.value:.4f} [{self.low:.4f}, {self.high:.4f}]"


@dataclass(frozen=True)
class ShadowComparison:
    """Champion and challenger on the same labelled transactions."""

    labelled: int
    frauds: int
    cards: int
    days: int
    champion: dict[str, Estimate]
    challenger: dict[str, Estimate]
    difference: dict[str, Estimate]  # challenger - champion
    resamples: int
    usable_resamples: int
    level: float

    def enough(self, min_labelled: int, min_frauds: int) -> bool:
        return self.labelled >= min_labelled and self.frauds >= min_frauds

    def decision(self) -> tuple[str, str]:
        """``(PROMOTE or REFUSE, why)``: the challenger must do at least as well on the deciding
        metric, as the offline gate asks."""
        diff = self.difference[DECIDING_METRIC]
        better = diff.value >= 0
        why = (
            f"on {self.labelled} labelled live transactions ({self.frauds} frauds): challenger "
            f"{DECIDING_METRIC} {self.challenger[DECIDING_METRIC].value:.4f} {'>=' if better else '<'} "
            f"champion {self.champion[DECIDING_METRIC].value:.4f} (difference {diff.text()}, "
            f"{self.level:.0%} paired bootstrap interval, {self.usable_resamples} resamples)"
        )
        return (PROMOTE if better else REFUSE), why

    def figures(self) -> dict[str, float]:
        """Flat figures for metadata: ``<model>.<metric>`` and ``<model>.<metric>.low/high``."""
        out: dict[str, float] = {}
        for side, values in (
            ("champion", self.champion),
            ("challenger", self.challenger),
            ("difference", self.difference),
        ):
            for metric, estimate in values.items():
                out[f"{side}.{metric}"] = estimate.value
                out[f"{side}.{metric}.low"] = estimate.low
                out[f"{side}.{metric}.high"] = estimate.high
        return out


def _metrics(y, champion, challenger, days, cards, capacity: int) -> tuple[list[float], list[float]]:
    """The three metrics of both models on these rows."""
    out = []
    for scores in (champion, challenger):
        out.append(
            [
                float(average_precision_score(y, scores)),
                float(roc_auc_score(y, scores)),
                card_precision_at_k(y, scores, days, cards, k=capacity),
            ]
        )
    return out[0], out[1]


def compare_on_labels(
    y: Any,
    champion_scores: Any,
    challenger_scores: Any,
    timestamps: Any,
    card_ids: Any,
    capacity: int = 100,
    resamples: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> ShadowComparison:
    """Both models' average precision, AUC-ROC and card precision at the review capacity (the
    top ``capacity`` cards a day, `card_precision_at_k`) on the same labelled transactions, each
    with a percentile interval of ``resamples`` paired bootstrap resamples (seeded); the
    difference challenger - champion likewise. Resamples lacking a class are skipped and counted.
    ``ValueError`` when the rows hold a single class (nothing to compare on)."""
    y = np.asarray(y, dtype=np.int64)
    s0 = np.asarray(champion_scores, dtype=np.float64)
    s1 = np.asarray(challenger_scores, dtype=np.float64)
    ts = pd.to_datetime(pd.Series(np.asarray(timestamps))).to_numpy()
    cards = np.asarray(card_ids, dtype=object)
    if not len(y) == len(s0) == len(s1) == len(ts) == len(cards):
        raise ValueError("labels, both models' scores, timestamps and card ids must have one value per row")
    frauds = int(y.sum())
    if frauds in (0, len(y)):
        raise ValueError(
            f"{len(y)} labelled transactions, {frauds} frauds: both classes are needed to compare"
        )
    base0, base1 = _metrics(y, s0, s1, ts, cards, capacity)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(resamples):
        pick = rng.integers(0, len(y), len(y))
        if y[pick].min() == y[pick].max():
            continue
        m0, m1 = _metrics(y[pick], s0[pick], s1[pick], ts[pick], cards[pick], capacity)
        samples.append((m0, m1))
    draws = np.asarray(samples, dtype=np.float64).reshape(len(samples), 2, len(METRICS))
    tail = (1 - level) / 2 * 100

    def estimates(value: list[float], draw: np.ndarray) -> dict[str, Estimate]:
        if len(draw) < 2:
            return {m: Estimate(v, float("nan"), float("nan")) for m, v in zip(METRICS, value, strict=True)}
        low, high = np.percentile(draw, [tail, 100 - tail], axis=0)
        return {
            m: Estimate(float(v), float(lo), float(hi))
            for m, v, lo, hi in zip(METRICS, value, low, high, strict=True)
        }

    diff_value = [b - a for a, b in zip(base0, base1, strict=True)]
    return ShadowComparison(
        labelled=len(y),
        frauds=frauds,
        cards=len(set(cards.tolist())),
        days=int(pd.Series(ts).dt.normalize().nunique()),
        champion=estimates(base0, draws[:, 0]),
        challenger=estimates(base1, draws[:, 1]),
        difference=estimates(diff_value, draws[:, 1] - draws[:, 0]),
        resamples=resamples,
        usable_resamples=len(samples),
        level=level,
    )


def shadow_pairs(log: pd.DataFrame, champion_version: str, challenger_version: str) -> pd.DataFrame:
    """The logged transactions both models scored (the champion served, the challenger in
    shadow), once each: a retried transaction keeps its first scoring."""
    if not set(LOG_SHADOW_FIELDS) <= set(log.columns):  # no challenger was in shadow
        return log.iloc[:0]
    both = (
        (log["model_version"] == champion_version)
        & (log["shadow_version"] == challenger_version)
        & log["shadow_probability"].notna()
        & log["fraud_probability"].notna()
    )
    return log[both].drop_duplicates("transaction_id", keep="first").reset_index(drop=True)


def labelled_pairs(
    pairs: pd.DataFrame, labels_as_of: Callable[[pd.DataFrame], np.ndarray]
) -> tuple[pd.DataFrame, np.ndarray]:
    """The pairs whose label is known, and their labels (``labels_as_of`` gives each row's label,
    NaN when unknown)."""
    y = labels_as_of(pairs)
    known = ~np.isnan(y)
    return pairs[known].reset_index(drop=True), y[known].astype(np.int64)
