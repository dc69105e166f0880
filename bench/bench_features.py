"""Feature computation time for 100,000 and 1,000,000 transactions (best of 3).

Times the two stages of the one feature implementation on generated data: the point-in-time
history features (`history_features`: card windows, novelty, merchant risk from known labels)
and the model matrix (`FraudPreprocessor.fit_transform`: engineered features, one-hot,
imputation, scaling).

    .venv/bin/python bench/bench_features.py [--rows 100000 1000000] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

from run_all import parse_args

from fraud_assets.core.features import add_history_features, history_features
from fraud_assets.core.preprocessor import FraudPreprocessor
from fraud_assets.generator import FraudDataGenerator


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--repeat", type=int, default=3)
    args = parse_args(p, rows=[20_000], repeat=1)
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
