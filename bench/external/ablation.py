"""Feature-family ablation: which of the platform's features carry over to data shaped differently.

The same model recipe (the platform's preprocessor, then one XGBoost with fixed parameters: no
tuning, so a difference comes from the features and the training window alone) is trained with
feature families switched off one at a time, on two datasets:

- ``external``: the Fraud Detection Handbook's simulator (``simulator.py``), six columns, the
  book's four test weeks and protocol (``protocol.py``); the model trains once on the days that
  end a label delay before the first test day.
- ``own``: the platform's generator, with its extra columns; the latest 20% of days are the
  test window, after the label-delay gap (``fraud_assets.core.splitting``).

Features come from ``fraud_assets.core.features`` (the one implementation, also used by the
scoring service); labels reach them only through ``label_known_at`` (transaction + 7 days).

    .venv/bin/python -m bench.external.ablation --seeds 1            # both datasets
    .venv/bin/python -m bench.external.ablation --dataset external --quick
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from bench.external.protocol import card_precision_at_k
from fraud_assets.core import columns as c
from fraud_assets.core.features import LOOKBACK_DAYS, add_history_features, terminal_recency
from fraud_assets.core.models.classifier import FraudClassifier
from fraud_assets.core.preprocessor import FraudPreprocessor
from fraud_assets.core.validation import add_derived_columns

LABEL_DELAY = pd.Timedelta(days=7)
DEFAULT_OUT = Path(".fraudops/bench/external/ablation")
MODEL = {"n_estimators": 150, "max_depth": 5, "learning_rate": 0.15, "subsample": 0.8,
         "colsample_bytree": 0.8, "min_child_weight": 5.0}  # fmt: skip
# Days of labelled rows each model trains on (the latest ones): keeps a dozen configurations
# affordable on a shared 2-core machine; the platform itself trains on every warm day.
TRAIN_DAYS = 42

# Family -> a predicate on the preprocessor's feature names: which columns it holds.
FAMILIES: dict[str, tuple[str, ...]] = {
    "merchant fraud recency (days since, run length, run age)": (
        "merchant_days_since_known_fraud", "merchant_known_fraud_streak", "merchant_days_since_fraud_run_began",
    ),
    "merchant risk, 1-day window": ("merchant_fraud_rate_1d", "merchant_labelled_1d", "merchant_frauds_1d"),
    "merchant risk, known-fraud counts": ("merchant_frauds_",),
    "merchant risk (all)": ("merchant_",),
    "card amount vs own 24h/7d average": (
        "avg_amount_last_24h", "avg_amount_last_7d", "amount_to_avg_24h", "amount_to_avg_7d",
    ),
    "card amount vs own history (all)": ("avg_amount_last_", "amount_to_avg_"),
    "card velocity (counts, totals)": ("transactions_last_", "total_amount_last_", "velocity_"),
    "the 1-day merchant window, merchant fraud counts and run, card amount vs 24h/7d (all at once)": (
        "merchant_fraud_rate_1d", "merchant_labelled_1d", "merchant_frauds_", "merchant_days_since_known_fraud",
        "merchant_known_fraud_streak", "merchant_days_since_fraud_run_began", "avg_amount_last_24h",
        "avg_amount_last_7d", "amount_to_avg_24h", "amount_to_avg_7d",
    ),
    "time since card's last transaction": ("seconds_since_last_txn",),
}  # fmt: skip
EXTRA = "time since terminal's last transaction (not a platform feature)"


def _in_family(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or (p.endswith("_") and name.startswith(p)) for p in prefixes)


def external_frame(seed: int, quick: bool) -> tuple[pd.DataFrame, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    """The Handbook file as the platform's columns, with history features; and the test weeks."""
    from bench.external.run import FULL, QUICK

    scale = QUICK if quick else FULL
    tx = simulate_external(scale, seed)
    frame = pd.DataFrame(
        {
            c.TRANSACTION_ID: tx["TRANSACTION_ID"].astype(str).to_numpy(),
            c.TIMESTAMP: tx["TX_DATETIME"].to_numpy(),
            c.CARD_ID: tx["CUSTOMER_ID"].astype(str).to_numpy(),
            c.MERCHANT_ID: tx["TERMINAL_ID"].astype(str).to_numpy(),
            c.AMOUNT: tx["TX_AMOUNT"].to_numpy(),
            c.IS_FRAUD: tx["TX_FRAUD"].astype("Int8").to_numpy(),
        }
    )
    frame[c.LABEL_KNOWN_AT] = frame[c.TIMESTAMP] + LABEL_DELAY
    start = frame[c.TIMESTAMP].min().normalize()
    weeks = [
        (start + pd.Timedelta(days=scale.first_test_day + 7 * k), start + pd.Timedelta(days=scale.first_test_day + 7 * k + 7))
        for k in range(scale.n_weeks)
    ]  # fmt: skip
    return frame, weeks


def simulate_external(scale, seed: int) -> pd.DataFrame:
    from bench.external.simulator import simulate

    return simulate(scale.simulator(seed))


def own_frame(seed: int, quick: bool) -> pd.DataFrame:
    from fraud_assets.core.generator import SimulationConfig, TransactionSimulator

    days = 61 if quick else 90
    first = dt.date(2026, 1, 1)
    sim = TransactionSimulator(SimulationConfig(seed=seed, n_cardholders=1_000 if quick else 3_000))
    return sim.generate_days(first, first + dt.timedelta(days=days - 1))


def with_features(frame: pd.DataFrame, recency: bool) -> pd.DataFrame:
    frame = add_derived_columns(frame) if c.HOUR_OF_DAY not in frame else frame
    frame = add_history_features(frame)
    if recency:
        frame["seconds_since_terminal_last_txn"] = terminal_recency(frame)
    return frame


def protocol_test_rows(frame: pd.DataFrame, week: tuple[pd.Timestamp, pd.Timestamp]) -> np.ndarray:
    """The book's test rows of a week: its days, less cards with a fraud known by each day."""
    ts, card = frame[c.TIMESTAMP], frame[c.CARD_ID].to_numpy()
    fraud = frame[c.IS_FRAUD].to_numpy().astype(bool)
    train_start = week[0] - pd.Timedelta(days=14)  # the book's 7 training days, then 7 of delay
    parts = []
    for day in pd.date_range(week[0], week[1], inclusive="left"):
        known = np.unique(card[fraud & (ts >= train_start).to_numpy() & (ts < day - LABEL_DELAY).to_numpy()])
        today = np.flatnonzero(((ts >= day) & (ts < day + pd.Timedelta(days=1))).to_numpy())
        parts.append(today[~np.isin(card[today], known)])
    return np.concatenate(parts)


RECENCY = "seconds_since_terminal_last_txn"  # not a platform feature: added to the matrix here


def scores_of(train: pd.DataFrame, tests: list[pd.DataFrame], dropped: tuple[str, ...], seed: int):
    pre = FraudPreprocessor().fit(train)
    keep = [n for n in pre.feature_names_ if not _in_family(n, dropped)]
    extra = [RECENCY] if RECENCY in train and RECENCY not in dropped else []

    def matrix(frame: pd.DataFrame) -> pd.DataFrame:
        x = pre.transform(frame)[keep]
        return x.assign(**{name: frame[name].to_numpy() for name in extra})

    clf = FraudClassifier("xgboost", calibration="none", imbalance_method="none", random_state=seed, **MODEL)
    clf.fit(matrix(train), train[c.IS_FRAUD].astype(int).to_numpy())
    return [clf.predict_proba(matrix(t))[:, 1] for t in tests], len(keep) + len(extra)


def metrics_of(test: pd.DataFrame, scores: np.ndarray) -> dict[str, float]:
    y = test[c.IS_FRAUD].astype(int).to_numpy()
    days = test[c.TIMESTAMP].dt.floor("D").to_numpy()
    return {
        "auc_roc": float(roc_auc_score(y, scores)),
        "average_precision": float(average_precision_score(y, scores)),
        "card_precision_at_100": card_precision_at_k(days, test[c.CARD_ID].to_numpy(), y, scores, 100)[1],
    }


def run_dataset(name: str, seed: int, quick: bool, configs: list[tuple[str, tuple[str, ...], bool, int]]):
    t0 = time.perf_counter()
    if name == "external":
        raw, weeks = external_frame(seed, quick)
    else:
        raw = own_frame(seed, quick)
    feats = with_features(raw, recency=True)
    print(
        f"  {name} seed {seed}: {len(feats):,} rows, features in {time.perf_counter() - t0:.1f} s", flush=True
    )
    start = feats[c.TIMESTAMP].min().normalize() + pd.Timedelta(days=0 if quick else LOOKBACK_DAYS)
    if name == "external":
        first_test = weeks[0][0]
        tests = [feats.iloc[protocol_test_rows(feats, w)] for w in weeks]
        now = first_test
    else:
        end = feats[c.TIMESTAMP].max().normalize() + pd.Timedelta(days=1)
        span_days = (end - start).days
        first_test = end - pd.Timedelta(days=round(span_days * 0.2))
        tests = [feats[feats[c.TIMESTAMP] >= first_test]]
        now = first_test
    rows = []
    for label, dropped, recency, early_days in configs:
        train_end = now - LABEL_DELAY - pd.Timedelta(days=early_days)
        first = max(start, train_end - pd.Timedelta(days=TRAIN_DAYS))
        train = feats[(feats[c.TIMESTAMP] >= first) & (feats[c.TIMESTAMP] < train_end)]
        train = train[train[c.LABEL_KNOWN_AT] < now]
        cols_drop = dropped if recency else (*dropped, RECENCY)
        t1 = time.perf_counter()
        all_scores, n_features = scores_of(train, tests, cols_drop, seed)
        per_week = [metrics_of(t, s) for t, s in zip(tests, all_scores, strict=True)]
        mean = {k: float(np.mean([m[k] for m in per_week])) for k in per_week[0]}
        rows.append({"dataset": name, "seed": seed, "config": label, "features": n_features,
                     "train_rows": len(train), **mean})  # fmt: skip
        print(f"    {label}: {mean} ({n_features} features, {time.perf_counter() - t1:.0f} s)", flush=True)
    return rows


CONFIGS: list[tuple[str, tuple[str, ...], bool, int]] = [
    ("all features (default)", (), False, 0),
    *[(f"without {family}", prefixes, False, 0) for family, prefixes in FAMILIES.items()],
    (f"with {EXTRA}", (), True, 0),
    ("all features, training ending 19 days earlier", (), False, 19),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--dataset", choices=["external", "own", "both"], default="both")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", type=int, default=0, help="run only the first N configurations")
    parser.add_argument(
        "--config", default=None, help="run only the configurations whose label contains this"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    configs = CONFIGS[: args.only] if args.only else CONFIGS
    if args.config:
        configs = [config for config in configs if args.config in config[0]]
    datasets = ["external", "own"] if args.dataset == "both" else [args.dataset]
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows = []
    for name in datasets:
        for seed in range(args.seeds):
            rows += run_dataset(name, seed, args.quick, configs)
    table = pd.DataFrame(rows)
    summary = table.groupby(["dataset", "config"], sort=False)[
        ["auc_roc", "average_precision", "card_precision_at_100"]
    ].mean()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_text(
        json.dumps({"load_before": load_before, "load_after": list(os.getloadavg()), "rows": rows}, indent=2)
    )
    text = summary.round(4).to_markdown()
    (args.out / "ablation.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
