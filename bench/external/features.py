"""The Handbook's 15 baseline features (chapter 3, "Baseline feature transformation").

* ``TX_AMOUNT``, and two calendar flags: ``TX_DURING_WEEKEND`` (Saturday or Sunday) and
  ``TX_DURING_NIGHT`` (hour 0 to 6).
* Customer spending behaviour (RFM): the number of transactions and their average amount
  over the last 1, 7 and 30 days, the current transaction included (the book's rolling windows
  ``(t - w, t]`` end at the transaction itself).
* Terminal risk: over windows of 1, 7 and 30 days that end a *delay period* (7 days) before the
  transaction, ``(t - delay - w, t - delay]``, the number of the terminal's transactions and the
  share of them that were fraud (0 when there were none). A label is known ``delay`` days after
  its transaction, so these windows hold only labels known at time ``t``.

Computed for all rows at once, vectorised: rows sorted by (entity, time) as one int64 key, the
window bounds found with ``searchsorted``, counts and sums read off cumulative sums.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SECONDS_PER_DAY = 86_400
WINDOWS_DAYS = (1, 7, 30)
DELAY_DAYS = 7
NIGHT_LAST_HOUR = 6

FEATURES: tuple[str, ...] = (
    "TX_AMOUNT",
    "TX_DURING_WEEKEND",
    "TX_DURING_NIGHT",
    *(f"CUSTOMER_ID_{kind}_{w}DAY_WINDOW" for w in WINDOWS_DAYS for kind in ("NB_TX", "AVG_AMOUNT")),
    *(f"TERMINAL_ID_{kind}_{w}DAY_WINDOW" for w in WINDOWS_DAYS for kind in ("NB_TX", "RISK")),
)


def _sorted_keys(entity: np.ndarray, seconds: np.ndarray, reach: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ordered by (entity, time) and their keys ``entity * span + time``; ``span`` leaves
    room for ``reach`` seconds before the first time, so a window never crosses into the
    previous entity's rows."""
    t0 = int(seconds.min()) if len(seconds) else 0
    span = int(seconds.max() - t0) + reach + 1 if len(seconds) else 1
    keys = entity.astype(np.int64) * span + (seconds - t0 + reach)
    order = np.argsort(keys, kind="stable")
    return order, keys[order]


def _prefix(values: np.ndarray) -> np.ndarray:
    """Cumulative sums with a leading 0: the sum of rows ``[a, b)`` is ``p[b] - p[a]``."""
    out = np.zeros(len(values) + 1, dtype=np.float64)
    np.cumsum(values, out=out[1:])
    return out


def customer_features(customer: np.ndarray, seconds: np.ndarray, amount: np.ndarray) -> dict[str, np.ndarray]:
    """Count and average amount of each customer's transactions in ``(t - w, t]``, up to and
    including the row itself (rows at the same second count in row order, as a rolling window)."""
    reach = max(WINDOWS_DAYS) * SECONDS_PER_DAY
    order, keys = _sorted_keys(customer, seconds, reach)
    position = np.arange(len(keys))
    amounts = _prefix(amount[order])
    out: dict[str, np.ndarray] = {}
    for w in WINDOWS_DAYS:
        first = np.searchsorted(keys, keys - w * SECONDS_PER_DAY, side="right")
        count = position - first + 1
        total = amounts[position + 1] - amounts[first]
        out[f"CUSTOMER_ID_NB_TX_{w}DAY_WINDOW"] = _unsort(order, count.astype(np.float64))
        out[f"CUSTOMER_ID_AVG_AMOUNT_{w}DAY_WINDOW"] = _unsort(order, total / count)
    return out


def terminal_features(
    terminal: np.ndarray, seconds: np.ndarray, fraud: np.ndarray, delay_days: int = DELAY_DAYS
) -> dict[str, np.ndarray]:
    """Count and fraud share of each terminal's transactions in ``(t - delay - w, t - delay]``."""
    delay = delay_days * SECONDS_PER_DAY
    reach = delay + max(WINDOWS_DAYS) * SECONDS_PER_DAY
    order, keys = _sorted_keys(terminal, seconds, reach)
    frauds = _prefix(fraud[order].astype(np.float64))
    end = np.searchsorted(keys, keys - delay, side="right")
    out: dict[str, np.ndarray] = {}
    for w in WINDOWS_DAYS:
        first = np.searchsorted(keys, keys - delay - w * SECONDS_PER_DAY, side="right")
        count = (end - first).astype(np.float64)
        risk = np.divide(frauds[end] - frauds[first], count, out=np.zeros_like(count), where=count > 0)
        out[f"TERMINAL_ID_NB_TX_{w}DAY_WINDOW"] = _unsort(order, count)
        out[f"TERMINAL_ID_RISK_{w}DAY_WINDOW"] = _unsort(order, risk)
    return out


def _unsort(order: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.empty_like(values)
    out[order] = values
    return out


def baseline_features(transactions: pd.DataFrame, delay_days: int = DELAY_DAYS) -> pd.DataFrame:
    """The 15 features of every transaction (same index and row order as ``transactions``).

    ``transactions`` has the simulator's columns: TX_DATETIME, CUSTOMER_ID, TERMINAL_ID,
    TX_AMOUNT and TX_FRAUD (read only through the terminal windows, delayed as above).
    """
    when = transactions["TX_DATETIME"]
    seconds = when.to_numpy("datetime64[s]").astype(np.int64)
    amount = transactions["TX_AMOUNT"].to_numpy(np.float64)
    columns: dict[str, np.ndarray] = {
        "TX_AMOUNT": amount,
        "TX_DURING_WEEKEND": (when.dt.dayofweek >= 5).to_numpy(np.float64),
        "TX_DURING_NIGHT": (when.dt.hour <= NIGHT_LAST_HOUR).to_numpy(np.float64),
    }
    columns.update(customer_features(transactions["CUSTOMER_ID"].to_numpy(), seconds, amount))
    columns.update(
        terminal_features(
            transactions["TERMINAL_ID"].to_numpy(), seconds, transactions["TX_FRAUD"].to_numpy(), delay_days
        )
    )
    return pd.DataFrame({name: columns[name] for name in FEATURES}, index=transactions.index)
