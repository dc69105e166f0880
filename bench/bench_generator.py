"""Rows per second of the transaction generator for 1,000,000 rows (best of 3).

Each run builds a fresh simulator (population included) and the full DataFrame
through ``FraudDataGenerator.generate``, i.e. what a user of the seed API waits for.

    .venv/bin/python bench/bench_generator.py [--rows 1000000] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

from run_all import parse_args

from fraud_assets.generator import FraudDataGenerator


def run(rows: int) -> float:
    t0 = time.perf_counter()
    df = FraudDataGenerator(n_samples=rows).generate()
    elapsed = time.perf_counter() - t0
    assert len(df) == rows
    return elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    args = parse_args(p, rows=20_000, repeat=1)
    best = min(run(args.rows) for _ in range(args.repeat))
    machine = f"{os.cpu_count()}-core {platform.machine()}, Python {platform.python_version()}"
    print(
        f"| generator | {args.rows:,} rows | best of {args.repeat}: {best:.2f} s | "
        f"{args.rows / best:,.0f} rows/s | {machine} | {datetime.date.today()} |"
    )


if __name__ == "__main__":
    main()
