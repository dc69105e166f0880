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
    MerchantRiskSnapshot,
    add_history_features,
    available_history_features,
)
from fraud_assets.core.labels import join_labels
from fraud_assets.core.schemas import TransactionFeatureSchema
from fraud_assets.core.validation import PARTITION_DATE, SOURCE
from fraud_assets.defs.label_feed import fed_labels, labels_input
from fraud_assets.defs.metadata import column_schema, contract_type, preview
from fraud_assets.defs.partitions import daily_partitions, single_run
from fraud_assets.defs.resources import LabelFeedResource

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

with_lookback = dg.AssetIn(
    VALIDATED_TRANSACTIONS,
    partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-LOOKBACK_DAYS, end_offset=0),
    metadata={"allow_missing_partitions": True},
)


def _in_window(frame: pd.DataFrame, context: dg.AssetExecutionContext) -> np.ndarray:
    window = context.partition_time_window
    ts = frame[c.TIMESTAMP]
    start, end = pd.Timestamp(window.start).tz_localize(None), pd.Timestamp(window.end).tz_localize(None)
    return ((ts >= start) & (ts < end)).to_numpy()


@dg.asset(
    # the labels reported before the day: those of its lookback's transactions, and a day's more
    # for a label reported before its transaction's time (it counts from the transaction's)
    ins={VALIDATED_TRANSACTIONS: with_lookback, "fraud_labels": labels_input(-(LOOKBACK_DAYS + 1), -1)},
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
    validated_transactions: pd.DataFrame,
    fraud_labels: pd.DataFrame,
    label_feed: LabelFeedResource,
) -> pd.DataFrame:
    history = validated_transactions
    labels = join_labels(history, fed_labels(fraud_labels), label_feed.genuine_after())
    features = add_history_features(history, labels=labels.events)
    rows = features.loc[_in_window(features, context)]
    keep = [col for col in CARRIED if col in rows] + [f for f in HISTORY_FEATURES if f in rows]
    out = rows[keep].reset_index(drop=True)

    present = available_history_features(history.columns, labels=True)
    left_out = [f for f in HISTORY_FEATURES if f not in present]
    meta = {
        "dagster/row_count": len(out),
        "features": dg.MetadataValue.json(list(present)),
        "features_left_out": dg.MetadataValue.json(left_out),
        "history_from": dg.MetadataValue.text(str(history[c.TIMESTAMP].min()) if len(history) else "none"),
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
    ins={VALIDATED_TRANSACTIONS: with_lookback, "fraud_labels": labels_input(-(LOOKBACK_DAYS + 1), 0)},
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
    validated_transactions: pd.DataFrame,
    fraud_labels: pd.DataFrame,
    label_feed: LabelFeedResource,
) -> pd.DataFrame:
    labels = join_labels(validated_transactions, fed_labels(fraud_labels), label_feed.genuine_after())
    frames = []
    for key in context.partition_keys:
        as_of = pd.Timestamp(key) + pd.Timedelta(days=1)
        snapshot = MerchantRiskSnapshot.compute(validated_transactions, as_of, labels.events).to_frame()
        frames.append(snapshot.assign(**{PARTITION_DATE: key}))
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
