"""Feature computation time for 100,000 and 1,000,000 transactions (best of 3), and a feature
step's peak memory per row of its lookback.

Times the two stages of the one feature implementation on generated data: the point-in-time
history features (`history_features`: card windows, novelty, merchant risk from known labels)
and the model matrix (`FraudPreprocessor.fit_transform`: engineered features, one-hot,
imputation, scaling).

``--memory CARDS`` writes a lookback window (`LOOKBACK_DAYS` + 1 days of CARDS cards, through
`add_derived_columns`, as the validated days' files) and measures, each in a fresh process, the
peak resident memory of one day's features above the process's memory before reading:
``frame`` reads every column of every day as one frame and computes the whole lookback at once;
``columns`` reads only the step's columns (`FEATURE_INPUTS`); ``shards N`` reads them one card
shard at a time (`features_of_days`, what `transaction_features` runs).

    .venv/bin/python bench/bench_features.py [--rows 100000 1000000] [--repeat 3] [--quick]
    .venv/bin/python bench/bench_features.py --memory 20000 --shards 1 4
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run_all import parse_args

from fraud_assets.core.features import LOOKBACK_DAYS, add_history_features, history_features
from fraud_assets.core.preprocessor import FraudPreprocessor
from fraud_assets.generator import FraudDataGenerator

FIRST_DAY = datetime.date(2026, 3, 1)


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def write_lookback(folder: Path, cards: int) -> None:
    """The lookback's days as validated files (one Parquet file per day)."""
    from fraud_assets.core.generator import SimulationConfig, TransactionSimulator
    from fraud_assets.core.validation import add_derived_columns, canonical_order

    last = FIRST_DAY + datetime.timedelta(days=LOOKBACK_DAYS)
    frame = TransactionSimulator(SimulationConfig(seed=5, n_cardholders=cards)).generate_days(FIRST_DAY, last)
    frame = canonical_order(add_derived_columns(frame))
    for day, rows in frame.groupby(frame["timestamp"].dt.date):
        rows.reset_index(drop=True).to_parquet(folder / f"{day}.parquet")


def measure(folder: Path, mode: str, shards: int) -> None:
    """One day's features in this process; prints the peak memory above the baseline."""
    import pandas as pd

    from fraud_assets.core.labels import join_labels
    from fraud_assets.core.storage import Location
    from fraud_assets.defs.features import FEATURE_INPUTS, features_of_days
    from fraud_assets.defs.io_managers import ParquetDays

    days = ParquetDays(tuple(Location.of(str(p)) for p in sorted(folder.glob("*.parquet"))))
    day = pd.Timestamp(FIRST_DAY + datetime.timedelta(days=LOOKBACK_DAYS))
    genuine = pd.Timedelta(days=7)
    warm = pd.DataFrame(
        {"timestamp": [pd.Timestamp(day)], "card_id": ["c"], "merchant_id": ["m"], "amount": [1.0]}
    )
    history_features(warm)  # the compiled kernel loads from its cache: not per-row memory
    baseline = peak_rss_mb()
    t0 = time.perf_counter()
    if mode == "shards":
        out, sharded = features_of_days(days, shards, None, genuine, [day])
        rows = sharded.history_rows
    else:
        history = days.read(None if mode == "frame" else FEATURE_INPUTS)
        events = join_labels(history, None, genuine).events
        out = add_history_features(history, labels=events)[(history["timestamp"] >= day).to_numpy()]
        rows = len(history)
    seconds = time.perf_counter() - t0
    above = peak_rss_mb() - baseline
    print(f"{mode}\t{shards}\t{rows}\t{len(out)}\t{above:.1f}\t{above * 2**20 / rows:.0f}\t{seconds:.2f}")


def memory(cards: int, shard_counts: list[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_features_") as tmp:
        folder = Path(tmp)
        write_lookback(folder, cards)
        runs = [("frame", 1), ("columns", 1)] + [("shards", n) for n in shard_counts]
        load = os.getloadavg()[0]
        print(
            f"| mode | shards | lookback rows | day rows | peak MB above baseline | bytes/row | s | (load {load:.1f})"
        )
        for mode, shards in runs:
            child = [sys.executable, __file__, "--measure", str(folder), mode, str(shards)]
            line = subprocess.run(child, check=True, capture_output=True, text=True).stdout.strip()
            print("| " + " | ".join(line.split("\t")) + " |")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        measure(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--memory", type=int, metavar="CARDS", help="peak memory per lookback row instead of time")
    p.add_argument("--shards", type=int, nargs="+", default=[1, 4])
    args = parse_args(p, rows=[20_000], repeat=1)
    if args.memory:
        memory(args.memory, args.shards)
        return
    machine = f"{os.cpu_count()}-core {platform.machine()}, Python {platform.python_version()}"
    for rows in args.rows:
        df = FraudDataGenerator(n_samples=rows, n_cardholders=max(rows // 100, 1_000)).generate()
        history = best_of(args.repeat, lambda df=df: history_features(df))
        with_history = add_history_features(df)
        matrix = best_of(args.repeat, lambda frame=with_history: FraudPreprocessor().fit_transform(frame))
        print(
            f"| features | {rows:,} rows | history {history:.2f} s + matrix {matrix:.2f} s "
            f"= {history + matrix:.2f} s | {rows / (history + matrix):,.0f} rows/s | {machine} | "
            f"{datetime.date.today()} |"
        )


if __name__ == "__main__":
    main()
