"""Stage 3, features: point-in-time history features per transaction, and merchant risk.

Each day's features read the previous `LOOKBACK_DAYS` of validated transactions, so windows
reach back across partitions; a day near the start of the data simply has less history, and
the asset's metadata says from when.
"""

import dagster as dg
import numpy as np
import pandas as pd

from fraud_assets.core import columns as c
from fraud_assets.core.contract import MERCHANT_RISK, VALIDATED_TRANSACTIONS
from fraud_assets.core.features import (
    EVENT_FEATURE_COLUMNS,
    HISTORY_FEATURES,
    LOOKBACK_DAYS,
    available_history_features,
)
from fraud_assets.core.labels import join_labels
from fraud_assets.core.schemas import TransactionFeatureSchema
from fraud_assets.core.shards import (
    CARD_INPUTS,
    ShardedDay,
    by_card_shard,
    card_shards,
    with_merchant_features,
)
from fraud_assets.core.validation import PARTITION_DATE, SOURCE
from fraud_assets.defs.io_managers import ParquetDays
from fraud_assets.defs.label_feed import fed_labels, labels_input
from fraud_assets.defs.metadata import column_schema, contract_type, preview
from fraud_assets.defs.partitions import daily_partitions, single_run
from fraud_assets.defs.resources import FeatureShardsResource, LabelFeedResource

TransactionFeatures = contract_type(TransactionFeatureSchema)

# Columns carried next to the features: keys, event columns the preprocessor uses, the label a
# source row carries (a file's is_fraud: one more label source; the feed's are joined by readers),
# and where the row came from.
CARRIED = (
    c.TRANSACTION_ID,
    c.TIMESTAMP,
    c.CARD_ID,
    c.MERCHANT_ID,
    *EVENT_FEATURE_COLUMNS,
    c.IS_FRAUD,
    c.LABEL_KNOWN_AT,
    c.FRAUD_SCENARIO,
    SOURCE,  # where the row came from (generator, landing, api): the API's traffic stays findable
)

# What the feature step reads of the validated transactions (Parquet column projection): the
# carried columns and what the card features read; the lineage and the other derived columns stay
# on disk.
FEATURE_INPUTS = tuple(dict.fromkeys((*CARRIED, *CARD_INPUTS)))
# What merchant risk reads of them: ids, times and the labels a row carries.
MERCHANT_INPUTS = (c.TRANSACTION_ID, c.TIMESTAMP, c.CARD_ID, c.MERCHANT_ID, c.IS_FRAUD, c.LABEL_KNOWN_AT)


ARROW_STRING = pd.StringDtype("pyarrow")
# The column a shard's rows carry their place among all the days' rows in.
POSITION = "_position"


def _lookback(columns: tuple[str, ...]) -> dg.AssetIn:
    """The validated transactions of the lookback window, as files read shard by shard."""
    return dg.AssetIn(
        VALIDATED_TRANSACTIONS,
        partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-LOOKBACK_DAYS, end_offset=0),
        metadata={"allow_missing_partitions": True, "deferred": True, "columns": list(columns)},
    )


def _day_starts(context: dg.AssetExecutionContext, days_after: int = 0) -> list[pd.Timestamp]:
    return [pd.Timestamp(key) + pd.Timedelta(days=days_after) for key in context.partition_keys]


def read_by_shard(
    transactions: ParquetDays,
    columns: tuple[str, ...],
    shards: int,
    fed: pd.DataFrame,
    genuine_after: pd.Timedelta,
    as_of: list[pd.Timestamp],
    keep=None,
) -> ShardedDay:
    """`by_card_shard` over the lookback's files: each shard reads its cards' rows only (and
    ``columns`` only, text as Arrow strings: no Python object per value), with their label events
    from the fed labels ``fed``."""

    def read(shard: int) -> pd.DataFrame:
        if shards == 1:
            return transactions.read(columns, arrow_text=True)
        return transactions.read(
            columns,
            where=lambda table: card_shards(table[c.CARD_ID].to_numpy(), shards) == shard,
            position=POSITION,
            arrow_text=True,
        )

    return by_card_shard(
        read, shards, lambda history: join_labels(history, fed, genuine_after).events, as_of, keep
    )


def features_of_days(
    transactions: ParquetDays,
    shards: int,
    fed: pd.DataFrame,
    genuine_after: pd.Timedelta,
    days: list[pd.Timestamp],
) -> tuple[pd.DataFrame, ShardedDay]:
    """The features of the transactions of ``days`` (consecutive day starts) from their lookback's
    files, in the files' order, and what the shards read."""
    start, end = days[0], days[-1] + pd.Timedelta(days=1)

    def in_days(history: pd.DataFrame) -> np.ndarray:
        return ((history[c.TIMESTAMP] >= start) & (history[c.TIMESTAMP] < end)).to_numpy()

    day = read_by_shard(transactions, FEATURE_INPUTS, shards, fed, genuine_after, days, keep=in_days)
    if not day.columns:
        raise FileNotFoundError(f"{VALIDATED_TRANSACTIONS}: no day of the lookback holds a file")
    rows = with_merchant_features(day.rows, dict(zip(days, day.snapshots, strict=True)))
    if shards > 1:  # shard after shard: back in the order of the days' files
        rows = rows.sort_values(POSITION, kind="stable")
    keep = [col for col in CARRIED if col in rows] + [f for f in HISTORY_FEATURES if f in rows]
    # the day's text in the dtypes the validated files read as (read as Arrow text, see read_by_shard)
    stored = transactions.dtypes()
    text = {col: stored[col] for col in keep if rows[col].dtype == ARROW_STRING and col in stored}
    return rows[keep].astype(text).reset_index(drop=True), day


@dg.asset(
    # the labels reported before the day: those of its lookback's transactions, and a day's more
    # for a label reported before its transaction's time (it counts from the transaction's)
    ins={
        VALIDATED_TRANSACTIONS: _lookback(FEATURE_INPUTS),
        "fraud_labels": labels_input(-(LOOKBACK_DAYS + 1), -1),
    },
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    group_name="features",
    kinds={"pandas", "numpy", "parquet"},
    dagster_type=TransactionFeatures,
    metadata={
        "partition_expr": c.TIMESTAMP,
        "dagster/column_schema": column_schema(TransactionFeatureSchema),
        "lookback_days": LOOKBACK_DAYS,
    },
    description=(
        "Point-in-time features of each day's transactions: card velocity and spend over 1h, "
        "24h, 7d and 30d, amount against the card's own average, time since the card's last "
        "transaction, new merchant / new device for the card, and merchant fraud rate from the "
        "labels known before the day began (`fraud_labels`, each transaction's latest label reported "
        "by then). Only earlier events count: no leakage."
    ),
)
def transaction_features(
    context: dg.AssetExecutionContext,
    validated_transactions: ParquetDays,
    fraud_labels: pd.DataFrame,
    label_feed: LabelFeedResource,
    feature_shards: FeatureShardsResource,
) -> pd.DataFrame:
    shards = feature_shards.shards
    fed, genuine_after = fed_labels(fraud_labels), label_feed.genuine_after()
    out, day = features_of_days(validated_transactions, shards, fed, genuine_after, _day_starts(context))

    present = available_history_features(day.columns, labels=True)
    left_out = [f for f in HISTORY_FEATURES if f not in present]
    meta = {
        "dagster/row_count": len(out),
        "features": dg.MetadataValue.json(list(present)),
        "features_left_out": dg.MetadataValue.json(left_out),
        "history_from": dg.MetadataValue.text(str(day.history_from) if day.history_rows else "none"),
        "history_rows": day.history_rows,
        "card_shards": shards,
        "preview": preview(out),
    }
    if c.IS_FRAUD in out and out[c.IS_FRAUD].notna().any():
        by_class = out.groupby(out[c.IS_FRAUD].astype("float64"))[list(present)].mean().T
        by_class.columns = [f"mean (is_fraud={int(k)})" for k in by_class.columns]
        meta["feature_means_by_class"] = dg.MetadataValue.md(by_class.round(4).to_markdown())
    context.add_output_metadata(meta)
    return out


@dg.asset(
    name=MERCHANT_RISK,  # the API reads its files (fraud_assets/core/contract.py)
    ins={
        VALIDATED_TRANSACTIONS: _lookback(MERCHANT_INPUTS),
        "fraud_labels": labels_input(-(LOOKBACK_DAYS + 1), 0),
    },
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    group_name="features",
    kinds={"pandas", "parquet"},
    metadata={"partition_expr": PARTITION_DATE},
    description=(
        "Known frauds and known labels per merchant over trailing windows, as of the end of each "
        "day (`fraud_labels` reported by then): the table the scoring API looks merchants up in for "
        "the next day's transactions."
    ),
)
def merchant_risk(
    context: dg.AssetExecutionContext,
    validated_transactions: ParquetDays,
    fraud_labels: pd.DataFrame,
    label_feed: LabelFeedResource,
    feature_shards: FeatureShardsResource,
) -> pd.DataFrame:
    as_of = _day_starts(context, days_after=1)
    fed, genuine_after = fed_labels(fraud_labels), label_feed.genuine_after()
    day = read_by_shard(
        validated_transactions, MERCHANT_INPUTS, feature_shards.shards, fed, genuine_after, as_of
    )
    if not day.columns:
        raise FileNotFoundError(f"{VALIDATED_TRANSACTIONS}: no day of the lookback holds a file")
    frames = [
        snapshot.to_frame().assign(**{PARTITION_DATE: key})
        for key, snapshot in zip(context.partition_keys, day.snapshots, strict=True)
    ]
    out = pd.concat(frames, ignore_index=True)
    latest = out[out[PARTITION_DATE] == context.partition_keys[-1]]
    context.add_output_metadata(
        {
            "dagster/row_count": len(out),
            "merchants": len(latest),
            "as_of": dg.MetadataValue.text(str(latest["as_of"].iloc[0]) if len(latest) else "none"),
            "riskiest_merchants": dg.MetadataValue.md(
                latest.sort_values("frauds_30d", ascending=False).head(10).to_markdown(index=False)
            ),
        }
    )
    return out


features_job = dg.define_asset_job(
    "build_features",
    selection=dg.AssetSelection.assets(transaction_features, merchant_risk),
    description="Features and merchant risk for a range of days, in one run.",
)
