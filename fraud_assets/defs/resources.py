"""Resources: everything external (storage, the landing folder, the simulator) is configuration.

Defaults are embedded (local folders under the project); each can be changed through an
environment variable (a ``.env`` file in the project root is read by ``dagster dev``) or in the
launchpad, without code changes.
"""

import datetime as dt
import os
from functools import lru_cache
from pathlib import Path

import dagster as dg
from dagster_mlflow import mlflow_tracking
from dagster_mlflow.resources import MlFlow

from fraud_assets.core.generator import DriftKnobs, SimulationConfig, TransactionSimulator
from fraud_assets.core.ingest import LandingSettings, list_landing_files
from fraud_assets.core.registry import ModelRegistry, ensure_experiment
from fraud_assets.defs.io_managers import PartitionedParquetIOManager, PickleIOManager

STATE_DIR = os.getenv("FRAUDOPS_STATE_DIR", ".fraudops")


class TransactionSimulatorResource(dg.ConfigurableResource):
    """The synthetic transaction source: a seeded population of cards and merchants.

    The drift knobs are off by default; set ``drift_start`` and a knob to produce drift on
    purpose from that day on.
    """

    seed: int = 42
    n_cardholders: int = 3_000
    fraud_rate: float = 0.01
    transactions_per_card_per_day: float = 2.5
    legit_label_delay_days: float = 7.0
    drift_start: str | None = None
    amount_multiplier: float = 1.0
    merchant_mix_shift: float = 0.0
    device_mix_shift: float = 0.0
    new_fraud_pattern: bool = False

    def simulation_config(self) -> SimulationConfig:
        drift = DriftKnobs(
            start=dt.date.fromisoformat(self.drift_start) if self.drift_start else None,
            amount_multiplier=self.amount_multiplier,
            merchant_mix_shift=self.merchant_mix_shift,
            device_mix_shift=self.device_mix_shift,
            new_fraud_pattern=self.new_fraud_pattern,
        )
        return SimulationConfig(
            seed=self.seed,
            n_cardholders=self.n_cardholders,
            fraud_rate=self.fraud_rate,
            transactions_per_card_per_day=self.transactions_per_card_per_day,
            legit_label_delay_days=self.legit_label_delay_days,
            drift=drift,
        )

    @property
    def simulator(self) -> TransactionSimulator:
        return _simulator(self.simulation_config())


@lru_cache(maxsize=4)
def _simulator(config: SimulationConfig) -> TransactionSimulator:
    """Building the population costs time: build it once per configuration and process."""
    return TransactionSimulator(config)


class LandingZoneResource(dg.ConfigurableResource):
    """The folder where users drop their own CSV or Parquet transaction files.

    ``column_mapping`` maps fraudops' column names to the file's, e.g.
    ``{"transaction_id": "id", "timestamp": "ts", "is_fraud": "fraud"}``.
    """

    path: str = "data/landing"
    column_mapping: dict[str, str] = {}
    timestamp_format: str | None = None
    label_delay_days: float = 7.0
    encoding: str = "utf-8"
    csv_separator: str = ","

    def settings(self) -> LandingSettings:
        return LandingSettings(
            column_mapping=self.column_mapping,
            timestamp_format=self.timestamp_format,
            label_delay_days=self.label_delay_days,
            encoding=self.encoding,
            csv_separator=self.csv_separator,
        )

    def files(self) -> list[Path]:
        return list_landing_files(self.path)


def _env_float(name: str, default: float) -> float:
    raw = os.getenv(name)
    try:
        return float(raw) if raw not in (None, "") else default
    except ValueError as err:
        raise ValueError(f"environment variable {name} must be a number, not {raw!r}") from err


def landing_zone_from_env() -> LandingZoneResource:
    """The landing zone as the environment configures it (see README, "Your own data")."""
    settings = LandingSettings.from_json(
        os.getenv("FRAUDOPS_LANDING_MAPPING"),
        timestamp_format=os.getenv("FRAUDOPS_TIMESTAMP_FORMAT") or None,
        label_delay_days=_env_float("FRAUDOPS_LABEL_DELAY_DAYS", 7.0),
        encoding=os.getenv("FRAUDOPS_LANDING_ENCODING", "utf-8"),
    )
    return LandingZoneResource(
        path=os.getenv("FRAUDOPS_LANDING_DIR", "data/landing"),
        column_mapping=dict(settings.column_mapping),
        timestamp_format=settings.timestamp_format,
        label_delay_days=settings.label_delay_days,
        encoding=settings.encoding,
    )


def simulator_from_env() -> TransactionSimulatorResource:
    """The generator as the environment configures it, drift knobs included (off by default)."""
    return TransactionSimulatorResource(
        seed=int(_env_float("FRAUDOPS_SEED", 42)),
        n_cardholders=int(_env_float("FRAUDOPS_CARDHOLDERS", 3_000)),
        fraud_rate=_env_float("FRAUDOPS_FRAUD_RATE", 0.01),
        drift_start=os.getenv("FRAUDOPS_DRIFT_START") or None,
        amount_multiplier=_env_float("FRAUDOPS_DRIFT_AMOUNT_MULTIPLIER", 1.0),
        merchant_mix_shift=_env_float("FRAUDOPS_DRIFT_MERCHANT_MIX", 0.0),
        device_mix_shift=_env_float("FRAUDOPS_DRIFT_DEVICE_MIX", 0.0),
        new_fraud_pattern=os.getenv("FRAUDOPS_DRIFT_NEW_PATTERN", "").lower() in ("1", "true", "yes"),
    )


class ModelStoreResource(dg.ConfigurableResource):
    """Where model bundles are written: immutable, versioned files (local folder or fsspec URL)."""

    base_path: str = f"{STATE_DIR}/models"

    def bundle_directory(self) -> str:
        """Absolute, so the bundle URI recorded in metadata works from any working directory."""
        return self.base_path if "://" in self.base_path else os.path.abspath(self.base_path)


class PredictionLogResource(dg.ConfigurableResource):
    """Where the scoring API logs every scored transaction (one JSON Lines file per UTC day)."""

    path: str = f"{STATE_DIR}/predictions"


class ModelRegistryResource(dg.ConfigurableResource):
    """MLflow's model registry (the `fraud-detector` model and its `champion` alias)."""

    tracking_uri: str
    model_name: str = "fraud-detector"

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.tracking_uri, self.model_name)


def mlflow_tracking_uri() -> str:
    default = f"sqlite:///{os.path.abspath(STATE_DIR)}/mlflow/mlflow.db"
    return os.getenv("FRAUDOPS_MLFLOW_TRACKING_URI", default)


MLFLOW_CONFIG_SCHEMA = {
    **mlflow_tracking.config_schema.config_type.fields,
    "artifact_location": dg.Field(str, is_required=False, description="Artifact root of a new experiment"),
}


@dg.resource(
    config_schema=MLFLOW_CONFIG_SCHEMA, description="dagster-mlflow's tracking resource, with our experiment"
)
def mlflow_resource(init_context) -> MlFlow:
    """dagster-mlflow's `mlflow_tracking`, after creating the experiment with our artifact root.

    MLflow would otherwise put a new experiment's artifacts under ./mlruns of the working
    directory; the store is configuration (``FRAUDOPS_MLFLOW_TRACKING_URI``), so a tracking
    server works unchanged.
    """
    config = init_context.resource_config
    ensure_experiment(
        config["mlflow_tracking_uri"], config["experiment_name"], config.get("artifact_location")
    )
    return MlFlow(init_context)


def mlflow_from_env() -> dg.ResourceDefinition:
    state = os.path.abspath(STATE_DIR)
    return mlflow_resource.configured(
        {
            "experiment_name": os.getenv("FRAUDOPS_MLFLOW_EXPERIMENT", "fraudops"),
            "mlflow_tracking_uri": os.getenv(
                "FRAUDOPS_MLFLOW_TRACKING_URI", f"sqlite:///{state}/mlflow/mlflow.db"
            ),
            "artifact_location": os.getenv("FRAUDOPS_MLFLOW_ARTIFACTS", f"{state}/mlflow/artifacts"),
        }
    )


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "io_manager": PartitionedParquetIOManager(
                base_path=os.getenv("FRAUDOPS_STORAGE", f"{STATE_DIR}/storage")
            ),
            "model_io_manager": PickleIOManager(
                base_path=os.getenv("FRAUDOPS_STORAGE", f"{STATE_DIR}/storage") + "/objects"
            ),
            "model_store": ModelStoreResource(base_path=os.getenv("FRAUDOPS_MODELS", f"{STATE_DIR}/models")),
            "mlflow": mlflow_from_env(),
            "model_registry": ModelRegistryResource(tracking_uri=mlflow_tracking_uri()),
            "prediction_log": PredictionLogResource(
                path=os.getenv("FRAUDOPS_PREDICTION_LOG_DIR", f"{STATE_DIR}/predictions")
            ),
            "simulator": simulator_from_env(),
            "landing_zone": landing_zone_from_env(),
        }
    )
