"""What the scoring service needs of the configuration (``fraud_assets.core.settings``).

A thin view: the variables, their defaults and their validation (e.g. the minimum poll interval)
are declared once, in the core settings; ``Settings.from_env()`` reads them when the app is
created (at the API's startup), never at import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from fraud_assets.core.settings import defaults, load_settings
from fraud_assets.core.storage import Location, options_for

DEFAULTS = defaults()


@dataclass(frozen=True)
class Settings:
    """What the scoring service needs to know.

    - ``dagster_home``: the Dagster instance whose `champion_model` materializations say which
      model to serve (Dagster's own ``DAGSTER_HOME``; default: the current directory, as
      ``make run`` uses).
    - ``storage``: where the assets' Parquet files live (``FRAUDOPS_STORAGE``), for the card
      history (``validated_transactions``) and the merchant risk snapshots (``merchant_risk``).
    - ``api_key``: when set, ``/predict`` and ``/predict/batch`` need header ``X-API-Key``.
    - ``model_poll_seconds``: how often to look for a newer champion.
    - ``prediction_log_dir``: the prediction log (a folder per UTC day, a file per flush).
    - ``max_batch``: the largest ``/predict/batch`` request (larger: 413).
    - ``log_queue_size``: scored records waiting to be written before new ones are dropped.
    - ``log_flush_seconds``: how often the prediction log writes a new file (object).
    - ``s3_endpoint_url``: the endpoint of an S3-compatible store for ``s3://`` locations.
    - ``online_state``: ``memory`` (card history in the process) or a ``redis://`` URL.
    - ``model_runtime``: ``compiled`` (the accelerator when the model compiles) or ``library``.
    - ``capture``: where accepted transactions and labels are captured (a folder, ``redis://``, ``off``).
    - ``capture_fsync``: a local capture waits for the disk before answering.
    """

    dagster_home: str | None = None
    storage: str = DEFAULTS.storage
    api_key: str | None = None
    model_poll_seconds: float = DEFAULTS.model_poll_seconds
    prediction_log_dir: str = DEFAULTS.prediction_log_dir
    max_batch: int = DEFAULTS.max_batch
    log_queue_size: int = DEFAULTS.prediction_log_queue
    log_flush_seconds: float = DEFAULTS.prediction_log_flush_seconds
    s3_endpoint_url: str | None = DEFAULTS.s3_endpoint_url
    bootstrap_card_state: bool = True
    model_runtime: str = DEFAULTS.model_runtime
    online_state: str = DEFAULTS.online_state
    capture: str = "off"  # `from_env` gives the configured feed (default: the state folder's)
    capture_fsync: bool = DEFAULTS.capture_fsync

    def location(self, where: str) -> Location:
        """A configured location (storage, log, a recorded bundle) with the options reaching it."""
        return Location.of(where, options_for(where, self.s3_endpoint_url))

    @classmethod
    def from_env(cls) -> Settings:
        """The environment (and ``.env``) now; ``SettingsError`` names any unusable variable."""
        settings = load_settings()
        return cls(
            dagster_home=os.environ.get("DAGSTER_HOME") or str(Path.cwd()),
            storage=settings.storage,
            api_key=settings.api_key_value(),
            model_poll_seconds=settings.model_poll_seconds,
            prediction_log_dir=settings.prediction_log_dir,
            max_batch=settings.max_batch,
            log_queue_size=settings.prediction_log_queue,
            log_flush_seconds=settings.prediction_log_flush_seconds,
            s3_endpoint_url=settings.s3_endpoint_url,
            model_runtime=settings.model_runtime,
            online_state=settings.online_state,
            capture=settings.capture,
            capture_fsync=settings.capture_fsync,
        )
