"""A challenger proven on live traffic, with the scoring API as a real process: the gate holds a
challenger that passed on the held-out days (``FRAUDOPS_GATE_REQUIRES_SHADOW``); the API scores
traffic with it in shadow (its probability in the prediction log, never in the answer); labels
are posted to /labels; `shadow_comparison` compares the two on them and `shadow_decision_sensor`
runs the decision, which promotes the challenger when it ranks the frauds better and refuses it,
the champion staying, when it ranks them worse."""

from __future__ import annotations

import os
import time

import dagster as dg
import httpx
import numpy as np
import pandas as pd
import pytest

from fraud_assets.core import columns as c
from fraud_assets.core.capture import LABELS, decode, open_capture
from fraud_assets.core.champion_history import current_champion, latest_materialization
from fraud_assets.core.contract import SHADOW_COMPARISON
from fraud_assets.core.labels import LABEL_ID, REPORTED_AT, SOURCE, empty_labels
from fraud_assets.core.prediction_log import read_prediction_log
from fraud_assets.core.shadow import DECISION, HOLD, PROMOTE, REFUSE
from fraud_assets.defs.resources import (
    LabelFeedResource,
    ModelRegistryResource,
    PredictionLogResource,
    ShadowEvidenceResource,
)
from fraud_assets.defs.shadow import compare_shadow_job, decide_job, shadow_comparison, shadow_decision_sensor
from fraud_assets.replay import replay
from fraud_assets.services.testing import simulate, start_api, stop_processes, write_storage
from tests.champion_world import DAYS, World
from tests.test_champion_authority import template, world  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow
CHAMPION, CHALLENGER = 0, 2  # bundle indexes: 5 trees serve, 15 trees are registered
LIVE_DAYS = 3  # the world's last days are the API's traffic; the days before, its card history
FRAUDS = 20
EVIDENCE = ShadowEvidenceResource(min_labels=300, min_frauds=15, resamples=50)


def captured_labels(feed: str) -> pd.DataFrame:
    """The labels posted to the API, as `fraud_labels` holds them (the capture feed read directly:
    the label loop's own test covers the way through `api_labels`)."""
    rows = []
    for record in open_capture(feed).read(LABELS, None, 100_000).records:
        rows.extend(decode(LABELS, record.line)[1])
    if not rows:
        return empty_labels()
    frame = pd.DataFrame(rows)
    return pd.DataFrame(
        {
            LABEL_ID: frame[LABEL_ID].astype(str),
            c.TRANSACTION_ID: frame[c.TRANSACTION_ID].astype(str),
            c.IS_FRAUD: frame[c.IS_FRAUD].astype(bool).astype("int8"),
            REPORTED_AT: pd.to_datetime(frame[REPORTED_AT], utc=True).dt.tz_localize(None),
            SOURCE: frame[SOURCE].astype(str),
        }
    )


def shadow_defs(the_world: World, feed: str, predictions: str) -> dg.Definitions:
    registry = ModelRegistryResource(tracking_uri=the_world.tracking_uri, gate_requires_shadow=True)
    base = the_world.defs(registry)

    @dg.asset(name="fraud_labels")
    def fraud_labels() -> pd.DataFrame:
        return captured_labels(feed)

    selection = ("training_data", "challenger_model", "model_evaluation", "champion_model")
    return dg.Definitions(
        assets=[*base.assets, fraud_labels, shadow_comparison],
        asset_checks=base.asset_checks,
        jobs=[
            *base.jobs,
            dg.define_asset_job("train", selection=dg.AssetSelection.assets(*selection)),
            dg.define_asset_job("collect_labels", selection=dg.AssetSelection.assets("fraud_labels")),
            compare_shadow_job,
            decide_job,
        ],
        sensors=[shadow_decision_sensor],
        resources={
            **base.resources,
            "prediction_log": PredictionLogResource(path=predictions),
            "shadow_evidence": EVIDENCE,
            # only the posted labels count: no genuine-by-silence within the test's horizon
            "label_feed": LabelFeedResource(path=str(the_world.root / "labels"), label_delay_days=3650),
        },
    )


def run(defs, instance, job: str, **kwargs):
    return defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False, **kwargs)


def gate_evaluation(result):
    (gate,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "champion_gate"]
    return gate


def compare(defs, instance) -> dict:
    """Labels collected, then `shadow_comparison`: its metadata."""
    assert run(defs, instance, "collect_labels").success
    assert run(defs, instance, "compare_shadow").success
    return latest_materialization(instance, SHADOW_COMPARISON).metadata


def tick(defs, instance):
    registry = defs.resources["model_registry"]
    context = dg.build_sensor_context(instance=instance, resources={"model_registry": registry})
    return shadow_decision_sensor.evaluate_tick(context)


def wait_for(client: httpx.Client, path: str, ready, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(path).json()
        if ready(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def logged(predictions, ids: set[str], timeout: float = 120.0) -> pd.DataFrame:
    """The prediction log once it holds every one of ``ids``."""
    deadline = time.monotonic() + timeout
    while True:
        log = read_prediction_log(predictions)
        if ids <= set(log[c.TRANSACTION_ID]) or time.monotonic() > deadline:
            return log
        time.sleep(0.3)


@pytest.mark.parametrize("challenger_ranks", ["better", "worse"])
def test_a_challenger_held_in_shadow_is_decided_on_labelled_live_traffic(world, tmp_path, challenger_ranks):  # noqa: F811
    instance = world.instance()
    champion, challenger = world.records()[CHAMPION], world.records()[CHALLENGER]
    assert world.promote(instance, CHAMPION).success
    feed, predictions = str(tmp_path / "capture"), str(tmp_path / "predictions")
    defs = shadow_defs(world, feed, predictions)

    # Training registers the challenger; the gate passes it on the held-out days and holds it.
    config = {
        "ops": {name: {"config": {"index": CHALLENGER}} for name in ("challenger_model", "model_evaluation")}
    }
    trained = run(defs, instance, "train", run_config=config)
    held = gate_evaluation(trained)
    assert held.metadata[DECISION].value == HOLD, held.description
    assert held.description.startswith(f"awaiting shadow evidence: no `{SHADOW_COMPARISON}`")
    assert current_champion(instance).version == champion.version  # champion_model did not run
    assert world.registry.gate_verdict(challenger.mlflow_model_version).startswith(
        "held: awaiting shadow evidence"
    )

    raw = simulate(days=DAYS, n_cardholders=300, seed=7, end=pd.Timestamp("2026-03-15").date())
    first_live = raw[c.TIMESTAMP].max().normalize() - pd.Timedelta(days=LIVE_DAYS - 1)
    live = raw[raw[c.TIMESTAMP] >= first_live].drop(columns=[c.IS_FRAUD, c.LABEL_KNOWN_AT], errors="ignore")
    write_storage(raw[raw[c.TIMESTAMP] < first_live], tmp_path / "storage")  # the API's card history
    env = {
        **os.environ,
        "DAGSTER_HOME": str(world.root / "dagster_home"),
        "FRAUDOPS_STORAGE": str(tmp_path / "storage"),
        "FRAUDOPS_PREDICTION_LOG_DIR": predictions,
        "FRAUDOPS_PREDICTION_LOG_FLUSH_SECONDS": "0.2",
        "FRAUDOPS_CAPTURE": feed,
        "FRAUDOPS_MODEL_POLL_SECONDS": "0.2",
    }
    proc, base = start_api(env, tmp_path / "api.log")
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            health = wait_for(client, "/health", lambda h: h["shadow"]["challenger"] == challenger.version)
            assert health["shadow"]["challenger"] == challenger.version, health["shadow"]

            # Traffic: answered by the champion alone; the challenger's scores go to the log.
            ids = live[c.TRANSACTION_ID].astype(str).tolist()
            answer = client.post("/predict/batch", json={"transactions": [_body(live.iloc[0])]})
            assert answer.status_code == 200 and "shadow" not in answer.text
            assert answer.json()["model_version"] == champion.version
            report = replay(live.iloc[1:], base, rate=5000, batch=50, clients=2, labels="none")
            assert not report.failed
            log = logged(predictions, set(ids))
            log = log[log[c.TRANSACTION_ID].isin(ids)].drop_duplicates(c.TRANSACTION_ID)
            assert len(log) == len(ids)
            assert (log["model_version"] == champion.version).all()
            assert (log["shadow_version"] == challenger.version).all() and log[
                "shadow_probability"
            ].notna().all()
            assert not np.allclose(log["shadow_probability"], log["fraud_probability"])  # two models
            shadow = wait_for(client, "/health", lambda h: h["shadow"]["scored"] >= len(ids))["shadow"]
            assert shadow["scored"] >= len(ids) and shadow["failed"] == 0 and shadow["error"] is None
            assert "fraudops_shadow_failures_total 0.0" in client.get("/metrics").text

            # No labels yet: the comparison waits, and so does the decision.
            waiting = compare(defs, instance)
            assert (waiting["labelled"], waiting["enough_evidence"]) == (0, False)
            assert "0 of 300 labelled" in tick(defs, instance).skip_message

            # Labels: the frauds are the transactions one model ranks highest above where the other
            # ranks them (both models agree on which few transactions stand out; their order differs).
            ranks_high, ranks_low = (
                ("shadow_probability", "fraud_probability")
                if challenger_ranks == "better"
                else ("fraud_probability", "shadow_probability")
            )
            log = log.reset_index(drop=True)
            gap = log[ranks_high].rank(pct=True) - log[ranks_low].rank(pct=True)
            frauds = set(log.loc[gap.nlargest(FRAUDS).index, c.TRANSACTION_ID])
            stamps = dict(zip(log[c.TRANSACTION_ID], log[c.TIMESTAMP], strict=True))
            labels = [
                {
                    "label_id": f"decision-{tid}",
                    "transaction_id": tid,
                    "is_fraud": tid in frauds,
                    "reported_at": (stamps[tid] + pd.Timedelta(hours=2)).isoformat(),
                    "source": "analyst",
                }
                for tid in ids
            ]
            for start in range(0, len(labels), 500):
                assert client.post("/labels", json={"labels": labels[start : start + 500]}).status_code == 200

            evidence = compare(defs, instance)
            assert (evidence["labelled"], evidence["frauds"]) == (len(ids), FRAUDS)
            assert evidence["enough_evidence"] is True, evidence
            expected = PROMOTE if challenger_ranks == "better" else REFUSE
            assert evidence[DECISION] == expected, evidence["decision_reason"]
            difference = evidence["difference.average_precision"]
            assert (difference > 0) if challenger_ranks == "better" else (difference < 0), evidence[
                "decision_reason"
            ]
            assert (
                evidence["difference.average_precision.low"]
                <= difference
                <= evidence["difference.average_precision.high"]
            )
            assert "precision_recall" in evidence and evidence["review_capacity"] == 100

            # The sensor runs the decision once; the gate decides on the live evidence.
            request = tick(defs, instance)
            (run_request,) = request.run_requests
            decided = run(defs, instance, "decide_on_shadow_evidence", tags=run_request.tags)
            verdict = gate_evaluation(decided)
            assert verdict.metadata[DECISION].value == expected
            assert verdict.description.startswith("on live traffic, on ")
            assert verdict.metadata["labelled"].value == len(ids)
            tag = world.registry.gate_verdict(challenger.mlflow_model_version)
            if expected == PROMOTE:
                assert decided.success and tag.startswith("promoted: on live traffic")
                record = current_champion(instance)
                assert record.version == challenger.version
                assert record.reason.startswith("champion_gate promoted: on live traffic")
                model = wait_for(client, "/model", lambda m: m["bundle_version"] == challenger.version)
                assert model["bundle_version"] == challenger.version
            else:
                assert not decided.success and tag.startswith("rejected: on live traffic")
                assert current_champion(instance).version == champion.version  # the champion stays
                assert client.get("/model").json()["bundle_version"] == champion.version
            # Either way the challenger is decided: the API stops scoring it in shadow.
            health = wait_for(client, "/health", lambda h: h["shadow"]["challenger"] is None)
            assert health["shadow"]["challenger"] is None
            assert "decided already" in tick(defs, instance).skip_message
    finally:
        stop_processes(proc)


def _body(row: pd.Series) -> dict:
    out = {}
    for key, value in row.items():
        if pd.isna(value):
            continue
        out[key] = (
            value.isoformat()
            if isinstance(value, pd.Timestamp)
            else (value.item() if hasattr(value, "item") else value)
        )
    return out
