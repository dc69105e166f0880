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

from fraud_assets.definitions import defs as load_defs
from fraud_assets.defs.sensors import RANGE_END, RANGE_START

INGEST_JOB = "ingest_transactions"


def missing_days(instance: dg.DagsterInstance, days: list[str]) -> list[str]:
    done = instance.get_materialized_partitions(dg.AssetKey("validated_transactions"))
    return [day for day in days if day not in done]


def materialize_days(instance: dg.DagsterInstance, first: str, last: str) -> bool:
    job = load_defs().resolve_job_def(INGEST_JOB)
    result = job.execute_in_process(
        instance=instance,
        tags={RANGE_START: first, RANGE_END: last, "fraudops/trigger": "first_look"},
        raise_on_error=False,
    )
    return result.success


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30, help="how many days of data (default 30)")
    parser.add_argument(
        "--end",
        type=dt.date.fromisoformat,
        default=dt.date.today() - dt.timedelta(days=1),
        help="last day, YYYY-MM-DD (default yesterday)",
    )
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error("--days must be at least 1")
    days = [(args.end - dt.timedelta(days=n)).isoformat() for n in range(args.days - 1, -1, -1)]
    instance = dg.DagsterInstance.get()
    todo = missing_days(instance, days)
    if not todo:
        print(f"first look: data for {days[0]}..{days[-1]} already materialized")
        return 0
    print(f"first look: materializing {todo[0]}..{todo[-1]} ({len(todo)} missing of {len(days)} days)")
    if not materialize_days(instance, todo[0], todo[-1]):
        print("first look: the run failed; open the Dagster UI's Runs page for the reason", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
