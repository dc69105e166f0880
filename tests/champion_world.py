"""A small world for the champion's tests, which a second process can open too.

Three saved model bundles registered as MLflow versions 1, 2 and 3 (a SQLite registry), a Dagster
home on disk, and the real `champion_model`, `champion_gate`, `drift_reference`,
`champion_alias_sensor` and `rollback_champion` job, fed by stand-ins for the training stages:
`challenger_model` registers the bundle its config names (``{"index": i}``: MLflow version i+1),
`training_data` is simulated transactions split by time, and `model_evaluation` holds the
held-out scores of the bundle its config names.

    python -m tests.champion_world ROOT INDEX kill   # promote bundle INDEX, killed before the alias moves
"""

import json
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from fraud_assets.core import columns as c
from fraud_assets.core.bundle import ModelBundle, sha256_file
from fraud_assets.core.candidates import ModelEvaluation
from fraud_assets.core.contract import ChampionRecord
from fraud_assets.core.evaluation import fraud_scores
from fraud_assets.core.features import add_history_features
from fraud_assets.core.registry import ModelRegistry
from fraud_assets.core.splitting import TEST, TRAIN
from fraud_assets.defs.champion import champion_alias_sensor, champion_model, rollback_champion_job
from fraud_assets.defs.io_managers import PartitionedParquetIOManager, PickleIOManager
from fraud_assets.defs.monitoring import drift_reference
from fraud_assets.defs.registry import champion_gate, record_metadata
from fraud_assets.defs.resources import ModelRegistryResource, ModelStoreResource
from fraud_assets.defs.training import SPLIT
from fraud_assets.services.testing import build_bundle, simulate, write_dagster_home

BUNDLES = 3
DAYS = 15


def make_template(root: Path) -> None:
    """The slow parts, once: the bundles, the transactions with their history features, and an MLflow registry (creating
    its tables takes tens of seconds) with one version per bundle."""
    frame = simulate(days=DAYS, n_cardholders=300, seed=7, end=pd.Timestamp("2026-03-15").date())
    add_history_features(frame).to_parquet(root / "transactions.parquet")
    for index in range(BUNDLES):
        build_bundle(frame, root / "models", n_estimators=5 + 5 * index, seed=index)
    registry = ModelRegistry(tracking_uri(root))
    registry.client.create_registered_model(registry.model_name)
    for path in sorted((root / "models").iterdir()):
        registry.client.create_model_version(registry.model_name, source=path.as_uri())


def tracking_uri(root: Path) -> str:
    return f"sqlite:///{root}/mlflow.db"


def copy_template(template: Path, root: Path) -> None:
    """A world of its own: the template's files copied (a test may corrupt a bundle)."""
    shutil.copytree(template / "models", root / "models")
    for name in ("transactions.parquet", "mlflow.db"):
        shutil.copy(template / name, root / name)
    write_dagster_home(root / "dagster_home")


def records(root: Path) -> list[ChampionRecord]:
    """Each bundle's record as `challenger_model` registers it (MLflow version = index + 1)."""
    found = []
    for index, path in enumerate(sorted((root / "models").iterdir())):
        sha = sha256_file(path)
        bundle = ModelBundle.load(path, sha)
        found.append(
            bundle.record(path, sha, mlflow_model_version=str(index + 1), mlflow_run_id=f"run-{index}")
        )
    return found


class Pick(dg.Config):
    index: int = 0


@dataclass
class World:
    root: Path

    @property
    def tracking_uri(self) -> str:
        return tracking_uri(self.root)

    @property
    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.tracking_uri)

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.root / "dagster_home"))

    def records(self) -> list[ChampionRecord]:
        return records(self.root)

    def defs(self, registry: ModelRegistryResource | None = None) -> dg.Definitions:
        root = self.root
        frame = pd.read_parquet(root / "transactions.parquet")
        choices = records(root)

        @dg.asset(name="training_data")
        def training_data() -> pd.DataFrame:
            cut = frame[c.TIMESTAMP].max().normalize() - pd.Timedelta(days=4)
            return frame.assign(**{SPLIT: np.where(frame[c.TIMESTAMP] >= cut, TEST, TRAIN)})

        @dg.asset(name="challenger_model", io_manager_key="model_io_manager")
        def challenger_model(context: dg.AssetExecutionContext, config: Pick) -> ChampionRecord:
            context.add_output_metadata(record_metadata(choices[config.index]))  # as the real asset
            return choices[config.index]

        @dg.asset(name="model_evaluation", io_manager_key="model_io_manager")
        def model_evaluation(config: Pick, training_data: pd.DataFrame) -> ModelEvaluation:
            chosen = choices[config.index]
            bundle = ModelBundle.load(chosen.bundle_uri, chosen.bundle_sha256)
            test = training_data[training_data[SPLIT] == TEST]
            return ModelEvaluation(
                best=bundle.algorithm,
                selected_by="average_precision",
                metrics={bundle.algorithm: dict(bundle.metrics)},
                segments=[],
                test_window=(str(test[c.TIMESTAMP].min()), str(test[c.TIMESTAMP].max())),
                imbalance_methods={},
                tuning={},
                reproducible=True,
                warnings=[],
                best_test_scores=fraud_scores(bundle.preprocessor, bundle.classifier, test),
            )

        assets = [training_data, challenger_model, model_evaluation, champion_model, drift_reference]
        promote = dg.AssetSelection.assets(training_data, challenger_model, champion_model).without_checks()
        gate = dg.AssetSelection.assets(training_data, challenger_model, model_evaluation)
        return dg.Definitions(
            assets=assets,
            asset_checks=[champion_gate],
            jobs=[
                dg.define_asset_job("promote", selection=promote),
                dg.define_asset_job("gate", selection=gate),
                rollback_champion_job,
            ],
            sensors=[champion_alias_sensor],
            resources={
                "io_manager": PartitionedParquetIOManager(base_path=str(root / "storage")),
                "model_io_manager": PickleIOManager(base_path=str(root / "objects")),
                "model_store": ModelStoreResource(base_path=str(root / "models")),
                "model_registry": registry or ModelRegistryResource(tracking_uri=self.tracking_uri),
            },
        )

    def promote(
        self, instance: dg.DagsterInstance, index: int, registry: ModelRegistryResource | None = None
    ):
        """Bundle ``index`` becomes champion through the real `champion_model` (no gate), with the
        training data a training run leaves behind."""
        return (
            self.defs(registry)
            .resolve_job_def("promote")
            .execute_in_process(
                instance=instance,
                run_config={"ops": {"challenger_model": {"config": {"index": index}}}},
                raise_on_error=False,
            )
        )


class KilledBeforeTheAlias(ModelRegistry):
    """The registry of a process killed (SIGKILL) once the materialization is recorded, as
    `champion_model` asks the alias to follow it."""

    def mirror(self, latest) -> str:
        print(json.dumps({"recorded": latest.storage_id}), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        return "unreachable"


class KillingRegistry(ModelRegistryResource):
    def registry(self) -> ModelRegistry:
        return KilledBeforeTheAlias(self.tracking_uri, self.model_name)


if __name__ == "__main__":
    world = World(Path(sys.argv[1]))
    index = int(sys.argv[2])
    killing = KillingRegistry(tracking_uri=world.tracking_uri) if sys.argv[3:] == ["kill"] else None
    result = world.promote(world.instance(), index, killing)
    sys.exit(0 if result.success else 1)
