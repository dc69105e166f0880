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
    - ``prediction_log_dir``: the append-only prediction log (one JSON Lines file per day).
    - ``max_batch``: the largest ``/predict/batch`` request (larger: 413).
    - ``log_queue_size``: scored records waiting to be written before new ones are dropped.
    """

    dagster_home: str | None = None
    storage: str = DEFAULTS.storage
    api_key: str | None = None
    model_poll_seconds: float = DEFAULTS.model_poll_seconds
    prediction_log_dir: str = DEFAULTS.prediction_log_dir
    max_batch: int = DEFAULTS.max_batch
    log_queue_size: int = DEFAULTS.prediction_log_queue
    bootstrap_card_state: bool = True

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
        )
