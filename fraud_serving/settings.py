"""The scoring service's configuration: the fraudops settings themselves, plus where the Dagster
instance is.

The API reads the same groups as the pipeline (``fraud_assets.core.settings``: storage, monitoring,
the scoring API's own), by the same names, with the same defaults and validation; it adds only
what is not a fraudops variable. ``Settings.from_env()`` reads them when the app is created (at
the API's startup), never at import; a test builds ``Settings(storage=..., ...)`` from the
defaults and the values it gives, without reading the environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from fraud_assets.core.settings import FraudopsSettings, load_settings


def _working_directory() -> str:
    return str(Path.cwd())


class Settings(FraudopsSettings):
    """Every fraudops setting, and:

    - ``dagster_home``: the Dagster instance whose `champion_model` materializations say which
      model to serve (Dagster's own ``DAGSTER_HOME``; default: the current directory, as
      ``make run`` uses).
    - ``bootstrap_card_state``: load the card history from the stored `validated_transactions`
      when the service starts.
    """

    dagster_home: str = Field(default_factory=_working_directory)
    bootstrap_card_state: bool = True
    # Off unless configured: `from_env` gives the configured feed (default: the state folder's),
    # so a test that builds Settings(...) captures nothing unless it asks to.
    capture: str = "off"

    @classmethod
    def from_env(cls) -> Settings:
        """The environment (and ``.env``) now; ``SettingsError`` names any unusable variable."""
        settings = load_settings()
        values = {name: getattr(settings, name) for name in FraudopsSettings.model_fields}
        return cls(**values, dagster_home=os.environ.get("DAGSTER_HOME") or _working_directory())
