"""Online state in Redis (`online_state`): the features the in-process store gives, shared by
workers and kept across restarts; a real redis-server process (`testing.redis_server`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from fraud_assets.core import columns as c
from fraud_assets.core.features import MERCHANT_FEATURES, MerchantRiskSnapshot
from fraud_assets.services.testing import free_port, redis_server, stop_processes, write_storage
from fraud_serving.card_state import CardState
from fraud_serving.online_state import RISK_DAY, RedisCardState, RedisMerchantRisk
from tests.test_serving import HISTORY_DAYS, body_of, make_client, shared_home, world  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]
HISTORY = [f"{k}_last_{w}" for k in ("transactions", "total_amount") for w in ("1h", "24h", "7d", "30d")] + [
    "avg_amount_last_30d", "amount_to_avg_30d", "seconds_since_last_txn", "is_new_merchant", "is_new_device",
]  # fmt: skip


@pytest.fixture
def redis_url(tmp_path):
    with redis_server() as url:
        yield url


def _remember(state, rows, retry_every: int = 7):
    """Feed ``rows`` (sorted by time) in requests of 1-5, every ``retry_every``-th request sent twice."""
    out, i, k = [], 0, 0
    while i < len(rows):
        part = rows.iloc[i : i + 1 + k % 5]
        args = (
            part[c.CARD_ID].tolist(),
            part[c.TIMESTAMP].to_numpy("datetime64[ms]").astype("int64"),
            part[c.MERCHANT_ID].tolist(),
            part[c.AMOUNT].tolist(),
            [d if isinstance(d, str) else None for d in part[c.DEVICE_FINGERPRINT]],
            part[c.TRANSACTION_ID].tolist(),
        )
        out.append(state.remember(*args))
        if k % retry_every == 0:  # a client's retry: same features, not a second transaction
            again = state.remember(*args)
            for name, values in out[-1].items():
                np.testing.assert_array_equal(again[name], values)
        i, k = i + len(part), k + 1
    return {name: np.concatenate([o[name] for o in out]) for name in out[0]}


def test_redis_gives_the_in_process_store_s_features(world, redis_url, tmp_path):  # noqa: F811
    """The same bootstrap and the same requests: bit-identical features (the same core function
    on the same rows; amounts round-trip exactly through JSON, times through float64 scores)."""
    embedded, shared = CardState(), RedisCardState(redis_url)
    assert embedded.bootstrap(world["storage"]) == shared.bootstrap(world["storage"]) > 0
    rows = world["live"].head(400)
    expected, got = _remember(embedded, rows), _remember(shared, rows)
    assert set(got) == set(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert len(shared) == len(embedded)
    again = RedisCardState(redis_url)  # another worker: finds the bootstrap done, loads nothing
    assert again.bootstrap(world["storage"]) == shared.bootstrapped_rows


def test_workers_read_one_merchant_risk_snapshot_and_switch_together(world, redis_url, tmp_path):  # noqa: F811
    """Two workers, each with its own view of storage: the first snapshot is published once and
    both read it; when a newer day reaches one worker only, both read that day from the next
    request on (the other has not even seen its file), and an older file cannot take it back."""
    frame = world["frame"]
    days = sorted(frame[c.TIMESTAMP].dt.date.unique())
    first, second = days[HISTORY_DAYS - 2], days[HISTORY_DAYS - 1]
    roots = [write_storage(frame, tmp_path / name, days=[first]) for name in ("a", "b")]
    workers = [
        (state, RedisMerchantRisk(root, state)) for root in roots for state in [RedisCardState(redis_url)]
    ]
    assert [risk.refresh() for _, risk in workers] == [True, True]  # each read it; the 2nd found it published
    rows = world["live"].head(50)
    merchants = [*rows[c.MERCHANT_ID].tolist()[:-1], "a merchant never seen"]

    def merchant_features(state, shift: int) -> np.ndarray:
        out = state.remember(
            rows[c.CARD_ID].tolist(), rows[c.TIMESTAMP].to_numpy("datetime64[ms]").astype("int64") + shift,
            merchants, rows[c.AMOUNT].tolist(), [None] * len(rows), None,
        )  # fmt: skip
        return np.array([out[name] for name in MERCHANT_FEATURES])

    def snapshot(day) -> np.ndarray:
        as_of = MerchantRiskSnapshot.compute(frame, pd.Timestamp(day) + pd.Timedelta(days=1)).lookup(
            merchants
        )
        return np.array([as_of[name] for name in MERCHANT_FEATURES])

    expected_first, expected_second = snapshot(first), snapshot(second)
    assert not np.array_equal(expected_first, expected_second)  # a day moves the features
    for k, (state, _) in enumerate(workers):  # the same features: a JSON round trip of float64
        np.testing.assert_array_equal(merchant_features(state, k), expected_first)
        assert state.merchant_risk_day == str(first)
    write_storage(frame, roots[0], days=[second])  # the new day reaches worker a only
    assert workers[0][1].refresh() and not workers[1][1].refresh()
    for k, (state, _) in enumerate(workers):
        np.testing.assert_array_equal(merchant_features(state, 10 + k), expected_second)
        assert state.merchant_risk_day == str(second)
    late = RedisMerchantRisk(roots[1], RedisCardState(redis_url))  # a worker starting on the old file
    assert late.refresh() and workers[0][0].redis.get(RISK_DAY).decode() == str(second)


def test_redis_down_is_a_503_naming_it(world, tmp_path, shared_home):  # noqa: F811
    with redis_server() as url:
        client = make_client(world, tmp_path, shared_home[0], online_state=url)
        with client as cl:
            body = body_of(next(world["live"].itertuples()))
            assert cl.post("/predict", json=body).status_code == 200
    with client as cl:  # the server is gone
        response = cl.post("/predict", json={**body, "transaction_id": "later"})
    assert response.status_code == 503 and "online state" in response.json()["detail"]


def _api(port: int, env: dict, log) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "fraud_serving.app:app", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def _wait_ready(base: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300  # a safety cap: startup on a loaded 2-core VM took > 120 s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the API process died"
        try:
            if httpx.get(base + "/health", timeout=2).json()["status"] == "ok":
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{base} did not start")


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_two_workers_and_a_restart_give_one_worker_s_history(world, tmp_path, shared_home, redis_url):  # noqa: F811
    """Two uvicorn processes sharing Redis, a card's transactions alternating between them, then
    both restarted: every answer's history and merchant risk features are those one worker alone
    computes."""
    live = world["live"]
    busiest = live[c.CARD_ID].value_counts().index[:6]  # cards with many transactions
    rows = list(live[live[c.CARD_ID].isin(busiest)].head(120).itertuples())
    bodies = [body_of(row) for row in rows]
    turn = {card: 0 for card in busiest}
    with make_client(world, tmp_path / "alone", shared_home[0]) as alone:
        expected = [alone.post("/predict?include_features=true", json=b).json()["features"] for b in bodies]

    env = {
        **os.environ,
        "DAGSTER_HOME": str(shared_home[0]),
        "FRAUDOPS_STORAGE": str(world["storage"]),
        "FRAUDOPS_PREDICTION_LOG_DIR": str(tmp_path / "predictions"),
        "FRAUDOPS_CAPTURE": redis_url,
        "FRAUDOPS_ONLINE_STATE": redis_url,
    }
    got: list[dict] = []
    log = open(tmp_path / "uvicorn.log", "wb")  # noqa: SIM115
    for half in (bodies[:60], bodies[60:]):  # the second half after a restart of both
        ports = [free_port(), free_port()]
        procs = [_api(port, env, log) for port in ports]
        try:
            for port, proc in zip(ports, procs, strict=True):
                _wait_ready(f"http://127.0.0.1:{port}", proc)
            for body in half:  # each card's transactions alternate between the two workers
                turn[body["card_id"]] += 1
                url = f"http://127.0.0.1:{ports[turn[body['card_id']] % 2]}/predict?include_features=true"
                response = httpx.post(url, json=body, timeout=10)
                assert response.status_code == 200, response.text
                got.append(response.json()["features"])
        finally:
            stop_processes(*procs)
    log.close()
    shared = [*HISTORY, *(name for name in MERCHANT_FEATURES if name in expected[0])]  # merchant risk too
    assert len(shared) > len(HISTORY)  # the model takes merchant risk features
    for i, (one, two) in enumerate(zip(expected, got, strict=True)):
        assert {k: two[k] for k in shared} == {k: one[k] for k in shared}, (i, bodies[i]["card_id"])
    assert any(one["transactions_last_24h"] for one in expected)  # the history is not empty
