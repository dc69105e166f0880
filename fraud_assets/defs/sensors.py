"""Sensors of the data stage: new landing files become materialized partitions, once per file."""

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from fraud_assets.core.contract import RAW_TRANSACTIONS, VALIDATED_TRANSACTIONS
from fraud_assets.core.ingest import LandingFileError, covered_days, file_signature
from fraud_assets.defs.partitions import PartitionStartResource
from fraud_assets.defs.resources import LandingZoneResource
from fraud_assets.defs.validation import REJECTED_TRANSACTIONS

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
LANDING_FILE_TAG = "fraudops/landing_file"

ingest_transactions_job = dg.define_asset_job(
    "ingest_transactions",
    selection=dg.AssetSelection.assets(RAW_TRANSACTIONS, VALIDATED_TRANSACTIONS, REJECTED_TRANSACTIONS),
    description="Ingests a range of days (generator or landing folder) and validates them, in one run.",
)


@dg.sensor(
    job=ingest_transactions_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Watches the landing folder (FRAUDOPS_LANDING_DIR, default data/landing). Each new or "
        "rewritten CSV/Parquet file launches one run that ingests and validates the days it covers."
    ),
)
def landing_files_sensor(
    context: dg.SensorEvaluationContext,
    landing_zone: LandingZoneResource,
    partition_start: PartitionStartResource,
):
    reading = landing_zone.landing
    return new_file_runs(
        context,
        landing_zone.files(),
        lambda path: covered_days(path, reading),
        run_config={"ops": {RAW_TRANSACTIONS: {"config": {"source": "landing"}}}},
        what="landing files",
        partition_start=partition_start,
    )


def new_file_runs(
    context: dg.SensorEvaluationContext,
    files: list[Path],
    covered: Callable[[Path], list[dt.date]],
    run_config: dict,
    what: str,
    partition_start: PartitionStartResource,
) -> dg.SensorResult:
    """One run per new or rewritten file (the cursor remembers each file's signature), for the
    days it covers; a file that cannot be read, or covers days outside the partitions, is
    reported (once, and again when it changes)."""
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    partitions = partition_start.partitions_def()
    last_key = partitions.get_last_partition_key()
    first_key = partitions.get_first_partition_key()
    requests, problems = [], []
    for path in files:
        signature = file_signature(path)
        if seen.get(path.name) == signature:
            continue
        seen[path.name] = signature  # a broken file is reported once, and again when it changes
        try:
            days = covered(path)
        except (LandingFileError, ValueError) as err:
            problems.append(str(err))
            continue
        start, end = days[0].isoformat(), days[-1].isoformat()
        if first_key is None or last_key is None or start < first_key or end > last_key:
            problems.append(
                _outside_partitions(path, start, end, first_key, last_key, partition_start.source)
            )
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"{path.name}:{signature}",
                run_config=run_config,
                tags={RANGE_START: start, RANGE_END: end, LANDING_FILE_TAG: path.name},
            )
        )
    for problem in problems:
        context.log.error(problem)
    skip = None
    if not requests:
        skip = "; ".join(problems) if problems else f"no new {what}"
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(seen, sort_keys=True), skip_reason=skip)


def _outside_partitions(
    path, start: str, end: str, first_key: str | None, last_key: str | None, source: str
) -> str:
    """What is wrong with a file's days, and the fix: an earlier first partition, or later rows."""
    message = f"{path}: covers {start}..{end}, outside the partitions {first_key}..{last_key}"
    if first_key is None or start < first_key:
        return (
            f"{message}; set FRAUDOPS_START_DATE={start} (or earlier) in .env or the environment and "
            f"reload the code location (the first partition now comes from {source})"
        )
    return f"{message}; rows after today cannot be ingested yet: check the file's timestamps"
