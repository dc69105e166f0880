"""When things run by themselves: the daily pipeline, weekly retraining, and drift-triggered retraining.

Defaults (documented in the README): the daily pipeline (generator data), the weekly retraining
and the drift sensor are on, so a running `dagster dev` keeps data, drift reports and the
champion current. Weekly retraining is how fraud teams keep up with fraud that changes without
moving any monitored distribution: every week the recipe is re-selected on prequential folds and
refit on every label known by then (the label delay is the only gap), and the champion gate
decides whether it is served;
`daily_monitoring` is the schedule to switch on instead of the daily pipeline when the data comes
from the landing folder.
"""

import datetime as dt
import json

import dagster as dg

from fraud_assets.defs.registry import training_job
from fraud_assets.defs.resources import RetrainingPolicyResource

MONITORED_REPORTS = ("drift_report", "model_performance", "live_drift_report")
CRITICAL = "critical"

daily_pipeline_job = dg.define_asset_job(
    "daily_pipeline",
    selection=dg.AssetSelection.groups("ingestion", "validation", "labels", "features")
    | dg.AssetSelection.assets("drift_report", "model_performance"),
    description=(
        "Yesterday's generated transactions, validation, the labels reported yesterday, features, "
        "drift report and performance."
    ),
)
daily_monitoring_job = dg.define_asset_job(
    "daily_monitoring",
    selection=dg.AssetSelection.groups("labels", "features")
    | dg.AssetSelection.assets("drift_report", "model_performance"),
    description=(
        "The labels reported yesterday, features, drift report and performance for yesterday "
        "(data from the landing folder)."
    ),
)


def _yesterday(context: dg.ScheduleEvaluationContext) -> str:
    return (context.scheduled_execution_time.date() - dt.timedelta(days=1)).isoformat()


@dg.schedule(
    job=daily_pipeline_job,
    cron_schedule="15 0 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night: yesterday's generated data through validation, features, drift and performance.",
)
def daily_pipeline_schedule(context: dg.ScheduleEvaluationContext):
    day = _yesterday(context)
    return dg.RunRequest(run_key=f"daily-{day}", partition_key=day)


@dg.schedule(
    job=daily_monitoring_job,
    cron_schedule="45 0 * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="For landing-folder data: yesterday's features, drift report and performance.",
)
def daily_monitoring_schedule(context: dg.ScheduleEvaluationContext):
    day = _yesterday(context)
    return dg.RunRequest(run_key=f"monitoring-{day}", partition_key=day)


@dg.schedule(
    job=training_job,
    cron_schedule="0 3 * * 1",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=(
        "Weekly prequential retraining (Mondays 03:00): candidates tuned on time folds, evaluated on "
        "the latest labelled days, the best refit on every label known now; the champion gate "
        "decides what is served."
    ),
)
def weekly_retraining_schedule(context: dg.ScheduleEvaluationContext):
    week = context.scheduled_execution_time.date().isoformat()
    return dg.RunRequest(run_key=f"weekly-{week}", tags={"fraudops/trigger": "weekly"})


def _level(metadata: dict) -> str | None:
    for key in ("drift_level", "level"):
        if key in metadata:
            return str(metadata[key].value)
    return None


@dg.sensor(
    job=training_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Launches retraining (train, evaluate, champion gate) when a drift or performance report "
        "goes critical. Each report is read once (cursor); after a trigger, further critical reports "
        "wait out a cooldown (FRAUDOPS_RETRAIN_COOLDOWN_HOURS). The evidence goes into the run's tags."
    ),
)
def drift_retraining_sensor(context: dg.SensorEvaluationContext, retraining: RetrainingPolicyResource):
    state = json.loads(context.cursor) if context.cursor else {}
    after: dict[str, int] = state.get("after", {})
    last_trigger = dt.datetime.fromisoformat(state["last_trigger"]) if state.get("last_trigger") else None
    critical = []
    for name in MONITORED_REPORTS:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), after_storage_id=after.get(name)),
            limit=1000,
            ascending=True,
        ).records
        for record in records:
            after[name] = record.storage_id
            materialization = record.asset_materialization
            if materialization is not None and _level(materialization.metadata) == CRITICAL:
                critical.append((name, record))
    now = dt.datetime.now(dt.UTC)
    new_state = {"after": after, "last_trigger": state.get("last_trigger")}
    if not critical:
        return dg.SensorResult(
            skip_reason="no new critical drift or performance report", cursor=json.dumps(new_state)
        )
    # A run of drifted days triggers one retrain: later critical reports within the cooldown wait.
    cooldown = retraining.cooldown
    if last_trigger is not None and now - last_trigger < cooldown:
        wait = last_trigger + cooldown
        return dg.SensorResult(
            skip_reason=f"{len(critical)} critical report(s), but retraining was triggered at {last_trigger:%Y-%m-%d %H:%M} UTC; cooldown until {wait:%Y-%m-%d %H:%M} UTC",
            cursor=json.dumps(new_state),
        )
    name, first = critical[0]
    meta = first.asset_materialization.metadata
    score = meta.get("drift_score") or meta.get("auc_roc")
    evidence = f"{name} {first.partition_key or ''} {('score ' + str(score.value)) if score else ''} critical".strip()
    new_state["last_trigger"] = now.isoformat()
    request = dg.RunRequest(
        run_key=f"retrain-{name}-{first.storage_id}",
        tags={
            "fraudops/trigger": "drift_retraining_sensor",
            "fraudops/evidence": evidence,
            "fraudops/critical_reports": str(len(critical)),
            "fraudops/report_storage_id": str(first.storage_id),
        },
    )
    return dg.SensorResult(run_requests=[request], cursor=json.dumps(new_state))
