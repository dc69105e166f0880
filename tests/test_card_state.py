"""The scoring service's card state and the shared calendar columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraud_assets.core import columns as c
from fraud_assets.core.calendar import hour_and_weekday, is_weekend
from fraud_assets.core.features import CARD_FEATURES, DEVICE_FEATURES, history_features
from fraud_serving.card_state import KEEP_MS, MAX_ROWS_PER_CARD, STALE_SLACK_MS, CardState

DAY_MS = 86_400_000


def add(state: CardState, card, ts, merchant="m", amount=1.0, device=None, tid=None):
    return state.remember([card], [ts], [merchant], [amount], [device], [tid])


def test_segments_keep_time_order_and_drop_only_rows_out_of_every_window():
    state = CardState()
    for i in range(40):
        add(state, "c1", i * DAY_MS, f"m{i % 3}", float(i), "d1" if i % 2 else None)
        add(state, "c2", i * DAY_MS + 5, "x", 2.0)  # interleaved: segments move as they fill
    add(state, "c1", 38 * DAY_MS + 1, "late", 7.0)  # out of order: lands in its place
    rows = state.rows("c1")
    newest = 39 * DAY_MS
    assert rows["ts_ms"].min() >= newest - KEEP_MS - STALE_SLACK_MS  # old rows go when segments move
    assert list(rows["ts_ms"][-3:]) == [38 * DAY_MS, 38 * DAY_MS + 1, newest]
    assert list(rows["amount"][-3:]) == [38.0, 7.0, 39.0]
    assert rows["device"][-1] == rows["device"][-4] >= 0 and rows["device"][-3] == -1
    assert rows["merchant"][-1] == state.merchant_code("m0")
    assert (np.diff(state.rows("c2")["ts_ms"]) > 0).all() and state.rows("c2")["amount"].sum() > 0


def test_a_runaway_card_stays_bounded():
    state = CardState()
    n = 3 * MAX_ROWS_PER_CARD
    state.remember(["c"] * n, np.arange(n), ["m"] * n, np.ones(n), [None] * n)
    held = state.rows("c")["ts_ms"]
    assert MAX_ROWS_PER_CARD <= len(held) <= 2 * MAX_ROWS_PER_CARD + 2
    assert held[-1] == n - 1 and (np.diff(held) == 1).all()  # the newest rows, in order


def test_calendar_columns_match_pandas():
    rng = np.random.default_rng(0)
    stamps = pd.Series(pd.to_datetime(rng.integers(0, 4_000_000_000, 500), unit="s"))
    stamps[::50] = pd.NaT
    hour, day, known = hour_and_weekday(stamps.to_numpy("datetime64[ms]"))
    assert (known == stamps.notna().to_numpy()).all()
    assert (hour[known] == stamps.dt.hour[known]).all()
    assert (day[known] == stamps.dt.dayofweek[known]).all()
    assert (is_weekend(day[known]) == (stamps.dt.dayofweek[known] >= 5)).all()


def test_rows_past_every_window_are_dropped_even_when_the_segment_has_room():
    state = CardState()
    state.remember(["c"] * 3, [0, DAY_MS, 2 * DAY_MS], ["m"] * 3, [1.0] * 3, [None] * 3)
    later = 2 * DAY_MS + KEEP_MS + 8 * DAY_MS  # more than a week past the oldest row's windows
    add(state, "c", later, amount=5.0)
    assert list(state.rows("c")["ts_ms"]) == [later]


def test_a_retried_transaction_is_held_once():
    state = CardState()
    first = add(state, "c", 1_000, amount=10.0, tid="t1")
    again = add(state, "c", 1_000, amount=10.0, tid="t1")  # the client retried after a timeout
    assert again == first  # the same features: its own earlier copy is not earlier than itself
    add(state, "c", 2_000, amount=12.0)  # no id: nothing to compare, always added
    add(state, "c", 2_000, amount=12.0)
    add(state, "other", 1_000, amount=1.0, tid="t1")  # another card's transaction with the same id
    assert list(state.rows("c")["ts_ms"]) == [1_000, 2_000, 2_000]
    assert list(state.rows("other")["ts_ms"]) == [1_000]


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_features_equal_the_batch_code_whatever_the_request_sizes(chunk):
    """Random traffic (many cards, late and same-millisecond rows, segment moves and
    compactions) sent in requests of ``chunk`` transactions: each request gets the features the
    batch code computes for its rows on everything sent so far, the request included."""
    rng = np.random.default_rng(chunk)
    n = 3_000
    times = np.sort(rng.integers(0, 90 * DAY_MS, n))
    frame = pd.DataFrame(
        {
            c.TIMESTAMP: pd.to_datetime(times, unit="ms"),
            c.CARD_ID: [f"card{i}" for i in rng.integers(0, 150, n)],
            c.MERCHANT_ID: [f"m{i}" for i in rng.integers(0, 40, n)],
            c.AMOUNT: np.round(rng.gamma(2.0, 30.0, n), 2),
            c.DEVICE_FINGERPRINT: [None if u < 0.4 else f"d{int(u * 20)}" for u in rng.random(n)],
        }
    )
    late = rng.random(n) < 0.03  # up to a day late: rows a day past every window are kept (KEEP_MS)
    frame.loc[late, c.TIMESTAMP] -= pd.to_timedelta(rng.integers(1, DAY_MS, late.sum()), unit="ms")
    same = np.flatnonzero(rng.random(n) < 0.03)
    frame.loc[same[same > 0], c.TIMESTAMP] = frame[c.TIMESTAMP].to_numpy()[same[same > 0] - 1]
    ms = frame[c.TIMESTAMP].to_numpy("datetime64[ms]").astype("int64")
    state = CardState()
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        part = frame.iloc[lo:hi]
        got = state.remember(
            part[c.CARD_ID].tolist(), ms[lo:hi], part[c.MERCHANT_ID].tolist(), part[c.AMOUNT].to_numpy(),
            part[c.DEVICE_FINGERPRINT].tolist(),
        )  # fmt: skip
        expected = history_features(frame.iloc[:hi], targets=np.arange(lo, hi))
        # Equal, not close: the state calls the batch code's kernel on the card's rows in time
        # order; rows at the same millisecond may sit in another order, but amounts are cents
        # and the totals are rounded to 6 decimals, which absorbs the order of their sum.
        for name in (*CARD_FEATURES, *DEVICE_FEATURES):
            np.testing.assert_array_equal(got[name], expected[name], err_msg=f"{lo} {name}")
    assert state.rows_held < n  # rows out of every window were dropped on the way
