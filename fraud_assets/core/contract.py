"""The contract between the pipeline and the scoring API, in one place both import.

The Dagster layer writes what the API reads; each side imports its half from here, so a change
is made once and both sides follow (or a test fails):

- the asset keys the API depends on (:data:`CHAMPION_MODEL`, :data:`VALIDATED_TRANSACTIONS`,
  :data:`MERCHANT_RISK`);
- the storage layout: an asset's daily partitions are ``<storage>/<asset>/<YYYY-MM-DD>.parquet``
  (:func:`partition_location`, :func:`daily_partitions`), written by the Parquet IO manager and
  read by the API's card history and merchant risk;
- the champion record (:class:`ChampionRecord`): what `champion_model`'s materialization stores
  (:meth:`ChampionRecord.to_metadata`) and what every reader of the champion gets back
  (:meth:`ChampionRecord.from_metadata`, through `fraud_assets.core.champion_history`), with how
  and why it became champion (a promotion through the gate, or a rollback);
- the prediction log: its line schema (the ``LOG_*`` names) and its layout, one object per flush
  under ``<log dir>/<YYYY-MM-DD>/`` (:func:`prediction_log_part`), written by the API and read by
  `fraud_assets.core.prediction_log` for the live drift report.

Pure: no Dagster import (the metadata are plain values; Dagster's metadata objects are unwrapped
through their ``value``).
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from fraud_assets.core.storage import Location

# --- asset keys -----------------------------------------------------------------------------------

RAW_TRANSACTIONS = "raw_transactions"  # transactions as received, API traffic among them
CHAMPION_MODEL = "champion_model"  # the served model: its latest materialization's metadata
CHALLENGER_MODEL = "challenger_model"  # the registered challenger (a ChampionRecord, not promoted)
CHAMPION_GATE = "champion_gate"  # the blocking check on challenger_model that decides a promotion
SHADOW_COMPARISON = "shadow_comparison"  # champion and shadow challenger on the same labelled traffic
VALIDATED_TRANSACTIONS = "validated_transactions"  # the card history the API starts from
MERCHANT_RISK = "merchant_risk"  # the merchant risk snapshots the API looks up

# --- storage layout -------------------------------------------------------------------------------

PARTITION_SUFFIX = ".parquet"
_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.parquet$")


def asset_location(storage: Location, asset_path: str | Sequence[str]) -> Location:
    """The folder of an asset's partitions: ``<storage>/<asset key path>``."""
    parts = [asset_path] if isinstance(asset_path, str) else list(asset_path)
    return storage.join(*parts)


def partition_location(
    storage: Location, asset_path: str | Sequence[str], partition_key: str | None
) -> Location:
    """Where one partition of an asset lives: ``<storage>/<asset>/<partition>.parquet``, or
    ``<storage>/<asset>.parquet`` for an unpartitioned asset."""
    folder = asset_location(storage, asset_path)
    if partition_key is None:
        return folder.parent.join(folder.name + PARTITION_SUFFIX)
    return folder.join(f"{partition_key}{PARTITION_SUFFIX}")


def daily_partitions(storage: Location, asset: str) -> list[tuple[str, Location]]:
    """``(YYYY-MM-DD, location)`` of an asset's daily partition files, oldest first (other files
    in the folder, such as an interrupted write's temporary file, are ignored)."""
    found = []
    for entry in asset_location(storage, asset).list():
        match = _DAY_FILE.match(entry.name)
        if match:
            found.append((match.group(1), entry))
    return found


# --- the champion record --------------------------------------------------------------------------


class ContractError(ValueError):
    """Metadata that do not hold a valid champion record; the message names what is wrong."""


# How a record became champion (`ChampionRecord.promotion`).
PROMOTION = "promotion"  # a challenger that passed `champion_gate`
ROLLBACK = "rollback"  # an earlier champion put back by hand (the `rollback_champion` job)


HEADLINE_METRICS = ("auc_roc", "average_precision", "precision_at_90_recall")
WINDOW_SEPARATOR = " .. "
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ChampionRecord:
    """A registered model as the pipeline hands it to serving: the bundle and how to trust it.

    A challenger's record is the same, with ``promoted_at`` unset; `champion_model` sets it,
    with how (``promotion``: :data:`PROMOTION` or :data:`ROLLBACK`), why (``reason``: the gate's
    verdict, or the words of whoever rolled back) and which champion it replaced.
    ``bundle_uri`` is a location (local path or URL) readable through `core.storage`.
    """

    version: str  # the bundle's version, "<YYYYmmddTHHMMSS>-<algorithm>-<8 hex>"
    bundle_uri: str
    bundle_sha256: str
    algorithm: str
    threshold: float
    training_window: tuple[str, str]  # ISO dates, first and last training day
    metrics: dict[str, float] = field(default_factory=dict)
    mlflow_model_version: str | None = None
    mlflow_run_id: str | None = None
    promoted_at: str | None = None  # ISO timestamp (UTC) of the promotion
    # SHA-256 of the model without its save time (`ModelBundle.content_sha256`): equal across
    # runs that trained the same model, which is how two machines' champions are compared.
    content_sha256: str | None = None
    promotion: str | None = None  # PROMOTION or ROLLBACK
    reason: str | None = None  # why it became champion
    replaced_version: str | None = None  # the bundle version of the champion it replaced

    # The metadata key of each field (the bundle's version is `bundle_version` in the UI).
    KEYS = {
        "version": "bundle_version",
        "bundle_uri": "bundle_uri",
        "bundle_sha256": "bundle_sha256",
        "algorithm": "algorithm",
        "threshold": "threshold",
        "training_window": "training_window",
        "metrics": "metrics",
        "mlflow_model_version": "mlflow_model_version",
        "mlflow_run_id": "mlflow_run_id",
        "promoted_at": "promoted_at",
        "content_sha256": "content_sha256",
        "promotion": "promotion",
        "reason": "promotion_reason",
        "replaced_version": "replaced_version",
    }
    REQUIRED = ("version", "bundle_uri", "bundle_sha256", "algorithm", "threshold")
    LOCATION_KEYS = ("bundle_uri",)  # metadata values that are locations (shown as paths)

    def __post_init__(self) -> None:
        if not _SHA256.match(self.bundle_sha256 or ""):
            raise ContractError(f"bundle_sha256 must be 64 lowercase hex digits, got {self.bundle_sha256!r}")
        if not (isinstance(self.threshold, int | float) and 0.0 <= float(self.threshold) <= 1.0):
            raise ContractError(f"threshold must be a probability in [0, 1], got {self.threshold!r}")
        if not self.bundle_uri or not self.version:
            raise ContractError("a champion record needs a bundle_uri and a version")

    @property
    def name(self) -> str:
        """How people name the model: its MLflow version and its bundle version."""
        if self.mlflow_model_version:
            return f"v{self.mlflow_model_version} ({self.version})"
        return self.version

    def promoted(
        self,
        at: dt.datetime | None = None,
        *,
        promotion: str = PROMOTION,
        reason: str | None = None,
        replaced: ChampionRecord | None = None,
    ) -> ChampionRecord:
        """The record as champion from now (or ``at``): how, why, and in place of which champion."""
        if promotion not in (PROMOTION, ROLLBACK):
            raise ContractError(f"promotion must be {PROMOTION!r} or {ROLLBACK!r}, got {promotion!r}")
        moment = at or dt.datetime.now(dt.UTC)
        return replace(
            self,
            promoted_at=moment.isoformat(),
            promotion=promotion,
            reason=reason or None,
            replaced_version=replaced.version if replaced is not None else None,
        )

    def to_metadata(self) -> dict[str, Any]:
        """The materialization metadata: plain values (text, numbers, a JSON object), plus the
        headline metrics as numbers of their own so the UI can plot them. Unset fields are left
        out."""
        values = asdict(self)
        values["training_window"] = WINDOW_SEPARATOR.join(self.training_window)
        values["threshold"] = float(self.threshold)
        values["metrics"] = {k: float(v) for k, v in self.metrics.items()}
        out = {self.KEYS[name]: value for name, value in values.items() if value is not None}
        out.update({k: round(float(self.metrics[k]), 4) for k in HEADLINE_METRICS if k in self.metrics})
        return out

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> ChampionRecord:
        """The record from a materialization's metadata (Dagster metadata values or plain ones).

        Raises :class:`ContractError` naming each missing or malformed key. Records written
        before ``metrics`` was stored whole give the headline metrics they show.
        """
        plain = plain_metadata(metadata)
        missing = [cls.KEYS[name] for name in cls.REQUIRED if plain.get(cls.KEYS[name]) in (None, "")]
        if missing:
            raise ContractError(
                f"the {CHAMPION_MODEL} metadata lack {', '.join(repr(k) for k in missing)} "
                f"(they hold {', '.join(sorted(plain)) or 'nothing'})"
            )
        values = {name: plain.get(key) for name, key in cls.KEYS.items()}
        metrics = values["metrics"]
        if not isinstance(metrics, Mapping):
            metrics = {k: plain[k] for k in HEADLINE_METRICS if k in plain}
        try:
            return cls(
                version=str(values["version"]),
                bundle_uri=str(values["bundle_uri"]),
                bundle_sha256=str(values["bundle_sha256"]).lower(),
                algorithm=str(values["algorithm"]),
                threshold=float(values["threshold"]),
                training_window=_window(values["training_window"]),
                metrics={str(k): float(v) for k, v in metrics.items() if _number(v)},
                mlflow_model_version=_text(values["mlflow_model_version"]),
                mlflow_run_id=_text(values["mlflow_run_id"]),
                promoted_at=_text(values["promoted_at"]),
                content_sha256=_text(values["content_sha256"]),
                promotion=_text(values["promotion"]),
                reason=_text(values["reason"]),
                replaced_version=_text(values["replaced_version"]),
            )
        except (TypeError, ValueError) as err:
            if isinstance(err, ContractError):
                raise
            raise ContractError(f"the {CHAMPION_MODEL} metadata are malformed: {err}") from err


def plain_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata as plain Python values (JSON-friendly)."""
    return {str(key): _plain(value) for key, value in metadata.items()}


def _plain(value: Any) -> Any:
    """A metadata value as plain Python (Dagster's metadata objects hold theirs in ``value``)."""
    value = getattr(value, "value", value)
    item = getattr(value, "item", None)  # NumPy scalars
    return item() if callable(item) and not isinstance(value, str | bytes) else value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(float(value))


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _window(value: Any) -> tuple[str, str]:
    if value is None or value == "":
        return ("", "")
    parts = value.split(WINDOW_SEPARATOR.strip()) if isinstance(value, str) else list(value)
    if len(parts) != 2:
        raise ContractError(f"training_window must be two dates, got {value!r}")
    return (str(parts[0]).strip(), str(parts[1]).strip())


# --- the prediction log ---------------------------------------------------------------------------
#
# One JSON line per model call (a batch request, or single requests scored together): the call's
# facts, then its transactions as columns (lists of equal length). A call field given as a list
# holds one value per transaction (the latency of requests scored together). `scored_at` comes
# first: the writer files a line under its day by reading its first bytes.

LOG_CALL_FIELDS = ("scored_at", "model_version", "threshold", "latency_ms")
LOG_TRANSACTION_FIELDS = (
    "transaction_id", "card_id", "merchant_id", "timestamp", "fraud_probability", "is_fraud",
    "risk_level", "reason_codes",
)  # fmt: skip
LOG_FEATURES = "features"  # {model input: [values]}; null = missing, imputed
# Present while a challenger is scored in shadow (`fraud_serving.shadow`), after the features: its
# bundle version (a call field) and its probability of each transaction (never answered).
LOG_SHADOW_FIELDS = ("shadow_version", "shadow_probability")
# The reader adds them, after its first columns, when a line of what it read holds them.
LOG_SHADOW_DTYPES = {"shadow_version": "object", "shadow_probability": "float64"}
# The transactions as the client sent them are not here: they are the capture feed's
# (`fraud_assets.core.capture`), which keeps them durably; this log says what the model did.
LOG_LINE_ORDER = (*LOG_CALL_FIELDS, *LOG_TRANSACTION_FIELDS, LOG_FEATURES)
_LINE_HEAD = b'{"' + LOG_CALL_FIELDS[0].encode() + b'":"'

# The reader's frame: these columns first, in this order and type, then one per model input.
LOG_READ_DTYPES = {
    "scored_at": "datetime64[ns, UTC]",
    "timestamp": "datetime64[ns]",  # the transaction's own, naive local time
    "transaction_id": "object",
    "card_id": "object",
    "merchant_id": "object",
    "model_version": "object",
    "threshold": "float64",
    "fraud_probability": "float64",
    "is_fraud": "Int64",
    "risk_level": "object",
    "latency_ms": "float64",
    "reason_codes": "object",  # list of {feature, value, contribution}
}
LOG_READ_COLUMNS = tuple(LOG_READ_DTYPES)

LOG_SUFFIX = ".jsonl"
_LOG_DAY = re.compile(r"^(\d{4}-\d{2}-\d{2})(\.jsonl)?$")


def line_day(line: bytes) -> str:
    """The UTC day (YYYY-MM-DD) a log line was scored, read from its first bytes."""
    if not line.startswith(_LINE_HEAD):
        raise ContractError(f"a prediction log line must start with {_LINE_HEAD.decode()!r}")
    start = len(_LINE_HEAD)
    return line[start : start + 10].decode()


def prediction_log_part(directory: Location, day: str, at: dt.datetime | None = None) -> Location:
    """A new object for one flush of a day's lines: ``<dir>/<day>/<HHMMSS.ffffff>-<random>.jsonl``.

    Parts sort by time within a day; the random suffix keeps two writers (workers, replicas)
    from ever choosing the same name.
    """
    moment = (at or dt.datetime.now(dt.UTC)).strftime("%H%M%S.%f")
    return directory.join(day, f"{moment}-{os.urandom(6).hex()}{LOG_SUFFIX}")


def prediction_log_files(directory: Location, day: str | None = None) -> list[Location]:
    """Every file holding lines of ``day`` (or of every day), oldest day first: the day's parts
    under ``<dir>/<day>/`` and ``<dir>/<day>.jsonl``, a whole day in one file (the layout before
    parts, when the log was appended to)."""
    entries = (
        [directory.join(day + LOG_SUFFIX), directory.join(day)]
        if day is not None
        else [entry for entry in directory.list() if _LOG_DAY.match(entry.name)]
    )
    files = []
    for entry in entries:
        if entry.name.endswith(LOG_SUFFIX):
            if day is None or entry.exists():
                files.append(entry)
        else:
            files.extend(part for part in entry.list() if part.name.endswith(LOG_SUFFIX))
    return files
