"""Scale-out figures of docs/scale-out.md: one partition from ingestion to features on each
profile, a 30-day backfill on the cluster profile with 1 and with 2 Celery workers, what
SQLite does with two backfill runs at once, and the features of a 7-day backfill by card shard
with 1 and with 2 workers.

Not part of `make bench` (it starts the whole cluster profile, minutes of set-up): run it by hand,
each profile in a fresh state folder, with the default population (3,000 cardholders):

    .venv/bin/python bench/scale_out.py embedded            # one partition, two runs on SQLite
    .venv/bin/python bench/scale_out.py cluster --workers 2 # one partition, the 30-day backfill
    .venv/bin/python bench/scale_out.py cluster --workers 1 --skip-partition
    .venv/bin/python bench/scale_out.py shards --shards 4 --cards 3000 --days 7

`shards` starts the cluster profile with one Celery worker and without the scoring API, ingests the lookback and the days,
and times the features of the days (one single-run backfill of `build_features`, a step per card
shard) with that worker, then with a second worker started, then with the second stopped again:
three runs of the same work in one process, their ratio the figure (the first and last bracket
the second against the machine's drift).

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


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> str:
    """Where a run's time went: its steps, their time inside the step (start to success) summed,
    and the time from a step's submission to its start (the queue, a worker taking it up)."""
    first: dict[str, dict[str, float]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not entry.step_key:
            continue
        kind = {"STEP_START": "start", "STEP_SUCCESS": "end"}.get(event.event_type_value)
        if kind is None and "Submitting celery task" in (entry.message or ""):
            kind = "submitted"
        if kind is not None:
            first.setdefault(entry.step_key, {}).setdefault(kind, entry.timestamp)
    inside = sum(t["end"] - t["start"] for t in first.values() if {"start", "end"} <= t.keys())
    waiting = sum(t["start"] - t["submitted"] for t in first.values() if {"start", "submitted"} <= t.keys())
    return f"{len(first)} steps, {inside:.1f} s inside them, {waiting:.1f} s from submission to start"


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


# --- the features of a backfill by card shard, 1 worker against 2 ---------------------------------


def cpu_seconds(services: list) -> dict[str, float]:
    """CPU time (user and system, with that of reaped children) so far of each service's
    process group (a service leads its own group), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    groups = {s.process.pid: s.name for s in services if s.process is not None}
    used = dict.fromkeys(groups.values(), 0.0)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile
        if int(fields[2]) in groups:
            used[groups[int(fields[2])]] += sum(int(f) for f in fields[11:15]) / tick
    return used


def shards(args: argparse.Namespace, state: str) -> None:
    from fraud_assets.core.features import LOOKBACK_DAYS

    ports = {name: devservices.free_port() for name in devservices.LOCAL_PORTS}
    os.environ.clear()
    os.environ.update(
        devservices.local_profile_environment(
            ports,
            state,
            FRAUDOPS_START_DATE=START,
            FRAUDOPS_CARDHOLDERS=str(args.cards),
            FRAUDOPS_FEATURE_SHARDS=str(args.shards),
        )
    )
    profile = devservices.ClusterProfile.from_environment(
        ui_port=ports["ui"], api_port=ports["api"], code_server_port=ports["code"], workers=2, cwd=state,
        postgres_data=os.path.join(state, "postgres"),
    )  # fmt: skip
    services = devservices.cluster_services(profile)
    second = next(s for s in services if s.name == "celery worker worker2")
    # not the scoring API: its workers would load the card history into Redis meanwhile
    running = [s for s in services if s is not second and s.name != "scoring API"]
    try:
        start_in_order(running)
        instance = dg.DagsterInstance.from_config(profile.dagster_home)
        client = devservices.ClusterClient(ports["ui"], instance)

        def succeeded(job: str, first: str, last: str) -> str:
            run_id = client.submit(job, tags={RANGE_START: first, RANGE_END: last})
            run = client.wait(run_id, 3600)
            assert run.status == dg.DagsterRunStatus.SUCCESS, client.failures(run_id)
            return run_id

        everything = days(START, LOOKBACK_DAYS + args.days)
        for job in ("ingest_transactions", "ingest_labels"):
            succeeded(job, everything[0], everything[-1])
        backfill = everything[-args.days :]

        def features(workers: int) -> float:
            before = cpu_seconds(services)
            run_id = succeeded("build_features", backfill[0], backfill[-1])
            seconds = run_seconds(instance, run_id)
            after = cpu_seconds(services)
            cpu = sorted(((after[k] - before.get(k, 0.0), k) for k in after), reverse=True)
            print(
                "CPU s by service: " + ", ".join(f"{name} {t:.1f}" for t, name in cpu if t >= 0.5), flush=True
            )
            used = sorted({w.split("@")[0] for w in client.celery_workers(run_id).values()})
            report(
                f"cluster: features of a {args.days}-day backfill, {args.shards} shards, {workers} worker(s)",
                seconds,
                f"{args.cards:,} cards; steps ran on {', '.join(used)}; {step_seconds(instance, run_id)}",
            )
            return seconds

        one = features(1)
        start_in_order([second])
        two = features(2)
        stop([second])
        again = features(1)
        print(f"2 workers / 1 worker: {two / one:.2f} (first), {two / again:.2f} (last), "
              f"{2 * two / (one + again):.2f} (mean of both); load {load()}", flush=True)  # fmt: skip
        instance.dispose()
    finally:
        stop(services)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("profile", choices=("embedded", "cluster", "shards"))
    parser.add_argument("--workers", type=int, default=2, help="cluster: Celery workers")
    parser.add_argument("--days", type=int, default=30, help="cluster, shards: days of the backfill")
    parser.add_argument("--shards", type=int, default=4, help="shards: card shards of the features")
    parser.add_argument("--cards", type=int, default=3000, help="shards: cardholders")
    parser.add_argument("--skip-partition", action="store_true", help="skip the one-partition figure")
    args = parser.parse_args()
    state = devservices.local_state_folder()
    try:
        {"embedded": embedded, "cluster": cluster, "shards": shards}[args.profile](args, state)
    finally:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
