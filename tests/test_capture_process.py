"""Nothing answered is lost: the API as a real uvicorn process is killed (SIGKILL) under load,
restarted, sent retries; the capture sensor's runs then hold every answered transaction in
`raw_transactions` and `validated_transactions`, each exactly once. Embedded (a local capture
folder) and with a real Redis server (the cluster profile's stream)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import dagster as dg
import httpx
import pandas as pd
import pytest

from fraud_assets.core import columns as c
from fraud_assets.core.capture import TRANSACTIONS, file_records, open_capture, read_filed
from fraud_assets.core.storage import Location
from fraud_assets.replay import replay, request_bodies
from fraud_assets.services.testing import redis_server, start_api, stop_processes
from tests.test_captured_traffic import sensor_defs, tick
from tests.test_serving import body_of, home, make_client, shared_home, world  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow
KILL_AFTER = 400  # answered transactions before the API is killed
CLIENTS = 4  # single-transaction clients; one more sends batches


@pytest.fixture(params=["local", "redis"])
def capture_feed(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path / "capture")
        return
    with redis_server() as url:
        yield url


def load_until_killed(base: str, bodies: list[dict], proc: subprocess.Popen) -> tuple[set[str], int]:
    """Single requests from CLIENTS threads and batches of 25 from one, until the API is killed
    (after KILL_AFTER answers); the ids answered 200, and how many were sent."""
    answered: set[str] = set()
    lock, killed = threading.Lock(), threading.Event()
    singles, batches = bodies[: len(bodies) // 2], bodies[len(bodies) // 2 :]
    sent = [0]

    def single(part: list[dict]) -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            for body in part:
                try:
                    response = client.post("/predict", json=body)
                except httpx.HTTPError:
                    if killed.is_set():
                        return
                    continue
                with lock:
                    sent[0] += 1
                    if response.status_code == 200:
                        answered.add(response.json()["transaction_id"])

    def batch() -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            for start in range(0, len(batches), 25):
                try:
                    response = client.post(
                        "/predict/batch", json={"transactions": batches[start : start + 25]}
                    )
                except httpx.HTTPError:
                    if killed.is_set():
                        return
                    continue
                with lock:
                    sent[0] += 25
                    if response.status_code == 200:
                        answered.update(p["transaction_id"] for p in response.json()["predictions"])

    threads = [threading.Thread(target=single, args=(singles[k::CLIENTS],)) for k in range(CLIENTS)]
    threads.append(threading.Thread(target=batch))
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(answered) < KILL_AFTER:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # in the middle of the traffic: requests are in flight
    killed.set()
    proc.wait(10)
    for thread in threads:
        thread.join(60)
    assert len(answered) >= KILL_AFTER, "the load did not get going before the deadline"
    return answered, sent[0]


def test_nothing_answered_is_lost_when_the_api_is_killed(world, home, tmp_path, capture_feed):  # noqa: F811
    live = world["live"].sort_values([c.TIMESTAMP, c.TRANSACTION_ID], kind="stable").head(2400)
    bodies = request_bodies(live)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home[0]),
        "FRAUDOPS_STORAGE": str(world["storage"]),
        "FRAUDOPS_PREDICTION_LOG_DIR": str(tmp_path / "predictions"),
        "FRAUDOPS_CAPTURE": capture_feed,
        "FRAUDOPS_MODEL_POLL_SECONDS": "3600",
    }
    proc, base = start_api(env, tmp_path / "api.log")
    try:
        answered, sent = load_until_killed(base, bodies, proc)
    finally:
        stop_processes(proc)
    assert sent < len(bodies), "the API was killed after the traffic ended: nothing was in flight"

    # Restarted: a client retries 100 answered transactions (same ids: nothing may be added
    # twice) and sends what was not answered (in flight at the kill, or not sent yet); the other
    # answered transactions are not sent again, so they can only come from the feed.
    proc, base = start_api(env, tmp_path / "api-restarted.log")
    was_answered = live[c.TRANSACTION_ID].isin(answered)
    try:
        retried = replay(live[was_answered].head(100), base, rate=2000, clients=2, labels="none")
        rest = replay(live[~was_answered], base, rate=5000, batch=50, clients=2, labels="none")
    finally:
        stop_processes(proc)
    assert not retried.failed and not rest.failed
    assert set(retried.answered) <= answered and len(answered) - len(retried.answered) >= KILL_AFTER - 100
    assert answered | set(rest.answered) == set(live[c.TRANSACTION_ID])
    answered |= set(rest.answered)

    # The pipeline: the sensor files the feed, its runs ingest the days.
    pipeline = tmp_path / "pipeline"
    (pipeline / "landing").mkdir(parents=True)
    defs = sensor_defs(pipeline, pipeline / "landing", feed=capture_feed)
    feed = open_capture(capture_feed)
    assert feed.lag(TRANSACTIONS, None).records > 0
    with dg.instance_for_test() as instance:
        result = tick(defs, instance)
        assert result.run_requests, result.skip_message
        for request in result.run_requests:
            outcome = defs.resolve_job_def("ingest_transactions").execute_in_process(
                instance=instance, tags=request.tags, run_config=request.run_config, raise_on_error=False
            )
            assert outcome.success, [e.message for e in outcome.all_events if e.is_failure][:3]
        assert "caught up" in tick(defs, instance, result.cursor).skip_message
    days = sorted({str(d) for d in live[c.TIMESTAMP].dt.date})
    raw = pd.concat(pd.read_parquet(pipeline / "storage" / "raw_transactions" / f"{d}.parquet") for d in days)
    validated = pd.concat(
        pd.read_parquet(pipeline / "storage" / "validated_transactions" / f"{d}.parquet") for d in days
    )
    rejected = pd.concat(
        pd.read_parquet(pipeline / "storage" / "rejected_transactions" / f"{d}.parquet") for d in days
    )
    assert raw[c.TRANSACTION_ID].is_unique and (raw["source"] == "api").all()
    assert set(raw[c.TRANSACTION_ID]) == answered  # every answered transaction, nothing else
    assert validated[c.TRANSACTION_ID].is_unique and rejected.empty, rejected.head()
    assert set(validated[c.TRANSACTION_ID]) == answered
    feed.close()


def test_the_same_batch_twice_is_captured_twice_and_filed_once(world, tmp_path, shared_home):  # noqa: F811
    rows = list(world["live"].iloc[:30].itertuples())
    body = {"transactions": [body_of(r) for r in rows]}
    anonymous = {"amount": 12.5, "card_id": rows[0].card_id}  # no id: the API makes one up
    with make_client(world, tmp_path, shared_home[0], capture=str(tmp_path / "capture")) as cl:
        first, again = cl.post("/predict/batch", json=body), cl.post("/predict/batch", json=body)
        made_up = cl.post("/predict", json=anonymous).json()["transaction_id"]
        health = cl.get("/health").json()["capture"]
        assert 'fraudops_capture_rows_total{stream="transactions"} 61.0' in cl.get("/metrics").text
    assert first.status_code == again.status_code == 200
    assert health == {
        "feed": str(tmp_path / "capture"),
        "records": 3,
        "rows": 61,
        "failures": 0,
        "error": None,
    }
    feed, storage = open_capture(str(tmp_path / "capture")), Location.of(tmp_path / "storage")
    filing = file_records(storage, TRANSACTIONS, feed.read(TRANSACTIONS, None, 100).records)
    filed = read_filed(storage, TRANSACTIONS, filing.days)
    assert [row[c.TRANSACTION_ID] for row in filed] == [r.transaction_id for r in rows] + [made_up]
    assert filed[-1]["amount"] == 12.5 and "timestamp" not in filed[-1]  # as validated: absent stays absent


def test_a_feed_that_refuses_a_record_fails_the_request_with_503(world, tmp_path, shared_home):  # noqa: F811
    blocked = tmp_path / "capture"
    blocked.write_text("a file where the capture folder should be")
    rows = list(world["live"].iloc[:3].itertuples())
    with make_client(world, tmp_path, shared_home[0], capture=str(blocked)) as cl:
        single = cl.post("/predict", json=body_of(rows[0]))
        batch = cl.post("/predict/batch", json={"transactions": [body_of(r) for r in rows]})
        health = cl.get("/health").json()["capture"]
        metrics = cl.get("/metrics").text
    assert single.status_code == batch.status_code == 503
    assert "capture" in single.json()["detail"] and str(blocked) in single.json()["detail"]
    assert health["failures"] == 2 and health["rows"] == 0 and str(blocked) in health["error"]
    assert 'fraudops_capture_failures_total{stream="transactions"} 2.0' in metrics
