"""Feature and training times for 100,000 and 1,000,000 transactions.

For each size: generate the data, compute the point-in-time features, split by time, fit the
preprocessor, then fit each candidate algorithm once with its default parameters (class weights,
isotonic calibration on the latest slice, one training thread) — the cost of one trial of the
tuning loop, and of the final refit.

    .venv/bin/python bench/bench_training.py [--rows 100000 1000000] [--algorithms xgboost lightgbm] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time

from run_all import parse_args

from fraud_assets.core.features import add_history_features
from fraud_assets.core.preprocessor import FraudPreprocessor
from fraud_assets.core.splitting import prepare_train_test_split
from fraud_assets.core.training import ALGORITHMS, FraudClassifier
from fraud_assets.generator import FraudDataGenerator


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS))
    args = parse_args(p, rows=[30_000])
    machine = f"{os.cpu_count()}-core {platform.machine()}, Python {platform.python_version()}"
    for rows in args.rows:
        df = FraudDataGenerator(n_samples=rows, n_cardholders=max(rows // 100, 1_000)).generate()
        with_history, t_history = timed(lambda df=df: add_history_features(df))
        (X_train, _, y_train, _), _ = timed(lambda data=with_history: prepare_train_test_split(data))
        matrix, t_matrix = timed(lambda X=X_train: FraudPreprocessor().fit_transform(X))
        print(
            f"| features | {rows:,} rows | {t_history + t_matrix:.2f} s | {machine} | {datetime.date.today()} |"
        )
        for algorithm in args.algorithms:
            clf = FraudClassifier(algorithm)
            _, t_fit = timed(lambda c=clf, X=matrix, y=y_train: c.fit(X, y))
            print(
                f"| train {algorithm} | {rows:,} rows ({len(matrix):,} training rows) | {t_fit:.1f} s | {machine} | {datetime.date.today()} |"
            )


if __name__ == "__main__":
    main()
