"""The storage abstraction (`core.storage`) on a local folder and on a real S3-compatible server
(moto's, started by the `s3_endpoint` fixture): the operations, the errors in words, and every
user of it: the IO managers, the drift reports' HTML, the prediction log."""

from __future__ import annotations

import datetime as dt
import json
import os

import dagster as dg
import pandas as pd
import pytest

from fraud_assets.core.contract import (
    LOG_READ_COLUMNS,
    daily_partitions,
    partition_location,
    prediction_log_files,
)
from fraud_assets.core.prediction_log import read_prediction_log
from fraud_assets.core.settings import load_settings
from fraud_assets.core.storage import Location, StorageError, StorageExists, StorageNotFound, options_for
from fraud_assets.defs.io_managers import PartitionedParquetIOManager, PickleIOManager
from fraud_serving.prediction_log import PredictionLogger
from tests.conftest import free_port

# --- the operations -------------------------------------------------------------------------------


def test_read_write_list_on_each_backend(storage_root):
    folder = storage_root / "asset"
    assert not folder.exists() and folder.list() == []
    (folder / "2026-01-02.parquet").write_parquet(pd.DataFrame({"x": [1, 2]}))
    (folder / "2026-01-01.parquet").write_parquet(pd.DataFrame({"x": [3]}))
    folder.join("sub", "note.txt").write_text("héllo")
    assert [entry.name for entry in folder.list()] == ["2026-01-01.parquet", "2026-01-02.parquet", "sub"]
    assert (folder / "2026-01-02.parquet").read_parquet()["x"].tolist() == [1, 2]
    assert folder.join("sub/note.txt").read_text() == "héllo"
    assert Location.read_many([folder / "sub" / "note.txt"] * 2) == ["héllo".encode()] * 2
    # a new file appears in the next listing (s3fs would serve its cached listing otherwise)
    (folder / "2026-01-03.parquet").write_parquet(pd.DataFrame({"x": [4]}))
    assert [day for day, _ in daily_partitions(storage_root, "asset")] == [
        "2026-01-01",
        "2026-01-02",
        "2026-01-03",
    ]
    # replaced whole; an exclusive write refuses an existing file and leaves it
    target = folder / "blob.bin"
    target.write_bytes(b"one")
    target.write_bytes(b"two")
    with pytest.raises(StorageExists, match="exists already"):
        target.write_bytes(b"three", exclusive=True)
    assert target.read_bytes() == b"two"
    assert not [entry.name for entry in folder.list() if entry.name.endswith(".tmp")]
    with pytest.raises(StorageNotFound, match="no such file"):
        (folder / "missing.bin").read_bytes()
    storage_root.check()


def test_a_failed_write_leaves_neither_a_partial_file_nor_a_temporary_one(storage_root):
    target = storage_root.join("out", "frame.parquet")
    target.write_bytes(b"the previous content")

    def broken(handle):
        handle.write(b"half of it")
        raise RuntimeError("the writer died mid-way")

    with pytest.raises(StorageError, match="the writer died mid-way"):
        target.write_with(broken)
    with pytest.raises(StorageError):
        storage_root.join("out", "new.parquet").write_with(broken)
    assert target.read_bytes() == b"the previous content"
    assert [entry.name for entry in target.parent.list()] == ["frame.parquet"]


def test_locations_name_and_join_as_paths_and_urls(tmp_path):
    local = Location.of(tmp_path / "a")
    assert local.is_local and local.join("b", "c.txt").url == str(tmp_path / "a" / "b" / "c.txt")
    assert Location.of(f"file://{tmp_path}/a") == local
    remote = Location.of("s3://bucket/prefix/", {"anon": True})
    assert (
        remote.url == "s3://bucket/prefix"
        and remote.join("x/y.parquet").url == "s3://bucket/prefix/x/y.parquet"
    )
    assert remote.join("x").parent == remote and remote.join("x").name == "x"
    assert remote.join("x").options == {"anon": True}
    with pytest.raises(TypeError, match="not a local path"):
        os.fspath(remote)
    assert options_for("s3://b/p", "http://minio:9000") == {
        "client_kwargs": {"endpoint_url": "http://minio:9000"}
    }
    assert options_for("/data/x", "http://minio:9000") == {} and options_for("s3://b/p", None) == {}


# --- errors in words --------------------------------------------------------------------------------


def test_a_missing_bucket_is_named(s3_endpoint):
    url = "s3://no-such-bucket-fraudops/prefix"
    where = Location.of(url, options_for(url, s3_endpoint))
    for action in (where.check, (where / "x.parquet").read_bytes, where.list):
        with pytest.raises(StorageNotFound) as info:
            action()
        assert "bucket 'no-such-bucket-fraudops' does not exist" in str(info.value)
        assert s3_endpoint in str(info.value)
    with pytest.raises(StorageNotFound, match="bucket 'no-such-bucket-fraudops' does not exist"):
        (where / "new.bin").write_bytes(b"x")  # never creates the bucket on the side


def test_missing_credentials_are_named(s3_bucket, s3_endpoint, monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance role to ask here
    url = f"{s3_bucket}/p"
    # a filesystem of its own: fsspec would reuse the instance that has the test credentials
    where = Location.of(url, {**options_for(url, s3_endpoint), "skip_instance_cache": True})
    with pytest.raises(StorageError) as info:
        where.check()
    message = str(info.value)
    assert "no credentials" in message and "AWS_ACCESS_KEY_ID" in message and url in message


def test_an_unreachable_endpoint_is_named():
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    url = "s3://bucket/p"
    options = {**options_for(url, endpoint), "config_kwargs": {"retries": {"max_attempts": 1}}}
    with pytest.raises(StorageError) as info:
        Location.of(url, options).join("x").read_bytes()
    assert f"the object store at {endpoint} does not answer" in str(info.value)
    assert "cannot read s3://bucket/p/x" in str(info.value)


# --- the IO managers ---------------------------------------------------------------------------------

DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01")


@dg.asset(partitions_def=DAYS, metadata={"partition_expr": "day"})
def daily_frame(context) -> pd.DataFrame:
    return pd.DataFrame({"day": [context.partition_key] * 3, "value": [1.0, 2.0, 3.0]})


@dg.asset(io_manager_key="model_io_manager")
def fitted_object() -> dict:
    return {"weights": [0.5, 0.25], "name": "model"}


@dg.asset(
    partitions_def=DAYS,
    metadata={"partition_expr": "day"},
    ins={"fitted_object": dg.AssetIn(input_manager_key="model_io_manager")},
)
def daily_total(daily_frame: pd.DataFrame, fitted_object: dict) -> pd.DataFrame:
    return pd.DataFrame({"day": daily_frame["day"].iloc[:1], "total": [daily_frame["value"].sum() * fitted_object["weights"][0]]})  # fmt: skip


def test_io_managers_write_the_contract_layout_and_read_it_back(storage_root, instance):
    resources = {
        "io_manager": PartitionedParquetIOManager(base_path=storage_root.url, storage_options=dict(storage_root.options)),
        "model_io_manager": PickleIOManager(
            base_path=storage_root.join("objects").url, storage_options=dict(storage_root.options)
        ),
    }  # fmt: skip
    assert dg.materialize([fitted_object], resources=resources, instance=instance).success
    for day in ("2026-01-01", "2026-01-02"):
        result = dg.materialize(
            [daily_frame, daily_total, fitted_object],
            selection=[daily_frame, daily_total],
            resources=resources,
            partition_key=day,
            instance=instance,
        )
        assert result.success
    # where the API and anyone else reads them (fraud_assets/core/contract.py)
    assert [day for day, _ in daily_partitions(storage_root, "daily_frame")] == ["2026-01-01", "2026-01-02"]
    stored = partition_location(storage_root, "daily_frame", "2026-01-02").read_parquet()
    assert stored["value"].tolist() == [1.0, 2.0, 3.0]
    totals = partition_location(storage_root, "daily_total", "2026-01-02").read_parquet()
    assert totals["total"].tolist() == [3.0]  # read back through both IO managers
    assert storage_root.join("objects", "fitted_object.pkl").exists()


# --- drift reports -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_drift_html_goes_to_the_configured_reports_location(backend, env, tmp_path, request):
    from fraud_assets.defs.resources import ReportStoreResource

    if backend == "s3":
        env.setenv("FRAUDOPS_REPORTS", f"{request.getfixturevalue('s3_bucket')}/reports")
        env.setenv("FRAUDOPS_S3_ENDPOINT_URL", request.getfixturevalue("s3_endpoint"))
    else:
        env.setenv("FRAUDOPS_REPORTS", str(tmp_path / "reports"))
    html = "<html><body>drift of 2026-03-01</body></html>"
    settings = load_settings()
    reports = ReportStoreResource.from_settings(settings)  # what the drift assets are given
    saved = reports.save_html(html, "drift", "2026-03-01")
    expected = settings.location(settings.reports).join("drift", "2026-03-01.html")
    assert saved == expected.url and expected.read_text() == html
    assert reports.save_html(None, "drift", "2026-03-02") is None


# --- the prediction log ------------------------------------------------------------------------------


def record(day: str, tid: str, p: float) -> dict:
    return {
        "scored_at": f"{day}T10:00:00.000001+00:00",
        "model_version": "v1",
        "transaction_id": tid,
        "fraud_probability": p,
        "is_fraud": int(p >= 0.5),
        "features": {"amount": 10.0},
    }


def test_the_prediction_log_writes_one_object_per_flush_and_reads_every_layout(storage_root):
    directory = storage_root / "predictions"
    logger = PredictionLogger(directory, flush_seconds=3600)  # written on flush only
    logger.start()
    logger.submit([record("2026-03-01", "a", 0.1), record("2026-03-02", "b", 0.9)])
    logger.submit([record("2026-03-01", "c", 0.2)])
    assert logger.flush()
    logger.submit([record("2026-03-01", "d", 0.3)])
    logger.close()  # writes what waits
    parts = prediction_log_files(directory, "2026-03-01")
    assert len(parts) == 2 and all(part.parent.name == "2026-03-01" for part in parts)
    assert len(prediction_log_files(directory, "2026-03-02")) == 1
    # a whole day in one file, as the API wrote it before parts: read beside the parts
    directory.join("2026-03-01.jsonl").write_text(
        json.dumps(record("2026-03-01", "old", 0.4)) + "\n{half a li"
    )
    day = read_prediction_log(directory, dt.date(2026, 3, 1))
    assert sorted(day["transaction_id"]) == ["a", "c", "d", "old"]
    assert day.columns[: len(LOG_READ_COLUMNS)].tolist() == list(LOG_READ_COLUMNS)
    assert str(day["scored_at"].dtype) == "datetime64[ns, UTC]" and str(day["is_fraud"].dtype) == "Int64"
    assert day["amount"].tolist() == [10.0] * 4
    assert read_prediction_log(directory)["transaction_id"].tolist()[-1] == "b"
    assert read_prediction_log(directory, "2026-03-05").empty


def test_a_failed_log_write_waits_for_the_store_and_loses_nothing(s3_endpoint, tmp_path):
    import boto3

    bucket = f"later-{os.urandom(4).hex()}"
    url = f"s3://{bucket}/predictions"
    logger = PredictionLogger(Location.of(url, options_for(url, s3_endpoint)), flush_seconds=3600)
    logger.start()
    logger.submit([record("2026-03-01", "a", 0.1)])
    assert not logger.flush()  # the bucket does not exist yet
    assert f"bucket '{bucket}' does not exist" in logger.error and logger.dropped == 0
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    assert logger.flush() and logger.error is None
    logger.close()
    assert read_prediction_log(logger.directory)["transaction_id"].tolist() == ["a"]
