"""The champion: `champion_model`, the MLflow alias that mirrors it, and the rollback.

The champion is the latest `champion_model` materialization; its metadata are a
`ChampionRecord` (`fraud_assets.core.contract`) saying which bundle serves, how it became
champion (a promotion through `champion_gate`, or a rollback), why, and what it replaced. The
gate, the monitoring assets, the first look and the scoring API all read it there
(`fraud_assets.core.champion_history`); the materialization history in the UI is the
champion's history.

MLflow's `champion` alias follows: `champion_model` moves it once its materialization is
recorded, and `champion_alias_sensor` (running by default) compares the two on every tick and
moves the alias back to the champion when they differ: after a crash between the two writes, or
an alias moved by hand in the MLflow UI. Nothing reads the alias to decide anything.

A rollback is a new materialization holding an earlier champion's record: the
`rollback_champion` job (UI: Jobs), or ``python -m fraud_assets.rollback`` (the same job).
"""

import dagster as dg

from fraud_assets.core.bundle import BundleLoadError, ModelBundle
from fraud_assets.core.champion_history import (
    RollbackError,
    champion_history,
    current_champion,
    latest_champion,
    rollback_target,
)
from fraud_assets.core.contract import CHAMPION_MODEL, ROLLBACK, ChampionRecord, ContractError
from fraud_assets.core.registry import ModelRegistry
from fraud_assets.defs.monitoring import drift_reference
from fraud_assets.defs.registry import record_metadata
from fraud_assets.defs.resources import ModelRegistryResource, ModelStoreResource


class ChampionConfig(dg.Config):
    """Promote the challenger that passed `champion_gate` (the default), or put an earlier champion
    back (``rollback``, what the `rollback_champion` job sets)."""

    rollback: bool = False
    # With rollback: the champion to put back, by its bundle version or its MLflow version.
    # Empty: the newest earlier champion that no rollback has retired.
    version: str | None = None
    # Why: kept in the materialization's metadata and on the MLflow version.
    reason: str = ""


@dg.asset(
    name=CHAMPION_MODEL,
    group_name="registry",
    kinds={"mlflow"},
    # A rollback needs no challenger: it may be missing.
    ins={
        "challenger_model": dg.AssetIn(input_manager_key="model_io_manager", metadata={"allow_missing": True})
    },
    required_resource_keys={"model_registry", "model_store"},
    description=(
        "The champion: what the scoring API serves, the champion gate compares against and the "
        "monitoring assets score with. Each materialization's metadata are a `ChampionRecord` "
        "(fraud_assets/core/contract.py): the bundle's location and SHA-256, and how (`promotion`: "
        "a challenger that passed `champion_gate`, or a `rollback`), why (`promotion_reason`) and in "
        "place of which champion (`replaced_version`) it became champion. MLflow's `champion` alias "
        "follows it. Config `rollback: true` (the `rollback_champion` job) puts an earlier champion "
        "back instead of promoting the challenger."
    ),
)
def champion_model(
    context: dg.AssetExecutionContext, config: ChampionConfig, challenger_model: ChampionRecord | None
):
    registry: ModelRegistry = context.resources.model_registry.registry()
    if config.rollback:
        record = _rolled_back(context, config)
    elif challenger_model is None:
        raise ValueError("there is no challenger to promote: run the train_models job")
    else:
        record = challenger_model.promoted(
            reason=_gate_verdict(registry, challenger_model), replaced=_current(context.instance)
        )
    context.log.info(f"champion: {record.name}, {record.promotion}: {record.reason}")
    yield dg.MaterializeResult(metadata=record_metadata(record))
    # The materialization is recorded now: the alias follows it (the sensor retries on failure).
    try:
        context.log.info(registry.mirror(latest_champion(context.instance)))
    except Exception as err:  # MLflow unreachable: the champion is recorded, the mirror can wait
        context.log.warning(
            f"MLflow's champion alias could not follow ({type(err).__name__}: {err}); "
            "champion_alias_sensor moves it on its next tick"
        )


def _current(instance) -> ChampionRecord | None:
    """The champion being replaced, if its record can be read."""
    try:
        return current_champion(instance)
    except ContractError:
        return None


def _gate_verdict(registry: ModelRegistry, challenger: ChampionRecord) -> str:
    """Why the challenger is promoted: `champion_gate`'s verdict, noted on its MLflow version."""
    version = challenger.mlflow_model_version
    try:
        verdict = registry.gate_verdict(version) if version else None
    except Exception as err:  # MLflow unreachable: say so rather than fail the promotion
        return f"champion_gate's verdict could not be read from MLflow ({type(err).__name__}: {err})"
    if verdict is None:
        return "no champion_gate verdict: champion_model was materialized without the gate"
    return f"champion_gate {verdict}"


def _rolled_back(context: dg.AssetExecutionContext, config: ChampionConfig) -> ChampionRecord:
    """The earlier champion's record, verified (its bundle loads and matches its SHA-256), as
    champion again."""
    current, target = rollback_target(champion_history(context.instance), config.version or None)
    store: ModelStoreResource = context.resources.model_store
    try:
        ModelBundle.load(store.location(target.bundle_uri), target.bundle_sha256)
    except BundleLoadError as err:
        raise RollbackError(f"refusing to roll back to {target.name}: {err}") from err
    was = current.name if current is not None else "an unreadable champion record"
    why = config.reason.strip() or "no reason given"
    return target.promoted(promotion=ROLLBACK, reason=f"rolled back from {was}: {why}", replaced=current)


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Keeps MLflow's `champion` alias equal to the champion, the latest `champion_model` "
        "materialization: each tick compares them and, when they differ (a crash between the "
        "materialization and the alias move, an alias moved by hand in the MLflow UI), moves the "
        "alias to the champion and tags the version with why. Nothing reads the alias to decide: "
        "the gate, monitoring and the scoring API read the materialization. On by default."
    ),
)
def champion_alias_sensor(context: dg.SensorEvaluationContext, model_registry: ModelRegistryResource):
    return dg.SkipReason(model_registry.registry().mirror(latest_champion(context.instance)))


rollback_champion_job = dg.define_asset_job(
    "rollback_champion",
    selection=dg.AssetSelection.assets(CHAMPION_MODEL, drift_reference),
    config={"ops": {CHAMPION_MODEL: {"config": {"rollback": True, "version": None, "reason": ""}}}},
    description=(
        "Puts an earlier champion back: a new `champion_model` materialization holding its record "
        "(verified against its SHA-256), marked as a rollback with the reason; the API switches to "
        "it within its poll interval, MLflow's alias follows, and `drift_reference` is rebuilt with "
        "it. Config: `version` (bundle or MLflow version; empty: the newest earlier champion no "
        "rollback retired) and `reason`. From a shell: `python -m fraud_assets.rollback`."
    ),
)
