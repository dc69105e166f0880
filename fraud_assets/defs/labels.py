"""The label feed: `fraud_labels`, partitioned by the day the labels became known.

Fed by the labels posted to the scoring API (``POST /labels``, captured and filed by day as
`api_labels`), by the generator's chargebacks (filed the same way when `raw_transactions`
generates a day) and by label files in the labels folder (`FRAUDOPS_LABELS_DIR`, picked up by
`label_files_sensor`). Each partition holds every label reported that day, each label id once;
file rows that fail a check go to `rejected_labels` with the reason, like transactions.

The labels are not joined to their transactions here: every reader joins them as of its own
time (`fraud_assets.core.labels`), so a label that arrives before its transaction simply waits.
Each partition's metadata says how its labels stand when it is materialized: joined, still
waiting for their transaction, superseding an earlier label (a reversal), overturning the
genuine-by-silence label (a chargeback after the label delay), and the delay from transaction
to label (median, p90).
"""

import dagster as dg
import numpy as np
import pandas as pd

from fraud_assets.core import columns as c
from fraud_assets.core.capture import FILED_FOLDERS, LABELS, read_filed
from fraud_assets.core.contract import partition_location
from fraud_assets.core.label_files import check_label_files, covered_days
from fraud_assets.core.labels import (
    API_SOURCE,
    FEED_API,
    REPORTED_AT,
    SOURCE,
    LabelCheck,
    check_labels,
    empty_labels,
    join_labels,
    stored_labels,
)
from fraud_assets.core.validation import FAILED_CHECKS, PARTITION_DATE, REJECTION_REASON
from fraud_assets.defs.label_feed import FRAUD_LABELS
from fraud_assets.defs.metadata import preview
from fraud_assets.defs.partitions import PartitionStartResource, daily_partitions, single_run
from fraud_assets.defs.resources import CapturedTrafficResource, LabelFeedResource
from fraud_assets.defs.sensors import new_file_runs

REJECTED_LABELS = "rejected_labels"
API_LABELS = FILED_FOLDERS[LABELS]
# How far back a partition looks for the transactions its labels are for, and for the earlier
# labels they may supersede (the generator's chargebacks come within 60 days).
JOIN_DAYS = 90
# What the join reads of each validated day.
JOIN_COLUMNS = [c.TRANSACTION_ID, c.TIMESTAMP, c.IS_FRAUD, c.LABEL_KNOWN_AT]


def _days_before(days: list[str], count: int) -> list[str]:
    first = pd.Timestamp(days[0])
    return [(first - pd.Timedelta(days=n)).date().isoformat() for n in range(count, 0, -1)]


def stored_history(captured_traffic: CapturedTrafficResource, days: list[str]) -> pd.DataFrame:
    """The stored `fraud_labels` of ``days`` (those materialized): the labels a new day's may
    repeat (a retry posted days later) or supersede."""
    root = captured_traffic.location()
    paths = [partition_location(root, FRAUD_LABELS, day) for day in days]
    frames = [path.read_parquet() for path in paths if path.exists()]
    return pd.concat(frames, ignore_index=True) if frames else empty_labels()


def read_sources(
    days: list[str], label_feed: LabelFeedResource, captured_traffic: CapturedTrafficResource
) -> LabelCheck:
    """Every label reported on ``days``: filed (the API's, the generator's) and from label files,
    checked (the filed ones were checked when posted; a damaged one is rejected all the same)."""
    filed = read_filed(captured_traffic.location(), LABELS, days)
    api = check_labels(
        pd.DataFrame.from_records(filed)
        if filed
        else pd.DataFrame(columns=[c.TRANSACTION_ID, c.IS_FRAUD, REPORTED_AT]),
        feed=FEED_API,
        default_source=API_SOURCE,
    )
    files = check_label_files(label_feed.files(), label_feed.reading, days)
    valid = pd.concat([api.valid, files.valid], ignore_index=True)
    rejected = pd.concat(
        [frame for frame in (api.rejected, files.rejected) if len(frame)] or [files.rejected]
    )
    return LabelCheck(valid, rejected.reset_index(drop=True), api.failures + files.failures)


def _partition_metadata(
    day_labels: pd.DataFrame, at: np.ndarray, join, times: np.ndarray, rejected: int
) -> dict:
    """How one day's labels stand: joined, waiting, superseding, after the silence, and delays."""
    rows = join.row[at]
    joined = rows >= 0
    delays = (
        day_labels[REPORTED_AT].to_numpy("datetime64[ms]")[joined]
        - times[rows[joined]].astype("datetime64[ms]")
    ) / np.timedelta64(1, "D")
    meta: dict = {
        "dagster/row_count": len(day_labels),
        "labels": len(day_labels),
        "labels_joined": int(joined.sum()),
        "labels_waiting": int((~joined).sum()),
        "labels_superseding": int(join.supersedes[at].sum()),
        "labels_after_silence": int(join.after_silence[at].sum()),
        "frauds": int(day_labels[c.IS_FRAUD].sum()),
        "rejected": rejected,
        "by_source": dg.MetadataValue.json(day_labels[SOURCE].astype(str).value_counts().to_dict()),
    }
    if len(delays):
        meta["label_delay_median_days"] = dg.MetadataValue.float(round(float(np.median(delays)), 3))
        meta["label_delay_p90_days"] = dg.MetadataValue.float(round(float(np.percentile(delays, 90)), 3))
    return meta


@dg.multi_asset(
    outs={
        FRAUD_LABELS: dg.AssetOut(
            group_name="labels",
            kinds={"pandas", "parquet"},
            metadata={"partition_expr": PARTITION_DATE},
            description=(
                "Every label reported on the day (the partition: when it became known): transaction id, "
                "is_fraud, reported_at, source (chargeback, analyst, ...), reason, the feed it came by "
                "(api, file, generator), each label id once. Readers take a transaction's latest label "
                "reported before their own time; one with none within the label delay counts as genuine."
            ),
        ),
        REJECTED_LABELS: dg.AssetOut(
            group_name="labels",
            kinds={"pandas", "parquet"},
            metadata={"partition_expr": PARTITION_DATE},
            description=(
                "Label rows that failed a check, exactly as received (as text), with `failed_checks` "
                "(column:check) and a readable `rejection_reason`."
            ),
        ),
    },
    ins={
        "validated_transactions": dg.AssetIn(
            partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-JOIN_DAYS, end_offset=0),
            metadata={"allow_missing_partitions": True, "empty_when_missing": True, "columns": JOIN_COLUMNS},
        )
    },
    deps=[API_LABELS],
    partitions_def=daily_partitions,
    backfill_policy=single_run,
)
def collect_labels(
    context: dg.AssetExecutionContext,
    validated_transactions: pd.DataFrame,
    label_feed: LabelFeedResource,
    captured_traffic: CapturedTrafficResource,
):
    days = list(context.partition_keys)
    history = stored_history(captured_traffic, _days_before(days, JOIN_DAYS))
    if not len(validated_transactions.columns):  # no transaction ingested yet: every label waits
        validated_transactions = pd.DataFrame(
            {
                c.TRANSACTION_ID: pd.Series([], dtype=object),
                c.TIMESTAMP: pd.Series([], dtype="datetime64[ns]"),
            }
        )
    sources = read_sources(days, label_feed, captured_traffic)
    # each label id once, the earliest reported: an id already stored on an earlier day is a retry
    both = [frame for frame in (history, sources.valid) if len(frame)]
    labels = stored_labels(pd.concat(both, ignore_index=True) if both else sources.valid)
    join = join_labels(validated_transactions, labels, label_feed.genuine_after())
    joined = join.labels  # the same labels, in join order
    mine = joined[PARTITION_DATE].isin(days).to_numpy()
    out = joined[mine].reset_index(drop=True)
    rejected = sources.rejected
    if len(rejected):
        rejected = rejected[rejected[PARTITION_DATE].isin(days)].reset_index(drop=True)
    times = validated_transactions[c.TIMESTAMP].to_numpy("datetime64[ms]")
    for day in days:
        at = np.flatnonzero(mine & (joined[PARTITION_DATE] == day).to_numpy())
        day_rejected = int((rejected[PARTITION_DATE] == day).sum()) if len(rejected) else 0
        context.add_asset_metadata(
            _partition_metadata(joined.iloc[at], at, join, times, day_rejected),
            asset_key=FRAUD_LABELS,
            partition_key=day,
        )
        context.add_asset_metadata(
            {"dagster/row_count": day_rejected}, asset_key=REJECTED_LABELS, partition_key=day
        )
    context.add_asset_metadata(
        {
            "label_delay_days": label_feed.label_delay_days,
            "labels_folder": dg.MetadataValue.path(label_feed.path),
            "preview": preview(out),
        },
        asset_key=FRAUD_LABELS,
    )
    context.add_asset_metadata(
        {
            "preview": preview(rejected[[c.TRANSACTION_ID, FAILED_CHECKS, REJECTION_REASON]])
            if len(rejected)
            else preview(rejected)
        },
        asset_key=REJECTED_LABELS,
    )
    yield dg.Output(out, FRAUD_LABELS)
    yield dg.Output(rejected if len(rejected) else _no_rejections(), REJECTED_LABELS)


def _no_rejections() -> pd.DataFrame:
    return pd.DataFrame(
        {
            col: pd.Series([], dtype=object)
            for col in (c.TRANSACTION_ID, FAILED_CHECKS, REJECTION_REASON, PARTITION_DATE)
        }
    )


ingest_labels_job = dg.define_asset_job(
    "ingest_labels",
    selection=dg.AssetSelection.assets(FRAUD_LABELS, REJECTED_LABELS),
    description="The labels reported on a range of days (API, generator, label files), in one run.",
)


@dg.sensor(
    job=ingest_labels_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Watches the labels folder (FRAUDOPS_LABELS_DIR, default data/landing/labels). Each new or "
        "rewritten CSV/Parquet label file launches one run of `ingest_labels` for the days its "
        "labels were reported."
    ),
)
def label_files_sensor(
    context: dg.SensorEvaluationContext,
    label_feed: LabelFeedResource,
    partition_start: PartitionStartResource,
):
    reading = label_feed.reading
    return new_file_runs(
        context,
        label_feed.files(),
        lambda path: covered_days(path, reading),
        run_config={},
        what="label files",
        partition_start=partition_start,
    )
