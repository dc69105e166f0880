"""External benchmark: the platform against the Fraud Detection Handbook's models, on its data.

For each seed: simulate the Handbook's dataset, run the book's tuned XGBoost and random forest
(retrained every test week on its 15 baseline features), run the platform through its landing
folder (trained once by ``train_models``), and score all of them with the book's protocol over
the same test weeks. Prints a table per seed and week, the means beside the book's published
figures, and writes ``results.json`` and ``results.md``.

    .venv/bin/python -m bench.external.run --seeds 5          # the benchmark (minutes per seed)
    .venv/bin/python -m bench.external.run --seeds 1 --quick  # small world, 2 weeks: a smoke run
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.external.baselines import BOOK_MODELS, run_book_model
from bench.external.features import baseline_features
from bench.external.platform_run import score_with_platform
from bench.external.protocol import METRICS, Week, prequential_weeks, split, week_metrics
from bench.external.simulator import SimulatorConfig, simulate

PLATFORM = "platform"
PLATFORM_RAW = "platform_uncalibrated"  # diagnostic: the champion's model before calibration
# The book's dataset (ch. 3, "Transaction data simulator") for comparison with ours.
BOOK_DATASET = {"transactions": 1_754_155, "frauds": 14_681}
DEFAULT_OUT = Path(".fraudops/bench/external")


@dataclass(frozen=True)
class Scale:
    """The simulated world and the test weeks (day numbers; day 0 is 2018-04-01)."""

    n_customers: int
    n_terminals: int
    n_days: int
    first_test_day: int
    n_weeks: int

    def simulator(self, seed: int) -> SimulatorConfig:
        return SimulatorConfig.scaled(self.n_customers, self.n_terminals, self.n_days, seed=seed)


# The book: 5,000 customers, 10,000 terminals, 183 days; test weeks 2018-08-08 .. 2018-09-04.
FULL = Scale(n_customers=5_000, n_terminals=10_000, n_days=183, first_test_day=129, n_weeks=4)
# A smoke run: six weeks of a smaller world (same densities), one test week; the platform
# trains on the five weeks before it without leaving warm-up days out (platform_run.QUICK_WINDOW):
# the last label delay (7 days) of those holds labels not all in yet, and the tuning's
# time-ordered folds need three weeks of the rest.
QUICK = Scale(n_customers=1_000, n_terminals=2_000, n_days=42, first_test_day=35, n_weeks=1)


def log(message: str) -> None:
    print(message, flush=True)


def dataset_stats(transactions: pd.DataFrame) -> dict[str, Any]:
    by_scenario = transactions["TX_FRAUD_SCENARIO"].value_counts().sort_index()
    return {
        "transactions": len(transactions),
        "frauds": int(transactions["TX_FRAUD"].sum()),
        "fraud_rate": round(float(transactions["TX_FRAUD"].mean()), 5),
        "frauds_by_scenario": {str(k): int(v) for k, v in by_scenario.items() if k},  # JSON keys
        "customers": int(transactions["CUSTOMER_ID"].nunique()),
        "terminals": int(transactions["TERMINAL_ID"].nunique()),
    }


def day_date(config: SimulatorConfig, day: int) -> dt.date:
    return dt.date.fromisoformat(config.start_date) + dt.timedelta(days=day)


def week_label(config: SimulatorConfig, week: Week) -> str:
    return f"{day_date(config, week.test_start)}..{day_date(config, week.test_end - 1)}"


def run_seed(
    scale: Scale, seed: int, *, quick: bool, skip_platform: bool, keep: Path | None
) -> dict[str, Any]:
    config = scale.simulator(seed)
    t0 = time.perf_counter()
    transactions = simulate(config)
    simulate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    features = baseline_features(transactions)
    features_s = time.perf_counter() - t0
    stats = dataset_stats(transactions)
    log(
        f"seed {seed}: {stats['transactions']:,} transactions, {stats['frauds']:,} frauds "
        f"({stats['fraud_rate']:.2%}); simulated in {simulate_s:.1f} s, book features in {features_s:.1f} s"
    )
    weeks = prequential_weeks(scale.first_test_day, scale.n_weeks)
    rows: list[dict[str, Any]] = []
    for model in BOOK_MODELS:
        t0 = time.perf_counter()
        for week, metrics in zip(weeks, run_book_model(model, transactions, features, weeks), strict=True):
            rows.append({"seed": seed, "week": week_label(config, week), "model": model.name, **metrics})
        log(f"  {model.name}: {len(weeks)} weeks in {time.perf_counter() - t0:.1f} s")

    report: dict[str, Any] = {}
    if not skip_platform:
        first_test, last_test = (
            day_date(config, weeks[0].test_start),
            day_date(config, weeks[-1].test_end - 1),
        )
        with tempfile.TemporaryDirectory(prefix="fraudops-external-") as tmp:
            workdir = (keep.resolve() / f"seed{seed}") if keep else Path(tmp)  # Dagster wants absolute homes
            scores, report = score_with_platform(
                transactions,
                workdir,
                first_test,
                last_test,
                quick=quick,
                log=lambda m: log(f"{m} (seed {seed})"),
            )
        ids = transactions["TRANSACTION_ID"].to_numpy()
        for week in weeks:
            _, test = split(transactions, week)
            scored = scores.reindex(ids[test])
            # A row the platform rejected at validation (an amount of 0.00 fails `amount > 0`) has
            # no score: it counts as not flagged, the lowest score, and is reported.
            unscored = int(scored["score"].isna().sum())
            test_rows = transactions.iloc[test]
            for name, column in ((PLATFORM, "score"), (PLATFORM_RAW, "raw_score")):
                metrics = week_metrics(test_rows, scored[column].fillna(-1.0).to_numpy())
                rows.append(
                    {
                        "seed": seed,
                        "week": week_label(config, week),
                        "model": name,
                        **metrics,
                        "unscored": unscored,
                    }
                )
        log(
            f"  platform: {report['algorithm']}, trained on {' .. '.join(report['training_window'])} "
            f"({report['days_from_training_end_to_first_test_day']} days before the first test day), "
            f"{report['distinct_scores']:,} distinct scores; stages {report['timings_seconds']}"
        )
    return {"seed": seed, "dataset": stats, "weeks": rows, "platform": report}


def summary(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Mean (and std over seed-weeks) of each metric per model, with the book's figures."""
    frame = pd.DataFrame(rows)
    table = frame.groupby("model", sort=False)[list(METRICS)].agg(["mean", "std"])
    table.columns = [f"{metric} {stat}" for metric, stat in table.columns]
    table["seed-weeks"] = frame.groupby("model", sort=False).size()
    published = {m.name: m.published for m in BOOK_MODELS}
    for metric in METRICS:
        table[f"book {metric}"] = [published.get(name, {}).get(metric, np.nan) for name in table.index]
    return table


def paired_differences(rows: list[dict[str, Any]], models=(PLATFORM, PLATFORM_RAW)) -> pd.DataFrame:
    """Each of ``models`` minus each book model, on the same seed-weeks: the mean difference and
    its standard error over seeds (weeks of a seed share one file, so seeds are the independent
    draws; no standard error with one seed)."""
    frame = pd.DataFrame(rows).set_index(["seed", "week", "model"])[list(METRICS)]
    out = []
    for model in models:
        if model not in frame.index.get_level_values("model"):
            continue
        for book in BOOK_MODELS:
            diff = frame.xs(model, level="model") - frame.xs(book.name, level="model")
            per_seed = diff.groupby(level="seed").mean()
            row: dict[str, Any] = {"model": model, "minus": book.name}
            for metric in METRICS:
                row[metric] = f"{per_seed[metric].mean():+.4f}"
                if len(per_seed) > 1:
                    row[metric] += f" ± {per_seed[metric].std(ddof=1) / np.sqrt(len(per_seed)):.4f}"
            out.append(row)
    return pd.DataFrame(out)


SHORT = {"auc_roc": "AUC", "average_precision": "AP", "card_precision_at_100": "CP@100"}


def per_week_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per seed and test week: each model's three metrics side by side."""
    wide = rows.pivot_table(index=["seed", "week"], columns="model", values=list(METRICS), sort=False)
    models = list(dict.fromkeys(rows["model"]))
    wide = wide[[(metric, model) for model in models for metric in METRICS]]
    wide.columns = [f"{model} {SHORT[metric]}" for metric, model in wide.columns]
    return wide.round(4).reset_index()


def week_rows_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The test rows of each seed-week (the same for every model) and what the platform made of them."""
    base = rows.drop_duplicates(["seed", "week"])[["seed", "week", "test_rows", "test_frauds"]]
    platform_rows = rows[rows["model"] == PLATFORM]
    if len(platform_rows):
        extra = platform_rows[["seed", "week", "distinct_scores", "unscored"]].rename(
            columns={"distinct_scores": "platform distinct scores", "unscored": "platform unscored"}
        )
        base = base.merge(extra, on=["seed", "week"])
    return base


def markdown(results: dict[str, Any]) -> str:
    rows = pd.DataFrame([row for seed in results["seeds"] for row in seed["weeks"]])
    mean = summary(list(rows.to_dict("records")))
    datasets = pd.DataFrame(
        [
            {
                "seed": s["seed"],
                "transactions": f"{s['dataset']['transactions']:,}",
                "frauds": f"{s['dataset']['frauds']:,}",
                "fraud rate": f"{s['dataset']['fraud_rate']:.3%}",
                "frauds by scenario 1/2/3": "/".join(
                    str(s["dataset"]["frauds_by_scenario"].get(k, 0)) for k in ("1", "2", "3")
                ),
            }
            for s in results["seeds"]
        ]
    )
    parts = [
        f"# External benchmark ({results['mode']}, {results['date']}; seeds "
        f"{', '.join(str(seed['seed']) for seed in results['seeds'])}"
        f"{' of ' + str(len(results['seeds_requested'])) + ' requested: partial' if len(results['seeds']) < len(results.get('seeds_requested', results['seeds'])) else ''})",
        "",
        f"Machine: {results['machine']}; load average before {results['load_before']}, after "
        f"{results['load_after']}; {results['wall_seconds']:,.0f} s in all.",
        "",
        "## Mean over seeds and test weeks (book: its published test figures for the same parameters)",
        "",
        mean.round(4).to_markdown(),
        "",
        "## The platform against the book's models (paired: same files, same test rows; mean ± standard error over seeds)",
        "",
        paired_differences(list(rows.to_dict("records"))).to_markdown(index=False),
        "",
        "## Per seed and test week",
        "",
        per_week_table(rows).to_markdown(index=False),
        "",
        week_rows_table(rows).to_markdown(index=False),
        "",
        "## Datasets (the book's: 1,754,155 transactions, 14,681 frauds)",
        "",
        datasets.to_markdown(index=False),
    ]
    reports = {s["seed"]: s["platform"] for s in results["seeds"] if s["platform"]}
    if reports:
        parts += ["", "## Platform runs", "", platform_table(reports).to_markdown(index=False, intfmt=",")]
        candidates = candidate_table(reports)
        if len(candidates):
            parts += [
                "",
                "Candidates (tuning under `train_models`' defaults):",
                "",
                candidates.to_markdown(index=False),
            ]
        first = next(iter(reports.values()))
        parts += [
            "",
            f"History features it computes: {', '.join(first['features_computed'])}; left out: "
            f"{', '.join(first['features_left_out']) or 'none'}.",
            "",
            f"Model inputs left out for lack of columns: {', '.join(first['model_inputs_left_out'])}.",
        ]
    return "\n".join(parts) + "\n"


def candidate_table(reports: dict[int, dict[str, Any]]) -> pd.DataFrame:
    """Each seed's candidates: trials run, tuning time, imbalance method, holdout AP."""
    return pd.DataFrame(
        [
            {"seed": seed, "candidate": name.removesuffix("_model"), **values}
            for seed, report in reports.items()
            for name, values in report.get("candidates", {}).items()
        ]
    )


def platform_table(reports: dict[int, dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "seed": seed,
                "champion": f"{r['algorithm']} ({r['imbalance_method']}, {r['calibration']})",
                "training window": " .. ".join(r["training_window"]),
                "days to first test day": r["days_from_training_end_to_first_test_day"],
                "distinct scores": r["distinct_scores"],
                "scored rows": r["scored_rows"],
                "rejected rows": r["rows"]["rejected"],
                **{f"{stage} s": seconds for stage, seconds in r["timings_seconds"].items()},
            }
            for seed, r in reports.items()
        ]
    )


def machine() -> str:
    import sklearn
    import xgboost

    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}, pandas {pd.__version__}, scikit-learn {sklearn.__version__}, "
        f"xgboost {xgboost.__version__}"
    )


def run_seeds(scale: Scale, seeds: range, jobs: int, done=None, **kwargs: Any) -> list[dict[str, Any]]:
    """Every seed's results, in seed order; ``jobs`` > 1 runs that many seeds at once in fresh
    processes (spawned: no OpenMP state inherited). Each seed is seeded on its own, and the
    platform trains on one thread with count budgets, so the figures are the same either way.
    ``done`` is called with the seeds finished so far (in seed order) after each one."""
    finished: dict[int, dict[str, Any]] = {}

    def record(seed: int, result: dict[str, Any]) -> None:
        finished[seed] = result
        if done is not None:
            done([finished[k] for k in sorted(finished)])

    if jobs <= 1:
        for seed in seeds:
            record(seed, run_seed(scale, seed, **kwargs))
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {pool.submit(run_seed, scale, seed, **kwargs): seed for seed in seeds}
            for future in concurrent.futures.as_completed(futures):
                record(futures[future], future.result())
    return [finished[k] for k in sorted(finished)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (default 5)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small world, 2 test weeks, small tuning budget")
    parser.add_argument("--skip-platform", action="store_true", help="only the book's models")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default {DEFAULT_OUT})"
    )
    parser.add_argument("--keep", type=Path, default=None, help="keep the platform's working folders here")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="seeds run at once, each in its own process (default 1); figures do not depend on it",
    )
    parser.add_argument(
        "--render", type=Path, default=None, help="only rewrite results.md from this results.json"
    )
    args = parser.parse_args(argv)
    if args.render:
        text = markdown(json.loads(args.render.read_text()))
        (args.render.parent / "results.md").write_text(text)
        log(text)
        return 0
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    scale = QUICK if args.quick else FULL
    load_before = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    requested = range(args.first_seed, args.first_seed + args.seeds)

    def write(seeds: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
        """results.json and results.md of the seeds finished so far (all of them at the end)."""
        results = {
            "mode": "quick" if args.quick else "full",
            "scale": asdict(scale),
            "date": dt.date.today().isoformat(),
            "machine": machine(),
            "load_before": load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "book_dataset": BOOK_DATASET,
            "seeds_requested": list(requested),
            "seeds": seeds,
        }
        rows = [row for seed in seeds for row in seed["weeks"]]
        results["summary"] = summary(rows).round(4).reset_index().to_dict("records")
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
        text = markdown(results)
        (args.out / "results.md").write_text(text)
        if len(seeds) < len(requested):
            log(f"{len(seeds)} of {len(requested)} seeds done; partial results in {args.out / 'results.md'}")
        return results, text

    seeds = run_seeds(
        scale, requested, args.jobs, done=write,
        quick=args.quick, skip_platform=args.skip_platform, keep=args.keep,
    )  # fmt: skip
    results, text = write(seeds)
    log("")
    log(text)
    log(f"written to {args.out / 'results.json'} and {args.out / 'results.md'} ({results['wall_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
