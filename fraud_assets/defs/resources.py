"""Resources: everything external (storage, the landing folder, the simulator, MLflow) is configuration.

Each resource is built from its settings group (``fraud_assets.core.settings``) by its
``from_settings``, when the code location loads: ``fraud_assets/definitions.py`` reads the
settings and calls :func:`resources_for`. Assets and sensors take their values from these
resources and never read the settings themselves; the launchpad can still change a resource's
config for one run. Locations have no default of their own here: they are always given by the
settings (or by a test).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Self

import dagster as dg
import pandas as pd
from dagster_mlflow import mlflow_tracking
from dagster_mlflow.resources import MlFlow

from fraud_assets.core import columns as c
from fraud_assets.core.capture import FILED_FOLDERS, TRANSACTIONS, CaptureFeed, open_capture
from fraud_assets.core.contract import RAW_TRANSACTIONS, partition_location
from fraud_assets.core.generator import DriftKnobs, SimulationConfig, TransactionSimulator
from fraud_assets.core.ingest import list_landing_files
from fraud_assets.core.label_files import LABEL_FILE_COLUMNS, list_label_files
from fraud_assets.core.landing_settings import LandingSettings
from fraud_assets.core.registry import ModelRegistry, ensure_experiment
from fraud_assets.core.settings import DriftSettings, FraudopsSettings, GeneratorSettings, defaults
from fraud_assets.core.storage import Location, options_for
from fraud_assets.core.traffic import api_transactions
from fraud_assets.core.validation import PARTITION_DATE
from fraud_assets.defs.io_managers import STEP_IO_MANAGER, PartitionedParquetIOManager, PickleIOManager
from fraud_assets.defs.partitions import PartitionStartResource

# The resources' own defaults are the settings' defaults (one declaration of each).
DEFAULTS = defaults()
API_TRANSACTIONS = FILED_FOLDERS[TRANSACTIONS]  # the API's traffic as filed by day (an external asset)
LANDING_DEFAULTS = DEFAULTS.landing
# The fields a resource carries to rebuild a LandingSettings (the column names it may map onto are
# the reader's own, not configuration).
READING_FIELDS = tuple(f.name for f in dataclasses.fields(LandingSettings) if f.name != "known_columns")


def _reading_fields(reading: LandingSettings) -> dict[str, Any]:
    """A LandingSettings as a resource's config (plain dicts, JSON-able)."""
    values = {name: getattr(reading, name) for name in READING_FIELDS}
    values["column_mapping"] = dict(values["column_mapping"])
    values["value_rules"] = {ours: dict(rules) for ours, rules in values["value_rules"].items()}
    return values


class TransactionSimulatorResource(dg.ConfigurableResource):
    """The synthetic transaction source: a seeded population of cards and merchants.

    Its fields are the settings' generator and drift groups, by the same names. The drift knobs
    are off by default; set ``drift_start`` and a knob to produce drift on purpose from that
    day on.
    """

    seed: int = DEFAULTS.seed
    cardholders: int = DEFAULTS.cardholders
    fraud_rate: float = DEFAULTS.fraud_rate
    transactions_per_card_per_day: float = DEFAULTS.transactions_per_card_per_day
    legit_label_delay_days: float = DEFAULTS.legit_label_delay_days
    drift_start: str | None = None
    drift_amount_multiplier: float = DEFAULTS.drift_amount_multiplier
    drift_merchant_mix: float = DEFAULTS.drift_merchant_mix
    drift_device_mix: float = DEFAULTS.drift_device_mix
    drift_new_pattern: bool = DEFAULTS.drift_new_pattern

    @classmethod
    def from_settings(cls, settings: FraudopsSettings) -> Self:
        """Every field of the generator and drift groups (a date as ISO text: Dagster's config
        has no date type)."""
        names = [*GeneratorSettings.model_fields, *DriftSettings.model_fields]
        values = {name: getattr(settings, name) for name in names}
        return cls(**{k: v.isoformat() if isinstance(v, dt.date) else v for k, v in values.items()})

    def simulation_config(self) -> SimulationConfig:
        drift = DriftKnobs(
            start=dt.date.fromisoformat(self.drift_start) if self.drift_start else None,
            amount_multiplier=self.drift_amount_multiplier,
            merchant_mix_shift=self.drift_merchant_mix,
            device_mix_shift=self.drift_device_mix,
            new_fraud_pattern=self.drift_new_pattern,
        )
        return SimulationConfig(
            seed=self.seed,
            n_cardholders=self.cardholders,
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


class _FileFolderResource(dg.ConfigurableResource):
    """A folder of users' CSV or Parquet files and how to read them: the fields of
    :class:`LandingSettings` (its columns, codes, timestamp format, encoding, label delay)."""

    path: str
    column_mapping: dict[str, str] = {}
    value_rules: dict[str, dict[str, str]] = {}
    timestamp_format: str | None = None
    label_delay_days: float = LANDING_DEFAULTS.label_delay_days
    encoding: str = LANDING_DEFAULTS.encoding
    csv_separator: str = LANDING_DEFAULTS.csv_separator

    def _reading(self, **known_columns: Any) -> LandingSettings:
        return LandingSettings(**{name: getattr(self, name) for name in READING_FIELDS}, **known_columns)


class LandingZoneResource(_FileFolderResource):
    """The folder where users drop their own transaction files, and how to read them, which
    :attr:`landing` hands out.

    ``column_mapping`` maps fraudops' column names to the file's, e.g.
    ``{"transaction_id": "id", "timestamp": "ts", "is_fraud": "fraud"}``; ``value_rules`` maps a
    column's codes onto our values, e.g. ``{"is_online": {"CP": "false", "CNP": "true"}}``.
    """

    @classmethod
    def from_settings(cls, settings: FraudopsSettings) -> Self:
        """The folder, and the landing settings as parsed once by the settings."""
        return cls(path=settings.landing_dir, **_reading_fields(settings.landing))

    @cached_property
    def landing(self) -> LandingSettings:
        """How to read the files: what the landing sensor and `raw_transactions` both use."""
        return self._reading()

    def files(self) -> list[Path]:
        return list_landing_files(self.path)


class LabelFeedResource(_FileFolderResource):
    """The label feed's own configuration: the folder of label files and their column mapping
    (value rules allowed, e.g. ``{"is_fraud": {"chargeback": "1", "reversed": "0"}}``), and the
    label delay after which a transaction with no label counts as genuine. The labels posted to
    the API come through the capture feed (`CapturedTrafficResource`)."""

    @classmethod
    def from_settings(cls, settings: FraudopsSettings) -> Self:
        """The labels folder, and its files' reading as parsed once by the settings."""
        return cls(path=settings.labels_dir, **_reading_fields(settings.label_files))

    @cached_property
    def reading(self) -> LandingSettings:
        """How to read the label files: what the label sensor and `fraud_labels` both use."""
        return self._reading(known_columns=LABEL_FILE_COLUMNS)

    def files(self) -> list[Path]:
        return list_label_files(self.path)

    def genuine_after(self) -> pd.Timedelta:
        """How long after a transaction its silence (no label) says genuine."""
        return pd.Timedelta(days=self.label_delay_days)


class FeatureShardsResource(dg.ConfigurableResource):
    """How many card shards the feature assets compute a day in (`fraud_assets.core.shards`):
    1 reads the day's lookback at once; more hold one shard of it in memory at a time."""

    shards: int = DEFAULTS.feature_shards

    @classmethod
    def from_settings(cls, settings: FraudopsSettings) -> Self:
        return cls(shards=settings.feature_shards)


class ModelStoreResource(dg.ConfigurableResource):
    """Where model bundles are written: immutable, versioned files (local folder or fsspec URL).

    ``s3_endpoint_url``: the endpoint of an S3-compatible store, for the store and for every
    bundle location read back from metadata (see `fraud_assets.core.storage`).
    """

    base_path: str
    s3_endpoint_url: str | None = None

    @classmethod
    def from_settings(cls, settings: FraudopsSettings) -> Self:
        return cls(base_path=settings.models, s3_endpoint_url=settings.s3_endpoint_url)

    def bundle_directory(self) -> Location:
        """Absolute when local, so the bundle URI recorded in metadata works from any directory."""
        return self.location(self.base_path)

    def location(self, where: str) -> Location:
        """A bundle location (e.g. a recorded ``bundle_uri``) with the options that reach it."""
        return Location.of(where, options_for(where, self.s3_endpoint_url))


class _LocationResource(dg.ConfigurableResource):
    """A configured location (a local folder or a URL) and the storage options that reach it."""

    path: str
    storage_options: dict[str, Any] = {}

    @classmethod
    def at(cls, settings: FraudopsSettings, where: str) -> Self:
        return cls(path=where, storage_options=dict(settings.location(where).options))

    def location(self) -> Location:
        return Location.of(self.path, self.storage_options)


class ReviewQueueResource(_LocationResource):
    """The analysts' review capacity (cards a day, ``FRAUDOPS_REVIEW_CAPACITY``) and the pipeline's
    storage, where each day's listed queue is kept (`review_queue`)."""

    capacity: int = DEFAULTS.review_capacity

    @classmethod
    def from_settings(cls, settings: FraudopsSettings) -> Self:
        where = settings.storage
        options = dict(settings.location(where).options)
        return cls(path=where, storage_options=options, capacity=settings.review_capacity)


class CapturedTrafficResource(dg.ConfigurableResource):
    """The scoring API's capture feed (``FRAUDOPS_CAPTURE``: a local folder, a ``redis://`` URL
    or ``off``) and where its records are filed by day (the pipeline's storage)."""

    storage: str
    feed: str = "off"
    storage_options: dict[str, Any] = {}

    @classmethod
    def from_settings(cls, settings: FraudopsSettings) -> Self:
        storage = settings.location(settings.storage)
        return cls(feed=settings.capture, storage=storage.url, storage_options=dict(storage.options))

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


class PredictionLogResource(_LocationResource):
    """Where the scoring API logs every scored transaction (a folder per UTC day, see
    `fraud_assets.core.contract`), read by `live_drift_report`."""

    @classmethod
    def from_settings(cls, settings: FraudopsSettings) -> Self:
        return cls.at(settings, settings.prediction_log_dir)


class ReportStoreResource(_LocationResource):
    """Where the drift reports' HTML files are saved, one per kind and day."""

    @classmethod
    def from_settings(cls, settings: FraudopsSettings) -> Self:
        return cls.at(settings, settings.reports)

    def save_html(self, html: str | None, kind: str, day: str) -> str | None:
        """Writes ``<reports>/<kind>/<day>.html``; its URL, or None when there is no HTML."""
        if not html:
            return None
        path = self.location().join(kind, f"{day}.html")
        path.write_text(html)
        return str(path)


class ModelRegistryResource(dg.ConfigurableResource):
    """MLflow's model registry: the registered model (``FRAUDOPS_MLFLOW_MODEL_NAME``) and its
    `champion` alias; and the promotion rule: whether `champion_gate` also requires evidence on
    live traffic (``FRAUDOPS_GATE_REQUIRES_SHADOW``)."""

    tracking_uri: str
    model_name: str = DEFAULTS.mlflow_model_name
    gate_requires_shadow: bool = DEFAULTS.gate_requires_shadow

    @classmethod
    def from_settings(cls, settings: FraudopsSettings) -> Self:
        return cls(
            tracking_uri=settings.mlflow_tracking_uri,
            model_name=settings.mlflow_model_name,
            gate_requires_shadow=settings.gate_requires_shadow,
        )

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.tracking_uri, self.model_name)


class ShadowEvidenceResource(dg.ConfigurableResource):
    """How `shadow_comparison` judges champion and shadow challenger on labelled live traffic: the
    review capacity (k of the precision at capacity), the labels and frauds it needs before it
    decides, and its bootstrap's resamples (seeded)."""

    review_capacity: int = DEFAULTS.review_capacity
    min_labels: int = DEFAULTS.shadow_min_labels
    min_frauds: int = DEFAULTS.shadow_min_frauds
    resamples: int = DEFAULTS.shadow_resamples
    seed: int = 0

    @classmethod
    def from_settings(cls, settings: FraudopsSettings) -> Self:
        return cls(
            review_capacity=settings.review_capacity,
            min_labels=settings.shadow_min_labels,
            min_frauds=settings.shadow_min_frauds,
            resamples=settings.shadow_resamples,
        )


class RetrainingPolicyResource(dg.ConfigurableResource):
    """When a critical drift or performance report may launch retraining: after a trigger,
    further critical reports wait out ``cooldown_hours``."""

    cooldown_hours: float = DEFAULTS.retrain_cooldown_hours

    @classmethod
    def from_settings(cls, settings: FraudopsSettings) -> Self:
        return cls(cooldown_hours=settings.retrain_cooldown_hours)

    @property
    def cooldown(self) -> dt.timedelta:
        return dt.timedelta(hours=self.cooldown_hours)


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


PARTITION_START = "partition_start"


def resources_for(settings: FraudopsSettings) -> dict[str, Any]:
    """Every resource of the code location, each built from its settings group."""
    storage = settings.location(settings.storage)
    return {
        "io_manager": PartitionedParquetIOManager(
            base_path=storage.url, storage_options=dict(storage.options)
        ),
        "model_io_manager": PickleIOManager(
            base_path=storage.join("objects").url, storage_options=dict(storage.options)
        ),
        STEP_IO_MANAGER: PickleIOManager(
            base_path=storage.join("steps").url, storage_options=dict(storage.options)
        ),
        "model_store": ModelStoreResource.from_settings(settings),
        "mlflow": mlflow_resource_for(settings),
        "model_registry": ModelRegistryResource.from_settings(settings),
        "prediction_log": PredictionLogResource.from_settings(settings),
        "report_store": ReportStoreResource.from_settings(settings),
        "retraining": RetrainingPolicyResource.from_settings(settings),
        "shadow_evidence": ShadowEvidenceResource.from_settings(settings),
        "captured_traffic": CapturedTrafficResource.from_settings(settings),
        "simulator": TransactionSimulatorResource.from_settings(settings),
        "landing_zone": LandingZoneResource.from_settings(settings),
        "label_feed": LabelFeedResource.from_settings(settings),
        "review": ReviewQueueResource.from_settings(settings),
        "feature_shards": FeatureShardsResource.from_settings(settings),
        PARTITION_START: PartitionStartResource.from_settings(settings),
    }
