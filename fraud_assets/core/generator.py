"""Synthetic credit-card transactions with fraud that emerges from behaviour.

A seeded population of cardholders, merchants, devices and IPs spends money day
by day; fraud happens as *episodes* (card testing, compromised merchants,
account takeover, lost/stolen cards and, under drift, a new pattern) acting on
that population. Velocity, distance, novelty and merchant risk are therefore
properties of the event stream, not columns sampled from the label, and some
fraud is genuinely indistinguishable from legit spending.

Every day draws from ``SeedSequence([seed, day_ordinal, stream])`` and the
population from its own stream, so a day is identical whether generated alone
or within a range. No Dagster here: this module is pure numpy/pandas.

Example:
    >>> import datetime
    >>> sim = TransactionSimulator(SimulationConfig(seed=7, n_cardholders=500))
    >>> day = sim.generate_day(datetime.date(2026, 1, 1))
    >>> list(day.columns) == list(ALL_COLUMNS)
    True
"""

from __future__ import annotations

import datetime
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fraud_assets.core.columns import ALL_COLUMNS, TIMESTAMP
from fraud_assets.core.simulation import events as E
from fraud_assets.core.simulation import fraud as F
from fraud_assets.core.simulation import legit as L
from fraud_assets.core.simulation.population import Population, build_population

__all__ = [
    "ALL_COLUMNS",
    "DriftKnobs",
    "FraudDataGenerator",
    "SimulationConfig",
    "TransactionSimulator",
]

MIN_FRAUD_RATE, MAX_FRAUD_RATE = 0.001, 0.05


@dataclass(frozen=True)
class DriftKnobs:
    """Deliberate drift from ``start`` (inclusive) onwards; all knobs off by default.

    ``amount_multiplier`` scales every amount; ``merchant_mix_shift`` (0..1) moves
    that share/2 of ordinary purchases online to retail/electronics/digital goods;
    ``device_mix_shift`` (0..1) makes that share of online purchases come from
    new-generation devices with user agents never seen before; ``new_fraud_pattern``
    switches on the ``new_pattern`` scenario (a quarter of fraud, same total rate).

    Example:
        >>> DriftKnobs(start=datetime.date(2026, 2, 1), amount_multiplier=1.5).active
        True
    """

    start: datetime.date | None = None
    amount_multiplier: float = 1.0
    merchant_mix_shift: float = 0.0
    device_mix_shift: float = 0.0
    new_fraud_pattern: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.amount_multiplier) and 0.05 <= self.amount_multiplier <= 20):
            raise ValueError(f"amount_multiplier must be within [0.05, 20], got {self.amount_multiplier}")
        for name in ("merchant_mix_shift", "device_mix_shift"):
            value = getattr(self, name)
            if not (0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.start is not None and not isinstance(self.start, datetime.date):
            raise ValueError(f"start must be a datetime.date or None, got {self.start!r}")
        if self.start is None and self.active:
            raise ValueError("drift knobs are turned but no start date is given: set DriftKnobs.start")

    @property
    def active(self) -> bool:
        """Whether any knob is turned (then ``start`` is required)."""
        return (
            self.amount_multiplier != 1.0
            or self.merchant_mix_shift > 0
            or self.device_mix_shift > 0
            or self.new_fraud_pattern
        )

    def applies(self, ordinal: int) -> bool:
        """Whether drift is in force on the day with this ordinal."""
        return self.active and self.start is not None and ordinal >= self.start.toordinal()


@dataclass(frozen=True)
class SimulationConfig:
    """What to simulate. ``n_merchants`` defaults to a quarter of the cardholders (min 500);
    the world always has a few shops in each of its 56 cities, so tiny values are raised
    to about 240 merchants.

    Example:
        >>> SimulationConfig(fraud_rate=0.03).fraud_rate
        0.03
    """

    seed: int = 42
    n_cardholders: int = 10_000
    n_merchants: int | None = None
    fraud_rate: float = 0.01
    transactions_per_card_per_day: float = 2.5
    legit_label_delay_days: float = 7.0
    drift: DriftKnobs = field(default_factory=DriftKnobs)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, int | np.integer) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.n_cardholders < 10:
            raise ValueError(f"n_cardholders must be at least 10, got {self.n_cardholders}")
        if self.n_merchants is not None and self.n_merchants < 10:
            raise ValueError(f"n_merchants must be at least 10, got {self.n_merchants}")
        if not (MIN_FRAUD_RATE <= self.fraud_rate <= MAX_FRAUD_RATE):
            raise ValueError(
                f"fraud_rate must be within [{MIN_FRAUD_RATE}, {MAX_FRAUD_RATE}], got {self.fraud_rate}"
            )
        if not (0.1 <= self.transactions_per_card_per_day <= 50):
            raise ValueError(
                "transactions_per_card_per_day must be within [0.1, 50], "
                f"got {self.transactions_per_card_per_day}"
            )
        if not (0 <= self.legit_label_delay_days <= 365):
            raise ValueError(
                f"legit_label_delay_days must be within [0, 365], got {self.legit_label_delay_days}"
            )
        if not isinstance(self.drift, DriftKnobs):
            raise ValueError("drift must be a DriftKnobs instance")

    @property
    def merchants(self) -> int:
        return self.n_merchants if self.n_merchants is not None else max(500, self.n_cardholders // 4)


_CACHE_DAYS = 64


class TransactionSimulator:
    """Day-by-day transaction simulator.

    Example:
        >>> sim = TransactionSimulator(SimulationConfig(n_cardholders=200))
        >>> a = sim.generate_days(datetime.date(2026, 1, 1), datetime.date(2026, 1, 2))
        >>> b = pd.concat([sim.generate_day(datetime.date(2026, 1, d)) for d in (1, 2)],
        ...               ignore_index=True)
        >>> a.equals(b)
        True
    """

    def __init__(self, config: SimulationConfig = SimulationConfig()):
        if not isinstance(config, SimulationConfig):
            raise ValueError("config must be a SimulationConfig")
        self.config = config
        self.population: Population = build_population(config.seed, config.n_cardholders, config.merchants)
        week = (5 + 2 * L.WEEKEND_RATE) / 7
        travel = 1 + L.TRAVEL_FRACTION * (L.TRAVEL_RATE_UPLIFT - 1)
        self._rate_scale = config.transactions_per_card_per_day
        self._legit_per_day = float(self.population.card_rate.sum()) * self._rate_scale * week * travel
        r = config.fraud_rate
        self._fraud_per_day = self._legit_per_day * r / (1 - r)
        self._episodes: OrderedDict[int, E.Events] = OrderedDict()
        self._trips: OrderedDict[int, tuple[np.ndarray, ...]] = OrderedDict()

    @property
    def expected_rows_per_day(self) -> float:
        """Average rows per day (legit plus fraud) over a week."""
        return self._legit_per_day + self._fraud_per_day

    # -- cached multi-day state (pure functions of seed and start day) --------
    def _cached(self, cache: OrderedDict, key: int, make):
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        value = cache[key] = make()
        if len(cache) > _CACHE_DAYS:
            cache.popitem(last=False)
        return value

    def _trips_started(self, ordinal: int):
        return self._cached(
            self._trips,
            ordinal,
            lambda: L.trips_started(self.population, self.config.seed, ordinal),
        )

    def _episodes_started(self, ordinal: int) -> E.Events:
        drift = self.config.drift
        return self._cached(
            self._episodes,
            ordinal,
            lambda: F.episodes_started(
                self.population,
                self.config.seed,
                ordinal,
                self._fraud_per_day,
                drift.new_fraud_pattern and drift.applies(ordinal),
            ),
        )

    def _day_events(self, ordinal: int) -> E.Events:
        """Events of one day, sorted by time (stable: legit first, then episodes)."""
        cfg, pop = self.config, self.population
        drift = cfg.drift
        on = drift.applies(ordinal)
        city, shift = L.trips_on_day(pop, cfg.seed, ordinal, self._trips_started)
        legit = L.legit_day(
            pop,
            cfg.seed,
            ordinal,
            self._rate_scale,
            city,
            shift,
            merchant_mix_shift=drift.merchant_mix_shift if on else 0.0,
            device_mix_shift=drift.device_mix_shift if on else 0.0,
        )
        lo = (ordinal - E.EPOCH_ORDINAL) * E.DAY
        parts = [legit]
        for s in range(ordinal - F.LOOKBACK_DAYS, ordinal + 1):
            ep = self._episodes_started(s)
            keep = (ep["t"] >= lo) & (ep["t"] < lo + E.DAY)
            if keep.any():
                parts.append(E.take(ep, np.flatnonzero(keep)))
        ev = E.concat(parts)
        ev = E.take(ev, np.argsort(ev["t"], kind="stable"))
        legit_delay = round(cfg.legit_label_delay_days * E.DAY)
        ev["delay"] = np.where(ev["fraud"] == 1, ev["delay"], legit_delay)
        amount = ev["amount"] * (drift.amount_multiplier if on else 1.0)
        ev["amount"] = np.maximum(np.round(amount, 2), 0.01)
        return ev

    def generate_days(self, start: datetime.date, end: datetime.date) -> pd.DataFrame:
        """All transactions from ``start`` to ``end`` inclusive, sorted by time then id."""
        if end < start:
            raise ValueError(f"end {end} is before start {start}")
        days = [self._day_events(o) for o in range(start.toordinal(), end.toordinal() + 1)]
        ordinal = np.concatenate(
            [
                np.full(len(d["t"]), o, dtype=np.int64)
                for o, d in zip(range(start.toordinal(), end.toordinal() + 1), days, strict=True)
            ]
        )
        if max(len(d["t"]) for d in days) >= 10_000_000:
            raise ValueError("more than 9,999,999 transactions in a day: use fewer cardholders")
        seq = np.concatenate([np.arange(len(d["t"]), dtype=np.int64) for d in days])
        return E.build_frame(self.population, E.concat(days), ordinal, seq)

    def generate_day(self, day: datetime.date) -> pd.DataFrame:
        """Transactions of one day (local time of each card)."""
        return self.generate_days(day, day)


# FraudDataGenerator: the shortest span its rows cover, and the fewest cardholders it simulates.
MIN_DAYS = 28
MIN_CARDHOLDERS = 50
WEEKLY_RATE_FACTOR = 1.1  # weekends raise the average daily rate a little above the nominal one


class FraudDataGenerator:
    """The seed guide's API: ``n_samples`` rows from ``start_date`` onwards.

    The rows always span at least ``MIN_DAYS`` days, so that a time-ordered split with a
    label-delay gap works on them: when ``n_samples`` is smaller than ``MIN_DAYS`` days of
    ``n_cardholders`` spending, fewer cardholders are simulated (``n_cardholders`` is the
    upper bound; ``cardholders`` tells how many were used).

    Example:
        >>> gen = FraudDataGenerator(n_samples=1_000, n_cardholders=300)
        >>> len(gen.generate())
        1000
    """

    def __init__(
        self,
        n_samples: int = 100_000,
        fraud_rate: float = 0.01,
        n_cardholders: int = 10_000,
        seed: int = 42,
        start_date: datetime.date = datetime.date(2026, 1, 1),
        drift: DriftKnobs | None = None,
        output_dir: str | Path = "data/raw",
    ):
        if not isinstance(n_samples, int | np.integer) or n_samples <= 0:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        if not isinstance(start_date, datetime.date):
            raise ValueError(f"start_date must be a datetime.date, got {start_date!r}")
        self.n_samples = int(n_samples)
        self.start_date = start_date
        self.output_dir = Path(output_dir)
        per_card = SimulationConfig.transactions_per_card_per_day * WEEKLY_RATE_FACTOR
        self.cardholders = int(
            min(n_cardholders, max(MIN_CARDHOLDERS, math.ceil(n_samples / (MIN_DAYS * per_card))))
        )
        self.config = SimulationConfig(
            seed=seed,
            n_cardholders=self.cardholders,
            fraud_rate=fraud_rate,
            drift=drift if drift is not None else DriftKnobs(),
        )
        self.simulator = TransactionSimulator(self.config)

    def generate(self) -> pd.DataFrame:
        """Enough whole days from ``start_date``, then the first ``n_samples`` rows in time order."""
        sim = self.simulator
        n_days = max(1, math.ceil(self.n_samples / sim.expected_rows_per_day * 1.03))
        end = self.start_date + datetime.timedelta(days=n_days - 1)
        df = sim.generate_days(self.start_date, end)
        while len(df) < self.n_samples:
            more_days = max(1, math.ceil((self.n_samples - len(df)) / sim.expected_rows_per_day))
            nxt = end + datetime.timedelta(days=1)
            end = end + datetime.timedelta(days=more_days)
            df = pd.concat([df, sim.generate_days(nxt, end)], ignore_index=True)
        return df.iloc[: self.n_samples].reset_index(drop=True)

    def save(
        self, df: pd.DataFrame, file_format: str = "parquet", path: str | Path | None = None
    ) -> Path | list[Path]:
        """Write ``df`` as "parquet", "csv" or "both" (a list of two paths).

        The default path is ``output_dir/fraud_YYYYMMDD.<ext>`` after the first
        timestamp's day (or ``start_date`` when empty). CSV timestamps are ISO 8601.
        """
        if file_format not in ("parquet", "csv", "both"):
            raise ValueError(f"file_format must be 'parquet', 'csv' or 'both', got {file_format!r}")
        if file_format == "both":
            base = None if path is None else Path(path)
            return [
                self.save(df, fmt, None if base is None else base.with_suffix(f".{fmt}"))
                for fmt in ("parquet", "csv")
            ]
        if path is None:
            first = df[TIMESTAMP].iloc[0].date() if len(df) else self.start_date
            path = self.output_dir / f"fraud_{first:%Y%m%d}.{file_format}"
        return write_frame(df, path, file_format)


def write_frame(df: pd.DataFrame, path: str | Path, file_format: str) -> Path:
    """Write a transactions frame as parquet or CSV (ISO timestamps, no index)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if file_format == "parquet":
        df.to_parquet(path, index=False)
    elif file_format == "csv":
        df.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
    else:
        raise ValueError(f"file_format must be 'parquet' or 'csv', got {file_format!r}")
    return path
