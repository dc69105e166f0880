"""The batched SQLite event log stores what Dagster's own stores, with fewer commits.

The same single-run backfills (one that succeeds, one that fails in its second step) run on an
instance with Dagster's `SqliteEventLogStorage` and on one with `BatchedSqliteEventLogStorage`;
the run logs, the asset records and the partition status the UI shows (materialized, failed,
in progress) must be the same, and the batched storage must not have stored the per-partition
events one by one.
"""

import os
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.events import DagsterEventType
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

from fraud_assets.services.event_log_storage import BATCH_SIZE_VARIABLE, BatchedSqliteEventLogStorage

ROOT = Path(__file__).resolve().parents[1]
DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_date="2026-01-11")
CHECK = dg.AssetCheckSpec("rows_counted", asset="validated", blocking=True)


@dg.asset(partitions_def=DAYS, backfill_policy=dg.BackfillPolicy.single_run())
def raw() -> None:
    return None


class SplitConfig(dg.Config):
    fail: bool = False


@dg.multi_asset(
    outs={"validated": dg.AssetOut(), "rejected": dg.AssetOut()},
    partitions_def=DAYS,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[raw],
    check_specs=[CHECK],
)
def split(config: SplitConfig):
    if config.fail:
        raise ValueError("the split failed")
    yield dg.Output(None, "validated")
    yield dg.Output(None, "rejected")
    yield dg.AssetCheckResult(check_name="rows_counted", asset_key="validated", passed=True)


class _Nothing(dg.ConfigurableIOManager):
    def handle_output(self, context, obj) -> None:
        pass

    def load_input(self, context) -> None:
        return None


JOB = dg.define_asset_job("backfill", selection=[raw, split])
DEFS = dg.Definitions(assets=[raw, split], jobs=[JOB], resources={"io_manager": _Nothing()})
RANGE = {
    "dagster/asset_partition_range_start": "2026-01-02",
    "dagster/asset_partition_range_end": "2026-01-09",
}


def _run_both(storage_class: type, tmp_path: Path, monkeypatch) -> dict[str, object]:
    """Both backfills on a fresh instance whose event log is ``storage_class``: what it stored."""
    stored_one_by_one: list[DagsterEventType] = []
    original = SqliteEventLogStorage.store_event

    def store_event(self, event):
        stored_one_by_one.append(event.dagster_event_type)
        return original(self, event)

    monkeypatch.setattr(SqliteEventLogStorage, "store_event", store_event)
    storage = {
        "module": storage_class.__module__,
        "class": storage_class.__name__,
        "config": {"base_dir": str(tmp_path)},
    }
    with dg.instance_for_test(overrides={"event_log_storage": storage}) as instance:
        assert type(instance.event_log_storage) is storage_class
        job = DEFS.resolve_job_def("backfill")
        ok = job.execute_in_process(instance=instance, tags=RANGE)
        failed = job.execute_in_process(
            instance=instance,
            tags={**RANGE, "dagster/asset_partition_range_start": "2026-01-05"},
            run_config={"ops": {"split": {"config": {"fail": True}}}},
            raise_on_error=False,
        )
        assert ok.success and not failed.success
        logs = {
            name: [
                (e.dagster_event_type, e.dagster_event.asset_key, e.dagster_event.partition)
                for e in instance.all_logs(result.run_id)
                if e.is_dagster_event
            ]
            for name, result in (("ok", ok), ("failed", failed))
        }
        status = {}
        for key in ("raw", "validated", "rejected"):
            value = get_and_update_asset_status_cache_value(instance, dg.AssetKey(key), DAYS)
            status[key] = (
                sorted(value.deserialize_materialized_partition_subsets(DAYS).get_partition_keys()),
                sorted(value.deserialize_failed_partition_subsets(DAYS).get_partition_keys()),
                sorted(value.deserialize_in_progress_partition_subsets(DAYS).get_partition_keys()),
            )
        planned = {
            key: sorted(
                r.partition_key
                for r in instance.fetch_planned_materializations(dg.AssetKey(key), limit=100).records
            )
            for key in ("raw", "validated", "rejected")
        }
        checks = [
            (r.status, r.partition)
            for r in instance.event_log_storage.get_asset_check_execution_history(CHECK.key, limit=100)
        ]
    return {
        "logs": logs,
        "status": status,
        "planned": planned,
        "checks": checks,
        "one_by_one": stored_one_by_one,
    }


def test_batched_storage_stores_what_sqlite_stores(tmp_path, monkeypatch):
    monkeypatch.setenv(BATCH_SIZE_VARIABLE, "1000")
    plain = _run_both(SqliteEventLogStorage, tmp_path / "plain", monkeypatch)
    batched = _run_both(BatchedSqliteEventLogStorage, tmp_path / "batched", monkeypatch)
    for what in ("logs", "status", "planned", "checks"):
        assert batched[what] == plain[what], what
    # what the UI shows: days 2-9 materialized; days 5-9 of validated/rejected failed by run 2
    # (raw was re-materialized by it), none left in progress
    assert batched["status"]["validated"] == (
        [f"2026-01-0{d}" for d in range(2, 10)],
        [f"2026-01-0{d}" for d in range(5, 10)],
        [],
    )
    assert batched["status"]["raw"][1:] == ([], [])
    per_partition = {DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_MATERIALIZATION_PLANNED}
    assert per_partition <= set(plain["one_by_one"])
    assert not per_partition & set(batched["one_by_one"])


def test_the_project_instance_uses_the_batched_event_log():
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    storage = config["event_log_storage"]
    assert (storage["module"], storage["class"]) == (
        BatchedSqliteEventLogStorage.__module__,
        BatchedSqliteEventLogStorage.__name__,
    )
    # the layout of `storage: sqlite: base_dir: .fraudops/dagster/storage`: existing instances load
    base = ".fraudops/dagster/storage"
    assert config["run_storage"]["config"]["base_dir"] == f"{base}/history"
    assert storage["config"]["base_dir"] == f"{base}/history/runs"
    assert config["schedule_storage"]["config"]["base_dir"] == f"{base}/schedules"


@pytest.mark.parametrize("preset", [None, "0"])
def test_opening_the_instance_turns_batching_on_unless_set(tmp_path, monkeypatch, preset):
    if preset is None:
        monkeypatch.delenv(BATCH_SIZE_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(BATCH_SIZE_VARIABLE, preset)
    BatchedSqliteEventLogStorage(str(tmp_path))
    assert os.environ[BATCH_SIZE_VARIABLE] == (preset or "1000")
