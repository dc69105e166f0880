"""Materialize what a first look at the platform needs; `make run` calls this before the UI.

Runs in the Dagster instance of ``DAGSTER_HOME`` (so the UI shows the runs) and skips the days
that are already materialized, so a second ``make run`` starts at once.

    python -m fraud_assets.first_look --days 30
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys

import dagster as dg

from fraud_assets.core.settings import load_settings, record_first_day
from fraud_assets.definitions import defs as load_defs

# (job, the asset whose partitions say what is done) in the order a first look needs them.
DAILY_JOBS = (("ingest_transactions", "validated_transactions"), ("build_features", "transaction_features"))
TRAINING_JOB = "train_models"
TAGS = {"fraudops/trigger": "first_look"}


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
    built = instance.get_materialized_partitions(dg.AssetKey("raw_transactions"))
    start = record_first_day(settings, min([first_day, *map(dt.date.fromisoformat, built)]))
    print(f"first look: daily partitions start on {start} ({settings.start_date_file})")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--days", type=int, default=75, help="days of data (default 75: 37 warm up the history windows)"
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
    days = [(args.end - dt.timedelta(days=n)).isoformat() for n in range(args.days - 1, -1, -1)]
    instance = dg.DagsterInstance.get()
    problem = record_start_date(instance, dt.date.fromisoformat(days[0]))
    if problem:
        parser.error(problem)
    # Imported after the start date is recorded: the partitions are defined when the defs load.
    from fraud_assets.defs.sensors import RANGE_END, RANGE_START

    for job, asset in DAILY_JOBS:
        todo = missing_days(instance, asset, days)
        if not todo:
            print(f"first look: {asset} for {days[0]}..{days[-1]} already materialized")
            continue
        print(f"first look: {job} for {todo[0]}..{todo[-1]} ({len(todo)} of {len(days)} days)")
        if not run_job(instance, job, {RANGE_START: todo[0], RANGE_END: todo[-1]}):
            return _failed(job)
    if args.skip_training or instance.get_latest_materialization_event(dg.AssetKey("champion_model")):
        print("first look: a champion model exists (or training skipped)")
        return 0
    print("first look: training, evaluating and registering the candidate models")
    if not run_job(instance, TRAINING_JOB, {}):
        return _failed(TRAINING_JOB)
    return 0


def _failed(job: str) -> int:
    print(f"first look: {job} failed; the Dagster UI's Runs page shows why", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
