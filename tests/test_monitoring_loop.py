"""The closed loop on small data: drift appears, the report goes critical, the sensor retrains once,
the gate decides, and only a better model becomes champion. The sensor is evaluated against the
instance, never by sleeping."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pandas as pd
import pytest

from fraud_assets.core import columns as c
from fraud_assets.core.champion_history import latest_champion
from fraud_assets.core.labels import join_labels
from fraud_assets.core.registry import ModelRegistry
from fraud_assets.defs.automation import (
    daily_monitoring_job,
    daily_pipeline_job,
    daily_pipeline_schedule,
    drift_retraining_sensor,
)
from fraud_assets.defs.monitoring import daily_drift_report, live_drift_report, model_performance
from fraud_assets.defs.resources import (
    PredictionLogResource,
    ReportStoreResource,
    RetrainingPolicyResource,
    TransactionSimulatorResource,
)
from fraud_assets.defs.sensors import RANGE_END, RANGE_START
from fraud_serving.model_provider import ModelProvider
from fraud_serving.prediction_log import PredictionLogger
from tests.test_training_assets import CANDIDATES, QUICK, platform_defs

# the first 37 days warm up the history; the last 7 hold labels not all in yet
TRAIN_FIRST, TRAIN_LAST = "2026-01-13", "2026-03-28"
DRIFT_FIRST, DRIFT_LAST = "2026-03-29", "2026-04-02"


def loop_defs(tmp_path) -> dg.Definitions:
    base = platform_defs(tmp_path)
    drifted = TransactionSimulatorResource(
        cardholders=500,
        seed=3,
        drift_start=DRIFT_FIRST,
        drift_amount_multiplier=3.0,
        drift_merchant_mix=0.7,
        drift_device_mix=0.8,
        drift_new_pattern=True,
    )
    return dg.Definitions(
        assets=[*base.assets, daily_drift_report, model_performance, live_drift_report],
        asset_checks=base.asset_checks,
        jobs=[*base.jobs, daily_pipeline_job, daily_monitoring_job],
        schedules=[daily_pipeline_schedule],
        sensors=[drift_retraining_sensor],
        resources={
            **base.resources,
            "simulator": drifted,
            "prediction_log": PredictionLogResource(path=str(tmp_path / "predictions")),
            "report_store": ReportStoreResource(path=str(tmp_path / "reports")),
            "retraining": RetrainingPolicyResource(),
        },
    )


def run_days(defs, instance, job, first, last):
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, tags={RANGE_START: first, RANGE_END: last}, raise_on_error=False
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure][:3]
    return result


def train(defs, instance, tags=None):
    run_config = {"ops": {name: {"config": QUICK} for name in CANDIDATES}}
    return defs.resolve_job_def("train_models").execute_in_process(
        instance=instance, run_config=run_config, tags=tags or {}, raise_on_error=False
    )


def tick(defs, instance, cursor=None):
    retraining = {"retraining": defs.resources["retraining"]}  # the sensor's own resource
    context = dg.build_sensor_context(
        instance=instance, definitions=defs, cursor=cursor, resources=retraining
    )
    return drift_retraining_sensor.evaluate_tick(context)


def drift_days(defs, instance, first, last):
    """Drift reports of a range of days, one run per day (drift_report is not a backfill asset)."""
    for day in _days(first, last):
        result = defs.resolve_job_def("daily_monitoring").execute_in_process(
            instance=instance, partition_key=day, raise_on_error=False
        )
        assert result.success, [e.message for e in result.all_events if e.is_failure][:3]


def _days(first, last):
    return [d.date().isoformat() for d in pd.date_range(first, last)]


def level_of(instance, day):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("drift_report"), asset_partitions=[day]), limit=1
    ).records
    return records[0].asset_materialization.metadata["drift_level"].value


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("loop")
    defs = loop_defs(tmp_path)
    with dg.instance_for_test() as instance:
        run_days(defs, instance, "ingest_transactions", TRAIN_FIRST, TRAIN_LAST)
        run_days(defs, instance, "ingest_labels", TRAIN_FIRST, TRAIN_LAST)
        run_days(defs, instance, "build_features", TRAIN_FIRST, TRAIN_LAST)
        first = train(defs, instance)
        assert first.success
        run_days(defs, instance, "ingest_transactions", DRIFT_FIRST, DRIFT_LAST)
        run_days(defs, instance, "ingest_labels", DRIFT_FIRST, DRIFT_LAST)
        run_days(defs, instance, "build_features", DRIFT_FIRST, DRIFT_LAST)
        yield defs, instance, tmp_path


def test_no_critical_report_no_retrain(loop):
    defs, instance, _ = loop
    drift_days(defs, instance, "2026-03-20", "2026-03-21")
    assert {level_of(instance, d) for d in ("2026-03-20", "2026-03-21")} <= {"ok", "warning"}
    result = tick(defs, instance)
    assert result.run_requests == [] and "no new critical" in result.skip_message


def test_drifted_days_trigger_one_retrain_and_the_gate_decides(loop):
    defs, instance, tmp_path = loop
    cursor = tick(defs, instance).cursor  # everything so far has been read
    drift_days(defs, instance, DRIFT_FIRST, DRIFT_LAST)  # a storm: five drifted days
    assert {level_of(instance, d) for d in _days(DRIFT_FIRST, DRIFT_LAST)} == {"critical"}

    first = tick(defs, instance, cursor)
    (request,) = first.run_requests  # one retrain for the whole storm
    assert request.tags["fraudops/trigger"] == "drift_retraining_sensor"
    assert (
        "drift_report" in request.tags["fraudops/evidence"]
        and "critical" in request.tags["fraudops/evidence"]
    )
    assert request.tags["fraudops/critical_reports"] == "5"

    again = tick(defs, instance, first.cursor)
    assert again.run_requests == []  # each report triggers at most once
    drift_days(defs, instance, DRIFT_LAST, DRIFT_LAST)  # a new critical report within the cooldown
    cooled = tick(defs, instance, again.cursor)
    assert cooled.run_requests == [] and "cooldown" in cooled.skip_message
    assert json.loads(cooled.cursor)["last_trigger"] == json.loads(first.cursor)["last_trigger"]

    registry = ModelRegistry(f"sqlite:///{tmp_path}/mlflow.db")
    before = registry.champion()
    api = ModelProvider(lambda: latest_champion(instance))  # what the scoring API does on each poll
    assert api.refresh() and api.current.info.get("mlflow_model_version", before.version) == before.version
    served_before = api.current.version
    retrain = train(defs, instance, tags=request.tags)
    (gate,) = [e for e in retrain.get_asset_check_evaluations() if e.check_name == "champion_gate"]
    after = registry.champion()
    latest = registry.get(str(int(before.version) + 1))
    if gate.passed:  # promoted only because it is at least as good on the same held-out days
        assert after.version == latest.version and retrain.success
        assert latest.tags["champion_gate"].startswith("promoted:")
        assert api.refresh() and api.current.version != served_before  # the API swaps to it
        assert api.current.version == latest.tags["bundle_version"]
    else:
        assert after.version == before.version and not retrain.success
        assert latest.tags["champion_gate"].startswith("rejected:")
        assert not api.refresh() and api.current.version == served_before  # the champion stays
    run = instance.get_run_by_id(retrain.run_id)
    assert run.tags["fraudops/evidence"] == request.tags["fraudops/evidence"]


def test_missing_reference_fails_with_a_clear_message(tmp_path):
    defs = loop_defs(tmp_path)
    with dg.instance_for_test() as instance:
        run_days(defs, instance, "ingest_transactions", "2026-03-01", "2026-03-02")
        run_days(defs, instance, "build_features", "2026-03-01", "2026-03-02")
        result = defs.resolve_job_def("daily_monitoring").execute_in_process(
            instance=instance, partition_key="2026-03-02", raise_on_error=False
        )
        assert not result.success
        text = " ".join(
            err.message
            for event in result.get_step_failure_events()
            for err in _chain(event.step_failure_data.error)
        )
        assert "drift_reference" in text or "champion_model" in text


def _chain(error):
    while error is not None:
        yield error
        error = error.cause


def test_daily_schedule_targets_yesterday(loop):
    defs, instance, _ = loop
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=dt.datetime(2026, 4, 3, 0, 15),
        repository_def=defs.get_repository_def(),
    )
    request = daily_pipeline_schedule.evaluate_tick(context).run_requests[0]
    assert request.partition_key == "2026-04-02"


def write_prediction_log(folder, day: str, features: pd.DataFrame, scores) -> None:
    """Records as the scoring API logs them (its own writer and layout), scored on ``day``: model
    inputs under "features", the score."""
    records = []
    for (_, row), score in zip(features.iterrows(), scores, strict=True):
        inputs = {
            k: (None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)) for k, v in row.items()
        }
        records.append(
            {
                "scored_at": f"{day}T12:00:00+00:00",
                "timestamp": str(row.get("timestamp", "")),
                "transaction_id": "t",
                "fraud_probability": float(score),
                "features": {k: v for k, v in inputs.items() if k != "timestamp"},
            }
        )
    logger = PredictionLogger(folder)
    logger.start()
    logger.submit(records)
    assert logger.flush()
    logger.close()


def test_live_traffic_gets_the_same_drift_report(loop):
    from fraud_assets.core.bundle import ModelBundle
    from fraud_assets.core.evaluation import fraud_scores
    from fraud_assets.core.features import FEATURE_COLUMNS

    defs, instance, tmp_path = loop
    champion = instance.get_latest_materialization_event(dg.AssetKey("champion_model")).asset_materialization
    bundle = ModelBundle.load(champion.metadata["bundle_uri"].value, champion.metadata["bundle_sha256"].value)
    for day in ("2026-03-27", DRIFT_LAST):
        features = pd.read_parquet(tmp_path / "storage" / "transaction_features" / f"{day}.parquet")
        scores = fraud_scores(bundle.preprocessor, bundle.classifier, features)
        write_prediction_log(
            tmp_path / "predictions", day, features[[c for c in FEATURE_COLUMNS if c in features]], scores
        )
        result = defs.resolve_job_def("__ASSET_JOB").execute_in_process(
            instance=instance,
            partition_key=day,
            asset_selection=[dg.AssetKey("live_drift_report")],
            raise_on_error=False,
        )
        assert result.success
    levels = {}
    for day in ("2026-03-27", DRIFT_LAST):
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("live_drift_report"), asset_partitions=[day]), limit=1
        ).records[0]
        levels[day] = record.asset_materialization.metadata["drift_level"].value
    assert levels["2026-03-27"] in ("ok", "warning") and levels[DRIFT_LAST] == "critical"
    (live_check,) = result.get_asset_check_evaluations()  # the last day's: critical
    assert live_check.check_name == "live_drift_below_critical" and not live_check.passed
    assert live_check.severity == dg.AssetCheckSeverity.ERROR
    missing = defs.resolve_job_def("__ASSET_JOB").execute_in_process(
        instance=instance,
        partition_key="2026-03-26",
        asset_selection=[dg.AssetKey("live_drift_report")],
        raise_on_error=False,
    )
    assert not missing.success
    text = " ".join(
        err.message for e in missing.get_step_failure_events() for err in _chain(e.step_failure_data.error)
    )
    assert "no scored transactions logged for 2026-03-26" in text


def materialize(defs, instance, asset: str, day: str, run_config=None):
    result = defs.resolve_job_def("__ASSET_JOB").execute_in_process(
        instance=instance,
        partition_key=day,
        asset_selection=[dg.AssetKey(asset)],
        run_config=run_config or {},
        raise_on_error=False,
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure][:3]
    return result


def test_drift_check_warns_above_warning_errs_above_critical_and_only_critical_retrains(loop):
    defs, instance, _ = loop
    state = json.loads(tick(defs, instance).cursor)  # every report so far has been read
    cursor = json.dumps({**state, "last_trigger": None})  # and no cooldown is running
    outcomes = {}
    # The drifted day's score is 0.46 to 0.58 (docs/drift.md): thresholds around it set its level.
    for warning, critical in ((0.9, 0.95), (0.1, 0.95), (0.1, 0.2)):
        config = {"ops": {"drift_report": {"config": {"warning": warning, "critical": critical}}}}
        result = materialize(defs, instance, "drift_report", DRIFT_LAST, config)  # never fails the run
        (check,) = result.get_asset_check_evaluations()
        level = check.metadata["drift_level"].value
        outcomes[level] = check.passed, (None if check.passed else check.severity)
        after = tick(defs, instance, cursor)
        assert len(after.run_requests) == (level == "critical"), (level, after.skip_message)
        cursor = json.dumps({**json.loads(after.cursor), "last_trigger": None})
    assert outcomes == {
        "ok": (True, None),
        "warning": (False, dg.AssetCheckSeverity.WARN),
        "critical": (False, dg.AssetCheckSeverity.ERROR),
    }


def test_performance_leaves_out_the_days_the_champion_was_trained_on(loop):
    from fraud_assets.core.bundle import ModelBundle

    defs, instance, tmp_path = loop
    champion = instance.get_latest_materialization_event(dg.AssetKey("champion_model")).asset_materialization
    bundle = ModelBundle.load(champion.metadata["bundle_uri"].value, champion.metadata["bundle_sha256"].value)
    trained_until = pd.Timestamp(bundle.training_window[1])

    def report(day: pd.Timestamp):
        materialize(defs, instance, "model_performance", day.date().isoformat())
        record = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("model_performance"), asset_partitions=[day.date().isoformat()]
            ),
            limit=1,
        ).records[0]
        return {k: v.value for k, v in record.asset_materialization.metadata.items()}

    # The week 8-14 days back lies entirely within the training days: nothing to judge.
    inside = report(trained_until + pd.Timedelta(days=8))
    assert (
        inside["level"] == "unknown" and inside["labelled_rows"] == 0 and inside["left_out_training_rows"] > 0
    )
    # Two days of the week after the training days: only those are scored; the rest is counted.
    day = trained_until + pd.Timedelta(days=10)
    # A retrain earlier in this module moves the champion's training days later than the
    # fixture's data: the days the week and its labels need are built first.
    week_end, loaded_until = day - pd.Timedelta(days=8), pd.Timestamp(DRIFT_LAST)
    if week_end > loaded_until:
        more = (loaded_until + pd.Timedelta(days=1)).date().isoformat()
        run_days(defs, instance, "ingest_transactions", more, week_end.date().isoformat())
        run_days(defs, instance, "build_features", more, week_end.date().isoformat())
    if day > loaded_until:
        more = (loaded_until + pd.Timedelta(days=1)).date().isoformat()
        run_days(defs, instance, "ingest_labels", more, day.date().isoformat())
    straddling = report(day)
    week = pd.concat(
        pd.read_parquet(tmp_path / "storage" / "transaction_features" / f"{d.date()}.parquet")
        for d in pd.date_range(day - pd.Timedelta(days=14), day - pd.Timedelta(days=8))
    ).reset_index(drop=True)
    fed = pd.concat(  # the labels reported by the day's end, from the label feed
        pd.read_parquet(path)
        for path in sorted((tmp_path / "storage" / "fraud_labels").glob("*.parquet"))
        if path.stem <= day.date().isoformat()
    )
    now = join_labels(week, fed, pd.Timedelta(days=7)).events.as_of(day + pd.Timedelta(days=1))
    known = pd.Series(now.labelled(), index=week.index)
    unseen = week[c.TIMESTAMP] >= trained_until + pd.Timedelta(days=1)
    assert straddling["labelled_rows"] == int((known & unseen).sum()) > 0
    assert straddling["left_out_training_rows"] == int((known & ~unseen).sum()) > 0
