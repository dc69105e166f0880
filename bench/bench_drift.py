"""Drift report time for 100,000 current transactions across all feature columns (best of 3).

Generated data (10,000 cardholders, about 25,000 transactions a day) with point-in-time history
features; the reference is `reference_profile` of four weeks after the 37-day feature warm-up,
the current data the next 100,000 transactions. Times `drift_report` with and without the
Evidently HTML, and, with ``--preset``, Evidently's default `DataDriftPreset` on the same
frames for comparison (once). The first Evidently import (seconds, paid once per process) is
reported apart.

    .venv/bin/python bench/bench_drift.py [--rows 100000] [--repeat 3] [--cardholders 10000] [--preset] [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
import warnings

import pandas as pd
from run_all import parse_args

from fraud_assets.core import columns as c
from fraud_assets.core.drift import MAX_ROWS, drift_report, reference_profile
from fraud_assets.core.features import FEATURE_COLUMNS, LOOKBACK_DAYS, add_history_features
from fraud_assets.core.generator import SimulationConfig, TransactionSimulator


def best_of(repeat: int, fn) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def frames(rows: int, cardholders: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    sim = TransactionSimulator(SimulationConfig(seed=42, n_cardholders=cardholders))
    first = datetime.date(2026, 1, 1)
    ref_start = first + datetime.timedelta(days=LOOKBACK_DAYS)
    cur_start = ref_start + datetime.timedelta(days=28)
    days = 28 + LOOKBACK_DAYS + int(rows / sim.expected_rows_per_day) + 2
    feats = add_history_features(sim.generate_days(first, first + datetime.timedelta(days=days)))
    ts = feats[c.TIMESTAMP]
    reference = feats.loc[(ts >= pd.Timestamp(ref_start)) & (ts < pd.Timestamp(cur_start))]
    current = feats.loc[ts >= pd.Timestamp(cur_start)].iloc[:rows].reset_index(drop=True)
    assert len(current) == rows, len(current)
    return reference, current


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cardholders", type=int, default=10_000)
    p.add_argument("--preset", action="store_true", help="also time Evidently's default DataDriftPreset")
    args = parse_args(p, rows=2_000, repeat=1, cardholders=300)
    machine = f"{os.cpu_count()}-core {platform.machine()}, Python {platform.python_version()}"

    t0 = time.perf_counter()
    import evidently  # noqa: F401
    from evidently.metrics import ValueDrift  # noqa: F401

    import_s = time.perf_counter() - t0
    reference, current = frames(args.rows, args.cardholders)
    columns = list(FEATURE_COLUMNS)
    profile = reference_profile(reference, columns)
    drift_report(profile, current.head(2_000), columns)  # warm-up: lazy imports, plotly templates

    no_html, res = best_of(args.repeat, lambda: drift_report(profile, current, columns, html=False))
    with_html, res_html = best_of(args.repeat, lambda: drift_report(profile, current, columns))
    assert res.drift_share == res_html.drift_share
    print(
        f"| drift report | {args.rows:,} current x {len(columns)} columns "
        f"(reference profile {len(profile):,} of {len(reference):,}; samples of {MAX_ROWS:,}) "
        f"| {no_html:.2f} s | {with_html:.2f} s ({len(res_html.html) / 1e6:.1f} MB HTML) "
        f"| drift share {res.drift_share:.3f} ({res.level}) | {machine} | {datetime.date.today()} |"
    )
    print(f"first Evidently import in this process: {import_s:.1f} s (once per process)")

    if args.preset:
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset

        cats = [c.MERCHANT_CATEGORY, c.ENTRY_MODE]
        flags = {col: "int8" for col in (c.IS_ONLINE, c.IS_FOREIGN, c.IS_WEEKEND)}
        definition = DataDefinition(
            numerical_columns=[col for col in columns if col not in cats], categorical_columns=cats
        )
        ref = reference[columns].astype(flags).sample(50_000, random_state=0)
        cur = current[columns].astype(flags)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            snap = Report([DataDriftPreset()]).run(
                Dataset.from_pandas(cur, data_definition=definition),
                Dataset.from_pandas(ref, data_definition=definition),
            )
            snap.get_html_str(as_iframe=False)
        preset_s = time.perf_counter() - t0
        share = snap.dict()["metrics"][0]["value"]["share"]
        print(
            f"| DataDriftPreset() defaults | {args.rows:,} current vs 50,000 reference rows x {len(columns)} "
            f"columns | {preset_s:.2f} s with HTML, once | drift share {share:.3f} |"
        )


if __name__ == "__main__":
    main()
