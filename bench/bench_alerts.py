"""What ``GET /alerts`` costs on a busy day: the day's review queue read from the prediction log.

A day's log of ``--transactions`` scored transactions (default 34,000: what 3,000 cards at the
generator's 2.5 a day and a busy replay put in one day here, and about the size a small issuer
logs) is written as the API writes it: one JSON line per ``/predict`` call with its reasons and
model inputs, one part file per flush of ``--per-part`` lines. Then, timed:

- ``read_scored``: parsing the whole day, what each request cost when every request re-read it;
- the API's reader (`review_queue.scored_reader`, a `LogColumnsCache`): the first request (every
  part new), the next request with nothing new, and one after one more flush;
- the whole queue of a request (`fraud_serving.alerts.day_queue`: read, rank, alerts) warm.

Each figure is the median of ``--repeat`` runs, wall and CPU time.

    .venv/bin/python bench/bench_alerts.py [--transactions 34000] [--per-part 50] [--repeat 5] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydantic_core
from run_all import parse_args

from fraud_assets.core.contract import prediction_log_part
from fraud_assets.core.features import FEATURE_COLUMNS
from fraud_assets.core.review_queue import read_scored, scored_reader
from fraud_assets.core.storage import Location
from fraud_serving.alerts import day_queue

DAY = "2026-12-01"
CARDS = 3_000


def log_line(i: int, rng: np.random.Generator) -> bytes:
    """One ``/predict`` call's line as the API writes it (one transaction, three reasons)."""
    reasons = [
        {
            "field": name,
            "value": float(rng.random()),
            "direction": "raises",
            "contribution": float(rng.random()),
            "explanation": f"{name.replace('_', ' ')} is {rng.random():.2f}, above this card's average",
        }
        for name in ("amount", "amount_to_avg_7d", "total_amount_last_24h")
    ]
    line = {
        "scored_at": f"{DAY}T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1_000_000:06d}+00:00",
        "model_version": "20261201T000000-lightgbm-bench",
        "threshold": 0.4,
        "latency_ms": [float(rng.random() * 5)],
        "transaction_id": [f"T{i:09d}"],
        "card_id": [f"CARD{int(rng.integers(CARDS)):08d}"],
        "merchant_id": [f"MER{int(rng.integers(500)):07d}"],
        "timestamp": [f"{DAY}T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}"],
        "fraud_probability": [float(rng.random() ** 4)],
        "is_fraud": [0],
        "risk_level": ["low"],
        "reason_codes": [reasons],
        "features": {name: [float(rng.random())] for name in FEATURE_COLUMNS},
    }
    return pydantic_core.to_json(line)


def write_day(folder: Path, transactions: int, per_part: int, start: int = 0, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    directory = Location.of(folder)
    for first in range(start, start + transactions, per_part):
        lines = [log_line(i, rng) for i in range(first, min(first + per_part, start + transactions))]
        prediction_log_part(directory, DAY).write_bytes(b"\n".join(lines) + b"\n")


def timed(
    run: Callable[[], object], repeat: int, before: Callable[[], object] = lambda: None
) -> tuple[float, float]:
    """Median wall and CPU seconds of ``run`` over ``repeat`` runs, ``before`` untimed each time."""
    walls, cpus = [], []
    for _ in range(repeat):
        before()
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=34_000)
    parser.add_argument("--per-part", type=int, default=50, help="lines per flush (part file)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parse_args(parser, transactions=2_000, repeat=2)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "predictions"
        write_day(folder, args.transactions, args.per_part)
        log = Location.of(folder)
        parts = len(list((folder / DAY).iterdir()))
        print(
            f"# {platform.node()} {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.1f}"
        )
        print(f"# a day of {args.transactions:,} transactions in {parts:,} parts of {args.per_part} lines")
        rows = []
        rows.append(("read_scored: the whole day parsed", *timed(lambda: read_scored(log, DAY), args.repeat)))
        holder = {}
        rows.append(
            (
                "API reader, first request (every part new)",
                *timed(
                    lambda: holder["cache"].read(DAY),
                    args.repeat,
                    lambda: holder.update(cache=scored_reader(log)),
                ),
            )
        )
        cache = scored_reader(log)
        cache.read(DAY)
        rows.append(("API reader, nothing new since", *timed(lambda: cache.read(DAY), args.repeat)))
        added = iter(range(args.repeat))
        rows.append(
            (
                f"API reader, one new part of {args.per_part} lines",
                *timed(
                    lambda: cache.read(DAY),
                    args.repeat,
                    lambda: write_day(
                        folder, args.per_part, args.per_part, 10**8 + next(added) * args.per_part, 1
                    ),
                ),
            )
        )
        rows.append(
            (
                "GET /alerts's whole queue, nothing new (read, rank, alerts)",
                *timed(lambda: day_queue(cache, log, None, 100, dt.date.fromisoformat(DAY)), args.repeat),
            )
        )
        assert (
            len(cache.read(DAY))
            == len(read_scored(log, DAY))
            == args.transactions + args.repeat * args.per_part
        )
        print("| what | wall ms | CPU ms |\n|---|---|---|")
        for what, wall, cpu in rows:
            print(f"| {what} | {wall * 1e3:,.1f} | {cpu * 1e3:,.1f} |")


if __name__ == "__main__":
    main()
