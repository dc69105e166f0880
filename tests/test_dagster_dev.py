"""The real `dagster dev` (webserver and daemon) serves our asset graph, checks and sensors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fraud_assets.services.devservices import free_port

ROOT = Path(__file__).resolve().parents[1]
DAGSTER = Path(sys.executable).with_name("dagster")

QUERY = """
{
  assetNodes { assetKey { path } groupName
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } } }
  repositoriesOrError { ... on RepositoryConnection { nodes { name
    sensors { name sensorState { status } }
    schedules { name scheduleState { status } } } } }
  instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } }
}
"""


def graphql(port: int, query: str) -> dict:
    body = json.dumps({"query": query}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]


@pytest.mark.slow
def test_dagster_dev_serves_the_asset_graph(tmp_path):
    port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "FRAUDOPS_STORAGE": str(tmp_path / "storage"),
        "FRAUDOPS_LANDING_DIR": str(tmp_path / "landing"),
        "FRAUDOPS_LABELS_DIR": str(tmp_path / "labels"),
    }
    proc = subprocess.Popen(
        [str(DAGSTER), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        data, deadline = None, time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")[-3000:]
            try:
                data = graphql(port, QUERY)
                daemons = data["instance"]["daemonHealth"]["allDaemonStatuses"]
                if data["assetNodes"] and all(d["healthy"] for d in daemons if d["required"]):
                    break
            except (OSError, KeyError, TypeError):
                pass
            time.sleep(2)
        assert data and data["assetNodes"], "dagster dev did not serve the asset graph in time"

        assets = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in data["assetNodes"]}
        expected = {
            "raw_transactions": "ingestion",
            "validated_transactions": "validation",
            "rejected_transactions": "validation",
            "fraud_labels": "labels",
            "rejected_labels": "labels",
            "transaction_features": "features",
            "merchant_risk": "features",
            "training_data": "training",
            "xgboost_model": "models",
            "lightgbm_model": "models",
            "random_forest_model": "models",
            "logistic_regression_model": "models",
            "model_evaluation": "evaluation",
            "challenger_model": "registry",
            "champion_model": "registry",
            "drift_reference": "monitoring",
            "drift_report": "monitoring",
            "model_performance": "monitoring",
            "review_queue": "review",
        }
        assert {k: assets.get(k) for k in expected} == expected
        checks = {
            check["name"]: check["blocking"]
            for node in data["assetNodes"]
            for check in node["assetChecksOrError"].get("checks", [])
        }
        for name in (
            "required_columns_present",
            "nothing_lost",
            "fraud_rate_in_range",
            "rejected_share_within_limit",
        ):
            assert checks.get(name) is True, f"blocking check {name} missing: {checks}"
        sensors = {
            s["name"]: s["sensorState"]["status"]
            for repo in data["repositoriesOrError"]["nodes"]
            for s in repo["sensors"]
        }
        assert sensors.get("landing_files_sensor") == "RUNNING"
        assert sensors.get("label_files_sensor") == "RUNNING"
        assert sensors.get("drift_retraining_sensor") == "RUNNING"
        assert sensors.get("champion_alias_sensor") == "RUNNING"
        assert sensors.get("shadow_decision_sensor") == "RUNNING"
        schedules = {
            s["name"]: s["scheduleState"]["status"]
            for repo in data["repositoriesOrError"]["nodes"]
            for s in repo["schedules"]
        }
        assert schedules == {
            "daily_pipeline_schedule": "RUNNING",
            "daily_monitoring_schedule": "STOPPED",
            "weekly_retraining_schedule": "RUNNING",
            "daily_review_schedule": "RUNNING",
            "compare_shadow_daily": "RUNNING",
        }
        daemons = {
            d["daemonType"]: d["healthy"] for d in data["instance"]["daemonHealth"]["allDaemonStatuses"]
        }
        assert daemons.get("SENSOR") is True, daemons
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
