"""The scoring API as a real uvicorn process: startup, a swap under load, a tampered champion."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx
import pytest

from fraud_assets.services.testing import record_champion, start_api, stop_processes
from tests.test_serving import SEED_BODY, home, world  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
KEY = {"X-API-Key": "process-key"}


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def server(world, home, tmp_path):  # noqa: F811
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home[0]),
        "FRAUDOPS_STORAGE": str(world["storage"]),
        "FRAUDOPS_MODEL_POLL_SECONDS": "0.2",
        "FRAUDOPS_PREDICTION_LOG_DIR": str(tmp_path / "predictions"),
        "FRAUDOPS_CAPTURE": str(tmp_path / "capture"),
        "FRAUDOPS_API_KEY": KEY["X-API-Key"],
    }
    proc, base = start_api(env, tmp_path / "uvicorn.log", timeout=90)
    try:
        yield base, proc, tmp_path
    finally:
        stop_processes(proc)


def test_uvicorn_swap_under_load_and_tampered_bundle(server, world, home):  # noqa: F811
    base, proc, tmp_path = server
    _, instance = home
    path_b, sha_b, bundle_b = world["b"]
    statuses, versions = [], []
    stop = threading.Event()

    def fire():
        with httpx.Client(base_url=base, timeout=10, headers=KEY) as cl:
            while not stop.is_set():
                try:
                    r = cl.post("/predict", json=SEED_BODY)
                except httpx.HTTPError as err:
                    statuses.append(repr(err))
                    continue
                statuses.append(r.status_code)
                if r.status_code == 200:
                    versions.append(r.json()["model_version"])

    with httpx.Client(base_url=base, timeout=10) as cl:
        assert cl.post("/predict", json=SEED_BODY).status_code == 401  # the key is required
        thread = threading.Thread(target=fire)
        thread.start()
        try:
            time.sleep(0.5)
            record_champion(instance, path_b, sha_b, bundle_b, mlflow_version="2")
            wait_for(lambda: versions and versions[-1] == bundle_b.version, 30, "the new champion")
            time.sleep(0.3)
        finally:
            stop.set()
            thread.join()
        assert set(statuses) == {200}, statuses[:20]
        assert versions[0] == world["a"][2].version and versions[-1] == bundle_b.version
        assert cl.get("/model").json()["mlflow_model_version"] == "2"

        tampered = tmp_path / "tampered" / path_b.name.replace(".pkl", "-x.pkl")
        tampered.parent.mkdir()
        raw = bytearray(world["a"][0].read_bytes())
        raw[100] ^= 0xFF
        tampered.write_bytes(bytes(raw))
        record_champion(instance, tampered, world["a"][1], world["a"][2], mlflow_version="3")
        health = wait_for(
            lambda: (h := cl.get("/health").json())["status"] == "degraded" and h, 30, "degraded health"
        )
        assert "integrity" in health["error"]
        r = cl.post("/predict", json=SEED_BODY, headers=KEY)
        assert r.status_code == 200 and r.json()["model_version"] == bundle_b.version
        assert "fraudops_model_refusals_total 1.0" in cl.get("/metrics").text
    assert proc.poll() is None
