"""Shared fixtures: a throw-away Dagster instance and resources pointing into tmp_path."""

from __future__ import annotations

import os

import dagster as dg
import pytest

from fraud_assets.core import settings

# Before the code location's modules are imported (they define the partitions): the tests choose
# their own days, so neither a developer's .env nor the first day a `make run` recorded in
# .fraudops/start_date may move the first partition. Tests of those set them up themselves.
settings.DOTENV = None
os.environ["FRAUDOPS_START_DATE"] = settings.DEFAULT_START_DATE.isoformat()

from fraud_assets.defs.features import merchant_risk, transaction_features  # noqa: E402
from fraud_assets.defs.ingestion import raw_transactions  # noqa: E402
from fraud_assets.defs.io_managers import PartitionedParquetIOManager  # noqa: E402
from fraud_assets.defs.resources import LandingZoneResource, TransactionSimulatorResource  # noqa: E402
from fraud_assets.defs.sensors import ingest_transactions_job, landing_files_sensor  # noqa: E402
from fraud_assets.defs.validation import validate_transactions  # noqa: E402

SMALL_POPULATION = 400  # about 1,000 transactions a day: quick, yet with fraud every day


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def env(monkeypatch, tmp_path):
    """No FRAUDOPS_ variable, no .env, and a working directory of the test's own: set what a
    test needs with ``env.setenv`` and call ``load_settings()``."""
    for name in list(os.environ):
        if name.startswith(settings.PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(settings, "DOTENV", None)
    return monkeypatch


@pytest.fixture
def landing_dir(tmp_path):
    path = tmp_path / "landing"
    path.mkdir()
    return path


def make_data_defs(tmp_path, landing_dir, **landing) -> dg.Definitions:
    return dg.Definitions(
        assets=[raw_transactions, validate_transactions, transaction_features, merchant_risk],
        jobs=[
            ingest_transactions_job,
            dg.define_asset_job("features_job", selection=["transaction_features", "merchant_risk"]),
        ],
        sensors=[landing_files_sensor],
        resources={
            "io_manager": PartitionedParquetIOManager(base_path=str(tmp_path / "storage")),
            "simulator": TransactionSimulatorResource(n_cardholders=SMALL_POPULATION, seed=7),
            "landing_zone": LandingZoneResource(path=str(landing_dir), **landing),
        },
    )


@pytest.fixture
def data_defs(tmp_path, landing_dir) -> dg.Definitions:
    return make_data_defs(tmp_path, landing_dir)
