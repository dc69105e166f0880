"""Resources: everything external (storage, the landing folder, the simulator) is configuration.

The values come from the settings (``fraud_assets.core.settings``: environment variables or
``.env``), read when the code location builds its definitions; the launchpad can still override
each resource's config for one run. Locations have no default of their own here: they are always
given by the settings (or by a test).
"""

import datetime as dt
from functools import lru_cache
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from dagster_mlflow import mlflow_tracking
from dagster_mlflow.resources import MlFlow

from fraud_assets.core import columns as c
from fraud_assets.core.capture import FILED_FOLDERS, TRANSACTIONS, CaptureFeed, open_capture
from fraud_assets.core.contract import partition_location
from fraud_assets.core.generator import DriftKnobs, SimulationConfig, TransactionSimulator
from fraud_assets.core.ingest import list_landing_files
from fraud_assets.core.label_files import LABEL_FILE_COLUMNS, list_label_files
from fraud_assets.core.landing_settings import LandingSettings, split_mapping
from fraud_assets.core.registry import ModelRegistry, ensure_experiment
from fraud_assets.core.settings import FraudopsSettings, defaults, load_settings
from fraud_assets.core.storage import Location, options_for
from fraud_assets.core.traffic import api_transactions
from fraud_assets.core.validation import PARTITION_DATE
from fraud_assets.defs.io_managers import PartitionedParquetIOManager, PickleIOManager

# The resources' own defaults are the settings' defaults (one declaration of each).
DEFAULTS = defaults()
RAW_TRANSACTIONS = "raw_transactions"
API_TRANSACTIONS = FILED_FOLDERS[TRANSACTIONS]  # the API's traffic as filed by day (an external asset)


class TransactionSimulatorResource(dg.ConfigurableResource):
    """The synthetic transaction source: a seeded population of cards and merchants.

    The drift knobs are off by default; set ``drift_start`` and a knob to produce drift on
    purpose from that day on.
    """

    seed: int = DEFAULTS.seed
    n_cardholders: int = DEFAULTS.cardholders
    fraud_rate: float = DEFAULTS.fraud_rate
    transactions_per_card_per_day: float = 2.5
    legit_label_delay_days: float = 7.0
    drift_start: str | None = None
    amount_multiplier: float = DEFAULTS.drift_amount_multiplier
    merchant_mix_shift: float = DEFAULTS.drift_merchant_mix
    device_mix_shift: float = DEFAULTS.drift_device_mix
    new_fraud_pattern: bool = DEFAULTS.drift_new_pattern

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
    ``{"transaction_id": "id", "timestamp": "ts", "is_fraud": "fraud"}``; ``value_rules`` maps a
    column's codes onto our values, e.g. ``{"is_online": {"CP": "false", "CNP": "true"}}``.
    """

    path: str
    column_mapping: dict[str, str] = {}
    value_rules: dict[str, dict[str, str]] = {}
    timestamp_format: str | None = None
    label_delay_days: float = DEFAULTS.label_delay_days
    encoding: str = DEFAULTS.landing_encoding
    csv_separator: str = ","

    def settings(self) -> LandingSettings:
        return LandingSettings(
            column_mapping=self.column_mapping,
            value_rules=self.value_rules,
            timestamp_format=self.timestamp_format,
            label_delay_days=self.label_delay_days,
            encoding=self.encoding,
            csv_separator=self.csv_separator,
        )

    def files(self) -> list[Path]:
        return list_landing_files(self.path)


class LabelFeedResource(dg.ConfigurableResource):
    """The label feed's own configuration: the folder of label files and their column mapping
    (value rules allowed, e.g. ``{"is_fraud": {"chargeback": "1", "reversed": "0"}}``), and the
    label delay after which a transaction with no label counts as genuine. The labels posted to
    the API come through the capture feed (`CapturedTrafficResource`)."""

    path: str
    column_mapping: dict[str, str] = {}
    value_rules: dict[str, dict[str, str]] = {}
    timestamp_format: str | None = None
    encoding: str = DEFAULTS.landing_encoding
    label_delay_days: float = DEFAULTS.label_delay_days

    def settings(self) -> LandingSettings:
        return LandingSettings(
            column_mapping=self.column_mapping,
            value_rules=self.value_rules,
            timestamp_format=self.timestamp_format,
            encoding=self.encoding,
            label_delay_days=self.label_delay_days,
            known_columns=LABEL_FILE_COLUMNS,
        )

    def files(self) -> list[Path]:
        return list_label_files(self.path)

    def genuine_after(self) -> pd.Timedelta:
        """How long after a transaction its silence (no label) says genuine."""
        return pd.Timedelta(days=self.label_delay_days)


def label_feed_resource(settings: FraudopsSettings) -> LabelFeedResource:
    """The label feed as configured (README, "The label feed")."""
    columns, rules = split_mapping(settings.labels_mapping)
    return LabelFeedResource(
        path=settings.labels_dir,
        column_mapping=columns,
        value_rules=rules,
        timestamp_format=settings.timestamp_format,
        encoding=settings.landing_encoding,
        label_delay_days=settings.label_delay_days,
    )


def landing_zone_resource(settings: FraudopsSettings) -> LandingZoneResource:
    """The landing zone as configured (see README, "Your own data")."""
    columns, rules = split_mapping(settings.landing_mapping)
    return LandingZoneResource(
        path=settings.landing_dir,
        column_mapping=columns,
        value_rules=rules,
        timestamp_format=settings.timestamp_format,
        label_delay_days=settings.label_delay_days,
        encoding=settings.landing_encoding,
    )


def simulator_resource(settings: FraudopsSettings) -> TransactionSimulatorResource:
    """The generator as configured, drift knobs included (off by default)."""
    return TransactionSimulatorResource(
        seed=settings.seed,
        n_cardholders=settings.cardholders,
        fraud_rate=settings.fraud_rate,
        drift_start=settings.drift_start.isoformat() if settings.drift_start else None,
        amount_multiplier=settings.drift_amount_multiplier,
        merchant_mix_shift=settings.drift_merchant_mix,
        device_mix_shift=settings.drift_device_mix,
        new_fraud_pattern=settings.drift_new_pattern,
    )


class ModelStoreResource(dg.ConfigurableResource):
    """Where model bundles are written: immutable, versioned files (local folder or fsspec URL).

    ``s3_endpoint_url``: the endpoint of an S3-compatible store, for the store and for every
    bundle location read back from metadata (see `fraud_assets.core.storage`).
    """

    base_path: str
    s3_endpoint_url: str | None = None

    def bundle_directory(self) -> Location:
        """Absolute when local, so the bundle URI recorded in metadata works from any directory."""
        return self.location(self.base_path)

    def location(self, where: str) -> Location:
        """A bundle location (e.g. a recorded ``bundle_uri``) with the options that reach it."""
        return Location.of(where, options_for(where, self.s3_endpoint_url))


class PredictionLogResource(dg.ConfigurableResource):
    """Where the scoring API logs every scored transaction (a folder per UTC day, see
    `fraud_assets.core.contract`), read by `live_drift_report`."""

    path: str
    storage_options: dict[str, Any] = {}

    def location(self) -> Location:
        return Location.of(self.path, self.storage_options)


class CapturedTrafficResource(dg.ConfigurableResource):
    """The scoring API's capture feed (``FRAUDOPS_CAPTURE``: a local folder, a ``redis://`` URL
    or ``off``) and where its records are filed by day (the pipeline's storage)."""

    storage: str
    feed: str = "off"
    storage_options: dict[str, Any] = {}

    def open(self) -> CaptureFeed | None:
        return open_capture(self.feed)

    def location(self) -> Location:
        return Location.of(self.storage, self.storage_options)

    def api_transactions(self, days: list[str]):
        """The filed API transactions of ``days`` as raw rows (`fraud_assets.core.traffic`)."""
        return api_transactions(self.location(), days)

    def stored_rows(self, days: list[str]):
        """The stored `raw_transactions` rows of ``days`` (a day not stored yet has none)."""
        frames = []
        for day in days:
            stored = partition_location(self.location(), RAW_TRANSACTIONS, day)
            if stored.exists():
                frames.append(stored.read_parquet())
        if not frames:
            return pd.DataFrame(columns=[*c.REQUIRED_COLUMNS, PARTITION_DATE])
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


class ModelRegistryResource(dg.ConfigurableResource):
    """MLflow's model registry (the `fraud-detector` model and its `champion` alias)."""

    tracking_uri: str
    model_name: str = "fraud-detector"

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.tracking_uri, self.model_name)


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


def mlflow_resource_for(settings: FraudopsSettings) -> dg.ResourceDefinition:
    return mlflow_resource.configured(
        {
            "experiment_name": settings.mlflow_experiment,
            "mlflow_tracking_uri": settings.mlflow_tracking_uri,
            "artifact_location": settings.mlflow_artifacts,
        }
    )


def resources_for(settings: FraudopsSettings) -> dict[str, object]:
    storage = settings.location(settings.storage)
    return {
        "io_manager": PartitionedParquetIOManager(
            base_path=storage.url, storage_options=dict(storage.options)
        ),
        "model_io_manager": PickleIOManager(
            base_path=storage.join("objects").url, storage_options=dict(storage.options)
        ),
        "model_store": ModelStoreResource(
            base_path=settings.models, s3_endpoint_url=settings.s3_endpoint_url
        ),
        "mlflow": mlflow_resource_for(settings),
        "model_registry": ModelRegistryResource(tracking_uri=settings.mlflow_tracking_uri),
        "prediction_log": PredictionLogResource(
            path=settings.prediction_log_dir,
            storage_options=dict(settings.location(settings.prediction_log_dir).options),
        ),
        "captured_traffic": CapturedTrafficResource(
            feed=settings.capture, storage=storage.url, storage_options=dict(storage.options)
        ),
        "simulator": simulator_resource(settings),
        "landing_zone": landing_zone_resource(settings),
        "label_feed": label_feed_resource(settings),
    }


@dg.definitions
def resources() -> dg.Definitions:
    """Built when the code location loads (and on each reload): the settings are read now."""
    return dg.Definitions(resources=resources_for(load_settings()))
