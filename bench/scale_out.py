"""Scale-out figures of docs/scale-out.md: one partition from ingestion to features on each
profile, a 30-day backfill on the cluster profile with 1 and with 2 Celery workers, and what
SQLite does with two backfill runs at once.

Not part of `make bench` (it starts the whole cluster profile, minutes of set-up): run it by hand,
each profile in a fresh state folder, with the default population (3,000 cardholders):

    .venv/bin/python bench/scale_out.py embedded            # one partition, two runs on SQLite
    .venv/bin/python bench/scale_out.py cluster --workers 2 # one partition, the 30-day backfill
    .venv/bin/python bench/scale_out.py cluster --workers 1 --skip-partition

Times are Dagster's own run records (run start to run end: the run worker's time, whatever
launched it) and, for the cluster, the wall time from submission to the end (queue, daemon and
launch included). Each line gives `uptime`'s load beside it: the machine is shared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402

from fraud_assets.services import devservices  # noqa: E402
from fraud_assets.services.service import start_in_order, stop  # noqa: E402

START = "2026-01-01"  # the first partition of the benchmark's instance
PARTITION = "2026-02-01"  # one partition (its lookback not ingested: the same on both profiles)
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
INGEST = ("raw_transactions", "validated_transactions", "rejected_transactions")
FEATURES = ("transaction_features", "merchant_risk")
LOCKED = "database is locked"


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def days(first: str, count: int) -> list[str]:
    start = dt.date.fromisoformat(first)
    return [(start + dt.timedelta(days=n)).isoformat() for n in range(count)]


def run_seconds(instance: dg.DagsterInstance, run_id: str) -> float:
    record = instance.get_run_record_by_id(run_id)
    return record.end_time - record.start_time


def report(what: str, seconds: float, detail: str = "") -> None:
    print(f"| {what} | {seconds:.1f} s | {detail} | load {load()} |", flush=True)


# --- embedded: SQLite, runs executed by `dagster job execute` (the run worker of `dagster dev`) --


def embedded(args: argparse.Namespace, state: str) -> None:
    home = os.path.join(state, "home")
    os.makedirs(home)
    shutil.copy(ROOT / "dagster.yaml", home)  # its paths are relative: the runs work in `state`
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDOPS_")}
    env.update(
        DAGSTER_HOME=home,
        FRAUDOPS_STATE_DIR=os.path.join(state, ".fraudops"),
        FRAUDOPS_LANDING_DIR=os.path.join(state, "landing"),
        FRAUDOPS_START_DATE=START,
    )

    def execute(job: str, first: str, last: str) -> subprocess.Popen:
        tags = json.dumps({RANGE_START: first, RANGE_END: last})
        argv = [sys.executable, "-m", "dagster", "job", "execute", "-m", "fraud_assets.definitions"]
        return subprocess.Popen(
            [*argv, "-j", job, "--tags", tags],
            env=env,
            cwd=state,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def finished(process: subprocess.Popen) -> str:
        output = process.communicate()[0].decode(errors="replace")
        if process.returncode != 0:
            print(output[-3000:])
        return output

    os.chdir(state)  # dagster.yaml's relative paths, as the runs see them
    instance = dg.DagsterInstance.from_config(home)
    if not args.skip_partition:
        total = 0.0
        for job in ("ingest_transactions", "build_features"):
            finished(execute(job, PARTITION, PARTITION))
            run = instance.get_runs(limit=1)[0]
            assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
            total += run_seconds(instance, run.run_id)
        report("embedded: one partition, ingest to features (2 runs)", total, "SQLite, multiprocess executor")
    # Two 7-day ingestion runs at once, as the PostgreSQL test launches them.
    processes = [execute("ingest_transactions", *days_range) for days_range in (
        (days(START, 14)[0], days(START, 14)[6]), (days(START, 14)[7], days(START, 14)[13]))]  # fmt: skip
    outputs = [finished(p) for p in processes]
    runs = instance.get_runs(limit=2)
    logged = sum(LOCKED in (e.message or "") for r in runs for e in instance.all_logs(r.run_id))
    printed = sum(o.count(LOCKED) for o in outputs)
    a, b = (instance.get_run_record_by_id(r.run_id) for r in runs)
    overlap = min(a.end_time, b.end_time) - max(a.start_time, b.start_time)
    print(
        f"| embedded: two 7-day ingestion runs at once | statuses {[r.status.value for r in runs]} | "
        f"'{LOCKED}': {logged} in the event logs, {printed} in the output | overlap {overlap:.1f} s | "
        f"load {load()} |",
        flush=True,
    )
    instance.dispose()


# --- cluster: every service of the profile, runs submitted through the webserver ------------------


def cluster(args: argparse.Namespace, state: str) -> None:
    ports = {name: devservices.free_port() for name in devservices.LOCAL_PORTS}
    os.environ.clear()
    os.environ.update(devservices.local_profile_environment(ports, state, FRAUDOPS_START_DATE=START))
    profile = devservices.ClusterProfile.from_environment(
        ui_port=ports["ui"],
        api_port=ports["api"],
        code_server_port=ports["code"],
        workers=args.workers,
        cwd=state,
        postgres_data=os.path.join(state, "postgres"),
    )
    services = devservices.cluster_services(profile)
    try:
        begun = time.monotonic()
        start_in_order(services)
        report(f"cluster: every service started and ready ({args.workers} workers)", time.monotonic() - begun)
        instance = dg.DagsterInstance.from_config(profile.dagster_home)
        client = devservices.ClusterClient(ports["ui"], instance)

        def succeeded(run_id: str) -> dg.DagsterRun:
            run = client.wait(run_id, 3600)
            assert run.status == dg.DagsterRunStatus.SUCCESS, client.failures(run_id)
            return run

        if not args.skip_partition:
            total, begun = 0.0, time.monotonic()
            for job in ("ingest_transactions", "build_features"):
                run = succeeded(client.submit(job, tags={RANGE_START: PARTITION, RANGE_END: PARTITION}))
                total += run_seconds(instance, run.run_id)
            report(
                f"cluster: one partition, ingest to features (2 runs, {args.workers} workers)",
                total,
                f"submission to end {time.monotonic() - begun:.1f} s",
            )
        partitions = days(START, args.days)
        begun = time.monotonic()
        runs = client.wait_backfill(client.backfill([*INGEST, *FEATURES], partitions), 3600)
        wall = time.monotonic() - begun
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [r.status for r in runs]
        report(
            f"cluster: {args.days}-day backfill, ingest to features ({args.workers} Celery workers)",
            wall,
            f"{len(runs)} runs, run time {sum(run_seconds(instance, r.run_id) for r in runs):.1f} s",
        )
        instance.dispose()
    finally:
        stop(services)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", choices=("embedded", "cluster"))
    parser.add_argument("--workers", type=int, default=2, help="cluster: Celery workers")
    parser.add_argument("--days", type=int, default=30, help="cluster: days of the backfill")
    parser.add_argument("--skip-partition", action="store_true", help="skip the one-partition figure")
    args = parser.parse_args()
    state = devservices.local_state_folder()
    try:
        (embedded if args.profile == "embedded" else cluster)(args, state)
    finally:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
