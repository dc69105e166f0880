"""One champion: the latest `champion_model` materialization. The gate and the API read it, MLflow's
alias mirrors it and is repaired when it strays (a crash between the two writes, a move by hand),
and a rollback is a new materialization that every reader follows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from fraud_assets import rollback
from fraud_assets.core.candidates import candidates_of
from fraud_assets.core.champion_history import (
    ChampionMaterialization,
    RollbackError,
    current_champion,
    latest_champion,
    rollback_target,
)
from fraud_assets.core.contract import PROMOTION, ROLLBACK, ChampionRecord
from fraud_assets.core.registry import CHAMPION
from fraud_assets.defs.champion import champion_alias_sensor
from fraud_assets.defs.resources import ModelRegistryResource
from fraud_serving.model_provider import ModelProvider
from tests.champion_world import World, copy_template, make_template

ROOT = Path(__file__).resolve().parents[1]
REASON = "v2 flags every online purchase"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("champion_template")
    make_template(root)
    return root


@pytest.fixture
def world(template, tmp_path) -> World:
    root = tmp_path / "world"
    root.mkdir()
    copy_template(template, root)
    return World(root)


def tick(world: World, instance: dg.DagsterInstance) -> str:
    """One evaluation of the mirror sensor, as the daemon runs it; its message."""
    context = dg.build_sensor_context(
        instance=instance,
        resources={"model_registry": ModelRegistryResource(tracking_uri=world.tracking_uri)},
    )
    result = champion_alias_sensor.evaluate_tick(context)
    assert result.run_requests == []
    return result.skip_message


def api_client(world: World, instance: dg.DagsterInstance, poll_seconds: float = 3600):
    from fastapi.testclient import TestClient

    from fraud_serving.app import create_app
    from fraud_serving.settings import Settings

    settings = Settings(
        storage=str(world.root / "storage"),
        prediction_log_dir=str(world.root / "predictions"),
        model_poll_seconds=poll_seconds,
    )
    return TestClient(create_app(settings, source=lambda: latest_champion(instance)))


def test_a_crash_between_the_materialization_and_the_alias_is_repaired_by_the_sensor(world):
    instance = world.instance()
    second = world.records()[1]
    assert world.promote(instance, 0).success
    assert world.registry.alias_version() == "1"

    # Another process promotes bundle 2 and is killed once the materialization is recorded,
    # before the alias moves.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed = subprocess.run(
        [sys.executable, "-m", "tests.champion_world", str(world.root), "1", "kill"],
        cwd=world.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    recorded = [json.loads(line) for line in killed.stdout.splitlines() if line.startswith('{"recorded"')]
    assert len(recorded) == 1

    latest = latest_champion(instance)
    assert latest.storage_id == recorded[0]["recorded"] and latest.champion().version == second.version
    assert world.registry.alias_version() == "1"  # the two writes disagree

    # Serving follows the materialization, not the alias.
    provider = ModelProvider(lambda: latest_champion(instance))
    assert provider.refresh() and provider.current.version == second.version

    message = tick(world, instance)
    assert f"moved the `{CHAMPION}` alias from v1 to the champion, {second.name}" == message
    assert world.registry.alias_version() == "2"
    tags = world.registry.get("2").tags
    assert tags["champion_materialization"] == str(latest.storage_id)
    assert tags["champion_promotion"].startswith(f"{PROMOTION} at {latest.champion().promoted_at}")
    assert tick(world, instance) == f"the `{CHAMPION}` alias names the champion, {second.name}"


def test_an_alias_moved_by_hand_changes_neither_the_gate_nor_serving_and_is_put_back(world):
    instance = world.instance()
    _, second, third = world.records()
    assert world.promote(instance, 0).success and world.promote(instance, 1).success
    assert world.registry.alias_version() == "2"
    world.registry.client.set_registered_model_alias(
        world.registry.model_name, CHAMPION, "1"
    )  # the MLflow UI

    # The gate compares a challenger (bundle 3) with the champion, v2, not with the alias's v1.
    gate_run = (
        world.defs()
        .resolve_job_def("gate")
        .execute_in_process(
            instance=instance,
            run_config={
                "ops": {name: {"config": {"index": 2}} for name in ("challenger_model", "model_evaluation")}
            },
            raise_on_error=False,
        )
    )
    (gate,) = [e for e in gate_run.get_asset_check_evaluations() if e.check_name == "champion_gate"]
    assert gate.metadata["champion_version"].value == "2"
    assert f"challenger {third.name}" in gate.description and f"champion {second.name}" in gate.description
    assert world.registry.gate_verdict("3").split(": ", 1)[1] in gate.description

    # The API serves v2 and /model says so.
    with api_client(world, instance) as client:
        model = client.get("/model").json()
        assert (model["mlflow_model_version"], model["bundle_version"]) == ("2", second.version)

    assert tick(world, instance) == f"moved the `{CHAMPION}` alias from v1 to the champion, {second.name}"
    assert world.registry.alias_version() == "2"


def wait_for_model(client, version: str, timeout: float = 60.0) -> dict:
    """/model once the API has swapped to ``version`` (its poller runs every 0.2 s here)."""
    deadline = time.monotonic() + timeout
    while True:
        model = client.get("/model").json()
        if model["bundle_version"] == version or time.monotonic() > deadline:
            return model
        time.sleep(0.2)


def test_rollback_puts_the_previous_champion_back_in_the_api_the_registry_and_dagster(world):
    from tests.test_serving import SEED_BODY

    instance = world.instance()
    first, second = world.records()[:2]
    assert world.promote(instance, 0).success and world.promote(instance, 1).success
    with api_client(world, instance, poll_seconds=0.2) as client:
        assert client.get("/model").json()["bundle_version"] == second.version
        config = {"rollback": True, "version": None, "reason": REASON}
        result = (
            world.defs()
            .resolve_job_def("rollback_champion")
            .execute_in_process(instance=instance, run_config={"ops": {"champion_model": {"config": config}}})
        )
        assert result.success
        model = wait_for_model(client, first.version)
        assert (model["bundle_version"], model["mlflow_model_version"]) == (first.version, "1")
        assert model["promotion"] == ROLLBACK and model["replaced_version"] == second.version
        assert model["promotion_reason"] == f"rolled back from {second.name}: {REASON}"
        assert client.post("/predict", json=SEED_BODY).json()["model_version"] == first.version

    champion = current_champion(instance)  # the latest champion_model materialization
    assert (champion.version, champion.bundle_sha256) == (first.version, first.bundle_sha256)
    assert champion.promotion == ROLLBACK and champion.replaced_version == second.version
    assert world.registry.alias_version() == "1"  # MLflow's alias
    assert (
        world.registry.get("1").tags["champion_promotion"].startswith(f"{ROLLBACK} at {champion.promoted_at}")
    )
    reference = instance.fetch_materializations(dg.AssetKey("drift_reference"), limit=1).records[0]
    assert reference.run_id == result.run_id  # rebuilt with the champion put back
    assert reference.asset_materialization.metadata["champion_version"].value == "1"


def test_the_cli_rolls_back_through_the_same_job_and_refuses_an_unverifiable_bundle(world, capsys):
    instance = world.instance()
    first, second = world.records()[:2]
    defs = world.defs()
    assert world.promote(instance, 0).success and world.promote(instance, 1).success
    (world.root / "objects" / "challenger_model.pkl").unlink()  # a rollback needs no challenger

    assert rollback.main(["--reason", REASON], instance=instance, defs=defs) == 0
    assert f"rolled back: the champion is {first.name}" in capsys.readouterr().out
    assert current_champion(instance).version == first.version and world.registry.alias_version() == "1"
    run = instance.get_run_by_id(latest_champion(instance).run_id)
    assert run.job_name == "rollback_champion" and run.tags["fraudops/trigger"] == "rollback_cli"

    # Again: v2 was retired by the rollback and v1 serves; nothing earlier to go back to.
    assert rollback.main([], instance=instance, defs=defs) == 1
    assert "rollback refused: no earlier champion to roll back to" in capsys.readouterr().err

    # v2 named explicitly, but its bundle no longer matches its SHA-256: refused, nothing moves.
    bundle = Path(second.bundle_uri)
    bundle.write_bytes(bundle.read_bytes() + b"tampered")
    before = latest_champion(instance).storage_id
    assert rollback.main(["--version", "2"], instance=instance, defs=defs) == 1
    err = capsys.readouterr().err
    assert f"rollback refused: refusing to roll back to {second.name}: model bundle" in err
    assert "failed its integrity check" in err
    assert latest_champion(instance).storage_id == before and world.registry.alias_version() == "1"

    assert rollback.main(["--history"], instance=instance) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [first.name in lines[0], second.name in lines[1], first.name in lines[2]] == [True] * 3
    assert f"{ROLLBACK}: rolled back from {second.name}: {REASON}" in lines[0]


# --- the history's rule for the default target, on records alone ---------------------------------

SHA = "cd" * 32


def entry(storage_id: int, version: str, promotion: str = PROMOTION, replaced: str | None = None):
    record = ChampionRecord(
        version=f"bundle-{version}",
        bundle_uri=f"/models/{version}.pkl",
        bundle_sha256=SHA,
        algorithm="xgboost",
        threshold=0.5,
        training_window=("2026-01-01", "2026-02-01"),
        mlflow_model_version=version,
        promotion=promotion,
        replaced_version=f"bundle-{replaced}" if replaced else None,
    )
    return ChampionMaterialization(storage_id, f"run-{storage_id}", record.to_metadata())


def test_the_default_rollback_target_is_the_newest_earlier_champion_no_rollback_retired():
    assert rollback_target([entry(2, "2"), entry(1, "1")])[1].version == "bundle-1"
    # After rolling back from 3 to 2, a second rollback goes further back, not to 3 again.
    history = [entry(5, "2", ROLLBACK, replaced="3"), entry(4, "3"), entry(3, "2"), entry(2, "1")]
    current, target = rollback_target(history)
    assert (current.version, target.version) == ("bundle-2", "bundle-1")
    assert rollback_target(history, "3")[1].version == "bundle-3"  # a retired champion, named
    assert rollback_target(history, "bundle-1")[1].version == "bundle-1"
    with pytest.raises(RollbackError, match=r"v2 \(bundle-2\) is already the champion"):
        rollback_target(history, "2")
    with pytest.raises(
        RollbackError, match=r"7 was never champion before; the earlier champions: v3 \(bundle-3\), v2"
    ):
        rollback_target(history, "7")
    with pytest.raises(RollbackError, match="no earlier champion to roll back to"):
        rollback_target(history[:3])
    with pytest.raises(RollbackError, match="there is no champion yet"):
        rollback_target([])


def test_an_unreadable_current_record_can_be_rolled_back_from():
    broken = ChampionMaterialization(9, "run-9", {"bundle_version": "x"})
    current, target = rollback_target([broken, entry(2, "2"), entry(1, "1")])
    assert current is None and target.version == "bundle-2"


def test_a_candidate_stored_by_an_earlier_fraudops_is_refused_with_what_to_do():
    with pytest.raises(
        TypeError, match=r"xgboost_model holds a dict, not a Candidate .* materialize xgboost_model again"
    ):
        candidates_of({"xgboost_model": {"algorithm": "xgboost"}})


def test_the_code_location_mirrors_the_alias_and_offers_the_rollback(env):
    from fraud_assets.definitions import defs

    loaded = defs()
    assert loaded.resolve_sensor_def("champion_alias_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    job = loaded.resolve_job_def("rollback_champion")
    assert {key.to_user_string() for key in job.asset_layer.selected_asset_keys} == {
        "champion_model",
        "drift_reference",
    }


def test_the_history_is_read_newest_first_a_page_at_a_time(instance):
    from fraud_assets.core.champion_history import champion_history
    from fraud_assets.defs.registry import record_metadata

    assert latest_champion(instance) is None and list(champion_history(instance)) == []
    for version in ("1", "2", "3"):
        record = entry(0, version).champion()
        instance.report_runless_asset_event(
            dg.AssetMaterialization("champion_model", metadata=record_metadata(record))
        )
    history = list(champion_history(instance, page=1))  # three queries
    assert [e.champion().version for e in history] == ["bundle-3", "bundle-2", "bundle-1"]
    assert [e.storage_id for e in history] == sorted((e.storage_id for e in history), reverse=True)
    assert latest_champion(instance) == history[0]
