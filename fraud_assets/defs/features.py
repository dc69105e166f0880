"""Stage 3, features: point-in-time history features per transaction, and merchant risk.

Each day's features read the previous `LOOKBACK_DAYS` of validated transactions, so windows
reach back across partitions; a day near the start of the data simply has less history, and
the asset's metadata says from when.

Both assets are graphs over card shards (`fraud_assets.core.shards`): ``split_by_card`` fans
out one dynamic output per shard (``feature_shards``), each shard is a step of its own that
reads its cards' rows of the lookback (its cards' history only), and the last step collects the
shards into the day: merchant counts added up, rows back in the files' order. The executor
decides where the shard steps run: side by side on the Celery workers of the cluster profile,
one after another in process. What passes between the steps (a shard's day rows and merchant
counts, never its history) goes through ``step_io_manager``: the object store on the cluster.
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
    CardShard,
    ShardedDay,
    card_shard,
    card_shards,
    combine_shards,
    with_merchant_features,
)
from fraud_assets.core.validation import PARTITION_DATE, SOURCE
from fraud_assets.defs.io_managers import STEP_IO_MANAGER, ParquetDays
from fraud_assets.defs.label_feed import FEED_INPUT, fed_labels, labels_input
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


# The validated transactions of the lookback window (read by the shard steps, see `_files`).
LOOKBACK = dg.AssetIn(
    VALIDATED_TRANSACTIONS,
    partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-LOOKBACK_DAYS, end_offset=0),
)


def _files(columns: tuple[str, ...]) -> dg.In:
    """A step's input of the lookback: its files, to read shard by shard, ``columns`` only."""
    return dg.In(metadata={"allow_missing_partitions": True, "deferred": True, "columns": list(columns)})


def _day_starts(context: dg.OpExecutionContext, days_after: int = 0) -> list[pd.Timestamp]:
    return [pd.Timestamp(key) + pd.Timedelta(days=days_after) for key in context.partition_keys]


def read_shard(transactions: ParquetDays, columns: tuple[str, ...], shard: int, shards: int) -> pd.DataFrame:
    """The rows of shard ``shard`` of ``shards`` of the lookback's files, ``columns`` only, text as
    Arrow strings (no Python object per value); several shards carry each row's place among all
    the files' rows (`POSITION`)."""
    if shards == 1:
        return transactions.read(columns, arrow_text=True)
    return transactions.read(
        columns,
        where=lambda table: card_shards(table[c.CARD_ID].to_numpy(), shards) == shard,
        position=POSITION,
        arrow_text=True,
    )


def shard_features(
    transactions: ParquetDays,
    shard: int,
    shards: int,
    fed: pd.DataFrame,
    genuine_after: pd.Timedelta,
    days: list[pd.Timestamp],
) -> CardShard:
    """One shard of the features of ``days`` (consecutive day starts): its cards' merchant
    label counts as of each day's start and its rows of the days with their card features."""
    start, end = days[0], days[-1] + pd.Timedelta(days=1)

    def in_days(history: pd.DataFrame) -> np.ndarray:
        return ((history[c.TIMESTAMP] >= start) & (history[c.TIMESTAMP] < end)).to_numpy()

    history = read_shard(transactions, FEATURE_INPUTS, shard, shards)
    return card_shard(history, _events_of(fed, genuine_after), days, keep=in_days)


def shard_merchant_counts(
    transactions: ParquetDays,
    shard: int,
    shards: int,
    fed: pd.DataFrame,
    genuine_after: pd.Timedelta,
    as_of: list[pd.Timestamp],
) -> CardShard:
    """One shard's merchant label counts as of each time of ``as_of``."""
    history = read_shard(transactions, MERCHANT_INPUTS, shard, shards)
    return card_shard(history, _events_of(fed, genuine_after), as_of)


def _events_of(fed: pd.DataFrame, genuine_after: pd.Timedelta):
    return lambda history: join_labels(history, fed, genuine_after).events


def features_from_shards(
    transactions: ParquetDays, shards: list[CardShard], days: list[pd.Timestamp]
) -> tuple[pd.DataFrame, ShardedDay]:
    """The features of the transactions of ``days`` from their shards (`shard_features`): the
    merchants' counts added up, each row's merchant features looked up, the rows in the order of
    the days' files; and what the shards read."""
    day = combine_shards(shards)
    if not day.columns:
        raise FileNotFoundError(f"{VALIDATED_TRANSACTIONS}: no day of the lookback holds a file")
    rows = with_merchant_features(day.rows, dict(zip(days, day.snapshots, strict=True)))
    if POSITION in rows:  # shard after shard: back in the order of the days' files
        rows = rows.sort_values(POSITION, kind="stable")
    keep = [col for col in CARRIED if col in rows] + [f for f in HISTORY_FEATURES if f in rows]
    # the day's text in the dtypes the validated files read as (read as Arrow text, see read_shard)
    stored = transactions.dtypes()
    text = {col: stored[col] for col in keep if rows[col].dtype == ARROW_STRING and col in stored}
    return rows[keep].astype(text).reset_index(drop=True), day


def features_of_days(
    transactions: ParquetDays,
    shards: int,
    fed: pd.DataFrame,
    genuine_after: pd.Timedelta,
    days: list[pd.Timestamp],
) -> tuple[pd.DataFrame, ShardedDay]:
    """`features_from_shards` of every shard computed in this process, one after another: what
    the asset's steps compute, without Dagster (the benchmarks)."""
    parts = [shard_features(transactions, s, shards, fed, genuine_after, days) for s in range(shards)]
    return features_from_shards(transactions, parts, days)


# --- the steps of the two graphs -------------------------------------------------------------------


@dg.op(out=dg.DynamicOut(tuple, io_manager_key=STEP_IO_MANAGER))
def split_by_card(feature_shards: FeatureShardsResource):
    """One output per card shard: ``(shard, shards)``. The steps of a shard take the count from
    here, not from their own process's settings, so every shard of a run hashes cards alike."""
    shards = feature_shards.shards
    if shards < 1:
        raise ValueError(f"feature_shards: the number of card shards must be at least 1, got {shards}")
    for shard in range(shards):
        yield dg.DynamicOutput((shard, shards), mapping_key=str(shard))


SHARD_OUT = dg.Out(CardShard, io_manager_key=STEP_IO_MANAGER)


def _shard_ins(columns: tuple[str, ...]) -> dict[str, dg.In]:
    """A shard step's inputs: its ``(shard, shards)``, the lookback's files, the fed labels."""
    return {
        "shard": dg.In(tuple),
        VALIDATED_TRANSACTIONS: _files(columns),
        "fraud_labels": dg.In(metadata=FEED_INPUT),
    }


def _one_shard(context: dg.OpExecutionContext, compute, shard: tuple, days_after: int, *inputs) -> CardShard:
    """``compute`` (`shard_features`, `shard_merchant_counts`) of one shard of the run's days
    (their starts, ``days_after`` later), from the step's lookback files, labels and label feed."""
    transactions, labels, label_feed = inputs
    fed, genuine_after = fed_labels(labels), label_feed.genuine_after()
    part = compute(transactions, *shard, fed, genuine_after, _day_starts(context, days_after))
    context.add_output_metadata({"history_rows": part.history_rows, "rows": len(part.rows)})
    return part


@dg.op(ins=_shard_ins(FEATURE_INPUTS), out=SHARD_OUT)
def card_shard_features(
    context: dg.OpExecutionContext,
    shard: tuple,
    validated_transactions: ParquetDays,
    fraud_labels: pd.DataFrame,
    label_feed: LabelFeedResource,
) -> CardShard:
    """A card shard's rows of the run's days with their card features, and its merchant counts
    as of each day's start."""
    return _one_shard(context, shard_features, shard, 0, validated_transactions, fraud_labels, label_feed)


@dg.op(
    ins={"shards": dg.In(list), VALIDATED_TRANSACTIONS: _files(())},
    out=dg.Out(TransactionFeatures),  # the asset's: its IO manager and metadata (partition_expr)
)
def collect_features(
    context: dg.OpExecutionContext, shards: list[CardShard], validated_transactions: ParquetDays
) -> pd.DataFrame:
    """The day's features from its card shards, in the order of the day's files."""
    out, day = features_from_shards(validated_transactions, shards, _day_starts(context))
    present = available_history_features(day.columns, labels=True)
    left_out = [f for f in HISTORY_FEATURES if f not in present]
    meta = {
        "dagster/row_count": len(out),
        "features": dg.MetadataValue.json(list(present)),
        "features_left_out": dg.MetadataValue.json(left_out),
        "history_from": dg.MetadataValue.text(str(day.history_from) if day.history_rows else "none"),
        "history_rows": day.history_rows,
        "card_shards": len(shards),
        "preview": preview(out),
    }
    if c.IS_FRAUD in out and out[c.IS_FRAUD].notna().any():
        by_class = out.groupby(out[c.IS_FRAUD].astype("float64"))[list(present)].mean().T
        by_class.columns = [f"mean (is_fraud={int(k)})" for k in by_class.columns]
        meta["feature_means_by_class"] = dg.MetadataValue.md(by_class.round(4).to_markdown())
    context.add_output_metadata(meta)
    return out


@dg.op(ins=_shard_ins(MERCHANT_INPUTS), out=SHARD_OUT)
def card_shard_merchant_counts(
    context: dg.OpExecutionContext,
    shard: tuple,
    validated_transactions: ParquetDays,
    fraud_labels: pd.DataFrame,
    label_feed: LabelFeedResource,
) -> CardShard:
    """A card shard's known labels per merchant as of the end of each of the run's days."""
    return _one_shard(
        context, shard_merchant_counts, shard, 1, validated_transactions, fraud_labels, label_feed
    )


@dg.op(out=dg.Out(pd.DataFrame))
def collect_merchant_risk(context: dg.OpExecutionContext, shards: list[CardShard]) -> pd.DataFrame:
    """Each day's merchant risk: its card shards' counts added up."""
    day = combine_shards(shards)
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
            "card_shards": len(shards),
            "riskiest_merchants": dg.MetadataValue.md(
                latest.sort_values("frauds_30d", ascending=False).head(10).to_markdown(index=False)
            ),
        }
    )
    return out


def _by_shard(shard_op: dg.OpDefinition, *inputs):
    """In a graph: ``shard_op`` once per card shard (`split_by_card`), its outputs collected."""
    return split_by_card().map(lambda shard: shard_op(shard, *inputs)).collect()


# --- the assets ------------------------------------------------------------------------------------


@dg.graph_asset(
    # the labels reported before the day: those of its lookback's transactions, and a day's more
    # for a label reported before its transaction's time (it counts from the transaction's)
    ins={
        VALIDATED_TRANSACTIONS: LOOKBACK,
        "fraud_labels": labels_input(-(LOOKBACK_DAYS + 1), -1),
    },
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    group_name="features",
    kinds={"pandas", "numpy", "parquet"},
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
        "by then). Only earlier events count: no leakage. One step per card shard "
        "(`feature_shards`), collected into the day."
    ),
)
def transaction_features(validated_transactions, fraud_labels):
    return collect_features(
        _by_shard(card_shard_features, validated_transactions, fraud_labels), validated_transactions
    )


@dg.graph_asset(
    name=MERCHANT_RISK,  # the API reads its files (fraud_assets/core/contract.py)
    ins={
        VALIDATED_TRANSACTIONS: LOOKBACK,
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
        "the next day's transactions. One step per card shard (`feature_shards`), their counts "
        "added up."
    ),
)
def merchant_risk(validated_transactions, fraud_labels):
    return collect_merchant_risk(_by_shard(card_shard_merchant_counts, validated_transactions, fraud_labels))


features_job = dg.define_asset_job(
    "build_features",
    selection=dg.AssetSelection.assets(transaction_features, merchant_risk),
    description="Features and merchant risk for a range of days, in one run.",
)
