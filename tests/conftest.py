"""Shared fixtures: a throw-away Dagster instance and resources pointing into tmp_path."""

from __future__ import annotations

import dagster as dg
import pytest

from fraud_assets.defs.features import merchant_risk, transaction_features
from fraud_assets.defs.ingestion import raw_transactions
from fraud_assets.defs.io_managers import PartitionedParquetIOManager
from fraud_assets.defs.resources import LandingZoneResource, TransactionSimulatorResource
from fraud_assets.defs.sensors import ingest_transactions_job, landing_files_sensor
from fraud_assets.defs.validation import validate_transactions

SMALL_POPULATION = 400  # about 1,000 transactions a day: quick, yet with fraud every day


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


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
