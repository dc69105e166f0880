"""The capture feed (local segment files and a real Redis server) and the sensor that turns it into
`raw_transactions` partitions, each transaction once, beside the day's other source."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pandas as pd
import pytest

from fraud_assets.core import capture
from fraud_assets.core import columns as c
from fraud_assets.core.capture import (
    LABELS,
    TRANSACTIONS,
    CaptureError,
    file_records,
    labels_line,
    open_capture,
    read_filed,
    transactions_line,
)
from fraud_assets.core.storage import Location
from fraud_assets.defs.resources import CapturedTrafficResource
from fraud_assets.defs.sensors import RANGE_END, RANGE_START
from fraud_assets.defs.traffic import TRAFFIC_TAG, api_labels, api_transactions, captured_traffic_sensor
from fraud_assets.services.testing import redis_server
from tests.conftest import make_data_defs

DAY = "2026-03-02"
LANDING_CONFIG = {"ops": {"raw_transactions": {"config": {"source": "landing"}}}}


def request_rows(n: int, day: str = DAY, prefix: str = "T", minute: int = 0) -> tuple[list[str], list[dict]]:
    """``n`` transactions as the API validates them (card-present, so no device is needed)."""
    start = dt.datetime.fromisoformat(f"{day}T09:00:00")
    rows = [
        {
            "amount": 10.0 + i,
            "card_id": f"CARD{i % 4}",
            "merchant_id": f"MER{i % 3}",
            "timestamp": start + dt.timedelta(minutes=minute + i),
            "is_online": False,
            "merchant_category": "grocery",
        }
        for i in range(n)
    ]
    return [f"{prefix}{minute + i}" for i in range(n)], rows


def append_call(feed, ids, rows, at: str | None = None) -> None:
    feed.append(TRANSACTIONS, [transactions_line(at or dt.datetime.now(dt.UTC), ids, rows)])


@pytest.fixture(params=["local", "redis"])
def feed(request, tmp_path):
    if request.param == "local":
        feed = open_capture(str(tmp_path / "capture"))
        yield feed
        feed.close()
        return
    with redis_server() as url:
        feed = open_capture(url)
        yield feed
        feed.close()


def test_feed_reads_after_its_cursor_at_least_once_and_releases(feed, tmp_path):
    ids, rows = request_rows(5)
    for k in range(5):  # five model calls of one transaction each
        append_call(feed, ids[k : k + 1], rows[k : k + 1])
    lag = feed.lag(TRANSACTIONS, None)
    assert lag.records == 5 and lag.oldest_received_at is not None
    first = feed.read(TRANSACTIONS, None, limit=3)
    assert len(first.records) == 3 and first.more
    again = feed.read(TRANSACTIONS, None, limit=3)  # a cursor not stored: the same records again
    assert [r.line for r in again.records] == [r.line for r in first.records]
    rest = feed.read(TRANSACTIONS, first.cursor, limit=10)
    assert len(rest.records) == 2 and not rest.more
    assert feed.lag(TRANSACTIONS, first.cursor).records == 2
    assert feed.lag(TRANSACTIONS, rest.cursor).records == 0
    assert feed.read(TRANSACTIONS, rest.cursor, limit=10).records == []
    decoded = [json.loads(r.line) for r in first.records + rest.records]
    assert [d["ids"][0] for d in decoded] == ids
    feed.append(LABELS, [labels_line([{"label_id": "L1", "transaction_id": "T1", "is_fraud": 1}])])
    assert feed.lag(LABELS, None).records == 1 and feed.lag(TRANSACTIONS, rest.cursor).records == 0
    feed.close()  # a local worker seals its segment: read to its end, it may go
    feed.release(TRANSACTIONS, rest.cursor)
    after = feed.read(TRANSACTIONS, rest.cursor, limit=10)
    assert after.records == [] and feed.lag(TRANSACTIONS, rest.cursor).records == 0
    append_call(feed, ["T9"], rows[:1])  # appending goes on after a release
    assert [json.loads(r.line)["ids"] for r in feed.read(TRANSACTIONS, rest.cursor, 10).records] == [["T9"]]


def test_a_torn_last_line_is_never_read_and_a_url_is_refused(tmp_path):
    feed = open_capture(str(tmp_path / "capture"))
    ids, rows = request_rows(2)
    append_call(feed, ids, rows)
    segment = next((tmp_path / "capture" / TRANSACTIONS).iterdir())
    with open(segment, "ab") as handle:  # what a process killed in the middle of a write leaves
        handle.write(b'{"received_at":"2026-03-02T09:00:00+00:00","ids":["X"],"ro')
    batch = feed.read(TRANSACTIONS, None, limit=10)
    assert len(batch.records) == 1 and json.loads(batch.records[0].line)["ids"] == ids
    with pytest.raises(CaptureError, match="object store cannot do"):
        open_capture("s3://bucket/capture")
    assert open_capture("off") is None


def test_filing_is_idempotent_and_read_back_each_id_once(tmp_path):
    feed, storage = open_capture(str(tmp_path / "capture")), Location.of(tmp_path / "storage")
    ids, rows = request_rows(4)
    append_call(feed, ids, rows)
    append_call(feed, ids[:2], rows[:2])  # a client's retry of two of them
    late_ids, late_rows = request_rows(2, day="2026-03-03", prefix="U")
    append_call(feed, late_ids, late_rows)
    records = feed.read(TRANSACTIONS, None, 10).records
    filing = file_records(storage, TRANSACTIONS, records)
    assert filing.days == {DAY: 6, "2026-03-03": 2} and not filing.unreadable
    file_records(storage, TRANSACTIONS, records)  # a tick that died before storing its cursor
    file_records(storage, TRANSACTIONS, records[:1])  # a refiling in other pieces
    got = read_filed(storage, TRANSACTIONS, [DAY, "2026-03-03"])
    assert [row[c.TRANSACTION_ID] for row in got] == [*ids, *late_ids]
    assert all(row["received_at"] for row in got)


def sensor_defs(tmp_path, landing_dir, feed: str | None = None):
    """The data stage with the capture sensor; its feed ``tmp_path/capture`` unless given."""
    base = make_data_defs(tmp_path, landing_dir)
    traffic = CapturedTrafficResource(
        feed=feed or str(tmp_path / "capture"), storage=str(tmp_path / "storage")
    )
    return dg.Definitions(
        assets=[*base.assets, api_transactions, api_labels],
        jobs=base.jobs,
        sensors=[captured_traffic_sensor],
        resources={**base.resources, "captured_traffic": traffic},
    )


def tick(defs, instance, cursor=None):
    context = dg.build_sensor_context(
        instance=instance, definitions=defs, resources=defs.resources, cursor=cursor
    )
    return captured_traffic_sensor.evaluate_tick(context)


def run(defs, instance, first, last, run_config=None):
    result = defs.resolve_job_def("ingest_transactions").execute_in_process(
        instance=instance, tags={RANGE_START: first, RANGE_END: last}, run_config=run_config
    )
    assert result.success
    return result


def partition(tmp_path, asset, day=DAY) -> pd.DataFrame:
    return pd.read_parquet(tmp_path / "storage" / asset / f"{day}.parquet")


def test_sensor_files_the_feed_and_each_transaction_lands_once(tmp_path, landing_dir, instance):
    defs = sensor_defs(tmp_path, landing_dir)
    run(defs, instance, DAY, DAY)  # the generator's day first
    generated = partition(tmp_path, "raw_transactions")
    feed = open_capture(str(tmp_path / "capture"))
    ids, rows = request_rows(6)
    append_call(feed, ids, rows, at="2026-03-02T09:30:00.000000+00:00")
    append_call(feed, ids[:3], rows[:3])  # retried
    # the API also scored two of the generator's transactions (same ids): kept once, as the API's
    known = generated[generated[c.FRAUD_SCENARIO] != "none"].head(1)
    seen = pd.concat([known, generated[generated[c.FRAUD_SCENARIO] == "none"].head(1)])
    seen_rows = [
        {k: (v.to_pydatetime() if isinstance(v, pd.Timestamp) else v) for k, v in r.items() if k in rows[0]}
        for r in seen.to_dict("records")
    ]
    append_call(feed, seen[c.TRANSACTION_ID].tolist(), seen_rows)
    ids2, rows2 = request_rows(2, day="2026-03-04", prefix="V")
    append_call(feed, ids2, rows2)

    result = tick(defs, instance)
    assert len(result.run_requests) == 2  # 03-02 and 03-04 are not consecutive
    request = result.run_requests[0]
    assert request.tags[RANGE_START] == request.tags[RANGE_END] == DAY
    assert request.tags[TRAFFIC_TAG] == TRANSACTIONS
    assert request.run_config == {"ops": {"raw_transactions": {"config": {"source": "api"}}}}
    observed = next(e for e in result.asset_events if isinstance(e, dg.AssetObservation))
    assert observed.metadata["records_waiting"].value == 4
    assert observed.metadata["records_left"].value == 0
    assert observed.metadata["oldest_waiting_seconds"].value > 0
    filed = [e for e in result.asset_events if isinstance(e, dg.AssetMaterialization)]
    assert {e.partition: e.metadata["rows_filed"].value for e in filed} == {DAY: 11, "2026-03-04": 2}

    run(defs, instance, DAY, DAY, request.run_config)
    raw, validated = partition(tmp_path, "raw_transactions"), partition(tmp_path, "validated_transactions")
    api = raw[raw["source"] == "api"]
    assert sorted(api[c.TRANSACTION_ID]) == sorted([*ids, *seen[c.TRANSACTION_ID]])
    assert len(raw) == len(generated) + len(ids)  # the generator's rows kept, minus the two now the API's
    assert validated[c.TRANSACTION_ID].is_unique and len(validated) + len(
        partition(tmp_path, "rejected_transactions")
    ) == len(raw)
    carried = api.set_index(c.TRANSACTION_ID).loc[known[c.TRANSACTION_ID].iloc[0]]
    assert carried["received_at"] is not pd.NaT
    assert c.IS_FRAUD not in api  # labels come from the label feed, never invented for traffic
    meta = instance.get_latest_materialization_event(dg.AssetKey("raw_transactions")).asset_materialization
    assert meta.metadata["api_rows"].value == 8 and meta.metadata["api_also_in_other_source"].value == 2

    again = tick(defs, instance, result.cursor)  # nothing new: caught up, no run
    assert again.run_requests == [] and "caught up" in again.skip_message
    run(defs, instance, DAY, DAY, request.run_config)  # a re-run reproduces the same rows
    pd.testing.assert_frame_equal(partition(tmp_path, "raw_transactions"), raw)

    # A landing file for the same day replaces the generator's rows; the API's stay.
    n = 40
    pd.DataFrame(
        {
            "transaction_id": [*(f"F{i}" for i in range(n)), ids[0]],
            "timestamp": [*(f"{DAY} {10 + i // 6}:{i % 6}5:00" for i in range(n)), f"{DAY} 09:00:00"],
            "card_id": [*(f"K{i % 5}" for i in range(n)), "CARD0"],
            "merchant_id": [*(["S1"] * n), "MER0"],
            "amount": [*(f"{5 + i}.00" for i in range(n)), "10.00"],
            "is_fraud": [*(["0"] * n), "1"],
        }
    ).to_csv(landing_dir / "day.csv", index=False)
    run(defs, instance, DAY, DAY, LANDING_CONFIG)
    raw = partition(tmp_path, "raw_transactions")
    assert raw.groupby("source").size().to_dict() == {"api": 8, "landing": n}
    row = raw.set_index(c.TRANSACTION_ID).loc[ids[0]]
    assert row["source"] == "api" and row[c.IS_FRAUD] == "1"  # the file's chargeback flag, as received
    assert partition(tmp_path, "validated_transactions")[c.TRANSACTION_ID].is_unique

    # And the other way round: new API traffic keeps the landing file's rows.
    more_ids, more_rows = request_rows(2, minute=30)
    append_call(feed, more_ids, more_rows)
    third = tick(defs, instance, again.cursor)
    run(defs, instance, DAY, DAY, third.run_requests[0].run_config)
    assert partition(tmp_path, "raw_transactions").groupby("source").size().to_dict() == {
        "api": 10,
        "landing": n,
    }


def test_sensor_leaves_days_to_a_queued_run_and_reports_days_outside(tmp_path, landing_dir, instance):
    defs = sensor_defs(tmp_path, landing_dir)
    feed = open_capture(str(tmp_path / "capture"))
    ids, rows = request_rows(2)
    append_call(feed, ids, rows)
    first = tick(defs, instance)
    assert len(first.run_requests) == 1
    job = defs.resolve_job_def("ingest_transactions")
    instance.create_run_for_job(job, status=dg.DagsterRunStatus.NOT_STARTED, tags=first.run_requests[0].tags)
    append_call(feed, *request_rows(1, minute=10))
    old_ids, old_rows = request_rows(1, day="2020-01-05", prefix="OLD")
    append_call(feed, old_ids, old_rows)
    second = tick(defs, instance, first.cursor)
    assert second.run_requests == []  # the queued run reads the new file when it starts
    assert "outside the partitions" in second.skip_message and "FRAUDOPS_START_DATE" in second.skip_message
    assert (
        read_filed(Location.of(tmp_path / "storage"), TRANSACTIONS, ["2020-01-05"])[0][c.TRANSACTION_ID]
        == "OLD0"
    )


def test_sensor_with_capture_off_says_so(tmp_path, instance):
    off = CapturedTrafficResource(storage=str(tmp_path / "storage"), feed="off")
    context = dg.build_sensor_context(instance=instance, resources={"captured_traffic": off})
    assert "FRAUDOPS_CAPTURE is off" in captured_traffic_sensor.evaluate_tick(context).skip_message


def test_full_segments_are_sealed_read_and_released(tmp_path, monkeypatch):
    monkeypatch.setattr(capture, "SEGMENT_BYTES", 600)  # a new segment every few records
    feed = open_capture(str(tmp_path / "capture"), fsync=True)
    ids, rows = request_rows(12)
    for k in range(12):
        append_call(feed, ids[k : k + 1], rows[k : k + 1])
    folder = tmp_path / "capture" / TRANSACTIONS
    sealed = [p for p in folder.iterdir() if p.name.endswith(capture.SEALED_SUFFIX)]
    assert len(sealed) >= 2 and len(list(folder.iterdir())) - len(sealed) <= 1  # and the one in use
    half = feed.read(TRANSACTIONS, None, limit=5)
    feed.release(TRANSACTIONS, half.cursor)  # only segments read to their end go
    rest = feed.read(TRANSACTIONS, half.cursor, limit=100)
    got = [json.loads(r.line)["ids"][0] for r in half.records + rest.records]
    assert got == ids  # segments are read oldest first, each record once
    feed.release(TRANSACTIONS, rest.cursor)
    assert not [p for p in folder.iterdir() if p.name.endswith(capture.SEALED_SUFFIX)]  # an open one stays
    assert feed.lag(TRANSACTIONS, rest.cursor).records == 0
