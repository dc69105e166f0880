"""Shared fixtures: a throw-away Dagster instance and resources pointing into tmp_path."""

from __future__ import annotations

import os
import uuid

import dagster as dg
import pytest

from fraud_assets.core import settings
from fraud_assets.core.storage import Location, options_for
from fraud_assets.services import devservices
from fraud_assets.services.devservices import free_port
from fraud_assets.services.service import running

# The tests choose their own days: neither a developer's .env nor the first day a `make run`
# recorded in .fraudops/start_date may move the first partition of a code location they load.
# Tests of those set them up themselves.
settings.DOTENV = None
os.environ["FRAUDOPS_START_DATE"] = settings.DEFAULT_START_DATE.isoformat()

from fraud_assets.defs.features import merchant_risk, transaction_features  # noqa: E402
from fraud_assets.defs.ingestion import raw_transactions  # noqa: E402
from fraud_assets.defs.io_managers import STEP_IO_MANAGER, PartitionedParquetIOManager, PickleIOManager  # noqa: E402
from fraud_assets.defs.labels import collect_labels, ingest_labels_job, label_files_sensor  # noqa: E402
from fraud_assets.defs.partitions import PartitionStartResource  # noqa: E402
from fraud_assets.defs.resources import (  # noqa: E402
    CapturedTrafficResource,
    FeatureShardsResource,
    LabelFeedResource,
    LandingZoneResource,
    TransactionSimulatorResource,
)
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


def make_data_defs(
    tmp_path, landing_dir, labels: dict | None = None, shards: int = 1, **landing
) -> dg.Definitions:
    return dg.Definitions(
        assets=[raw_transactions, validate_transactions, collect_labels, transaction_features, merchant_risk],
        jobs=[
            ingest_transactions_job,
            ingest_labels_job,
            dg.define_asset_job("features_job", selection=["transaction_features", "merchant_risk"]),
        ],
        sensors=[landing_files_sensor, label_files_sensor],
        resources={
            "io_manager": PartitionedParquetIOManager(base_path=str(tmp_path / "storage")),
            STEP_IO_MANAGER: PickleIOManager(base_path=str(tmp_path / "steps")),
            "simulator": TransactionSimulatorResource(cardholders=SMALL_POPULATION, seed=7),
            "landing_zone": LandingZoneResource(path=str(landing_dir), **landing),
            "label_feed": LabelFeedResource(path=str(tmp_path / "labels"), **(labels or {})),
            "feature_shards": FeatureShardsResource(shards=shards),
            "captured_traffic": CapturedTrafficResource(
                feed=str(tmp_path / "capture"), storage=str(tmp_path / "storage")
            ),
            # the assets' first day (daily_partitions), and where it comes from: the variable above
            "partition_start": PartitionStartResource.from_settings(settings.load_settings()),
        },
    )


@pytest.fixture
def data_defs(tmp_path, landing_dir) -> dg.Definitions:
    return make_data_defs(tmp_path, landing_dir)


# --- an S3-compatible server, a real process (moto's), for the storage tests ---------------------


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on a free port, for the whole session (it takes a few seconds to start),
    stopped at the end (`fraud_assets.services.devservices.s3`, the cluster profile's own). Credentials
    come from the environment, as in production (botocore's standard variables); any value
    works with moto."""
    port = free_port()
    saved = {name: os.environ.get(name) for name in AWS_TEST_ENV}
    os.environ.update(AWS_TEST_ENV)
    try:
        with running([devservices.s3(port, log=os.devnull)]):
            yield f"http://127.0.0.1:{port}"
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "fraudops-test",
    "AWS_SECRET_ACCESS_KEY": "fraudops-test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture
def s3_bucket(s3_endpoint, request) -> str:
    """A new, empty bucket on the test server; its URL ``s3://<bucket>``."""
    import boto3

    name = f"t-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(params=["local", "s3"])
def storage_root(request, tmp_path) -> Location:
    """A storage root on each backend: a local folder, and a prefix in a bucket of the S3 server
    (reached as production reaches it: the endpoint through `options_for`)."""
    if request.param == "local":
        return Location.of(tmp_path / "store")
    endpoint = request.getfixturevalue("s3_endpoint")
    url = f"{request.getfixturevalue('s3_bucket')}/fraudops"
    return Location.of(url, options_for(url, endpoint))
