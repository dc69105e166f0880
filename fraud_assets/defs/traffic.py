"""The scoring API's captured traffic becomes partitions: filed by day, then ingested.

`captured_traffic_sensor` (on by default) reads the capture feed after its cursor (both streams,
`fraud_assets.core.capture`), files each row under its day in the pipeline's storage (the external
assets `api_transactions` and `api_labels`), lets the feed drop what is filed, and stores its
cursor; for the days that received transactions it launches `ingest_transactions` with
``source: api`` (each day's stored rows kept, its API rows read again from the filed files:
a transaction id is kept once, so a re-run, a retry or a record filed twice adds nothing).

How far behind it is shows in the UI: each tick that finds records observes `api_transactions`
(`api_labels`) with the records that were waiting, the age of the oldest, and what is left for the
next tick; a tick without records says so in its skip message.
"""

from __future__ import annotations

import hashlib
import json

import dagster as dg

from fraud_assets.core.capture import FILED_FOLDERS, LABELS, STREAMS, TRANSACTIONS, file_records
from fraud_assets.core.contract import RAW_TRANSACTIONS
from fraud_assets.defs.labels import ingest_labels_job
from fraud_assets.defs.partitions import daily_partitions
from fraud_assets.defs.resources import CapturedTrafficResource
from fraud_assets.defs.sensors import RANGE_END, RANGE_START, ingest_transactions_job

TRAFFIC_TAG = "fraudops/captured_traffic"
MAX_RECORDS = 20_000  # records filed per stream and tick (a record: one model call, up to 1,000 rows)
PENDING = (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING)

api_transactions = dg.AssetSpec(
    FILED_FOLDERS[TRANSACTIONS],
    group_name="ingestion",
    partitions_def=daily_partitions,
    kinds={"json"},
    description=(
        "The transactions the scoring API scored, captured before it answered (FRAUDOPS_CAPTURE) and "
        "filed by their day by `captured_traffic_sensor`: the rows as the API validated them, with the "
        "transaction id it answered and `received_at`. Read by `raw_transactions` (source `api`). Its "
        "observations say how far behind the sensor is (records waiting, age of the oldest)."
    ),
)
api_labels = dg.AssetSpec(
    FILED_FOLDERS[LABELS],
    group_name="ingestion",
    partitions_def=daily_partitions,
    kinds={"json"},
    description=(
        "The labels posted to the scoring API (POST /labels), captured before it answered and filed by "
        "the day they were reported by `captured_traffic_sensor`."
    ),
)

# The job each stream's filed days launch, with its run config (a stream without one is filed only).
STREAM_JOBS: dict[str, tuple[dg.UnresolvedAssetJobDefinition, dict]] = {
    TRANSACTIONS: (ingest_transactions_job, {"ops": {RAW_TRANSACTIONS: {"config": {"source": "api"}}}}),
    LABELS: (ingest_labels_job, {}),
}


@dg.sensor(
    jobs=[job for job, _ in STREAM_JOBS.values()],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Files the scoring API's captured transactions and labels (FRAUDOPS_CAPTURE) by day, then "
        "launches `ingest_transactions` (source: api) for the days that received transactions, so the "
        "traffic the model saw becomes `raw_transactions` and `validated_transactions`, each "
        "transaction once. Observes `api_transactions`/`api_labels` with its lag."
    ),
)
def captured_traffic_sensor(context: dg.SensorEvaluationContext, captured_traffic: CapturedTrafficResource):
    feed = captured_traffic.open()
    if feed is None:
        return dg.SensorResult(skip_reason="FRAUDOPS_CAPTURE is off: the API's traffic is not captured")
    state: dict[str, str | None] = json.loads(context.cursor) if context.cursor else {}
    storage = captured_traffic.location()
    requests: list[dg.RunRequest] = []
    events: list[dg.AssetObservation | dg.AssetMaterialization] = []
    notes: list[str] = []
    first_key = daily_partitions.get_first_partition_key()
    last_key = daily_partitions.get_last_partition_key()
    try:
        for stream in STREAMS:
            cursor = state.get(stream)
            lag = feed.lag(stream, cursor)
            if not lag.records:
                continue
            batch = feed.read(stream, cursor, MAX_RECORDS)
            filing = file_records(storage, stream, batch.records)
            state[stream] = batch.cursor
            feed.release(stream, batch.cursor)  # filed: the feed may drop it
            for problem in filing.unreadable:
                context.log.error(f"capture feed {feed.where}, {stream}: unreadable record {problem}")
            inside = {d: n for d, n in filing.days.items() if first_key and first_key <= d <= (last_key or d)}
            outside = sorted(set(filing.days) - set(inside))
            if outside:
                notes.append(
                    f"{stream}: rows for {outside[:5]} are filed but outside the partitions "
                    f"{first_key}..{last_key} (set FRAUDOPS_START_DATE to ingest earlier days)"
                )
                context.log.warning(notes[-1])
            asset = FILED_FOLDERS[stream]
            age = lag.oldest_age_seconds()
            events.append(
                dg.AssetObservation(
                    asset_key=asset,
                    metadata={
                        "records_waiting": lag.records,
                        "oldest_waiting_seconds": round(age, 3) if age is not None else 0.0,
                        "records_filed": len(batch.records),
                        "rows_filed": sum(filing.days.values()),
                        "records_left": max(0, lag.records - len(batch.records)),
                        "unreadable_records": len(filing.unreadable),
                        "days": dg.MetadataValue.json(filing.days),
                        "feed": feed.where,
                    },
                )
            )
            events += [
                dg.AssetMaterialization(asset_key=asset, partition=day, metadata={"rows_filed": rows})
                for day, rows in sorted(inside.items())
            ]
            notes.append(f"{stream}: {sum(filing.days.values())} rows filed for {len(filing.days)} day(s)")
            if stream in STREAM_JOBS and inside:
                requests += _run_requests(context, stream, sorted(inside), batch.cursor or "")
    finally:
        feed.close()
    cursor = json.dumps(state, sort_keys=True)
    if requests:
        return dg.SensorResult(run_requests=requests, cursor=cursor, asset_events=events)
    skip = "; ".join(notes) if notes else f"caught up: no new records in {captured_traffic.feed}"
    return dg.SensorResult(skip_reason=skip, cursor=cursor, asset_events=events)


def _run_requests(
    context: dg.SensorEvaluationContext, stream: str, days: list[str], cursor: str
) -> list[dg.RunRequest]:
    """One run per range of consecutive days, except days a queued run of this sensor will read
    anyway (it reads the filed files when it starts)."""
    job, run_config = STREAM_JOBS[stream]
    pending = set()
    for run in context.instance.get_runs(
        filters=dg.RunsFilter(job_name=job.name, statuses=list(PENDING), tags={TRAFFIC_TAG: stream})
    ):
        start, end = run.tags.get(RANGE_START), run.tags.get(RANGE_END)
        if start and end:
            pending.update(day for day in daily_partitions.get_partition_keys() if start <= day <= end)
    wanted = [day for day in days if day not in pending]
    keys = daily_partitions.get_partition_keys()
    ranges: list[list[str]] = []
    for day in wanted:
        if ranges and keys.index(day) == keys.index(ranges[-1][-1]) + 1:
            ranges[-1].append(day)
        else:
            ranges.append([day])
    digest = hashlib.sha256(cursor.encode()).hexdigest()[:16]
    return [
        dg.RunRequest(
            run_key=f"traffic-{stream}-{digest}-{span[0]}",
            job_name=job.name,
            run_config=run_config,
            tags={RANGE_START: span[0], RANGE_END: span[-1], TRAFFIC_TAG: stream},
        )
        for span in ranges
    ]
