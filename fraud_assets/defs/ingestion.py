"""Stage 1, ingestion: `raw_transactions`, from the generator or the landing folder, and the API's traffic."""

import datetime as dt
from typing import Literal

import dagster as dg

from fraud_assets.core import columns as c
from fraud_assets.core.ingest import read_landing_days
from fraud_assets.core.labels import file_generator_labels
from fraud_assets.core.schemas import RawTransactionSchema
from fraud_assets.core.timestamps import day_keys
from fraud_assets.core.traffic import API, with_api_transactions
from fraud_assets.core.validation import PARTITION_DATE, missing_required_columns
from fraud_assets.defs.metadata import column_schema, transaction_summary
from fraud_assets.defs.partitions import daily_partitions, single_run
from fraud_assets.defs.resources import (
    API_TRANSACTIONS,
    CapturedTrafficResource,
    LandingZoneResource,
    TransactionSimulatorResource,
)


class RawTransactionsConfig(dg.Config):
    """Where this run's transactions come from, besides the API's captured traffic (always
    added): the generator, the landing folder, or ``api`` (the day's rows as stored, with the
    API's newest traffic: what the capture sensor launches)."""

    source: Literal["generator", "landing", "api"] = "generator"


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
    deps=[API_TRANSACTIONS],
    description=(
        "Card transactions of each day as received: simulated by the seeded generator (its "
        "chargebacks go to the label feed, `fraud_labels`, not onto the rows), or read "
        "from the landing folder's CSV/Parquet files through the column mapping; and the "
        "transactions the scoring API scored that day (`api_transactions`). `source` says where "
        "each row came from; a transaction id is kept once. Bad rows are kept here on purpose; "
        "`validated_transactions` sorts them out."
    ),
)
def raw_transactions(
    context: dg.AssetExecutionContext,
    config: RawTransactionsConfig,
    simulator: TransactionSimulatorResource,
    landing_zone: LandingZoneResource,
    captured_traffic: CapturedTrafficResource,
):
    window = context.partition_time_window
    first, last = window.start.date(), window.end.date() - dt.timedelta(days=1)
    days = context.partition_keys
    if config.source == "generator":
        generated = simulator.simulator.generate_days(first, last)
        # its labels go into the label feed (fraud_labels), as chargebacks reported later
        frame, labels_filed = file_generator_labels(captured_traffic.location(), generated)
        frame[PARTITION_DATE] = day_keys(frame[c.TIMESTAMP])
        origin = {
            "seed": simulator.seed,
            "cardholders": simulator.cardholders,
            "chargebacks_filed": labels_filed,
        }
    elif config.source == "landing":
        files = landing_zone.files()
        frame, used = read_landing_days(files, landing_zone.landing, days)
        origin = {
            "landing_path": dg.MetadataValue.path(landing_zone.path),
            "files": dg.MetadataValue.json(used),
        }
    else:  # the API's traffic arrived: each day as it is stored, its API rows read again
        frame = captured_traffic.stored_rows(days)
        origin = {}
    base_source = None if config.source == "api" else config.source
    combined = with_api_transactions(frame, captured_traffic.api_transactions(days), base_source)
    frame = combined.frame
    origin = {
        "source": config.source,
        **origin,
        "rows_by_source": dg.MetadataValue.json(combined.rows_by_source),
        "api_rows": combined.rows_by_source.get(API, 0),
        "api_also_in_other_source": combined.api_also_in_source,
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
