"""What traffic capture costs the scoring API: the same requests with capture off, on a local
folder, and on a Redis Stream, in one run.

One uvicorn worker per mode (FRAUDOPS_CAPTURE=off, a temporary folder, a real redis-server's
stream), all serving the champion `make run` built, with payloads from its latest day of
`validated_transactions` moved forward (new transactions of known cards, as bench_serving's).
The modes are measured in turns, round after round (off, local, redis, off, ...), so that load
from other work on the machine falls on all of them alike; each figure is the median over rounds:

- 8 concurrent clients sending single transactions to /predict: throughput (requests/s), and
  its ratio to capture off (the goal: at least 0.8); with it the API process's CPU time per
  request (from /proc), the figure that other work on the machine disturbs least: its inverse
  ratio is the capacity of one worker with capture against without;
- one client, sequential /predict: p50 and p99 latency;
- 1,000-transaction batches with card history (exact reasons): p50 latency.

After the rounds it checks that every answered transaction was captured (``/health``).

    .venv/bin/python bench/bench_capture.py [--rounds 5] [--seconds 5] [--singles 600] [--batches 6] [--skip-redis] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import subprocess
import sys
import tempfile
import time

import httpx
import numpy as np
import pandas as pd
from bench_serving import (
    ROOT,
    bodies_from,
    champion_line,
    free_port,
    http_request,
    latest_full_day,
    sequential,
    throughput,
    wait_http,
    what_make_run_built,
)
from run_all import parse_args

from fraud_assets.services.testing import redis_server, stop_processes
from fraud_serving.capture import TrafficCapture
from fraud_serving.schemas import TRANSACTION_ROWS


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cost(bodies: list[dict], modes: dict[str, str], repeats: int) -> None:
    """The capture's own CPU per model call, in this process: the record built from the rows as
    the API validated them, and appended (what `Service.score` adds to a call)."""
    rows = [TRANSACTION_ROWS.validate_python(body) for body in bodies[:1000]]
    for mode, where in modes.items():
        if mode == "off":
            continue
        capture = TrafficCapture.open(where)
        line = []
        for size in (1, 8, 64, 1000):
            group, ids = rows[:size], [row["transaction_id"] for row in rows[:size]]
            started = time.process_time()
            for _ in range(repeats):
                capture.transactions("2026-12-07T00:00:00.000000+00:00", ids, group)
            line.append(f"{size}: {(time.process_time() - started) / repeats * 1e6:,.0f} us")
        capture.close()
        print(f"capture {mode}, CPU per model call of n transactions (in process): " + ", ".join(line))


def singles_and_clients(pid: int, port: int, last: pd.DataFrame, shift: pd.Timedelta, args, mode: str):
    """One round of an API: ``args.singles`` sequential /predict latencies (ms; after 100 of
    warm-up) and ``args.clients`` clients for ``args.seconds``: ``(latencies, requests/s,
    requests, API CPU us per request)``. New transactions each call (``shift``)."""
    singles = bodies_from(last.head(args.singles + 100), shift)
    reqs = [http_request("127.0.0.1", port, "/predict", b) for b in singles]
    sequential(port, reqs[:100])  # warm-up (and the first round's compilation)
    lat = sequential(port, reqs[100:])
    tp_rows = last.iloc[args.singles + 100 :].head(5000)
    tp_bodies = bodies_from(tp_rows if len(tp_rows) else last, shift)
    tp = [http_request("127.0.0.1", port, "/predict", b) for b in tp_bodies]
    cpu = cpu_seconds(pid)
    rate, n, errors = asyncio.run(throughput(port, tp, args.clients, args.seconds))
    cpu_us = (cpu_seconds(pid) - cpu) / max(n, 1) * 1e6
    if errors:
        raise SystemExit(f"{mode}: {errors} requests failed")
    return lat, rate, n, cpu_us


def start(env: dict, capture: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "fraud_serving.app:app", "--port", str(port), "--workers", "1",
         "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env={**env, "FRAUDOPS_CAPTURE": capture},
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/health", 300, lambda r: r.json()["status"] != "no_model")
    return proc, port


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--singles", type=int, default=600)
    p.add_argument("--batches", type=int, default=6)
    p.add_argument("--skip-redis", action="store_true")
    args = parse_args(p, rounds=1, seconds=0.5, singles=20, batches=1, skip_redis=True)

    _, _, days = what_make_run_built()
    day, last = latest_full_day(days)
    print(f"payload rows: {len(last)} transactions of {day}")
    env = {
        **os.environ,
        "FRAUDOPS_PREDICTION_LOG_DIR": tempfile.mkdtemp(prefix="fraudops-bench-log-"),
        "FRAUDOPS_MAX_BATCH": "1000",
    }
    modes = {"off": "off", "local": tempfile.mkdtemp(prefix="fraudops-bench-capture-")}
    with contextlib.ExitStack() as stack:
        if not args.skip_redis:
            modes["redis"] = stack.enter_context(redis_server(free_port()))
        own_cost(bodies_from(last.head(1000), pd.Timedelta(days=0)), modes, 3 if args.quick else 200)
        apis = {mode: start(env, where) for mode, where in modes.items()}
        stack.callback(stop_processes, *(proc for proc, _ in apis.values()))
        model = httpx.get(f"http://127.0.0.1:{apis['off'][1]}/model").json()
        print(champion_line(model))
        print(f"load at start: {os.getloadavg()[0]:.1f}")
        results = {mode: {"rate": [], "cpu": [], "p50": [], "p99": [], "batch": []} for mode in modes}
        answered = dict.fromkeys(modes, 0)
        step = 0
        for round_ in range(args.rounds):
            for mode, (_, port) in apis.items():
                step += 1
                shift = pd.Timedelta(days=step)  # new transactions each time (their ids too)
                lat, rate, n, cpu_us = singles_and_clients(apis[mode][0].pid, port, last, shift, args, mode)
                singles = range(args.singles + 100)
                times, batched = [], 0
                for k in range(args.batches):
                    chunk = last.iloc[(k * 1000) % max(len(last) - 1000, 1) :].head(1000)
                    body = {"transactions": bodies_from(chunk, shift + pd.Timedelta(days=1000 + k))}
                    batched += len(chunk)
                    times.append(
                        sequential(port, [http_request("127.0.0.1", port, "/predict/batch", body)])[0]
                    )
                answered[mode] += len(singles) + n + batched
                r = results[mode]
                r["rate"].append(rate)
                r["cpu"].append(cpu_us)
                r["p50"].append(np.percentile(lat, 50))
                r["p99"].append(np.percentile(lat, 99))
                r["batch"].append(float(np.median(times)))
                print(f"  round {round_ + 1}, capture {mode}: {rate:,.0f} req/s ({cpu_us:.0f} us API CPU/request), singles p50 "
                      f"{r['p50'][-1]:.2f} ms p99 {r['p99'][-1]:.2f} ms, 1,000-batch {r['batch'][-1]:.1f} ms")  # fmt: skip
        base = float(np.median(results["off"]["rate"]))
        base_cpu = float(np.median(results["off"]["cpu"]))
        print(f"capture | {args.clients} clients /predict req/s | vs off | API CPU us/request | capacity vs off "
              f"| singles p50 / p99 ms | 1,000-batch p50 ms")  # fmt: skip
        for mode, r in results.items():
            rate, cpu = float(np.median(r["rate"])), float(np.median(r["cpu"]))
            print(f"{mode} | {rate:,.0f} | {rate / base:.2f} | {cpu:.0f} | {base_cpu / cpu:.2f} "
                  f"| {np.median(r['p50']):.2f} / {np.median(r['p99']):.2f} | {np.median(r['batch']):.1f}")  # fmt: skip
        for mode, (_, port) in apis.items():
            if mode == "off":
                continue
            held = httpx.get(f"http://127.0.0.1:{port}/health").json()["capture"]
            status = (
                "every answered transaction captured" if held["rows"] >= answered[mode] else "MISSING ROWS"
            )
            print(f"capture {mode}: {held['rows']} rows in {held['records']} records, "
                  f"{held['failures']} failures; {answered[mode]} answered: {status}")  # fmt: skip
            if held["rows"] < answered[mode] or held["failures"]:
                raise SystemExit(f"capture {mode} lost rows")
        print(f"machine: {os.cpu_count()}-core {platform.machine()}, Python {platform.python_version()}, "
              f"load at the end {os.getloadavg()[0]:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
