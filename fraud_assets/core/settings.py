"""fraudops' configuration in one place: every ``FRAUDOPS_*`` variable, typed, with its default.

The variables come in groups (storage, generator, landing folder, MLflow, monitoring, scoring
API, review queue, execution); :class:`FraudopsSettings` holds them all. :func:`load_settings` reads them at two
moments only, never at import: when the Dagster code location loads (``fraud_assets/definitions.py``
builds the resources, the executor and the daily partitions' first day from them, and assets and
sensors take their values from those resources), and when the scoring API starts
(``fraud_serving/settings.py`` reads the same groups). A changed environment, or a test's
``monkeypatch``, takes effect at the next load without reloading modules. A test that configures
in code builds ``FraudopsSettings(storage=..., ...)``: the defaults and the values given, neither
the environment nor ``.env``.

Sources, highest priority first: ``.env`` in the working directory, the process environment, the
defaults below. ``.env`` wins because ``dagster dev`` does the same (it copies ``.env`` from its
working directory into its environment, over what was there), so ``make run``'s first look, the
scoring API and the Dagster UI see the same values. An empty value counts as unset.

A value that does not parse, or that the domain code refuses, fails with a message naming the
variable, the value and what is expected; so does an unknown ``FRAUDOPS_`` variable (a typo would
otherwise be ignored without a word). The README's "Configuration" tables list every variable;
a test keeps them and this module in agreement.
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime as dt
import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from dotenv import dotenv_values
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from fraud_assets.core.capture import capture_kind
from fraud_assets.core.generator import MAX_FRAUD_RATE, MIN_FRAUD_RATE, DriftKnobs, SimulationConfig
from fraud_assets.core.label_files import LABEL_FILE_COLUMNS
from fraud_assets.core.landing_settings import LandingSettings, parse_mapping_json
from fraud_assets.core.storage import Location, options_for

PREFIX = "FRAUDOPS_"
# The .env file read besides the environment: the working directory's, as dagster dev reads it.
# Tests set it to None, so that a developer's .env cannot change what they check.
DOTENV: str | None = ".env"
# With neither FRAUDOPS_START_DATE nor a recorded first day: fixed, so partitions never shift.
DEFAULT_START_DATE = dt.date(2025, 1, 1)
START_DATE_FILE = "start_date"
# The registered model in MLflow whose versions the candidates become, unless configured.
MODEL_NAME = "fraud-detector"


class SettingsError(ValueError):
    """The configuration cannot be used; the message names each variable, its value and the fix."""


def _var(name: str, default: Any = None, what: str = "", **kwargs: Any) -> Any:
    """One variable: its name, default and a one-line description (shown in errors and the README)."""
    if callable(default):
        return Field(default_factory=default, validation_alias=name, description=what, **kwargs)
    return Field(default, validation_alias=name, description=what, **kwargs)


def _judged_by(build: Callable[[Any], object]) -> AfterValidator:
    """Let the domain class judge a value: its limits and its message, kept in one place."""

    def check(value: Any) -> Any:
        build(value)
        return value

    return AfterValidator(check)


def _state(path: str) -> Callable[[dict[str, Any]], str]:
    """A default inside the state directory, which may itself be configured."""
    return lambda data: f"{data['state_dir']}/{path}"


def _absolute_state(template: str) -> Callable[[dict[str, Any]], str]:
    """A default inside the state directory, made absolute: MLflow resolves relative paths against
    each process's working directory, and the API and the runs must reach the same store."""
    return lambda data: template.format(state=os.path.abspath(data["state_dir"]))


def _mapping(raw: Any) -> Any:
    """The landing column mapping as JSON text (value rules included); the landing code judges it."""
    mapping = parse_mapping_json(raw) if isinstance(raw, str) else raw
    if isinstance(mapping, dict):
        LandingSettings.from_mapping(mapping)
    return mapping


def _capture_target(where: str) -> str:
    capture_kind(where)  # refuses an object store, which cannot append
    return where


def _encoding(name: str) -> str:
    try:
        codecs.lookup(name)
    except LookupError as err:
        raise ValueError(f"unknown text encoding {name!r} (e.g. utf-8, latin-1, cp1252)") from err
    return name


# DriftKnobs refuses a turned knob without a start day. Judging one knob at a time, a stand-in
# start lets it judge the knob's own range; drift_knobs() then checks the real start once.
_ANY_DAY = dt.date(2000, 1, 1)


def _knob(name: str) -> AfterValidator:
    return _judged_by(lambda value: DriftKnobs(start=_ANY_DAY, **{name: value}))


def _simulated(name: str) -> AfterValidator:
    """Judged by the simulation's own limits, as its ``name``."""
    return _judged_by(lambda value: SimulationConfig(**{name: value}))


class StorageSettings(BaseModel):
    TITLE: ClassVar[str] = "Storage and state"

    state_dir: str = _var(
        "FRAUDOPS_STATE_DIR",
        ".fraudops",
        "folder of fraudops' runtime state; the locations below default to folders in it (Dagster's own storage is set in `dagster.yaml`)",
    )
    storage: str = _var(
        "FRAUDOPS_STORAGE",
        _state("storage"),
        "where assets are stored (Parquet, one file per day), read by the pipeline and the scoring API; an `s3://bucket/prefix` works too",
    )
    models: str = _var(
        "FRAUDOPS_MODELS",
        _state("models"),
        "where model bundles are written (immutable, versioned); a URL works too",
    )
    s3_endpoint_url: str | None = _var(
        "FRAUDOPS_S3_ENDPOINT_URL",
        None,
        "endpoint of an S3-compatible store (MinIO, Ceph) for every `s3://` location; unset: "
        "`AWS_ENDPOINT_URL_S3`/`AWS_ENDPOINT_URL`, else AWS. Credentials: the standard AWS variables",
    )
    start_date: dt.date | None = _var(
        "FRAUDOPS_START_DATE",
        None,
        f"first daily partition, YYYY-MM-DD; unset: the first day `make run` built (recorded in "
        f"`<state dir>/{START_DATE_FILE}`), else {DEFAULT_START_DATE.isoformat()}",
    )


class GeneratorSettings(BaseModel):
    TITLE: ClassVar[str] = "Generator"

    seed: Annotated[int, _simulated("seed")] = _var(
        "FRAUDOPS_SEED", 42, "seed of the simulated population and of every day's transactions"
    )
    cardholders: Annotated[int, _simulated("n_cardholders")] = _var(
        "FRAUDOPS_CARDHOLDERS",
        3_000,
        "cardholders in the simulated population (`FRAUDOPS_TRANSACTIONS_PER_CARD_PER_DAY` transactions a day each, on average)",
    )
    fraud_rate: Annotated[float, _simulated("fraud_rate")] = _var(
        "FRAUDOPS_FRAUD_RATE",
        0.01,
        f"share of fraudulent transactions ({MIN_FRAUD_RATE} to {MAX_FRAUD_RATE})",
    )
    transactions_per_card_per_day: Annotated[float, _simulated("transactions_per_card_per_day")] = _var(
        "FRAUDOPS_TRANSACTIONS_PER_CARD_PER_DAY",
        SimulationConfig.transactions_per_card_per_day,
        "transactions a simulated card makes a day, on average (0.1 to 50)",
    )
    legit_label_delay_days: Annotated[float, _simulated("legit_label_delay_days")] = _var(
        "FRAUDOPS_LEGIT_LABEL_DELAY_DAYS",
        SimulationConfig.legit_label_delay_days,
        "days after a simulated legitimate transaction until its label is known (no chargeback came; 0 to 365)",
    )


class DriftSettings(BaseModel):
    TITLE: ClassVar[str] = "Drift knobs (generator)"

    drift_start: dt.date | None = _var(
        "FRAUDOPS_DRIFT_START",
        None,
        "first day of deliberate drift, YYYY-MM-DD; the knobs below act from that day on",
    )
    drift_amount_multiplier: Annotated[float, _knob("amount_multiplier")] = _var(
        "FRAUDOPS_DRIFT_AMOUNT_MULTIPLIER", 1.0, "scales every amount (0.05 to 20)"
    )
    drift_merchant_mix: Annotated[float, _knob("merchant_mix_shift")] = _var(
        "FRAUDOPS_DRIFT_MERCHANT_MIX",
        0.0,
        "0 to 1: half that share of ordinary purchases moves to online merchants (retail, electronics, digital goods)",
    )
    drift_device_mix: Annotated[float, _knob("device_mix_shift")] = _var(
        "FRAUDOPS_DRIFT_DEVICE_MIX",
        0.0,
        "0 to 1: that share of online purchases comes from new-generation devices never seen before",
    )
    drift_new_pattern: bool = _var(
        "FRAUDOPS_DRIFT_NEW_PATTERN", False, "a new fraud pattern: a quarter of fraud, same total rate"
    )

    def drift_knobs(self) -> DriftKnobs:
        """The knobs as the generator takes them; turned knobs need a start day."""
        knobs = DriftKnobs(
            start=self.drift_start or _ANY_DAY,
            amount_multiplier=self.drift_amount_multiplier,
            merchant_mix_shift=self.drift_merchant_mix,
            device_mix_shift=self.drift_device_mix,
            new_fraud_pattern=self.drift_new_pattern,
        )
        if knobs.active and self.drift_start is None:
            raise SettingsError(
                "drift knobs are turned (FRAUDOPS_DRIFT_*) but FRAUDOPS_DRIFT_START is not set: "
                "set it to the first drifted day, YYYY-MM-DD"
            )
        return dataclasses.replace(knobs, start=self.drift_start)


class LandingZoneSettings(BaseModel):
    TITLE: ClassVar[str] = "Landing folder (your own files)"

    landing_dir: str = _var("FRAUDOPS_LANDING_DIR", "data/landing", "the folder the landing sensor watches")
    landing_mapping: Annotated[dict[str, Any], NoDecode, BeforeValidator(_mapping)] = _var(
        "FRAUDOPS_LANDING_MAPPING",
        dict,
        'column mapping, a JSON object (ours: theirs); an entry may map values too: `"is_online": '
        '{"column": "channel", "values": {"CP": false, "CNP": true}}`',
    )
    timestamp_format: str | None = _var(
        "FRAUDOPS_TIMESTAMP_FORMAT",
        None,
        "strptime format of the files' timestamps when they are not ISO-like",
    )
    label_delay_days: Annotated[float, _judged_by(lambda v: LandingSettings(label_delay_days=v))] = _var(
        "FRAUDOPS_LABEL_DELAY_DAYS",
        LandingSettings.label_delay_days,
        "the label delay: a transaction with no label reported this many days after it counts as "
        "genuine from then on (no chargeback came); and when a file does not say when its labels "
        "became known, that many days after the transaction",
    )
    landing_encoding: Annotated[str, AfterValidator(_encoding)] = _var(
        "FRAUDOPS_LANDING_ENCODING", "utf-8", "text encoding of CSV files"
    )

    @cached_property
    def landing(self) -> LandingSettings:
        """How to read the landing files: the variables above, the mapping parsed once."""
        return LandingSettings.from_mapping(
            self.landing_mapping,
            timestamp_format=self.timestamp_format,
            label_delay_days=self.label_delay_days,
            encoding=self.landing_encoding,
        )


def _labels_mapping(raw: Any) -> Any:
    """The label files' column mapping as JSON text (value rules included), judged by their reader."""
    mapping = parse_mapping_json(raw) if isinstance(raw, str) else raw
    if isinstance(mapping, dict):
        LandingSettings.from_mapping(mapping, known_columns=LABEL_FILE_COLUMNS)
    return mapping


class LabelFeedSettings(BaseModel):
    TITLE: ClassVar[str] = "Labels (the label feed)"

    labels_dir: str = _var(
        "FRAUDOPS_LABELS_DIR",
        "data/landing/labels",
        "the folder of label files (chargebacks, analysts' decisions) the label sensor watches",
    )
    labels_mapping: Annotated[dict[str, Any], NoDecode, BeforeValidator(_labels_mapping)] = _var(
        "FRAUDOPS_LABELS_MAPPING",
        dict,
        "column mapping of label files, a JSON object (ours: theirs), value rules allowed: "
        '`"is_fraud": {"column": "status", "values": {"chargeback": 1, "reversed": 0}}`',
    )


class MlflowSettings(BaseModel):
    TITLE: ClassVar[str] = "MLflow"

    mlflow_tracking_uri: str = _var(
        "FRAUDOPS_MLFLOW_TRACKING_URI",
        _absolute_state("sqlite:///{state}/mlflow/mlflow.db"),
        "MLflow tracking and registry; a tracking server's URL works too",
    )
    mlflow_experiment: str = _var(
        "FRAUDOPS_MLFLOW_EXPERIMENT", "fraudops", "the experiment training runs go to"
    )
    mlflow_artifacts: str = _var(
        "FRAUDOPS_MLFLOW_ARTIFACTS",
        _absolute_state("{state}/mlflow/artifacts"),
        "artifact root of a new experiment",
    )
    mlflow_model_name: str = _var(
        "FRAUDOPS_MLFLOW_MODEL_NAME",
        MODEL_NAME,
        "the registered model whose versions the candidates become; its `champion` alias marks the champion",
    )


class MonitoringSettings(BaseModel):
    TITLE: ClassVar[str] = "Monitoring"

    reports: str = _var(
        "FRAUDOPS_REPORTS",
        _state("reports"),
        "where the drift reports' HTML files are saved; a URL works too",
    )
    prediction_log_dir: str = _var(
        "FRAUDOPS_PREDICTION_LOG_DIR",
        _state("predictions"),
        "the scoring API's prediction log (a folder per UTC day, a JSON Lines file per flush; a URL works too), read by `live_drift_report`",
    )
    retrain_cooldown_hours: float = _var(
        "FRAUDOPS_RETRAIN_COOLDOWN_HOURS",
        72.0,
        "after a drift-triggered retraining, further critical reports wait this many hours",
        ge=0,
    )


class ServingSettings(BaseModel):
    TITLE: ClassVar[str] = "Scoring API"

    api_key: SecretStr | None = _var(
        "FRAUDOPS_API_KEY", None, "when set, `/predict` and `/predict/batch` need header `X-API-Key: <key>`"
    )
    model_poll_seconds: float = _var(
        "FRAUDOPS_MODEL_POLL_SECONDS",
        10.0,
        "seconds between the API's looks for a newer champion (and merchant-risk day)",
        ge=0.05,
    )
    max_batch: int = _var("FRAUDOPS_MAX_BATCH", 1000, "largest `/predict/batch` (larger: 413)", ge=1)
    online_state: str = _var(
        "FRAUDOPS_ONLINE_STATE",
        "memory",
        "where the API keeps card history, retried transaction ids and the merchant risk snapshot it reads: "
        "`memory` (in the process) or a `redis://host:port/db` URL shared by every worker and replica, kept "
        "across restarts",
        pattern=r"^(memory|rediss?://.+)$",
    )
    model_runtime: Literal["compiled", "library"] = _var(
        "FRAUDOPS_MODEL_RUNTIME",
        "compiled",
        "`compiled`: XGBoost/LightGBM trees compiled and checked against the library at load (a model "
        "that does not compile is served by its library, logged); `library`: always the model's library",
    )
    prediction_log_queue: int = _var(
        "FRAUDOPS_PREDICTION_LOG_QUEUE",
        100_000,
        "scored records waiting to be written before new ones are dropped (and counted)",
        ge=1,
    )
    prediction_log_flush_seconds: float = _var(
        "FRAUDOPS_PREDICTION_LOG_FLUSH_SECONDS",
        5.0,
        "the prediction log is written as one new file (object) per flush, at most this often; "
        "a crash loses at most this much of the log",
        ge=0,
    )
    capture: Annotated[str, AfterValidator(_capture_target)] = _var(
        "FRAUDOPS_CAPTURE",
        _state("capture"),
        "where the API captures every transaction it scores and every label posted to it, before it "
        "answers: a local folder (append-only files, one per API process), a `redis://host:port/db` URL "
        "(a Redis Stream per feed, shared by every worker and replica), or `off`; the "
        "`captured_traffic_sensor` files them into `raw_transactions`",
    )
    capture_fsync: bool = _var(
        "FRAUDOPS_CAPTURE_FSYNC",
        False,
        "local capture folder only: wait for the disk before answering (a power failure then loses "
        "nothing answered; costs milliseconds per write on most disks)",
    )


class ShadowSettings(BaseModel):
    TITLE: ClassVar[str] = "Shadow challenger"

    shadow_scoring: bool = _var(
        "FRAUDOPS_SHADOW_SCORING",
        True,
        "while a challenger is registered and not promoted, the API also scores live traffic with it, "
        "off the request path (in the prediction log's writer), and logs its probability beside the "
        "champion's; never answered",
    )
    gate_requires_shadow: bool = _var(
        "FRAUDOPS_GATE_REQUIRES_SHADOW",
        False,
        "`champion_gate` holds a challenger that passed on the held-out days until `shadow_comparison` "
        "has enough labelled live transactions, then promotes or refuses it on them",
    )
    shadow_min_labels: int = _var(
        "FRAUDOPS_SHADOW_MIN_LABELS",
        500,
        "labelled live transactions both models scored before the shadow evidence decides",
        ge=1,
    )
    shadow_min_frauds: int = _var(
        "FRAUDOPS_SHADOW_MIN_FRAUDS", 20, "frauds among them before the shadow evidence decides", ge=1
    )
    shadow_resamples: int = _var(
        "FRAUDOPS_SHADOW_RESAMPLES",
        200,
        "paired bootstrap resamples (seeded) behind `shadow_comparison`'s confidence intervals",
        ge=0,
    )


class ReviewSettings(BaseModel):
    TITLE: ClassVar[str] = "Review queue"

    review_capacity: int = _var(
        "FRAUDOPS_REVIEW_CAPACITY",
        100,
        "cards the analysts can review a day: `GET /alerts` and the daily `review_queue` list that "
        "many, the highest-scored not yet reviewed (Card Precision@k's k)",
        ge=1,
    )


class ExecutionSettings(BaseModel):
    TITLE: ClassVar[str] = "Execution (scale-out)"

    executor: Literal["multiprocess", "in_process", "celery"] = _var(
        "FRAUDOPS_EXECUTOR",
        "multiprocess",
        "how a launched run executes its steps: `multiprocess` (Dagster's default: a process per "
        "step beside the run), `in_process`, or `celery` (each step a task for the Celery workers; "
        "the cluster profile, docs/scale-out.md)",
    )
    celery_broker_url: str | None = _var(
        "FRAUDOPS_CELERY_BROKER_URL",
        None,
        "the Celery broker the runs and the workers share, e.g. `redis://host:6379/0` (results go "
        "through it too); needed with `FRAUDOPS_EXECUTOR=celery`",
    )
    feature_shards: int = _var(
        "FRAUDOPS_FEATURE_SHARDS",
        1,
        "card shards a day's features are computed in, a step each (each card's history in one "
        "shard: a step holds a shard of the lookback, not all of it); Celery workers run them side "
        "by side, the in-process executor one after another; 1 computes the day at once",
        ge=1,
        le=4096,
    )


# The groups in the order the README lists them; StorageSettings comes first in the fields
# (pydantic collects the bases' fields last-to-first) because the other defaults read state_dir.
GROUPS = (
    StorageSettings,
    GeneratorSettings,
    DriftSettings,
    LandingZoneSettings,
    LabelFeedSettings,
    MlflowSettings,
    MonitoringSettings,
    ServingSettings,
    ReviewSettings,
    ShadowSettings,
    ExecutionSettings,
)


class FraudopsSettings(
    ExecutionSettings,
    ReviewSettings,
    ShadowSettings,
    ServingSettings,
    MonitoringSettings,
    MlflowSettings,
    LabelFeedSettings,
    LandingZoneSettings,
    DriftSettings,
    GeneratorSettings,
    StorageSettings,
):
    """Every setting. :func:`load_settings` reads them from the environment and ``.env``;
    ``FraudopsSettings(name=value, ...)`` (field names) takes the defaults and the values given,
    and reads neither (tests, tools that configure in code)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True)

    @cached_property
    def label_files(self) -> LandingSettings:
        """How to read the label files: their mapping parsed once, the landing zone's timestamp
        format, encoding and label delay."""
        return LandingSettings.from_mapping(
            self.labels_mapping,
            timestamp_format=self.timestamp_format,
            label_delay_days=self.label_delay_days,
            encoding=self.landing_encoding,
            known_columns=LABEL_FILE_COLUMNS,
        )

    def location(self, where: str) -> Location:
        """A configured location (``storage``, ``models``, ...) with the options that reach it."""
        return Location.of(where, options_for(where, self.s3_endpoint_url))

    def api_key_value(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key else None

    @property
    def start_date_file(self) -> Path:
        return Path(self.state_dir) / START_DATE_FILE

    def partition_start(self) -> PartitionStart:
        """The first daily partition and where it comes from (see fraud_assets/defs/partitions.py)."""
        if self.start_date is not None:
            return PartitionStart(self.start_date, "FRAUDOPS_START_DATE")
        recorded = read_recorded_start(self.start_date_file)
        if recorded is not None:
            return PartitionStart(recorded, f"{self.start_date_file}, the first day `make run` built")
        return PartitionStart(
            DEFAULT_START_DATE, "the default: no FRAUDOPS_START_DATE, no recorded first day"
        )


@dataclass(frozen=True)
class PartitionStart:
    day: dt.date
    source: str


def variables() -> dict[str, str]:
    """Variable name -> field name, for every setting."""
    return {str(field.validation_alias): name for name, field in FraudopsSettings.model_fields.items()}


def group_of(field_name: str) -> type[BaseModel]:
    return next(group for group in GROUPS if field_name in group.__annotations__)


def defaults() -> FraudopsSettings:
    """The defaults alone, without reading the environment (for the resources' own defaults)."""
    return FraudopsSettings()


class _FromEnvironment(BaseSettings, FraudopsSettings):
    """The settings read from ``.env`` and the environment (what :func:`load_settings` builds)."""

    model_config = SettingsConfigDict(case_sensitive=True, env_ignore_empty=True, extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ):
        """.env first, then the environment: the order dagster dev gives them (module docstring)."""
        return init_settings, dotenv_settings, env_settings


def load_settings() -> FraudopsSettings:
    """The settings as the environment and ``.env`` give them now; :class:`SettingsError` if unusable."""
    file_values = _dotenv()
    problems = _unknown(file_values)
    try:
        settings = _FromEnvironment(_env_file=DOTENV)
    except ValidationError as err:
        # A default computed from a bad value is not reported again (pydantic skips it and says so).
        errors = [error for error in err.errors() if error["type"] != "default_factory_not_called"]
        problems += [_explain(error, file_values) for error in errors]
    else:
        try:
            settings.drift_knobs()
        except SettingsError as err:
            problems.append(str(err))
        if settings.executor == "celery" and not settings.celery_broker_url:
            problems.append(
                "FRAUDOPS_EXECUTOR=celery needs FRAUDOPS_CELERY_BROKER_URL, the broker the Celery "
                "workers listen on (e.g. redis://127.0.0.1:6379/0)"
            )
    if problems:
        raise SettingsError("fraudops configuration:\n  - " + "\n  - ".join(problems))
    return settings


def _dotenv() -> dict[str, str]:
    if DOTENV is None or not os.path.isfile(DOTENV):
        return {}
    return {key: value for key, value in dotenv_values(DOTENV).items() if value is not None}


def _origin(name: str, file_values: dict[str, str]) -> str:
    return f"in {DOTENV}" if name in file_values else "in the environment"


def _unknown(file_values: dict[str, str]) -> list[str]:
    known = variables()
    problems = []
    for name in sorted({*os.environ, *file_values}):
        if name.startswith(PREFIX) and name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append(f"{name} ({_origin(name, file_values)}) is not a fraudops variable{hint}")
    return problems


def _expected(annotation: Any) -> str:
    """What a variable of this type takes, in words."""
    kinds = {annotation, *getattr(annotation, "__args__", ())}
    if bool in kinds:
        return "true or false (also 1/0, yes/no)"
    if int in kinds:
        return "a whole number"
    if float in kinds:
        return "a number"
    if dt.date in kinds:
        return "a date, YYYY-MM-DD"
    if getattr(annotation, "__origin__", None) is dict:
        return 'a JSON object of strings, e.g. {"amount": "amt"}'
    return "text"


def _explain(error: dict[str, Any], file_values: dict[str, str]) -> str:
    """One line per bad value: the variable, the value as written, what is wrong and expected."""
    name = str(error["loc"][0]) if error["loc"] else ""
    field = FraudopsSettings.model_fields.get(variables().get(name, ""))
    reason = str(error["msg"]).removeprefix("Value error, ")
    if field is None:
        return f"{name}: {reason}" if name else reason
    raw = file_values.get(name, os.environ.get(name, error.get("input")))
    reason = reason[:1].lower() + reason[1:]
    return (
        f"{name}={raw!r} ({_origin(name, file_values)}): {reason}; "
        f"expected {_expected(field.annotation)} ({field.description})"
    )


def read_recorded_start(path: Path) -> dt.date | None:
    """The first day recorded by ``make run`` (``None`` when nothing is recorded)."""
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8").strip()
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise SettingsError(
            f"{path} holds {text!r}, not a date YYYY-MM-DD (`make run` writes the first day it "
            "built there): correct or delete it, or set FRAUDOPS_START_DATE"
        ) from None


def record_first_day(settings: FraudopsSettings, day: dt.date) -> dt.date:
    """Record ``day`` as the first day of data, unless an earlier one is recorded; returns the
    recorded day. The start only ever moves earlier, so no partition holding data disappears."""
    path = settings.start_date_file
    recorded = read_recorded_start(path)
    if recorded is not None and recorded <= day:
        return recorded
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(f"{day.isoformat()}\n", encoding="utf-8")
    partial.replace(path)
    return day
