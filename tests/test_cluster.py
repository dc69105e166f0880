"""The cluster profile as real processes (docs/scale-out.md): PostgreSQL, an S3 server, Redis, the
MLflow server, Dagster's code server, webserver and daemon, two Celery workers and the scoring API
with two uvicorn workers, all started by `fraud_assets.services.devservices` on free ports, stopped at the
end. Runs are submitted as a user would, through the webserver's GraphQL API, and the daemon
launches them.

Lean on purpose (CI runs this file): a small population, 28 days, one tuning trial per model.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import redis

from fraud_assets.core import columns as c
from fraud_assets.core.contract import CHAMPION_MODEL, ChampionRecord, daily_partitions
from fraud_assets.core.generator import SimulationConfig, TransactionSimulator
from fraud_assets.core.ingest import day_keys
from fraud_assets.core.registry import ModelRegistry
from fraud_assets.core.settings import load_settings
from fraud_assets.services import devservices
from fraud_assets.services.service import Service, start_in_order, stop
from tests.conftest import free_port

# The services start and three runs train before the first test: more than the default 600 s
# under a loaded machine (a quiet one needs a few minutes for the whole file).
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1800)]

POPULATION = 300
SEED = 11
FIRST, LAST = "2026-02-22", "2026-03-28"  # training: 35 days, warm-up left out (as test_training_assets)
SHARDS = 4  # card shards of the features (FRAUDOPS_FEATURE_SHARDS): a step each, on either worker
QUICK = {"n_trials": 1, "imbalance_methods": ["class_weight"]}
CANDIDATES = ("logistic_regression_model", "random_forest_model", "xgboost_model", "lightgbm_model")
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
INGEST_ASSETS = ("raw_transactions", "validated_transactions", "rejected_transactions")
RUN_TIMEOUT = 600
# What SQLite says under concurrent writers, and PostgreSQL's own lock and serialization errors.
LOCKING_ERRORS = re.compile(r"database is locked|could not serialize|deadlock detected|lock timeout", re.I)
TRANSACTION = {
    "amount": 150.50, "merchant_category": "online_retail", "merchant_country": "USA",
    "hour_of_day": 14, "day_of_week": 2, "is_online": True, "is_weekend": False,
    "transactions_last_24h": 3, "total_amount_last_24h": 450.75, "transactions_last_1h": 0,
    "distance_from_home": 0.0,
}  # fmt: skip


class Forwarder:
    """A TCP port forwarding to another: :meth:`cut` closes it and every connection through it
    (the network between a client and a server gone), :meth:`restore` opens it again. The API
    reaches PostgreSQL and the object store through one each, so an outage touches only it."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self._server: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    def restore(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        threading.Thread(target=self._accept, args=(self._server,), daemon=True).start()

    def cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._open.clear()

    def _accept(self, server: socket.socket) -> None:
        while self._server is server:
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._open |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@dataclass
class Cluster:
    profile: devservices.ClusterProfile
    services: list[Service]
    client: devservices.ClusterClient  # submits through the webserver, reads the instance
    pg_link: Forwarder  # the API's way to PostgreSQL
    s3_link: Forwarder  # the API's way to the object store

    @property
    def instance(self) -> dg.DagsterInstance:
        return self.client.instance

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.profile.api_port}"

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def submit(self, job: str, **kwargs) -> str:
        return self.client.submit(job, **kwargs)

    def wait(self, run_id: str, timeout: float = RUN_TIMEOUT) -> dg.DagsterRun:
        try:
            return self.client.wait(run_id, timeout)
        except TimeoutError as err:
            pytest.fail(f"{err}:\n{self.service('dagster daemon').log_tail()}")

    def succeeds(self, run_id: str, timeout: float = RUN_TIMEOUT) -> dg.DagsterRun:
        run = self.wait(run_id, timeout)
        if run.status != dg.DagsterRunStatus.SUCCESS:
            pytest.fail(f"run {run_id} ({run.job_name}) ended {run.status}: {self.client.failures(run_id)}")
        return run

    def health(self) -> dict:
        with urllib.request.urlopen(f"{self.api}/health", timeout=10) as response:
            return json.loads(response.read())

    def predict(self, body: dict = TRANSACTION, query: str = "") -> dict:
        """One transaction scored, through a new connection (whichever uvicorn worker takes it)."""
        request = urllib.request.Request(
            f"{self.api}/predict{query}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            return json.loads(response.read())

    def storage(self, *parts: str):
        settings = load_settings()
        return settings.location(settings.storage).join(*parts)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    state = devservices.local_state_folder()
    ports = {name: free_port() for name in devservices.LOCAL_PORTS}
    saved = dict(os.environ)
    env = devservices.local_profile_environment(
        ports,
        state,
        FRAUDOPS_START_DATE=os.environ["FRAUDOPS_START_DATE"],  # conftest's: it fixes the partitions
        FRAUDOPS_SEED=str(SEED),
        FRAUDOPS_CARDHOLDERS=str(POPULATION),
        FRAUDOPS_FEATURE_SHARDS=str(SHARDS),
        FRAUDOPS_MODEL_POLL_SECONDS="1",
        FRAUDOPS_PREDICTION_LOG_FLUSH_SECONDS="0.5",
    )
    os.environ.clear()
    os.environ.update(env)
    services: list[Service] = []
    try:
        profile = devservices.ClusterProfile.from_environment(
            ui_port=ports["ui"],
            api_port=ports["api"],
            code_server_port=ports["code"],
            cwd=state,
            postgres_data=os.path.join(state, "postgres"),
        )
        services = devservices.cluster_services(profile)
        pg_link, s3_link = Forwarder(ports["postgres"]), Forwarder(ports["s3"])
        api = next(s for s in services if s.name == "scoring API")
        api.env.update(
            DAGSTER_PG_PORT=str(pg_link.port), FRAUDOPS_S3_ENDPOINT_URL=f"http://127.0.0.1:{s3_link.port}"
        )
        pg_link.restore()
        s3_link.restore()
        start_in_order(services)
        instance = dg.DagsterInstance.from_config(profile.dagster_home)
        yield Cluster(profile, services, devservices.ClusterClient(ports["ui"], instance), pg_link, s3_link)
        instance.dispose()
    finally:
        stop(services)
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def trained(cluster: Cluster) -> dict[str, str]:
    """Data, features and a champion, each a run submitted to the cluster."""
    days = {RANGE_START: FIRST, RANGE_END: LAST}
    runs = {"ingest": cluster.submit("ingest_transactions", tags=days)}
    cluster.succeeds(runs["ingest"])
    runs["labels"] = cluster.submit("ingest_labels", tags=days)  # the generator's chargebacks
    cluster.succeeds(runs["labels"])
    runs["features"] = cluster.submit("build_features", tags=days)
    cluster.succeeds(runs["features"])
    config = {"ops": {name: {"config": QUICK} for name in CANDIDATES}}
    config["ops"]["training_data"] = {"config": {"warmup_days": 0}}
    runs["train"] = cluster.submit("train_models", run_config=config)
    cluster.succeeds(runs["train"])
    return runs


def test_end_to_end_on_the_cluster_profile(cluster: Cluster, trained: dict[str, str]):
    instance = cluster.instance
    # The candidates of one run went to both workers, none ran in the run's own process.
    workers = cluster.client.celery_workers(trained["train"])
    assert set(CANDIDATES) <= set(workers), workers
    assert {name.split("@")[0] for name in workers.values()} == {"worker1", "worker2"}, workers
    # The features of the run's days, a step per card shard: the shards went to both workers,
    # handing their day rows and merchant counts on through the object store.
    workers = cluster.client.celery_workers(trained["features"])
    shards = {step: name for step, name in workers.items() if "card_shard_features[" in step}
    assert set(shards) == {f"transaction_features.card_shard_features[{n}]" for n in range(SHARDS)}, workers
    assert {name.split("@")[0] for name in shards.values()} == {"worker1", "worker2"}, workers
    assert cluster.storage("steps", trained["features"]).list(), "no shard output in the object store"

    # The gate promoted a champion through the MLflow server; its bundle is in the object store.
    event = instance.get_latest_materialization_event(dg.AssetKey(CHAMPION_MODEL))
    champion = ChampionRecord.from_metadata(event.asset_materialization.metadata)
    assert champion.bundle_uri.startswith("s3://fraudops/models/")
    registry = ModelRegistry(load_settings().mlflow_tracking_uri)
    assert registry.tracking_uri.startswith("http://")
    assert registry.champion().version == champion.mlflow_model_version
    assert registry.champion().bundle_sha256 == champion.bundle_sha256
    mlflow_objects = load_settings().location("s3://fraudops/mlflow").fs.find("fraudops/mlflow")
    assert any(key.endswith("MLmodel") for key in mlflow_objects), (
        "the model's artifacts are not in the store"
    )

    # The running API (two uvicorn workers) finds the new champion by polling the instance
    # (PostgreSQL), loads its bundle from the object store, and the merchant risk table too.
    api = cluster.service("scoring API")
    assert len(_uvicorn_workers(api)) == 2, "uvicorn should run 2 worker processes"
    health = _wait_for(cluster.health, lambda h: h["model_version"] == champion.version, 90)
    assert health["status"] == "ok", health
    assert health["merchant_risk"]["day"] == LAST, health["merchant_risk"]
    assert health["dagster_instance"]["error"] is None
    # Each uvicorn worker polls on its own: the other may load the first champion a poll later
    # (answering 503 "no model" meanwhile). Then ten requests, each a new connection, whichever
    # worker takes it, are scored by the champion.
    _wait_for(
        lambda: [cluster.predict()["model_version"] for _ in range(10)],
        lambda versions: versions == [champion.version] * 10,
        90,
    )

    # The API started before any data: its polls loaded the card history once the ingest run had
    # stored it, into the Redis its two workers share (FRAUDOPS_ONLINE_STATE of profile.env). A
    # card's transactions, each taken by whichever worker, see every earlier one.
    card_state = health["card_state"]
    assert card_state["store"] == cluster.profile.settings.online_state, card_state
    assert card_state["bootstrap"] == "loaded" and card_state["days"][-1] == LAST, card_state
    assert [shared_card_transaction(cluster, k)["transactions_last_1h"] for k in range(8)] == list(range(8))
    online = redis.Redis.from_url(cluster.profile.settings.online_state)
    assert (
        online.sismember("fraudops:cards", SHARED_CARD) and online.scard("fraudops:cards") > POPULATION // 2
    )

    # Restarted (a deploy), the API finds the card history in Redis: the stored days and the
    # transactions scored before.
    stop([api])
    start_in_order([api])
    health = _wait_for(cluster.health, lambda h: h["model_version"] == champion.version, 90)
    card_state = health["card_state"]
    assert card_state["bootstrap"] == "loaded" and card_state["source"].startswith("s3://"), card_state
    assert card_state["days"][-1] == LAST, card_state
    assert health["status"] == "ok", health
    assert cluster.predict()["model_version"] == champion.version
    assert shared_card_transaction(cluster, 8)["transactions_last_1h"] == 8

    # A drift report of the last day, written to the object store and read back from it.
    run_id = cluster.submit("__ASSET_JOB", tags={"dagster/partition": LAST}, assets=["drift_report"])
    cluster.succeeds(run_id)
    report = instance.get_latest_materialization_event(dg.AssetKey("drift_report"))
    html = str(report.asset_materialization.metadata["html_report"].value)
    assert html == f"s3://fraudops/reports/drift/{LAST}.html"
    assert "<html" in load_settings().location(html).read_text()[:2000].lower()


SHARED_CARD = "CARD-SCORED-BY-BOTH-WORKERS"


def shared_card_transaction(cluster: Cluster, k: int) -> dict:
    """The features of the ``k``-th transaction of one card, a minute after the one before."""
    at = dt.datetime.fromisoformat(f"{LAST}T12:00:00") + dt.timedelta(minutes=k)
    body = {"transaction_id": f"shared-{k}", "card_id": SHARED_CARD, "merchant_id": "MER-SHARED",
            "timestamp": at.isoformat(), "amount": 20.0 + k, "merchant_category": "grocery"}  # fmt: skip
    return cluster.predict(body, "?include_features=true")["features"]


def test_postgresql_runs_from_a_private_folder_as_root(cluster: Cluster):
    """The profile's state is in a folder only its owner can enter (what `mktemp -d` makes). As
    root, PostgreSQL runs as nobody, who cannot enter it: its programs and data are in a folder of
    their own that nobody can pass through and no one else can list, its data folder nobody's
    alone."""
    assert stat.S_IMODE(os.stat(cluster.profile.cwd).st_mode) == 0o700
    server = cluster.service("postgresql")
    data = Path(server.argv[server.argv.index("-D") + 1])
    if os.geteuid() != 0:
        assert str(data) == cluster.profile.postgres_dir
        return
    private = data.parent
    assert private.parent.resolve() == Path(tempfile.gettempdir()).resolve()
    assert Path(server.argv[0]).is_relative_to(private)  # pgserver's programs, copied
    assert stat.S_IMODE(private.stat().st_mode) == 0o711 and private.owner() == "root"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700 and data.owner() == devservices.POSTGRES_USER_WHEN_ROOT
    assert cluster.profile.postgres_dir not in " ".join(server.argv)


def test_two_backfills_at_once_on_postgresql(cluster: Cluster):
    """Two backfills launched together: both runs in flight at the same time, no locking error.

    That both are in flight must not depend on timing (on a loaded machine one run can end
    before the other is launched): the Celery workers are paused (SIGSTOP) until both runs have
    started, so neither can execute a step before the other is running; then they go on."""
    first = [f"2026-04-{d:02d}" for d in range(1, 8)]
    second = [f"2026-04-{d:02d}" for d in range(8, 15)]
    workers = [s for s in cluster.services if s.name.startswith("celery worker")]
    for worker in workers:
        worker.signal_group(signal.SIGSTOP)
    try:
        backfills = [cluster.client.backfill(INGEST_ASSETS, days) for days in (first, second)]
        _wait_for(
            lambda: [run for backfill in backfills for run in cluster.client.backfill_runs(backfill)],
            lambda runs: len(runs) == 2 and all(r.status == dg.DagsterRunStatus.STARTED for r in runs),
            RUN_TIMEOUT,
        )
    finally:
        for worker in workers:
            worker.signal_group(signal.SIGCONT)
    runs = [run for backfill in backfills for run in cluster.client.wait_backfill(backfill, RUN_TIMEOUT)]
    assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), runs
    a, b = (cluster.instance.get_run_record_by_id(r.run_id) for r in runs)
    assert a.start_time < b.end_time and b.start_time < a.end_time, "the two runs did not overlap"
    messages = [e.message or "" for r in runs for e in cluster.instance.all_logs(r.run_id)]
    assert not [m for m in messages if LOCKING_ERRORS.search(m)]
    done = cluster.instance.get_materialized_partitions(dg.AssetKey("validated_transactions"))
    assert set(first + second) <= done


def test_a_killed_run_leaves_no_partial_asset_and_re_executes_to_the_same_outputs(cluster: Cluster):
    days = [f"2026-05-{d:02d}" for d in range(1, 7)]
    run_id = cluster.submit("ingest_transactions", tags={RANGE_START: days[0], RANGE_END: days[-1]})
    # Mid-way: the first step has started on a Celery worker. Kill that process and the run's own.
    step = _wait_for(
        lambda: next(iter(cluster.instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)), None),
        lambda e: e is not None,
        RUN_TIMEOUT,
    )
    started = [e.message for e in cluster.instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)]
    run_worker = int(
        next(re.search(r"pid: (\d+)", m).group(1) for m in started if "Started process for run" in m)
    )
    for pid in (step.dagster_event.pid, run_worker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert cluster.wait(run_id).status == dg.DagsterRunStatus.FAILURE  # told by the code server
    time.sleep(3)  # anything still writing has finished or died

    reference = _reference_days(days)
    before = _check_no_partial_asset(cluster, days, reference)

    rerun = cluster.client.reexecute_from_failure(run_id)
    cluster.succeeds(rerun)
    after = _check_no_partial_asset(cluster, days, reference)
    for asset in INGEST_ASSETS:
        assert set(after[asset]) == set(days), f"{asset}: {sorted(after[asset])}"
        for day, frame in before[asset].items():  # what was there already is unchanged
            pd.testing.assert_frame_equal(frame, after[asset][day])
    for day in days:  # every raw row is either validated or rejected, once
        raw = after["raw_transactions"][day][c.TRANSACTION_ID].astype(str)
        kept = pd.concat([after[asset][day][c.TRANSACTION_ID] for asset in INGEST_ASSETS[1:]]).astype(str)
        assert sorted(kept) == sorted(raw)


def test_the_api_keeps_serving_while_postgresql_or_the_object_store_is_away(cluster: Cluster, trained):
    _wait_for(cluster.health, lambda h: h["status"] == "ok", 90)
    version = cluster.predict()["model_version"]

    cluster.pg_link.cut()
    health = _wait_for(cluster.health, lambda h: h["dagster_instance"]["error"] is not None, 60)
    assert health["status"] == "degraded" and "Dagster instance" in health["error"], health
    assert cluster.predict()["model_version"] == version
    cluster.pg_link.restore()
    _wait_for(cluster.health, lambda h: h["dagster_instance"]["error"] is None and h["status"] == "ok", 60)

    cluster.s3_link.cut()
    health = _wait_for(cluster.health, lambda h: h["storage"]["error"] is not None, 60)
    assert health["status"] == "degraded" and "does not answer" in health["storage"]["error"], health
    assert cluster.predict()["model_version"] == version
    cluster.s3_link.restore()
    _wait_for(cluster.health, lambda h: h["storage"]["error"] is None and h["status"] == "ok", 60)
    assert cluster.predict()["model_version"] == version


# --- helpers ------------------------------------------------------------------------------------


def _wait_for(fetch, condition, timeout: float):
    deadline, value = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            value = fetch()
            if condition(value):
                return value
        time.sleep(0.5)
    pytest.fail(f"not reached within {timeout:.0f} s; last: {value}")


def _uvicorn_workers(api: Service) -> list[int]:
    """The worker processes uvicorn spawned (multiprocessing children, not its resource tracker)."""
    return [
        int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _parent(int(pid)) == api.process.pid
        and "spawn_main" in _cmdline(int(pid)) and "resource_tracker" not in _cmdline(int(pid))
    ]  # fmt: skip


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _reference_days(days: list[str]) -> dict[str, set[str]]:
    """The transaction ids of each day as the generator makes them (same seed and population)."""
    simulator = TransactionSimulator(SimulationConfig(seed=SEED, n_cardholders=POPULATION))
    frame = simulator.generate_days(dt.date.fromisoformat(days[0]), dt.date.fromisoformat(days[-1]))
    keys = day_keys(frame[c.TIMESTAMP])
    return {day: set(frame.loc[keys == day, c.TRANSACTION_ID].astype(str)) for day in days}


def _check_no_partial_asset(cluster: Cluster, days: list[str], reference: dict[str, set[str]]):
    """Every object under each asset's folder is a day's Parquet file (no temporary or broken
    object), with each of its rows once and only rows of that day (raw: every row of the day),
    and every partition Dagster records has its file. Returns the frames, per asset and day."""
    found: dict[str, dict[str, pd.DataFrame]] = {}
    for asset in INGEST_ASSETS:
        names = {entry.name for entry in cluster.storage(asset).list()}
        stored = dict(daily_partitions(cluster.storage(), asset))
        assert names == {f"{day}.parquet" for day in stored}, f"{asset}: stray objects {names}"
        found[asset] = {day: stored[day].read_parquet() for day in days if day in stored}
        recorded = cluster.instance.get_materialized_partitions(dg.AssetKey(asset)) & set(days)
        assert recorded <= set(found[asset]), (
            f"{asset}: recorded without a file: {recorded - set(found[asset])}"
        )
        for day, frame in found[asset].items():
            ids = frame[c.TRANSACTION_ID].astype(str)
            assert ids.is_unique and set(ids) <= reference[day], (
                f"{asset} {day}: rows twice or of another day"
            )
            if asset == "raw_transactions":
                assert set(ids) == reference[day], f"raw_transactions {day} is not the whole day"
    return found
