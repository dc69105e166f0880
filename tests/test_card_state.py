"""The scoring service's card state and the shared calendar columns."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fraud_assets.core.calendar import hour_and_weekday, is_weekend
from fraud_serving.card_state import KEEP_MS, MAX_ROWS_PER_CARD, CardState

DAY_MS = 86_400_000


def test_appends_keep_earlier_views_and_drop_only_rows_out_of_every_window():
    state = CardState()
    state.append("c1", 0, "m1", 10.0, None)
    first = state.get("c1").ts_ms  # a view a request holds while later rows arrive
    for i in range(1, 40):
        state.append("c1", i * DAY_MS, f"m{i % 3}", float(i), "d1" if i % 2 else None)
    rows = state.get("c1")
    assert list(first) == [0]  # never changed under its holder
    newest = 39 * DAY_MS
    assert rows.ts_ms.min() >= newest - KEEP_MS - 16 * DAY_MS  # old rows go when the arrays regrow
    assert list(rows.ts_ms[-3:]) == [37 * DAY_MS, 38 * DAY_MS, 39 * DAY_MS]
    assert rows.amount[-1] == 39.0 and rows.device[-1] == rows.device[-3] >= 0 and rows.device[-2] == -1
    assert rows.merchant[-1] == state.merchant_code("m0")


def test_a_runaway_card_stays_bounded():
    state = CardState()
    n = 3 * MAX_ROWS_PER_CARD
    state.append_many(["c"] * n, np.arange(n), ["m"] * n, np.ones(n), [None] * n)
    assert len(state.get("c")) <= 2 * MAX_ROWS_PER_CARD
    assert state.get("c").ts_ms[-1] == n - 1


def test_calendar_columns_match_pandas():
    rng = np.random.default_rng(0)
    stamps = pd.Series(pd.to_datetime(rng.integers(0, 4_000_000_000, 500), unit="s"))
    stamps[::50] = pd.NaT
    hour, day, known = hour_and_weekday(stamps.to_numpy("datetime64[ms]"))
    assert (known == stamps.notna().to_numpy()).all()
    assert (hour[known] == stamps.dt.hour[known]).all()
    assert (day[known] == stamps.dt.dayofweek[known]).all()
    assert (is_weekend(day[known]) == (stamps.dt.dayofweek[known] >= 5)).all()


def test_rows_past_every_window_are_dropped_even_when_the_arrays_have_room():
    state = CardState()
    state.append_many(["c"] * 3, [0, DAY_MS, 2 * DAY_MS], ["m"] * 3, [1.0] * 3, [None] * 3)
    later = 2 * DAY_MS + KEEP_MS + 8 * DAY_MS  # more than a week past the oldest row's windows
    state.append("c", later, "m", 5.0, None)
    assert list(state.get("c").ts_ms) == [later]


def test_a_retried_transaction_is_held_once():
    state = CardState()
    state.append("c", 1_000, "m", 10.0, None, "t1")
    state.append("c", 1_000, "m", 10.0, None, "t1")  # the client retried after a timeout
    state.append("c", 2_000, "m", 12.0, None, None)  # no id: nothing to compare, always added
    state.append("c", 2_000, "m", 12.0, None, None)
    assert list(state.get("c").ts_ms) == [1_000, 2_000, 2_000]
