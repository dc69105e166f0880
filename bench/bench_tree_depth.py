"""Accuracy against the cost of exact reason codes, by tree depth: the evidence for SERVING_MAX_DEPTH.

Fits XGBoost (level-wise trees) and LightGBM (leaf-wise trees) with one set of parameters at
several depths on the platform's own training data (the `training_data` asset: its "train"
rows, time ordered, the latest 20% for calibration), scores the "test" rows, compiles the
booster as the scoring API does and times its exact TreeSHAP on 1 and 1,000 test rows.

    .venv/bin/python bench/bench_tree_depth.py [--training-data $FRAUDOPS_STORAGE/training_data.parquet] [--shapes N] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from run_all import parse_args, skip
from sklearn.metrics import average_precision_score, roc_auc_score

from fraud_assets.core import columns as c
from fraud_assets.core.preprocessor import FraudPreprocessor
from fraud_assets.core.settings import load_settings
from fraud_assets.core.splitting import TEST, TRAIN
from fraud_assets.core.training import FraudClassifier
from fraud_serving.compiled_trees import compile_booster, compile_lightgbm

SPLIT = "split"  # the training_data asset's column (fraud_assets.defs.training.SPLIT)
XGBOOST = {"learning_rate": 0.1, "subsample": 0.8, "colsample_bytree": 0.7, "min_child_weight": 2.0}
LIGHTGBM = {"learning_rate": 0.08, "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.7,
            "min_child_samples": 40}  # fmt: skip
SHAPES = [  # (algorithm, max_depth, num_leaves or None, trees)
    *[("xgboost", depth, None, trees) for depth in (3, 4, 5, 6, 8) for trees in (200, 400)],
    *[("lightgbm", depth, leaves, 300) for depth, leaves in ((4, 16), (5, 32), (-1, 16), (-1, 32))],
]


def _median_seconds(fn, repeats: int) -> float:
    fn()  # compiled and warm
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    storage = Path(load_settings().storage)
    p.add_argument("--training-data", type=Path, default=storage / "training_data.parquet")
    p.add_argument("--shapes", type=int, default=len(SHAPES), help="only the first N model shapes")
    args = parse_args(p, shapes=1)
    if not args.training_data.exists():
        skip(f"{args.training_data} not found: materialize training_data first (make run)")
    frame = pd.read_parquet(args.training_data)
    train = frame[frame[SPLIT] == TRAIN].sort_values(c.TIMESTAMP, kind="stable")
    test = frame[frame[SPLIT] == TEST]
    y_train, y_test = train[c.IS_FRAUD].to_numpy(dtype=int), test[c.IS_FRAUD].to_numpy(dtype=int)
    preprocessor = FraudPreprocessor().fit(train, y_train)
    X_train, X_test = preprocessor.transform(train), preprocessor.transform(test)
    cut = len(X_train) - round(len(X_train) * 0.2)
    rows = X_test.to_numpy(dtype=np.float64)[
        np.random.default_rng(0).choice(len(X_test), 1_000, replace=False)
    ]
    machine = f"{os.cpu_count()}-core {platform.machine()}, Python {platform.python_version()}"
    print(f"{len(train):,} training rows, {len(test):,} test rows ({int(y_test.sum())} fraud); {machine}; "
          f"{datetime.date.today()}")  # fmt: skip
    print(
        "| model | trees | depth | leaves | AP | AUC | nodes | SHAP table entries | reasons, 1 row | 1,000 rows |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for algorithm, depth, leaves, n_trees in SHAPES[: args.shapes]:
        params = XGBOOST if algorithm == "xgboost" else {**LIGHTGBM, "num_leaves": leaves}
        clf = FraudClassifier(algorithm, n_estimators=n_trees, max_depth=depth, imbalance_method="class_weight",
                              **params)  # fmt: skip
        clf.fit(X_train.iloc[:cut], y_train[:cut], X_val=X_train.iloc[cut:], y_val=y_train[cut:])
        scores = clf.predict_proba(X_test)[:, 1]
        if algorithm == "xgboost":
            trees, why = compile_booster(clf.backend_.fast_booster)
        else:
            trees, why = compile_lightgbm(clf.backend_.model.booster_)
        shape = f"| {algorithm} | {n_trees} | {depth if depth > 0 else 'any'} | {leaves or 2**depth} "
        quality = f"| {average_precision_score(y_test, scores):.4f} | {roc_auc_score(y_test, scores):.4f} "
        if trees is None:
            print(f"{shape}{quality}| | | library only: {why} | |", flush=True)
            continue
        one = _median_seconds(lambda t=trees: t.contributions(rows[:1]), 300)
        batch = _median_seconds(lambda t=trees: t.contributions(rows), 15)
        print(f"{shape}{quality}| {len(trees.feature):,} | {trees.table.size:,} | {one * 1e6:.0f} µs "
              f"| {batch * 1e3:.1f} ms |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
