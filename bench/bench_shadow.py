"""What scoring a challenger in shadow costs the scoring API: the same requests with shadow
scoring off and on, in one run.

Both APIs serve the champion `make run` built (read from its Dagster instance), from a Dagster
home of their own in which a challenger is registered too: the champion's bundle saved again as
a new version (a challenger of the champion's size, what a retraining registers). One uvicorn
worker each, FRAUDOPS_SHADOW_SCORING=false and true, capture off (bench_capture measures it).
The modes are measured in turns, round after round, so that load from other work on the machine
falls on both alike; each figure is the median over rounds:

- 8 concurrent clients sending single transactions to /predict: throughput (requests/s), its
  ratio to shadow off (the goal: at least 0.7), and the API process's CPU time per request;
- one client, sequential /predict: p50 and p99 latency (the goal: p99 grows by at most 1 ms).

After the rounds it checks that the challenger scored every transaction the shadow API answered
(``/health``), without a failure.

    .venv/bin/python bench/bench_shadow.py [--rounds 5] [--seconds 5] [--singles 600] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time

import dagster as dg
import httpx
import numpy as np
import pandas as pd
from bench_capture import singles_and_clients
from bench_serving import (
    ROOT,
    bodies_from,
    champion_line,
    free_port,
    latest_full_day,
    wait_http,
    what_make_run_built,
)
from run_all import parse_args

from fraud_assets.core.bundle import ModelBundle
from fraud_assets.core.champion_history import current_champion
from fraud_assets.core.contract import CHALLENGER_MODEL, CHAMPION_MODEL
from fraud_assets.core.storage import Location
from fraud_assets.defs.registry import record_metadata
from fraud_assets.services.testing import stop_processes, write_dagster_home
from fraud_serving.model_provider import ServedModel
from fraud_serving.scoring import DEFAULT_OPTIONS


def shadow_home(settings) -> str:
    """A Dagster home holding the project's champion and a challenger of its size."""
    champion = current_champion(dg.DagsterInstance.get())
    home = write_dagster_home(tempfile.mkdtemp(prefix="fraudops-bench-shadow-home-"))
    bundle = ModelBundle.load(settings.location(champion.bundle_uri), champion.bundle_sha256)
    bundle.created_at = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()  # a new version
    directory = Location.of(tempfile.mkdtemp(prefix="fraudops-bench-shadow-models-"))
    path, sha = bundle.save(directory)
    challenger = ModelBundle.load(path, sha).record(path, sha, mlflow_model_version="challenger")
    if challenger.version == champion.version:
        raise SystemExit("the challenger's bundle version equals the champion's: no shadow to measure")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(CHAMPION_MODEL, metadata=record_metadata(champion))
        )
        instance.report_runless_asset_event(
            dg.AssetMaterialization(CHALLENGER_MODEL, metadata=record_metadata(challenger))
        )
    print(f"challenger in shadow: {challenger.name}, the champion's bundle saved again")
    return str(home)


def own_cost(settings, home: str, bodies: list[dict], repeats: int) -> None:
    """The shadow's own CPU per writer round of n transactions, in this process: the challenger
    found in ``home``, loaded, and `ShadowScorer.annotate` on logged calls of the API's scorer."""
    from fraud_serving.card_state import CardState, MerchantRiskStore
    from fraud_serving.model_provider import lazy_instance
    from fraud_serving.schemas import TRANSACTION_ROWS
    from fraud_serving.scoring import Scorer
    from fraud_serving.shadow import ShadowScorer, shadow_source

    shadow = ShadowScorer(shadow_source(lazy_instance(home)), locate=settings.location)
    shadow.refresh()
    record = current_champion(dg.DagsterInstance.get())
    bundle = ModelBundle.load(settings.location(record.bundle_uri), record.bundle_sha256)
    served = ServedModel.from_bundle(bundle, record)
    scorer = Scorer(CardState(), MerchantRiskStore(settings.location(settings.storage)))
    rows = [TRANSACTION_ROWS.validate_python(body) for body in bodies[:1000]]
    line = []
    for size in (1, 8, 64, 1000):
        item = scorer.score(served, rows[:size], time.perf_counter(), DEFAULT_OPTIONS).log_item
        started = time.process_time()
        for _ in range(repeats):
            shadow.annotate([item])
        line.append(f"{size}: {(time.process_time() - started) / repeats * 1e6:,.0f} us")
    print("shadow's CPU per writer round of n transactions (in process): " + ", ".join(line))


def start(env: dict, shadow: bool) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "fraud_serving.app:app", "--port", str(port), "--workers", "1",
         "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env={**env, "FRAUDOPS_SHADOW_SCORING": "true" if shadow else "false"},
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/health", 300, lambda r: r.json()["status"] != "no_model")
    if shadow:
        wait_http(
            f"http://127.0.0.1:{port}/health", 300, lambda r: r.json()["shadow"]["challenger"] is not None
        )
    return proc, port


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--singles", type=int, default=600)
    p.add_argument(
        "--own-cost", action="store_true", help="the shadow's CPU per writer round alone (no APIs)"
    )
    args = parse_args(p, rounds=1, seconds=0.5, singles=20)

    settings, _, days = what_make_run_built()
    day, last = latest_full_day(days)
    print(f"payload rows: {len(last)} transactions of {day}")
    home = shadow_home(settings)
    own_cost(settings, home, bodies_from(last.head(1000), pd.Timedelta(days=0)), 3 if args.quick else 100)
    if args.own_cost:
        return
    env = {
        **os.environ,
        "DAGSTER_HOME": home,
        "FRAUDOPS_PREDICTION_LOG_DIR": tempfile.mkdtemp(prefix="fraudops-bench-log-"),
        "FRAUDOPS_CAPTURE": "off",
    }
    with contextlib.ExitStack() as stack:
        apis = {mode: start(env, mode == "on") for mode in ("off", "on")}
        stack.callback(stop_processes, *(proc for proc, _ in apis.values()))
        print(champion_line(httpx.get(f"http://127.0.0.1:{apis['off'][1]}/model").json()))
        print(f"load at start: {os.getloadavg()[0]:.1f}")
        results = {mode: {"rate": [], "cpu": [], "p50": [], "p99": []} for mode in apis}
        answered = dict.fromkeys(apis, 0)
        step = 0
        for round_ in range(args.rounds):
            for mode, (proc, port) in apis.items():
                step += 1
                shift = pd.Timedelta(days=step)  # new transactions each time (their ids too)
                lat, rate, n, cpu_us = singles_and_clients(
                    proc.pid, port, last, shift, args, f"shadow {mode}"
                )
                answered[mode] += args.singles + 100 + n
                r = results[mode]
                r["rate"].append(rate)
                r["cpu"].append(cpu_us)
                r["p50"].append(np.percentile(lat, 50))
                r["p99"].append(np.percentile(lat, 99))
                print(f"  round {round_ + 1}, shadow {mode}: {rate:,.0f} req/s ({cpu_us:.0f} us API CPU/request), "
                      f"singles p50 {r['p50'][-1]:.2f} ms p99 {r['p99'][-1]:.2f} ms")  # fmt: skip
        base = float(np.median(results["off"]["rate"]))
        base_p99 = float(np.median(results["off"]["p99"]))
        print(f"shadow | {args.clients} clients /predict req/s | vs off | API CPU us/request | singles p50 / p99 ms "
              f"| p99 vs off ms")  # fmt: skip
        for mode, r in results.items():
            rate, p99 = float(np.median(r["rate"])), float(np.median(r["p99"]))
            print(f"{mode} | {rate:,.0f} | {rate / base:.2f} | {np.median(r['cpu']):.0f} "
                  f"| {np.median(r['p50']):.2f} / {p99:.2f} | {p99 - base_p99:+.2f}")  # fmt: skip
        port = apis["on"][1]
        deadline = time.monotonic() + 60
        while True:  # the writer scores a round at a time: wait for the last one
            shadow = httpx.get(f"http://127.0.0.1:{port}/health").json()["shadow"]
            if shadow["scored"] >= answered["on"] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        print(f"shadow on: the challenger scored {shadow['scored']} transactions, {shadow['failed']} failed; "
              f"{answered['on']} answered")  # fmt: skip
        if shadow["scored"] < answered["on"] or shadow["failed"]:
            raise SystemExit(f"the challenger did not score every answered transaction: {shadow}")
        print(f"machine: {os.cpu_count()}-core {platform.machine()}, Python {platform.python_version()}, "
              f"load at the end {os.getloadavg()[0]:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
