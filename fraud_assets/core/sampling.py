"""A training sample of a given size, stratified by label: what candidates train on when the
training window holds more rows than a worker's memory should.

Proportional allocation: each class keeps the same share of its rows (``size / rows``, rounded
per class, at least one row of each class present), so the sample's fraud rate is the window's
to within one row, and a model fitted on it without weights sees the population's prevalence.
Each kept row stands for ``rows of its class / kept rows of its class`` rows of the window (its
inverse inclusion probability): the weighting, recorded with the model so that counts read off
the sample can be scaled back. Seeded: the same window, size and seed draw the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrainingSample:
    """The rows drawn (positions, ascending: time order is kept) and how they were drawn."""

    rows: np.ndarray
    population: dict[int, int]  # rows per label in the window
    kept: dict[int, int]  # rows per label in the sample
    seed: int

    @property
    def weights(self) -> dict[int, float]:
        """Per label, how many of the window's rows each sampled row stands for."""
        return {label: self.population[label] / self.kept[label] for label in self.kept if self.kept[label]}

    def describe(self) -> dict[str, object]:
        """JSON-friendly: what a model's metadata records of its training sample."""
        return {
            "method": "stratified by label, proportional allocation",
            "rows": len(self.rows),
            "population_rows": int(sum(self.population.values())),
            "rows_by_label": {str(k): int(v) for k, v in self.kept.items()},
            "population_by_label": {str(k): int(v) for k, v in self.population.items()},
            "weight_by_label": {str(k): round(v, 6) for k, v in self.weights.items()},
            "seed": self.seed,
        }


def stratified_sample(labels: np.ndarray, size: int, seed: int) -> TrainingSample | None:
    """``size`` of the rows with these labels (0/1), stratified by label; None when ``size`` is
    0 or at least the number of rows (every row is trained on: no sample)."""
    y = np.asarray(labels).astype("int64")
    if size < 0:
        raise ValueError(f"a training sample size must be 0 (every row) or positive, got {size}")
    if size == 0 or size >= len(y):
        return None
    rng = np.random.default_rng(seed)
    share = size / len(y)
    chosen, population, kept = [], {}, {}
    for label in (0, 1):
        where = np.flatnonzero(y == label)
        take = min(len(where), max(round(share * len(where)), 1 if len(where) else 0))
        chosen.append(rng.choice(where, size=take, replace=False))
        population[label], kept[label] = len(where), take
    return TrainingSample(np.sort(np.concatenate(chosen)), population, kept, seed)
