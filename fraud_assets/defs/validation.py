"""Stage 2, validation: every raw row becomes either a validated or a rejected transaction.

Row problems quarantine the row in `rejected_transactions` with the check it failed; dataset
problems fail blocking checks, so nothing downstream is built from bad data.
"""

import dagster as dg
import pandas as pd

from fraud_assets.core import columns as c
from fraud_assets.core.contract import VALIDATED_TRANSACTIONS
from fraud_assets.core.schemas import FRAUD_RATE_MAX, FRAUD_RATE_MIN, ValidatedTransactionSchema
from fraud_assets.core.validation import (
    FAILED_CHECKS,
    PARTITION_DATE,
    REJECTION_REASON,
    fraud_rate_issue,
    lost_rows,
    split_transactions,
)
from fraud_assets.defs.metadata import column_schema, contract_type, preview, transaction_summary
from fraud_assets.defs.partitions import daily_partitions, single_run

ValidatedTransactions = contract_type(ValidatedTransactionSchema)

REJECTED_TRANSACTIONS = "rejected_transactions"
VALIDATED = dg.AssetKey(VALIDATED_TRANSACTIONS)
REJECTED = dg.AssetKey(REJECTED_TRANSACTIONS)


class ValidationConfig(dg.Config):
    """Dataset-level limits; the defaults are the seed's data-quality thresholds."""

    max_rejected_share: float = 0.05
    fraud_rate_min: float = FRAUD_RATE_MIN
    fraud_rate_max: float = FRAUD_RATE_MAX


@dg.multi_asset(
    outs={
        VALIDATED_TRANSACTIONS: dg.AssetOut(
            dagster_type=ValidatedTransactions,
            group_name="validation",
            kinds={"pandas", "parquet"},
            metadata={
                "partition_expr": c.TIMESTAMP,
                "dagster/column_schema": column_schema(ValidatedTransactionSchema),
            },
            description=(
                "Transactions that passed every row-level check: typed, unique, ordered by time, "
                "with derived columns (hour, weekday, weekend, distance, foreign) filled in."
            ),
        ),
        REJECTED_TRANSACTIONS: dg.AssetOut(
            group_name="validation",
            kinds={"pandas", "parquet"},
            metadata={"partition_expr": PARTITION_DATE},
            description=(
                "Raw rows that failed a row-level check, exactly as received (as text), with "
                "`failed_checks` (column:check) and a readable `rejection_reason`."
            ),
        ),
    },
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    check_specs=[
        dg.AssetCheckSpec(
            "nothing_lost",
            asset=VALIDATED,
            additional_deps=[REJECTED],
            blocking=True,
            description="validated + rejected = raw: every raw row is accounted for exactly once.",
        ),
        dg.AssetCheckSpec(
            "fraud_rate_in_range",
            asset=VALIDATED,
            blocking=True,
            description="The labelled fraud rate lies within the configured bounds (default 0.1%-5%).",
        ),
        dg.AssetCheckSpec(
            "rejected_share_within_limit",
            asset=VALIDATED,
            blocking=True,
            description="Rejected rows stay under the configured share of raw rows (default 5%).",
        ),
    ],
)
def validate_transactions(
    context: dg.AssetExecutionContext, config: ValidationConfig, raw_transactions: pd.DataFrame
):
    outcome = split_transactions(raw_transactions)
    validated, rejected = outcome.validated, outcome.rejected

    counts = outcome.rejection_counts()
    yield dg.Output(validated, VALIDATED_TRANSACTIONS, metadata=transaction_summary(validated))
    yield dg.Output(
        rejected,
        REJECTED_TRANSACTIONS,
        metadata={
            "dagster/row_count": len(rejected),
            "rejected_share": dg.MetadataValue.float(round(outcome.rejected_share, 6)),
            "failed_checks": dg.MetadataValue.md(
                counts.to_frame().to_markdown() if len(counts) else "_none_"
            ),
            "preview": preview(rejected[[c.TRANSACTION_ID, FAILED_CHECKS, REJECTION_REASON]])
            if len(rejected)
            else preview(rejected),
        },
    )

    lost = lost_rows(raw_transactions, validated, rejected)
    yield dg.AssetCheckResult(
        check_name="nothing_lost",
        asset_key=VALIDATED,
        passed=not lost,
        description=lost
        or f"{len(raw_transactions)} raw = {len(validated)} validated + {len(rejected)} rejected",
        metadata={"raw": len(raw_transactions), "validated": len(validated), "rejected": len(rejected)},
    )

    issue = fraud_rate_issue(validated, config.fraud_rate_min, config.fraud_rate_max)
    labelled = int(validated[c.IS_FRAUD].notna().sum()) if c.IS_FRAUD in validated else 0
    yield dg.AssetCheckResult(
        check_name="fraud_rate_in_range",
        asset_key=VALIDATED,
        passed=issue is None,
        description=str(issue) if issue else f"fraud rate within bounds over {labelled} labelled rows",
        metadata={"labelled_rows": labelled, "bounds": f"[{config.fraud_rate_min}, {config.fraud_rate_max}]"},
    )

    share = outcome.rejected_share
    worst = counts.head(3).to_dict()
    yield dg.AssetCheckResult(
        check_name="rejected_share_within_limit",
        asset_key=VALIDATED,
        passed=share <= config.max_rejected_share,
        description=(
            f"{share:.2%} of rows rejected (limit {config.max_rejected_share:.2%}); "
            f"most failed checks: {worst}"
        ),
        metadata={"rejected_share": share, "most_failed_checks": dg.MetadataValue.json(worst)},
    )
    for issue in outcome.issues:
        if issue.check != "fraud_rate_in_range":
            context.log.warning(f"dataset issue: {issue}")
