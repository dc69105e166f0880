"""Stage 1, ingestion: `raw_transactions`, from the generator or from the landing folder."""

import datetime as dt
from typing import Literal

import dagster as dg

from fraud_assets.core import columns as c
from fraud_assets.core.ingest import read_landing_days
from fraud_assets.core.schemas import RawTransactionSchema
from fraud_assets.core.timestamps import day_keys
from fraud_assets.core.validation import PARTITION_DATE, missing_required_columns
from fraud_assets.defs.metadata import column_schema, transaction_summary
from fraud_assets.defs.partitions import daily_partitions, single_run
from fraud_assets.defs.resources import LandingZoneResource, TransactionSimulatorResource


class RawTransactionsConfig(dg.Config):
    """Where this run's transactions come from."""

    source: Literal["generator", "landing"] = "generator"


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    group_name="ingestion",
    kinds={"pandas", "parquet"},
    metadata={"partition_expr": PARTITION_DATE, "dagster/column_schema": column_schema(RawTransactionSchema)},
    check_specs=[
        dg.AssetCheckSpec(
            "required_columns_present",
            asset="raw_transactions",
            blocking=True,
            description="transaction_id, timestamp, card_id, merchant_id and amount exist.",
        )
    ],
    description=(
        "Card transactions of each day as received: simulated by the seeded generator, or read "
        "from the landing folder's CSV/Parquet files through the column mapping. Bad rows are "
        "kept here on purpose; `validated_transactions` sorts them out."
    ),
)
def raw_transactions(
    context: dg.AssetExecutionContext,
    config: RawTransactionsConfig,
    simulator: TransactionSimulatorResource,
    landing_zone: LandingZoneResource,
):
    window = context.partition_time_window
    first, last = window.start.date(), window.end.date() - dt.timedelta(days=1)
    if config.source == "generator":
        frame = simulator.simulator.generate_days(first, last)
        frame[PARTITION_DATE] = day_keys(frame[c.TIMESTAMP])
        origin = {"source": "generator", "seed": simulator.seed, "cardholders": simulator.cardholders}
    else:
        files = landing_zone.files()
        frame, used = read_landing_days(files, landing_zone.landing, context.partition_keys)
        origin = {
            "source": "landing",
            "landing_path": dg.MetadataValue.path(landing_zone.path),
            "files": dg.MetadataValue.json(used),
        }
    yield dg.Output(frame, metadata={**origin, **transaction_summary(frame)})
    issues = missing_required_columns(frame)
    yield dg.AssetCheckResult(
        check_name="required_columns_present",
        passed=not issues,
        description="; ".join(str(issue) for issue in issues) or "all required columns present",
        metadata={
            "missing_columns": dg.MetadataValue.json([issue.column for issue in issues]),
            "columns": dg.MetadataValue.json([str(col) for col in frame.columns]),
        },
    )
