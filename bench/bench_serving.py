"""Scoring API latency and throughput, beside `mlflow models serve` on the same champion.

Starts one real uvicorn worker of `fraud_serving.app:app` on a free port, serving the champion of
the Dagster instance at DAGSTER_HOME (default: the project root; `make run` creates one), and
`mlflow models serve -m models:/fraud-detector@champion --env-manager local -w 1` on another.
Payloads are the latest day of `validated_transactions`, moved one day forward so that they are
new transactions of cards the API knows (history features come from its card state).

(a) one client, sequential single-transaction requests with card history: p50 / p99 latency,
    measured by the client (everything included: HTTP, parsing, history, model, reasons, log);
(b) 8 concurrent clients (keep-alive connections, a small asyncio client): throughput of the API
    and of MLflow's server on the same rows (MLflow gets `{"dataframe_records": [row]}` with the
    preprocessor's input columns, the history features precomputed);
(c) 1,000-transaction batches: p50 latency, with exact, approximate and no reason codes.

The figures hold for one champion only (exact reasons cost grows with its trees and depth), so
the output starts and ends with which one: algorithm, version, bundle SHA-256, trees, depth and
TreeSHAP table entries, as `GET /model` reports them.

    .venv/bin/python bench/bench_serving.py [--singles 2000] [--seconds 10] [--batches 15] [--skip-mlflow] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import httpx
import numpy as np
import pandas as pd
from run_all import parse_args, skip

from fraud_assets.core.champion_history import latest_champion
from fraud_assets.core.contract import VALIDATED_TRANSACTIONS, daily_partitions, prediction_log_files
from fraud_assets.core.settings import load_settings
from fraud_assets.core.storage import Location
from fraud_assets.services.testing import redis_server, stop_processes

ROOT = Path(__file__).resolve().parents[1]


PORTS = [0]  # --ports 4400-4499: the range to take ports from (machines where ports are shared out)


def free_port() -> int:
    """A free port (within --ports when given)."""
    for port in range(PORTS[0], PORTS[-1] + 1) if PORTS[0] else [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise SystemExit(f"no free port in {PORTS}")


def wait_http(url: str, timeout: float, ok=lambda r: r.status_code == 200) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ok(httpx.get(url, timeout=2)):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise SystemExit(f"{url} did not come up within {timeout:.0f} s")


def bodies_from(frame: pd.DataFrame, shift: pd.Timedelta) -> list[dict]:
    """/predict bodies of stored transactions moved by ``shift``; a value the stored row lacks
    (an API transaction sent without it) is left out of the body, as its client left it out."""
    out = []
    for row in frame.itertuples():
        body = {
            "transaction_id": f"{row.transaction_id}-{int(shift.total_seconds())}",
            "amount": float(row.amount),
            "card_id": row.card_id,
            "merchant_id": row.merchant_id,
            "timestamp": (row.timestamp + shift).isoformat(),
        }
        optional = (("merchant_category", str), ("entry_mode", str), ("is_online", bool), ("is_foreign", bool),
                    ("distance_from_home", float))  # fmt: skip
        for name, kind in optional:
            value = getattr(row, name)
            if not pd.isna(value):
                body[name] = kind(value)
        if isinstance(row.device_fingerprint, str):
            body["device_fingerprint"] = row.device_fingerprint
        out.append(body)
    return out


def http_request(host: str, port: int, path: str, body: dict | list) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)
    return status


async def throughput(
    port: int, requests: list[bytes], clients: int, seconds: float
) -> tuple[float, int, int]:
    """Requests per second of ``clients`` keep-alive connections, each sending requests in turn."""
    done = errors = 0
    stop_at = time.perf_counter() + seconds

    async def client(k: int) -> None:
        nonlocal done, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = k
        while time.perf_counter() < stop_at:
            writer.write(requests[i % len(requests)])
            await writer.drain()
            status = await read_response(reader)
            done += 1
            errors += status != 200
            i += clients
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    return done / (time.perf_counter() - started), done, errors


def server_latencies(log_dir: str, size: int) -> list[float]:
    """``latency_ms`` the service logged for its requests of ``size`` transactions, in order
    (the API runs with FRAUDOPS_PREDICTION_LOG_FLUSH_SECONDS=0: a file each writer round)."""
    time.sleep(0.3)  # the log writer batches for 50 ms
    out = []
    for blob in Location.read_many(prediction_log_files(Location.of(log_dir))):
        for line in blob.splitlines():
            record = json.loads(line)
            if isinstance(record.get("transaction_id"), list) and len(record["transaction_id"]) == size:
                out.append(float(record["latency_ms"]))
    return out


def champion_line(model: dict) -> str:
    """Which champion the figures are for, from `GET /model`."""
    size = model.get("compiled_tree_size") or {}
    compiled = (
        f"{size['trees']} trees, depth <= {size.get('max_depth', '?')}, "
        f"{size['shap_table_entries']:,} TreeSHAP table entries (compiled)"
        if size
        else "not compiled (served by its library)"
    )
    ap = model.get("metrics", {}).get("average_precision")
    return (
        f"champion: {model['algorithm']} {model['bundle_version']} (MLflow v{model['mlflow_model_version']}), "
        f"bundle sha256 {model['bundle_sha256'][:12]}, {compiled}"
        + (f", test AP {ap:.4f}" if ap is not None else "")
    )


def sequential(port: int, requests: list[bytes]) -> np.ndarray:
    async def run() -> list[float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        times = []
        for req in requests:
            t0 = time.perf_counter()
            writer.write(req)
            await writer.drain()
            status = await read_response(reader)
            times.append(time.perf_counter() - t0)
            if status != 200:
                raise SystemExit(f"request failed with {status}")
        writer.close()
        return times

    return np.array(asyncio.run(run())) * 1000


def two_workers_with_redis(args, env: dict, singles: list[dict], tp_bodies: list[dict]) -> None:
    """(d) the same requests (moved 10 days on: new transactions) to `uvicorn --workers 2` sharing
    a real redis-server's online state: what sharing costs per request, and what a second
    worker gives on this machine."""

    shift = pd.Timedelta(days=10)
    with redis_server(free_port()) as url:
        port = free_port()
        api = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "fraud_serving.app:app", "--port", str(port), "--workers", "2",
             "--log-level", "warning", "--no-access-log"],
            cwd=ROOT, env={**env, "FRAUDOPS_ONLINE_STATE": url, "FRAUDOPS_CAPTURE": url},
        )  # fmt: skip
        try:
            wait_http(f"http://127.0.0.1:{port}/health", 300, lambda r: r.json()["status"] == "ok")
            time.sleep(2)  # the second worker
            moved = [{**b, "transaction_id": b["transaction_id"] + "-r",
                      "timestamp": (pd.Timestamp(b["timestamp"]) + shift).isoformat()} for b in singles]  # fmt: skip
            reqs = [http_request("127.0.0.1", port, "/predict", b) for b in moved]
            sequential(port, reqs[:200])
            lat = sequential(port, reqs[200:])
            print(f"(d) 2 workers + Redis, sequential /predict with card history: p50 {np.percentile(lat, 50):.2f} ms, "
                  f"p99 {np.percentile(lat, 99):.2f} ms (n={len(lat)})")  # fmt: skip
            tp = [{**b, "transaction_id": b["transaction_id"] + "-r",
                   "timestamp": (pd.Timestamp(b["timestamp"]) + shift).isoformat()} for b in tp_bodies]  # fmt: skip
            tp_reqs = [http_request("127.0.0.1", port, "/predict", b) for b in tp]
            rate, n, errors = asyncio.run(throughput(port, tp_reqs, args.clients, args.seconds))
            print(
                f"(d) 2 workers + Redis, {args.clients} clients, /predict: {rate:,.0f} req/s ({n} requests, {errors} errors)"
            )
        finally:
            stop_processes(api)


def what_make_run_built() -> tuple:
    """``(settings, storage, validated days)`` of the project's own instance, the way the API sees
    them (project root, its Dagster home); skips the benchmark when `make run` has not built them."""
    os.environ.setdefault("DAGSTER_HOME", str(ROOT))
    os.chdir(ROOT)  # as the API: relative locations and .env are the project root's
    settings = load_settings()
    storage = settings.location(settings.storage)
    days = daily_partitions(storage, VALIDATED_TRANSACTIONS)
    if not days:
        skip(f"no validated_transactions in {storage}: run `make run` (or fraud_assets.first_look) first")
    if latest_champion(dg.DagsterInstance.get()) is None:
        skip(
            f"no champion_model in the Dagster instance at {os.environ['DAGSTER_HOME']}: run `make run` first"
        )
    return settings, storage, days


def latest_full_day(days: list, rows: int = 2000) -> tuple[str, pd.DataFrame]:
    """The latest day of `validated_transactions` with at least ``rows`` transactions (today's
    may hold only the API's first ones), else the latest: its key and rows in time order."""
    day, where = next(
        ((d, loc) for d, loc in reversed(days) if len(loc.read_parquet(columns=["amount"])) >= rows), days[-1]
    )
    return day, where.read_parquet().sort_values("timestamp", kind="stable").reset_index(drop=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--singles", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--batches", type=int, default=15)
    p.add_argument("--skip-mlflow", action="store_true")
    p.add_argument("--skip-redis", action="store_true", help="skip (d): two workers sharing Redis")
    p.add_argument("--ports", default="0", help="FIRST-LAST: take the servers' ports from this range")
    args = parse_args(p, singles=50, seconds=1.0, batches=3, skip_mlflow=True)
    PORTS[:] = [int(port) for port in args.ports.split("-")]

    settings, storage, days = what_make_run_built()
    day, last = latest_full_day(days)
    print(f"payload rows: {len(last)} transactions of {day}")
    feature_days = [path for key, path in daily_partitions(storage, "transaction_features") if key == day]

    logs = tempfile.mkdtemp(prefix="fraudops-bench-log-")
    api_port = free_port()
    env = {
        **os.environ,
        "FRAUDOPS_PREDICTION_LOG_DIR": logs,
        "FRAUDOPS_PREDICTION_LOG_FLUSH_SECONDS": "0",
        "FRAUDOPS_MAX_BATCH": "1000",
        # captured as in production, but not into the project's feed (its sensor would ingest it)
        "FRAUDOPS_CAPTURE": tempfile.mkdtemp(prefix="fraudops-bench-capture-"),
    }
    api = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "fraud_serving.app:app", "--port", str(api_port), "--workers", "1",
         "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    procs = [api]
    try:
        wait_http(f"http://127.0.0.1:{api_port}/health", 300, lambda r: r.json()["status"] != "no_model")
        model = httpx.get(f"http://127.0.0.1:{api_port}/model").json()
        print(champion_line(model))
        print(f"load at start: {os.getloadavg()[0]:.1f}")

        # (a) sequential singles, new transactions of known cards (1 day after the stored day)
        singles = bodies_from(last.iloc[: args.singles + 200], pd.Timedelta(days=1))
        reqs = [http_request("127.0.0.1", api_port, "/predict", b) for b in singles]
        sequential(api_port, reqs[:200])  # warm-up
        lat = sequential(api_port, reqs[200:])
        a = {"p50": np.percentile(lat, 50), "p99": np.percentile(lat, 99), "mean": lat.mean(), "n": len(lat)}
        print(f"(a) sequential /predict with card history: p50 {a['p50']:.2f} ms, p99 {a['p99']:.2f} ms "
              f"(mean {a['mean']:.2f} ms, n={a['n']})")  # fmt: skip

        # (b) throughput, 8 clients
        rows = last.iloc[args.singles + 200 :].head(5000)
        tp_bodies = bodies_from(rows, pd.Timedelta(days=2))
        tp_reqs = [http_request("127.0.0.1", api_port, "/predict", b) for b in tp_bodies]
        ours, n_ours, err_ours = asyncio.run(throughput(api_port, tp_reqs, args.clients, args.seconds))
        print(
            f"(b) {args.clients} clients, /predict: {ours:,.0f} req/s ({n_ours} requests, {err_ours} errors)"
        )

        # (b') like for like with MLflow: history features given in the body, no reason codes
        like = None
        if feature_days:
            feats = feature_days[-1].read_parquet().set_index("transaction_id").loc[rows["transaction_id"]]
            given = json.loads(feats[model["input_columns"]].to_json(orient="records", date_format="iso"))
            like_reqs = [
                http_request(
                    "127.0.0.1",
                    api_port,
                    "/predict?reasons=none",
                    {k: v for k, v in g.items() if v is not None},
                )
                for g in given
            ]
            like, n_like, err_like = asyncio.run(throughput(api_port, like_reqs, args.clients, args.seconds))
            print(f"(b') {args.clients} clients, /predict?reasons=none with the features given (MLflow's input): "
                  f"{like:,.0f} req/s ({n_like} requests, {err_like} errors)")  # fmt: skip

        # (c) 1,000-transaction batches
        batch_rows = last
        c_results = {}
        seed = {"amount": 150.5, "merchant_category": "online_retail", "merchant_country": "USA", "hour_of_day": 14,
                "day_of_week": 2, "is_online": True, "is_weekend": False, "transactions_last_24h": 3,
                "total_amount_last_24h": 450.75, "transactions_last_1h": 0, "distance_from_home": 0.0}  # fmt: skip
        for reasons in ("exact", "none"):
            req = http_request(
                "127.0.0.1", api_port, f"/predict/batch?reasons={reasons}", {"transactions": [seed] * 1000}
            )
            times = sequential(api_port, [req] * args.batches)
            print(f"(c) /predict/batch of 1,000 seed-guide bodies (no card history), reasons={reasons}: "
                  f"p50 {np.median(times[2:]):.1f} ms")  # fmt: skip
        for reasons in ("exact", "approx", "none"):
            times = []
            for k in range(args.batches):
                chunk = batch_rows.iloc[(k * 1000) % max(len(batch_rows) - 1000, 1) :].head(1000)
                shift = pd.Timedelta(days=3 + k + 100 * ("exact", "approx", "none").index(reasons))
                body = {"transactions": bodies_from(chunk, shift)}
                req = http_request("127.0.0.1", api_port, f"/predict/batch?reasons={reasons}", body)
                times.append(sequential(api_port, [req])[0])
            c_results[reasons] = float(np.median(times[2:] if len(times) > 4 else times))
            inside = server_latencies(logs, 1000)[-len(times) :]
            print(
                f"(c) /predict/batch of 1,000 with card history, reasons={reasons}: p50 {c_results[reasons]:.1f} ms"
                f" (inside the service, parsing to response: p50 {np.median(inside[2:]):.1f} ms)"
            )

        if not args.skip_redis:
            two_workers_with_redis(args, env, singles, tp_bodies)

        mlflow_tp = None
        if not args.skip_mlflow:
            tracking = settings.mlflow_tracking_uri
            ml_port = free_port()
            ml = subprocess.Popen(
                [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
                 f"models:/{settings.mlflow_model_name}@champion", "--env-manager", "local", "-p", str(ml_port), "-w", "1"],
                cwd=ROOT, env={**os.environ, "MLFLOW_TRACKING_URI": tracking,
                               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            procs.append(ml)
            wait_http(f"http://127.0.0.1:{ml_port}/ping", 240)
            features = feature_days[-1].read_parquet() if feature_days else None
            inputs = model["input_columns"]
            if features is None or any(col not in features for col in inputs):
                raise SystemExit("transaction_features of the last day are needed for MLflow's payloads")
            features = features.set_index("transaction_id").loc[rows["transaction_id"]]
            records = json.loads(features[inputs].to_json(orient="records", date_format="iso"))
            ml_reqs = [
                http_request("127.0.0.1", ml_port, "/invocations", {"dataframe_records": [r]})
                for r in records
            ]
            check = httpx.post(
                f"http://127.0.0.1:{ml_port}/invocations", json={"dataframe_records": records[:1]}
            )
            print(f"MLflow answer: {check.text[:160]}")
            asyncio.run(throughput(ml_port, ml_reqs, args.clients, 2))  # warm-up
            mlflow_tp, n_ml, err_ml = asyncio.run(throughput(ml_port, ml_reqs, args.clients, args.seconds))
            print(f"(b) {args.clients} clients, mlflow models serve: {mlflow_tp:,.0f} req/s "
                  f"({n_ml} requests, {err_ml} errors); ours / MLflow = {ours / mlflow_tp:.1f}x"
                  + (f", like for like {like / mlflow_tp:.1f}x" if like else ""))  # fmt: skip
        load = os.getloadavg()[0]
        print(f"machine: {os.cpu_count()}-core {platform.machine()}, Python {platform.python_version()}, "
              f"load at the end {load:.1f}")  # fmt: skip
        print(f"measured on the {champion_line(model)}")
    finally:
        stop_processes(*procs)


if __name__ == "__main__":
    main()
