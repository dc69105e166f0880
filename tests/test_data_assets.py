"""The data stage through Dagster: single-run backfills, checks, the landing sensor."""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from fraud_assets.core import columns as c
from fraud_assets.core.features import MerchantRiskSnapshot
from fraud_assets.core.validation import PARTITION_DATE
from fraud_assets.defs.sensors import LANDING_FILE_TAG, RANGE_END, RANGE_START
from tests.conftest import make_data_defs

RAW, VALIDATED, REJECTED = (
    dg.AssetKey(k) for k in ("raw_transactions", "validated_transactions", "rejected_transactions")
)
LANDING_CONFIG = {"ops": {"raw_transactions": {"config": {"source": "landing"}}}}


def run_range(defs, instance, first, last, run_config=None):
    job = defs.resolve_job_def("ingest_transactions")
    return job.execute_in_process(
        instance=instance,
        tags={RANGE_START: first, RANGE_END: last},
        run_config=run_config,
        raise_on_error=False,
    )


def check_results(result) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def latest_metadata(instance, key):
    return instance.get_latest_materialization_event(key).asset_materialization.metadata


def read_partition(tmp_path, key, day):
    return pd.read_parquet(tmp_path / "storage" / key.path[-1] / f"{day}.parquet")


def test_generator_backfill_is_one_run_and_loses_nothing(data_defs, instance, tmp_path):
    result = run_range(data_defs, instance, "2026-03-01", "2026-03-03")
    assert result.success
    assert len(instance.get_runs()) == 1  # three days, one run
    assert check_results(result) == {
        "required_columns_present": True,
        "nothing_lost": True,
        "fraud_rate_in_range": True,
        "rejected_share_within_limit": True,
    }
    for key in (RAW, VALIDATED, REJECTED):
        assert instance.get_materialized_partitions(key) == {"2026-03-01", "2026-03-02", "2026-03-03"}
    day = read_partition(tmp_path, VALIDATED, "2026-03-02")
    assert len(day) > 500 and day[c.TIMESTAMP].dt.date.astype(str).eq("2026-03-02").all()
    meta = latest_metadata(instance, VALIDATED)
    assert meta["dagster/row_count"].value > 1500 and "fraud_rate" not in meta  # labels: their own feed
    assert "preview" in meta and "first_transaction" in meta
    raw = latest_metadata(instance, RAW)  # the generator's fraud went to the label feed as chargebacks
    assert 0.001 < raw["chargebacks_filed"].value / raw["dagster/row_count"].value < 0.05


def landing_frame(n=60, day="2026-03-02"):
    ts = pd.date_range(f"{day} 06:00", periods=n, freq="13min")
    return pd.DataFrame(
        {
            "id": [f"X{i}" for i in range(n)],
            "ts": ts.astype(str),
            "card": [f"K{i % 7}" for i in range(n)],
            "shop": [f"S{i % 3}" for i in range(n)],
            "value": [f"{5 + i}.00" for i in range(n)],
            "fraud": [str(int(i % 30 == 0)) for i in range(n)],
        }
    )


MAPPING = {
    "transaction_id": "id",
    "timestamp": "ts",
    "card_id": "card",
    "merchant_id": "shop",
    "amount": "value",
    "is_fraud": "fraud",
}


def test_landing_rows_split_into_validated_and_rejected(tmp_path, landing_dir, instance):
    frame = landing_frame()
    frame.loc[3, "value"] = "-1"
    frame.loc[4, "value"] = "abc"
    frame.loc[5, "card"] = ""  # empty in a CSV: a null required value
    frame.loc[6, "id"] = "X5"  # a duplicate ID
    frame.to_csv(landing_dir / "day.csv", index=False)
    defs = make_data_defs(tmp_path, landing_dir, column_mapping=MAPPING)
    result = run_range(defs, instance, "2026-03-02", "2026-03-02", LANDING_CONFIG)
    # 4 of 60 rejected is over the 5% default limit: the blocking check stops the run...
    assert not result.success
    assert check_results(result)["rejected_share_within_limit"] is False
    assert check_results(result)["nothing_lost"] is True
    # ...but nothing is lost: both rows are in rejected_transactions with their reasons
    rejected = read_partition(tmp_path, REJECTED, "2026-03-02")
    assert sorted(rejected[c.TRANSACTION_ID]) == ["X3", "X4", "X5", "X5"]
    assert sorted(rejected["failed_checks"]) == [
        "amount:greater_than",
        "amount:parses_as_float64",
        "card_id:not_nullable",
        "transaction_id:unique_transaction_id",
    ]
    assert len(read_partition(tmp_path, VALIDATED, "2026-03-02")) == 56


def test_missing_required_column_blocks_validation(tmp_path, landing_dir, instance):
    landing_frame().drop(columns=["value"]).to_csv(landing_dir / "day.csv", index=False)
    mapping = {k: v for k, v in MAPPING.items() if k != "amount"}
    defs = make_data_defs(tmp_path, landing_dir, column_mapping=mapping)
    result = run_range(defs, instance, "2026-03-02", "2026-03-02", LANDING_CONFIG)
    assert not result.success
    evaluation = next(iter(result.get_asset_check_evaluations()))
    assert evaluation.check_name == "required_columns_present" and not evaluation.passed
    assert "required column 'amount' is missing" in evaluation.description
    assert instance.get_materialized_partitions(RAW) == {"2026-03-02"}  # raw kept as received
    assert instance.get_materialized_partitions(VALIDATED) == set()  # nothing built from it


def test_fraud_rate_out_of_range_blocks(tmp_path, landing_dir, instance):
    frame = landing_frame()
    frame["fraud"] = ["1" if i % 5 == 0 else "0" for i in range(len(frame))]  # 20%
    frame.to_csv(landing_dir / "day.csv", index=False)
    defs = make_data_defs(tmp_path, landing_dir, column_mapping=MAPPING)
    result = run_range(defs, instance, "2026-03-02", "2026-03-02", LANDING_CONFIG)
    assert not result.success and check_results(result)["fraud_rate_in_range"] is False


def test_landing_sensor_requests_each_file_once(tmp_path, landing_dir, instance):
    defs = make_data_defs(tmp_path, landing_dir, column_mapping=MAPPING)
    sensor = defs.resolve_sensor_def("landing_files_sensor")

    def tick(cursor):
        ctx = dg.build_sensor_context(
            instance=instance, definitions=defs, cursor=cursor, resources=defs.resources
        )
        return sensor.evaluate_tick(ctx)

    first = tick(None)
    assert first.run_requests == [] and "no new landing files" in first.skip_message

    two_days = pd.concat(
        [landing_frame(day="2026-03-02"), landing_frame(day="2026-03-03").assign(id=lambda f: "Y" + f["id"])]
    )
    two_days.to_csv(landing_dir / "batch1.csv", index=False)
    second = tick(first.cursor)
    (request,) = second.run_requests
    assert request.tags[RANGE_START] == "2026-03-02" and request.tags[RANGE_END] == "2026-03-03"
    assert request.tags[LANDING_FILE_TAG] == "batch1.csv"
    assert request.run_config == LANDING_CONFIG

    third = tick(second.cursor)
    assert third.run_requests == []  # once per file

    # the request materializes exactly the days the file covers, in one run
    job = defs.resolve_job_def("ingest_transactions")
    result = job.execute_in_process(instance=instance, tags=request.tags, run_config=request.run_config)
    assert result.success
    assert instance.get_materialized_partitions(VALIDATED) == {"2026-03-02", "2026-03-03"}

    (landing_dir / "broken.csv").write_bytes("id,ts\n1,caf\xe9\n".encode("latin-1"))
    fourth = tick(third.cursor)  # reported once, by name; no run
    assert fourth.run_requests == [] and "broken.csv" in fourth.skip_message


@pytest.mark.parametrize("shards", [1, 4])
def test_features_read_their_lookback_across_partitions(shards, tmp_path, landing_dir, instance):
    """By card shard or all at once, the same rows in the same order with the same features:
    each card's history is whole in its shard, and merchant risk adds the shards' counts up."""
    data_defs = make_data_defs(tmp_path, landing_dir, shards=shards)
    assert run_range(data_defs, instance, "2026-03-01", "2026-03-12").success
    labels = data_defs.resolve_job_def("ingest_labels")  # the generator's chargebacks, by reported day
    assert labels.execute_in_process(
        instance=instance, tags={RANGE_START: "2026-03-01", RANGE_END: "2026-03-12"}
    ).success
    job = data_defs.resolve_job_def("features_job")
    result = job.execute_in_process(
        instance=instance, tags={RANGE_START: "2026-03-10", RANGE_END: "2026-03-12"}
    )
    assert result.success
    # one step per card shard of each asset, their outputs handed over through the step store
    for graph in ("transaction_features.card_shard_features", "merchant_risk.card_shard_merchant_counts"):
        ran = {e.step_key for e in result.get_step_success_events() if e.step_key.startswith(graph)}
        assert ran == {f"{graph}[{shard}]" for shard in range(shards)}
    assert (
        len(list((tmp_path / "steps" / result.run_id).rglob("*.pkl"))) == 2 * 2 * shards
    )  # shard keys, shards
    features = read_partition(tmp_path, dg.AssetKey("transaction_features"), "2026-03-11")
    validated = read_partition(tmp_path, VALIDATED, "2026-03-11")
    assert features[c.TRANSACTION_ID].tolist() == validated[c.TRANSACTION_ID].tolist()
    # the same features as computed over the whole stream at once
    from fraud_assets.core.features import HISTORY_FEATURES, history_features
    from fraud_assets.core.labels import join_labels

    everything = pd.concat(
        [read_partition(tmp_path, VALIDATED, f"2026-03-{d:02d}") for d in range(1, 13)], ignore_index=True
    )
    fed = pd.concat(
        [read_partition(tmp_path, dg.AssetKey("fraud_labels"), f"2026-03-{d:02d}") for d in range(1, 13)],
        ignore_index=True,
    )
    assert len(fed) > 0  # the merchant features read the feed's labels
    events = join_labels(everything, fed, pd.Timedelta(days=7)).events
    full = pd.DataFrame(history_features(everything, labels=events))[
        everything[c.TIMESTAMP].dt.day.eq(11).to_numpy()
    ]
    # Equal, not close: each row's windows hold the same earlier rows either way, summed by the
    # same kernel in the same order (newest first).
    pd.testing.assert_frame_equal(
        features[list(HISTORY_FEATURES)].reset_index(drop=True),
        full[list(HISTORY_FEATURES)].reset_index(drop=True),
        check_exact=True,
    )
    meta = latest_metadata(instance, dg.AssetKey("transaction_features"))
    assert meta["history_from"].value.startswith("2026-03-01")  # earlier days absent: less history
    risk = read_partition(tmp_path, dg.AssetKey("merchant_risk"), "2026-03-12")
    assert (risk["as_of"] == pd.Timestamp("2026-03-13")).all() and risk["labelled_30d"].sum() > 0
    assert meta["card_shards"].value == shards
    # merchant risk from the shards' counts: equal to the snapshot of every row at once (whole
    # counts and maxima, summed in any order, are exact)
    whole = MerchantRiskSnapshot.compute(everything, pd.Timestamp("2026-03-13"), events).to_frame()
    pd.testing.assert_frame_equal(
        risk.drop(columns=[PARTITION_DATE]), whole, check_exact=True, check_dtype=False
    )
