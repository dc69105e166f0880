"""Service configuration, read from the environment once at startup."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

STATE_DIR = os.getenv("FRAUDOPS_STATE_DIR", ".fraudops")


def _number(name: str, default: float, cast=float, minimum: float | None = None):
    raw = os.getenv(name)
    if raw is None or raw.strip() == "":
        return cast(default)
    try:
        value = cast(raw)
    except ValueError as err:
        raise ValueError(f"environment variable {name} must be a number, not {raw!r}") from err
    if minimum is not None and value < minimum:
        raise ValueError(f"environment variable {name} must be at least {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    """What the scoring service needs to know; ``Settings.from_env()`` reads it from the environment.

    - ``dagster_home``: the Dagster instance whose `champion_model` materializations say which
      model to serve (``DAGSTER_HOME``; default: the current directory, as ``make run`` uses).
    - ``storage``: where the assets' Parquet files live (``FRAUDOPS_STORAGE``), for the card
      history (``validated_transactions``) and the merchant risk snapshots (``merchant_risk``).
    - ``api_key``: when set, ``/predict`` and ``/predict/batch`` need header ``X-API-Key``.
    - ``model_poll_seconds``: how often to look for a newer champion.
    - ``prediction_log_dir``: the append-only prediction log (one JSON Lines file per day).
    - ``max_batch``: the largest ``/predict/batch`` request (larger: 413).
    """

    dagster_home: str | None = None
    storage: str = f"{STATE_DIR}/storage"
    api_key: str | None = None
    model_poll_seconds: float = 10.0
    prediction_log_dir: str = f"{STATE_DIR}/predictions"
    max_batch: int = 1000
    log_queue_size: int = 100_000
    bootstrap_card_state: bool = True

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            dagster_home=os.getenv("DAGSTER_HOME") or str(Path.cwd()),
            storage=os.getenv("FRAUDOPS_STORAGE", f"{STATE_DIR}/storage"),
            api_key=os.getenv("FRAUDOPS_API_KEY") or None,
            model_poll_seconds=_number("FRAUDOPS_MODEL_POLL_SECONDS", 10.0, float, minimum=0.05),
            prediction_log_dir=os.getenv("FRAUDOPS_PREDICTION_LOG_DIR", f"{STATE_DIR}/predictions"),
            max_batch=_number("FRAUDOPS_MAX_BATCH", 1000, int, minimum=1),
            log_queue_size=_number("FRAUDOPS_PREDICTION_LOG_QUEUE", 100_000, int, minimum=1),
        )
