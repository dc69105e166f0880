"""Materialize what a first look at the platform needs; `make run` calls this before the UI.

Data and features for ``--days`` days, a champion model, then a drift report and a performance
report for the latest days, so that every group of the asset graph has something to show. Runs
in the Dagster instance of ``DAGSTER_HOME`` (so the UI shows the runs) and skips what is already
materialized, so a second ``make run`` starts at once.

    python -m fraud_assets.first_look --days 75
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

import dagster as dg
import pandas as pd

from fraud_assets.core.champion_history import latest_champion
from fraud_assets.core.contract import RAW_TRANSACTIONS, VALIDATED_TRANSACTIONS
from fraud_assets.core.models.tuning import DEFAULT_GAP, DEFAULT_MIN_TRAIN_FRACTION
from fraud_assets.core.settings import load_settings, record_first_day
from fraud_assets.core.splitting import minimum_days_to_train
from fraud_assets.definitions import defs as load_defs
from fraud_assets.defs.sensors import RANGE_END, RANGE_START
from fraud_assets.defs.training import TrainingWindowConfig

# The definitions read the first daily partition when they load (`load_defs()`), so every load
# comes after `record_start_date`.

# (job, the asset whose partitions say what is done) in the order a first look needs them.
DAILY_JOBS = (
    ("ingest_transactions", VALIDATED_TRANSACTIONS),
    ("ingest_labels", "fraud_labels"),
    ("build_features", "transaction_features"),
)
TRAINING_JOB = "train_models"
# Daily reports of the latest days, one run per day (drift_report is not a backfill asset); a
# week holds each weekday once and gives the UI's metadata plots a trend.
REPORTS = ("drift_report", "model_performance")
REPORT_DAYS = 7
TAGS = {"fraudops/trigger": "first_look"}


def minimum_days() -> int:
    """The fewest days a first look can train on, from the defaults a training run uses: the
    training window's (warm-up, test share, gap), the tuning folds' (gap, first cut) and the
    label delay (the latest days, whose labels are not all in, are not held out)."""
    window = TrainingWindowConfig()
    return minimum_days_to_train(
        warmup_days=window.warmup_days,
        test_fraction=window.test_fraction,
        gap_days=window.gap_days,
        fold_gap_days=DEFAULT_GAP / pd.Timedelta(days=1),
        min_train_fraction=DEFAULT_MIN_TRAIN_FRACTION,
        label_delay_days=load_settings().label_delay_days,
    )


def missing_days(instance: dg.DagsterInstance, asset: str, days: list[str]) -> list[str]:
    done = instance.get_materialized_partitions(dg.AssetKey(asset))
    return [day for day in days if day not in done]


def run_job(instance: dg.DagsterInstance, name: str, tags: dict[str, str]) -> bool:
    job = load_defs().resolve_job_def(name)
    result = job.execute_in_process(instance=instance, tags={**TAGS, **tags}, raise_on_error=False)
    return result.success


def record_start_date(instance: dg.DagsterInstance, first_day: dt.date) -> str | None:
    """Let the partitions start where the data starts (fraud_assets/defs/partitions.py): unless
    FRAUDOPS_START_DATE is set, record ``first_day``, or an earlier day already materialized.
    Returns what is wrong, if anything."""
    settings = load_settings()
    if settings.start_date is not None:
        if first_day < settings.start_date:
            return (
                f"the first day, {first_day}, is before FRAUDOPS_START_DATE={settings.start_date} "
                f"(the first partition): set it to {first_day} or earlier, or ask for fewer --days"
            )
        return None
    built = instance.get_materialized_partitions(dg.AssetKey(RAW_TRANSACTIONS))
    start = record_first_day(settings, min([first_day, *map(dt.date.fromisoformat, built)]))
    print(f"first look: daily partitions start on {start} ({settings.start_date_file})")
    return None


def run_reports(instance: dg.DagsterInstance, day: str, assets: list[str]) -> bool:
    job = load_defs().resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        instance=instance,
        partition_key=day,
        asset_selection=[dg.AssetKey(asset) for asset in assets],
        tags=TAGS,
        raise_on_error=False,
    )
    return result.success


def materialize_reports(instance: dg.DagsterInstance, days: list[str]) -> bool:
    """Each of ``REPORTS`` for each of ``days`` that does not have it yet."""
    missing = {asset: set(missing_days(instance, asset, days)) for asset in REPORTS}
    todo = {day: [a for a in REPORTS if day in missing[a]] for day in days}
    todo = {day: assets for day, assets in todo.items() if assets}
    if not todo:
        print(f"first look: {', '.join(REPORTS)} for {days[0]}..{days[-1]} already materialized")
        return True
    print(f"first look: {', '.join(REPORTS)} for {len(todo)} of the latest {len(days)} days")
    return all(run_reports(instance, day, assets) for day, assets in todo.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--days",
        type=int,
        default=75,
        help=f"days of data (default 75; training needs at least {minimum_days()}, of which "
        f"{TrainingWindowConfig().warmup_days} warm up the history windows)",
    )
    parser.add_argument(
        "--end",
        type=dt.date.fromisoformat,
        default=dt.date.today() - dt.timedelta(days=1),
        help="last day, YYYY-MM-DD (default yesterday)",
    )
    parser.add_argument("--skip-training", action="store_true", help="only data and features")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    if not args.skip_training and args.days < (least := minimum_days()):
        window = TrainingWindowConfig()
        parser.error(
            f"--days {args.days} is too few to train a model: at least {least} days are needed "
            f"({window.warmup_days} warm up the history windows, then a training span with tuning folds, "
            f"a {window.gap_days:g}-day label-delay gap, the latest {window.test_fraction:.0%} of "
            "the days whose labels are in held out as the test window, and the last "
            f"{load_settings().label_delay_days:g} days, whose labels are not all in yet); use --days "
            f"{least} or more, or --skip-training for data and features only"
        )
    days = [(args.end - dt.timedelta(days=n)).isoformat() for n in range(args.days - 1, -1, -1)]
    instance = dg.DagsterInstance.get()
    problem = record_start_date(instance, dt.date.fromisoformat(days[0]))
    if problem:
        parser.error(problem)
    for job, asset in DAILY_JOBS:
        todo = missing_days(instance, asset, days)
        if not todo:
            print(f"first look: {asset} for {days[0]}..{days[-1]} already materialized")
            continue
        print(f"first look: {job} for {todo[0]}..{todo[-1]} ({len(todo)} of {len(days)} days)")
        if not run_job(instance, job, {RANGE_START: todo[0], RANGE_END: todo[-1]}):
            return _failed(job)
    if latest_champion(instance) is not None:
        print("first look: a champion model exists")
    elif args.skip_training:
        print("first look: training skipped, so no champion and no drift or performance reports")
        return 0
    else:
        print("first look: training, evaluating and registering the candidate models")
        if not run_job(instance, TRAINING_JOB, {}):
            return _failed(TRAINING_JOB)
    if not materialize_reports(instance, days[-REPORT_DAYS:]):
        return _failed("the drift and performance reports")
    return 0


def _failed(job: str) -> int:
    print(f"first look: {job} failed; the Dagster UI's Runs page shows why", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
