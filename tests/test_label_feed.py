"""The label feed through Dagster: label files (sensor, ingest_labels), labels posted to the API
(captured, filed by the capture sensor), the generator's chargebacks; each partition's metadata;
idempotency by label id across days; and the leakage guard through both sources: a label reported
after a transaction's day never reaches that day's features."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from fraud_assets.core import columns as c
from fraud_assets.core.features import HISTORY_FEATURES
from fraud_assets.defs.labels import label_files_sensor
from fraud_assets.defs.resources import LabelFeedResource
from fraud_assets.defs.sensors import RANGE_END, RANGE_START
from fraud_assets.defs.traffic import captured_traffic_sensor
from fraud_assets.services.testing import write_dagster_home
from fraud_serving.app import create_app
from fraud_serving.settings import Settings
from tests.conftest import make_data_defs

FIRST, LAST = "2026-03-01", "2026-03-20"
CUT = "2026-03-15"  # labels reported from this day on must not reach features of days up to it
FEATURES = "transaction_features"


def with_sensors(defs: dg.Definitions) -> dg.Definitions:
    return dg.Definitions(
        assets=defs.assets,
        jobs=defs.jobs,
        sensors=[*defs.sensors, captured_traffic_sensor],
        resources=defs.resources,
    )


def run(defs, instance, job, first, last, **kwargs):
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, tags={RANGE_START: first, RANGE_END: last, **kwargs.pop("tags", {})}, **kwargs
    )
    assert result.success
    return result


def read_days(tmp_path, asset, first, last) -> pd.DataFrame:
    paths = [tmp_path / "storage" / asset / f"{d.date()}.parquet" for d in pd.date_range(first, last)]
    return pd.concat([pd.read_parquet(p) for p in paths if p.exists()], ignore_index=True)


def partition_metadata(instance, asset, day) -> dict:
    record = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[day]), limit=1
    ).records[0]
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def api_client(tmp_path) -> TestClient:
    settings = Settings(
        dagster_home=str(write_dagster_home(tmp_path / "home")),
        storage=str(tmp_path / "storage"),
        prediction_log_dir=str(tmp_path / "predictions"),
        capture=str(tmp_path / "capture"),  # where the data defs' capture sensor reads
        bootstrap_card_state=False,
    )
    return TestClient(create_app(settings), raise_server_exceptions=False)


def file_traffic(defs, instance) -> dg.SensorResult:
    """One tick of the capture sensor: the posted labels filed by reported day, runs requested."""
    context = dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources)
    return captured_traffic_sensor.evaluate_tick(context)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("feed")
    (tmp_path / "landing").mkdir()
    defs = with_sensors(make_data_defs(tmp_path, tmp_path / "landing"))
    with dg.instance_for_test() as instance:
        run(defs, instance, "ingest_transactions", FIRST, LAST)
        run(defs, instance, "ingest_labels", FIRST, LAST)
        yield defs, instance, tmp_path


def test_the_generator_s_chargebacks_are_the_feed_s_labels(world):
    _, instance, tmp_path = world
    raw = read_days(tmp_path, "validated_transactions", FIRST, LAST)
    assert c.IS_FRAUD not in raw  # its labels are not on the rows
    labels = read_days(tmp_path, "fraud_labels", FIRST, LAST)
    assert (labels["feed"] == "generator").all() and (labels["source"] == "chargeback").all()
    assert labels["label_id"].is_unique and labels[c.IS_FRAUD].eq(1).all()
    meta = partition_metadata(instance, "fraud_labels", "2026-03-12")
    assert meta["labels"] == meta["labels_joined"] > 0 and meta["labels_waiting"] == 0
    assert 1 <= meta["label_delay_median_days"] <= meta["label_delay_p90_days"] <= 60


def test_label_files_and_api_labels_join_wait_supersede_and_count_once(world, tmp_path):
    defs, instance, storage_root = world
    tx = read_days(storage_root, "validated_transactions", "2026-03-02", "2026-03-03")
    a, b, d = tx[c.TRANSACTION_ID].iloc[:3]
    day = "2026-03-18"
    path = tmp_path / "cb.csv"
    path.write_text(
        "case,txn,status,when\n"
        f"K1,{a},chargeback,{day} 09:00:00\n"
        f"K2,{b},chargeback,{day} 09:30:00\n"
        f"K3,NOT-YET-SEEN,chargeback,{day} 10:00:00\n"  # waits for its transaction
        f"K4,{d},maybe,{day} 10:00:00\n"  # a code no rule maps
    )
    labels_dir = storage_root / "labels"
    labels_dir.mkdir(exist_ok=True)
    (labels_dir / "cb.csv").write_bytes(path.read_bytes())
    mapping = {
        "label_id": "case",
        "transaction_id": "txn",
        "is_fraud": "status",
        "reported_at": "when",
    }
    defs = dg.Definitions(
        assets=defs.assets,
        jobs=defs.jobs,
        sensors=defs.sensors,
        resources={
            **defs.resources,
            "label_feed": LabelFeedResource(
                path=str(labels_dir),
                column_mapping=mapping,
                value_rules={"is_fraud": {"chargeback": "1", "reversed": "0"}},
            ),
        },
    )
    tick = label_files_sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources)
    )
    assert len(tick.run_requests) == 1, tick.skip_message
    assert (tick.run_requests[0].tags[RANGE_START], tick.run_requests[0].tags[RANGE_END]) == (day, day)
    with api_client(storage_root) as api:
        reversal = {"label_id": "R1", "transaction_id": b, "is_fraud": False, "source": "reversal"}
        reversal["reported_at"] = f"{day}T15:00:00"
        assert (
            api.post("/labels", json={"labels": [reversal, {**reversal, "reason": "a retry"}]}).status_code
            == 200
        )
        later = {
            "label_id": "R1",
            "transaction_id": b,
            "is_fraud": True,
            "reported_at": "2026-03-19T08:00:00",
        }
        assert api.post("/labels", json=later).status_code == 200  # the same id again, another day
    filed = file_traffic(defs, instance)
    assert {r.tags[RANGE_START] for r in filed.run_requests} == {day}  # 03-19's only label repeats an id
    run(defs, instance, "ingest_labels", day, "2026-03-19")
    (labels_dir / "cb.csv").unlink()  # read with this test's mapping only; its labels are stored
    stored = read_days(storage_root, "fraud_labels", day, "2026-03-19")
    mine = stored[stored["label_id"].isin(["K1", "K2", "K3", "K4", "R1"])].set_index("label_id")
    assert sorted(mine.index) == ["K1", "K2", "K3", "R1"]  # R1 once (its first record), K4 rejected
    assert mine.loc["R1", c.IS_FRAUD] == 0 and mine.loc["R1", "feed"] == "api"
    rejected = read_days(storage_root, "rejected_labels", day, day)
    assert rejected["failed_checks"].tolist() == ["is_fraud:value_rules"] and rejected[
        "source_row"
    ].tolist() == [4]
    meta = partition_metadata(instance, "fraud_labels", day)
    generated_that_day = int(((stored["feed"] == "generator") & (stored["partition_date"] == day)).sum())
    assert meta["labels"] == generated_that_day + 4
    assert meta["labels_waiting"] == 1 and meta["labels_superseding"] >= 1  # K3 waits; R1 reverses K2
    assert meta["rejected"] == 1


def test_a_label_reported_after_a_day_never_reaches_its_features_through_either_source(world, tmp_path):
    """Labels flipping many transactions' outcome, reported from the cut on, half in a label file
    and half posted to the API: the features of every day up to the cut stay equal to the last
    bit; later days' move, or the check would prove nothing."""
    defs, instance, storage_root = world
    run(defs, instance, "features_job", "2026-03-10", LAST)
    before = read_days(storage_root, FEATURES, "2026-03-10", LAST).set_index(c.TRANSACTION_ID)
    tx = read_days(storage_root, "validated_transactions", "2026-02-20", "2026-03-14")
    rng = np.random.default_rng(1)
    picked = tx[c.TRANSACTION_ID].to_numpy()[rng.choice(len(tx), 600, replace=False)]
    reported = [f"{CUT}T00:00:00" if i % 3 else f"2026-03-{16 + i % 4}T12:00:00" for i in range(len(picked))]
    half = len(picked) // 2
    lines = ["label_id,transaction_id,is_fraud,reported_at"] + [
        f"F{i},{tid},1,{at}" for i, (tid, at) in enumerate(zip(picked[:half], reported[:half], strict=True))
    ]
    labels_dir = storage_root / "labels"
    labels_dir.mkdir(exist_ok=True)
    (labels_dir / "late.csv").write_text("\n".join(lines) + "\n")
    with api_client(storage_root) as api:
        batch = [
            {"label_id": f"A{i}", "transaction_id": tid, "is_fraud": True, "reported_at": at}
            for i, (tid, at) in enumerate(zip(picked[half:], reported[half:], strict=True))
        ]
        assert api.post("/labels", json={"labels": batch}).status_code == 200
    file_traffic(defs, instance)
    run(defs, instance, "ingest_labels", CUT, LAST)
    stored = read_days(storage_root, "fraud_labels", CUT, LAST)
    assert {"file", "api"} <= set(stored["feed"])
    run(defs, instance, "features_job", "2026-03-10", LAST)
    after = read_days(storage_root, FEATURES, "2026-03-10", LAST).set_index(c.TRANSACTION_ID)
    features = [f for f in HISTORY_FEATURES if f in before]
    early = (before[c.TIMESTAMP] < pd.Timestamp(CUT) + pd.Timedelta(days=1)).to_numpy()
    pd.testing.assert_frame_equal(after.loc[early, features], before.loc[early, features], check_exact=True)
    assert (after.loc[~early, features] != before.loc[~early, features]).any(axis=1).sum() > 0
