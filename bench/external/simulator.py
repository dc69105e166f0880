"""The Fraud Detection Handbook's transaction simulator, written from the book's description.

Le Borgne et al., "Reproducible Machine Learning for Credit Card Fraud Detection - Practical
Handbook", chapter 3, section "Transaction data simulator" (see README.md here for the link
and for where each parameter comes from). Customers and terminals sit on a 100 x 100 grid; a
customer uses the terminals within a radius ``r`` of home; each day a customer makes a Poisson
number of transactions at times around noon, with normally distributed amounts; three fraud
scenarios label them.

This is an independent implementation: one seeded ``numpy.random.Generator`` draws everything,
vectorised over all customer-days, so the same seed gives the same file and the book's default
size (5,000 customers, 10,000 terminals, 183 days, about 1.75 million transactions) takes a few
seconds. It does not reproduce the book's files bit for bit (the book seeds NumPy per customer
and per day); it reproduces their distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

SECONDS_PER_DAY = 86_400
GRID = 100.0
# Book defaults (5,000 customers and 10,000 terminals): the densities `scaled` keeps.
BOOK_CUSTOMERS = 5_000
BOOK_TERMINALS = 10_000

COLUMNS = (
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_TIME_SECONDS",
    "TX_TIME_DAYS",
    "TX_FRAUD",
    "TX_FRAUD_SCENARIO",
)


@dataclass(frozen=True)
class SimulatorConfig:
    """The book's parameters; the defaults are the dataset the book uses throughout."""

    n_customers: int = BOOK_CUSTOMERS
    n_terminals: int = BOOK_TERMINALS
    n_days: int = 183  # 2018-04-01 .. 2018-09-30
    start_date: str = "2018-04-01"
    radius: float = 5.0  # about 100 terminals within reach of each customer, as the book says
    seed: int = 0
    # Customer profiles: mean amount ~ U(5, 100), std = mean / 2, transactions/day ~ U(0, 4).
    mean_amount_range: tuple[float, float] = (5.0, 100.0)
    std_amount_ratio: float = 0.5
    tx_per_day_range: tuple[float, float] = (0.0, 4.0)
    # Time of day ~ N(noon, 20,000 s); draws outside the day are dropped.
    time_mean_seconds: float = SECONDS_PER_DAY / 2
    time_std_seconds: float = 20_000.0
    # Scenario 1: any amount above this is fraud.
    fraud_amount_threshold: float = 220.0
    # Scenario 2: each day this many terminals are compromised for the next 28 days.
    compromised_terminals_per_day: float = 2.0
    terminal_compromise_days: int = 28
    # Scenario 3: each day this many customers' credentials leak for the next 14 days; a third
    # of their transactions in that time are the fraudster's, at five times the amount.
    compromised_customers_per_day: float = 3.0
    customer_compromise_days: int = 14
    fraudster_share: float = 1 / 3
    fraudster_amount_factor: float = 5.0

    @classmethod
    def scaled(cls, n_customers: int, n_terminals: int, n_days: int, seed: int = 0) -> SimulatorConfig:
        """A smaller (or larger) world with the book's densities: the same number of terminals
        within reach of a customer, and the same share of terminals and customers compromised
        each day (fractional daily counts are drawn: 0.3 a day is one day in three on average)."""
        book = cls()
        return replace(
            book,
            n_customers=n_customers,
            n_terminals=n_terminals,
            n_days=n_days,
            seed=seed,
            radius=book.radius * math.sqrt(BOOK_TERMINALS / n_terminals),
            compromised_terminals_per_day=book.compromised_terminals_per_day * n_terminals / BOOK_TERMINALS,
            compromised_customers_per_day=book.compromised_customers_per_day * n_customers / BOOK_CUSTOMERS,
        )


def terminals_within_radius(
    customer_xy: np.ndarray, terminal_xy: np.ndarray, radius: float, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Each customer's reachable terminals (distance strictly below ``radius``) as CSR arrays:
    ``terminals[offsets[c]:offsets[c + 1]]`` are customer ``c``'s terminal indices, ascending.

    Customers are taken in blocks along the x axis, each compared only with the terminals whose
    x lies within ``radius`` of the block: exact, and several times fewer distances than all
    pairs."""
    by_x = np.argsort(terminal_xy[:, 0], kind="stable")
    terminal_x = terminal_xy[by_x, 0]
    customers = np.argsort(customer_xy[:, 0], kind="stable")
    pair_customer, pair_terminal = [], []
    r2 = radius * radius
    for lo in range(0, len(customers), chunk):
        block = customers[lo : lo + chunk]
        xs = customer_xy[block, 0]
        a, b = np.searchsorted(terminal_x, [xs.min() - radius, xs.max() + radius])
        near = by_x[a:b]
        d2 = ((customer_xy[block, None, :] - terminal_xy[None, near, :]) ** 2).sum(axis=-1)
        rows, cols = np.nonzero(d2 < r2)
        pair_customer.append(block[rows])
        pair_terminal.append(near[cols])
    owner, terminals = np.concatenate(pair_customer), np.concatenate(pair_terminal)
    order = np.lexsort((terminals, owner))
    offsets = np.zeros(len(customer_xy) + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner, minlength=len(customer_xy)), out=offsets[1:])
    return terminals[order].astype(np.int64), offsets


def _daily_count(rng: np.random.Generator, expected: float) -> int:
    """``expected`` events a day: its integer part, plus one with the fractional part's chance."""
    whole = math.floor(expected)
    return whole + int(rng.random() < expected - whole)


def simulate(config: SimulatorConfig = SimulatorConfig()) -> pd.DataFrame:
    """The labelled transaction table, sorted by time; ``TRANSACTION_ID`` is the row number."""
    rng = np.random.default_rng(config.seed)
    n_c, n_t, n_days = config.n_customers, config.n_terminals, config.n_days

    # 1. Customer profiles and 2. terminal profiles.
    customer_xy = rng.uniform(0.0, GRID, size=(n_c, 2))
    mean_amount = rng.uniform(*config.mean_amount_range, size=n_c)
    std_amount = mean_amount * config.std_amount_ratio
    tx_per_day = rng.uniform(*config.tx_per_day_range, size=n_c)
    terminal_xy = rng.uniform(0.0, GRID, size=(n_t, 2))

    # 3. Terminals within reach of each customer.
    reachable, offsets = terminals_within_radius(customer_xy, terminal_xy, config.radius)
    n_reachable = np.diff(offsets)

    # 4. Transactions: a Poisson count per customer-day, then one draw per transaction.
    counts = rng.poisson(np.repeat(tx_per_day[:, None], n_days, axis=1))  # (customer, day)
    customer = np.repeat(np.repeat(np.arange(n_c), n_days), counts.ravel())
    day = np.repeat(np.tile(np.arange(n_days), n_c), counts.ravel())
    seconds = rng.normal(config.time_mean_seconds, config.time_std_seconds, size=len(customer))
    seconds = np.trunc(seconds).astype(np.int64)  # whole seconds, as the book's int()
    keep = (seconds > 0) & (seconds < SECONDS_PER_DAY) & (n_reachable[customer] > 0)
    customer, day, seconds = customer[keep], day[keep], seconds[keep]

    mu, sigma = mean_amount[customer], std_amount[customer]
    amount = rng.normal(mu, sigma)
    negative = amount < 0
    amount[negative] = rng.uniform(0.0, 2 * mu[negative])
    amount = np.round(amount, 2)
    pick = np.floor(rng.random(len(customer)) * n_reachable[customer]).astype(np.int64)
    terminal = reachable[offsets[customer] + pick]

    time_seconds = day * SECONDS_PER_DAY + seconds
    order = np.lexsort((terminal, customer, time_seconds))  # by time; ties in a fixed order
    customer, terminal, day = customer[order], terminal[order], day[order]
    time_seconds, amount = time_seconds[order], amount[order]

    # 5. Fraud scenarios.
    fraud = np.zeros(len(customer), dtype=np.int8)
    scenario = np.zeros(len(customer), dtype=np.int8)
    _scenario_large_amounts(config, amount, fraud, scenario)
    _scenario_compromised_terminals(config, rng, terminal, day, fraud, scenario)
    _scenario_leaked_credentials(config, rng, customer, day, amount, fraud, scenario)

    start = np.datetime64(config.start_date, "s")
    return pd.DataFrame(
        {
            "TRANSACTION_ID": np.arange(len(customer), dtype=np.int64),
            "TX_DATETIME": (start + time_seconds.astype("timedelta64[s]")).astype("datetime64[ns]"),
            "CUSTOMER_ID": customer,
            "TERMINAL_ID": terminal,
            "TX_AMOUNT": amount,
            "TX_TIME_SECONDS": time_seconds,
            "TX_TIME_DAYS": day,
            "TX_FRAUD": fraud,
            "TX_FRAUD_SCENARIO": scenario,
        },
        columns=list(COLUMNS),
    )


def _rows_by(key: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Row numbers grouped by ``key`` (time order kept within a key) and each key's bounds."""
    rows = np.argsort(key, kind="stable")
    bounds = np.searchsorted(key[rows], np.arange(n_keys + 1))
    return rows, bounds


def _scenario_large_amounts(config: SimulatorConfig, amount, fraud, scenario) -> None:
    large = amount > config.fraud_amount_threshold
    fraud[large] = 1
    scenario[large] = 1


def _scenario_compromised_terminals(config: SimulatorConfig, rng, terminal, day, fraud, scenario) -> None:
    rows, bounds = _rows_by(terminal, config.n_terminals)
    for first in range(config.n_days):
        drawn = rng.choice(
            config.n_terminals, _daily_count(rng, config.compromised_terminals_per_day), replace=False
        )
        for t in drawn:
            own = rows[bounds[t] : bounds[t + 1]]
            hit = own[(day[own] >= first) & (day[own] < first + config.terminal_compromise_days)]
            fraud[hit] = 1
            scenario[hit] = 2


def _scenario_leaked_credentials(
    config: SimulatorConfig, rng, customer, day, amount, fraud, scenario
) -> None:
    rows, bounds = _rows_by(customer, config.n_customers)
    for first in range(config.n_days):
        drawn = rng.choice(
            config.n_customers, _daily_count(rng, config.compromised_customers_per_day), replace=False
        )
        if not len(drawn):
            continue
        own = np.concatenate([rows[bounds[c] : bounds[c + 1]] for c in drawn])
        exposed = own[(day[own] >= first) & (day[own] < first + config.customer_compromise_days)]
        # A third of n, rounded down as the book's int(n / 3); the epsilon keeps 9 * (1/3) at 3.
        n_stolen = math.floor(len(exposed) * config.fraudster_share + 1e-9)
        stolen = rng.choice(exposed, n_stolen, replace=False)
        amount[stolen] = np.round(amount[stolen] * config.fraudster_amount_factor, 2)
        fraud[stolen] = 1
        scenario[stolen] = 3
