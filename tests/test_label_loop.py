"""The production loop's labels, end to end, with the scoring API as a real process: traffic is
posted, labels too (some before their transactions, some reversing earlier ones, one reported
after training time); the capture sensor files both, its runs ingest them, and after
`train_models` the new training data holds exactly the labelled API transactions, each with its
latest label as of training time. Embedded (a local capture folder) and with the cluster
profile's stream (a real Redis server)."""

from __future__ import annotations

import datetime as dt
import os

import dagster as dg
import httpx
import pandas as pd
import pytest

from fraud_assets.core import columns as c
from fraud_assets.core.labels import LABEL_SOURCE
from fraud_assets.defs.resources import CapturedTrafficResource, TransactionSimulatorResource
from fraud_assets.defs.sensors import RANGE_END, RANGE_START
from fraud_assets.defs.traffic import api_labels, api_transactions, captured_traffic_sensor
from fraud_assets.replay import replay
from fraud_assets.services.testing import redis_server, start_api, stop_processes
from tests.test_serving import home, world  # noqa: F401  (fixtures: the API's champion and population)
from tests.test_training_assets import CANDIDATES, QUICK, platform_defs

pytestmark = pytest.mark.slow
TODAY = dt.date.today()
HISTORY = (TODAY - dt.timedelta(days=50), TODAY - dt.timedelta(days=6))  # generated, before the API's days
NOW = pd.Timestamp(TODAY)  # training time: the end of yesterday, the API traffic's last day


@pytest.fixture(params=["local", "redis"])
def capture_feed(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path / "capture")
        return
    with redis_server() as url:
        yield url


def pipeline(tmp_path, feed: str) -> dg.Definitions:
    """The platform's assets with the capture sensor; the generator is the API's population."""
    base = platform_defs(tmp_path)
    return dg.Definitions(
        assets=[*base.assets, api_transactions, api_labels],
        asset_checks=base.asset_checks,
        jobs=base.jobs,
        sensors=[captured_traffic_sensor],
        resources={
            **base.resources,
            "simulator": TransactionSimulatorResource(n_cardholders=300, seed=7),  # the serving world's
            "captured_traffic": CapturedTrafficResource(feed=feed, storage=str(tmp_path / "storage")),
        },
    )


def run(defs, instance, job, tags=None, run_config=None) -> None:
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, tags=tags or {}, run_config=run_config, raise_on_error=False
    )
    assert result.success, [e.message for e in result.all_events if e.is_failure][:3]


def label(tid: str, name: str, fraud: bool, at: pd.Timestamp, source: str = "analyst") -> dict:
    return {
        "label_id": f"{name}-{tid}",
        "transaction_id": tid,
        "is_fraud": fraud,
        "reported_at": at.isoformat(),
        "source": source,
    }


# A safety cap, not a speed check: history, an API process, two ingests and a training run take
# 3-7 minutes on 2 cores depending on what else runs; the suite's default cap is 10.
@pytest.mark.timeout(1800)
def test_labelled_api_traffic_is_the_new_training_data_with_its_latest_labels(
    world,  # noqa: F811
    home,  # noqa: F811
    tmp_path,
    capture_feed,
):
    defs = pipeline(tmp_path / "pipeline", capture_feed)
    live = world["live"]  # the population's last 5 days: what the API sees, never generated here
    assert live[c.TIMESTAMP].min() >= pd.Timestamp(HISTORY[1] + dt.timedelta(days=1))
    ids = live[c.TRANSACTION_ID].to_numpy()
    at = dict(zip(ids, live[c.TIMESTAMP], strict=True))
    early, charged, reversed_, genuine, too_late = (
        ids[:20],
        ids[100:140],
        ids[100:110],
        ids[200:215],
        ids[300:305],
    )
    hour = pd.Timedelta(hours=1)
    # the latest label of each as of training time: what the training data must hold
    expected = {tid: 1 for tid in early} | {tid: 1 for tid in charged} | {tid: 0 for tid in reversed_}
    expected |= {tid: 0 for tid in genuine}

    with dg.instance_for_test() as instance:
        span = {RANGE_START: HISTORY[0].isoformat(), RANGE_END: HISTORY[1].isoformat()}
        for job in ("ingest_transactions", "ingest_labels", "build_features"):
            run(defs, instance, job, span)

        env = {
            **os.environ,
            "DAGSTER_HOME": str(home[0]),
            "FRAUDOPS_STORAGE": str(world["storage"]),
            "FRAUDOPS_PREDICTION_LOG_DIR": str(tmp_path / "predictions"),
            "FRAUDOPS_CAPTURE": capture_feed,
            "FRAUDOPS_MODEL_POLL_SECONDS": "3600",
        }
        proc, base = start_api(env, tmp_path / "api.log")
        try:
            with httpx.Client(base_url=base, timeout=30) as client:
                # labels that arrive before their transactions: they wait, then join
                body = {"labels": [label(t, "early", True, at[t] + hour, "chargeback") for t in early]}
                assert client.post("/labels", json=body).status_code == 200
                report = replay(live, base, rate=5000, batch=50, clients=2, labels="none")
                assert not report.failed and set(report.answered) == set(ids)
                later = [label(t, "cb", True, at[t] + 2 * hour, "chargeback") for t in charged]
                later += [label(t, "rev", False, at[t] + 30 * hour, "reversal") for t in reversed_]
                later += [label(t, "ok", False, at[t] + hour) for t in genuine]
                later += [label(t, "late", True, NOW + 10 * hour) for t in too_late]  # after training
                assert client.post("/labels", json={"labels": later}).status_code == 200
                assert client.post("/labels", json={"labels": later[:5]}).status_code == 200  # a retry
        finally:
            stop_processes(proc)

        traffic = {"captured_traffic": defs.resources["captured_traffic"]}  # what the sensor uses
        context = dg.build_sensor_context(instance=instance, definitions=defs, resources=traffic)
        filed = captured_traffic_sensor.evaluate_tick(context)
        assert filed.run_requests, filed.skip_message
        for request in sorted(filed.run_requests, key=lambda r: r.job_name != "ingest_transactions"):
            run(defs, instance, request.job_name, request.tags, request.run_config)
        days = sorted({str(d) for d in live[c.TIMESTAMP].dt.date})
        run(defs, instance, "build_features", {RANGE_START: days[0], RANGE_END: days[-1]})
        config = {"ops": {name: {"config": QUICK} for name in CANDIDATES}}
        config["ops"]["training_data"] = {"config": {"warmup_days": 0}}
        run(defs, instance, "train_models", run_config=config)
        meta = instance.get_latest_materialization_event(dg.AssetKey("training_data")).asset_materialization

    assert pd.Timestamp(meta.metadata["labels_as_of"].value) == NOW
    training = pd.read_parquet(tmp_path / "pipeline" / "storage" / "training_data.parquet")
    from_api = training[training["source"] == "api"].set_index(c.TRANSACTION_ID)
    assert from_api[c.IS_FRAUD].astype(int).to_dict() == expected
    assert (from_api.loc[list(reversed_), LABEL_SOURCE] == "reversal").all()
    assert (from_api.loc[list(early), LABEL_SOURCE] == "chargeback").all()
    assert (training["source"] == "generator").sum() > 0  # the history it learned from before
