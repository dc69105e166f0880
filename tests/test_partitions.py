"""Partitions start where the data starts: FRAUDOPS_START_DATE, else the first day `make run`
built (recorded by the first look), else the fixed default."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from fraud_assets.core import settings
from fraud_assets.core.settings import DEFAULT_START_DATE, SettingsError, load_settings, record_first_day
from fraud_assets.definitions import defs
from fraud_assets.first_look import record_start_date
from tests.conftest import make_data_defs

ROOT = Path(__file__).resolve().parents[1]


def test_the_first_partition_is_the_variable_else_the_recorded_day_else_the_default(env, tmp_path):
    start = load_settings().partition_start()
    assert start.day == DEFAULT_START_DATE and "the default" in start.source

    (tmp_path / ".fraudops").mkdir()
    (tmp_path / ".fraudops" / "start_date").write_text("2026-09-17\n")
    start = load_settings().partition_start()
    assert start.day == dt.date(2026, 9, 17) and "start_date" in start.source

    env.setenv("FRAUDOPS_START_DATE", "2026-06-01")
    assert load_settings().partition_start() == settings.PartitionStart(
        dt.date(2026, 6, 1), "FRAUDOPS_START_DATE"
    )


def test_the_recorded_day_only_moves_earlier(env, tmp_path):
    env.setenv("FRAUDOPS_STATE_DIR", str(tmp_path / "state"))
    loaded = load_settings()
    assert record_first_day(loaded, dt.date(2026, 5, 10)) == dt.date(2026, 5, 10)
    # A later `make run` (its window starts later): the start stays, no partition disappears.
    assert record_first_day(loaded, dt.date(2026, 6, 1)) == dt.date(2026, 5, 10)
    assert record_first_day(loaded, dt.date(2026, 4, 1)) == dt.date(2026, 4, 1)  # DAYS=... for more
    assert (tmp_path / "state" / "start_date").read_text() == "2026-04-01\n"
    assert load_settings().partition_start().day == dt.date(2026, 4, 1)


def test_a_broken_recorded_day_says_what_to_do(env, tmp_path):
    (tmp_path / ".fraudops").mkdir()
    (tmp_path / ".fraudops" / "start_date").write_text("last spring")
    with pytest.raises(
        SettingsError, match=r"start_date holds 'last spring', not a date YYYY-MM-DD.*FRAUDOPS_START_DATE"
    ):
        load_settings().partition_start()


DAILY_ASSETS = {
    "raw_transactions", "validated_transactions", "rejected_transactions", "transaction_features",
    "merchant_risk", "drift_report", "live_drift_report", "model_performance",
    "api_transactions", "api_labels", "fraud_labels", "rejected_labels", "review_queue",
}  # fmt: skip


def test_the_code_location_starts_every_daily_asset_on_the_first_day_when_it_loads(env):
    env.setenv("FRAUDOPS_START_DATE", "2026-02-01")
    loaded = defs()
    daily = {
        spec.key.to_user_string(): spec for spec in loaded.resolve_all_asset_specs() if spec.partitions_def
    }
    assert set(daily) == DAILY_ASSETS
    assert {spec.partitions_def.get_first_partition_key() for spec in daily.values()} == {"2026-02-01"}
    for job in ("ingest_transactions", "build_features", "daily_pipeline"):
        assert loaded.resolve_job_def(job).partitions_def.get_first_partition_key() == "2026-02-01"
    start = loaded.resources["partition_start"]  # what the landing sensor reads
    assert (start.day, start.source) == ("2026-02-01", "FRAUDOPS_START_DATE")
    env.setenv("FRAUDOPS_START_DATE", "2026-03-01")  # a reload of the code location, no re-import
    assert (
        defs().resolve_assets_def("raw_transactions").partitions_def.get_first_partition_key() == "2026-03-01"
    )


def _built(instance: dg.DagsterInstance, day: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization("raw_transactions", partition=day))


def test_the_first_look_records_its_first_day_or_an_earlier_one_already_built(env, tmp_path, instance):
    assert record_start_date(instance, dt.date(2026, 9, 17)) is None
    assert load_settings().partition_start().day == dt.date(2026, 9, 17)

    # A deployment that already holds earlier days (e.g. backfilled from an earlier start): they stay.
    (tmp_path / ".fraudops" / "start_date").unlink()
    _built(instance, "2026-08-02")
    assert record_start_date(instance, dt.date(2026, 9, 17)) is None
    assert load_settings().partition_start().day == dt.date(2026, 8, 2)


def test_the_first_look_refuses_days_before_an_explicit_start(env, tmp_path, instance):
    env.setenv("FRAUDOPS_START_DATE", "2026-10-01")
    problem = record_start_date(instance, dt.date(2026, 9, 17))
    assert "2026-09-17, is before FRAUDOPS_START_DATE=2026-10-01" in problem
    assert "set it to 2026-09-17 or earlier" in problem
    assert not (tmp_path / ".fraudops" / "start_date").exists()  # the variable wins: nothing recorded
    env.setenv("FRAUDOPS_START_DATE", "2026-09-01")
    assert record_start_date(instance, dt.date(2026, 9, 17)) is None


def test_the_landing_sensor_names_the_start_date_to_set(tmp_path, landing_dir, instance):
    # conftest sets FRAUDOPS_START_DATE to the default day; this file starts before it.
    first = DEFAULT_START_DATE - dt.timedelta(days=200)
    pd.DataFrame(
        {
            "transaction_id": ["a-1", "a-2"],
            "timestamp": [f"{first} 10:00:00", f"{first + dt.timedelta(days=1)} 11:00:00"],
            "card_id": ["c1", "c2"],
            "merchant_id": ["m1", "m1"],
            "amount": ["12.50", "3.00"],
        }
    ).to_csv(landing_dir / "old.csv", index=False)
    defs = make_data_defs(tmp_path, landing_dir)
    context = dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources)
    result = defs.resolve_sensor_def("landing_files_sensor").evaluate_tick(context)
    assert result.run_requests == []
    assert f"set FRAUDOPS_START_DATE={first} (or earlier)" in result.skip_message
    assert f"outside the partitions {DEFAULT_START_DATE}.." in result.skip_message
    assert "comes from FRAUDOPS_START_DATE" in result.skip_message


def _environment(**variables: str) -> dict[str, str]:
    """This process's environment without any FRAUDOPS_ variable, plus the given ones."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(settings.PREFIX)}
    return {**clean, **variables}


FIRST_PARTITION = """
from fraud_assets.definitions import defs
print(defs().resolve_assets_def("transaction_features").partitions_def.get_first_partition_key())
"""


def first_partition(cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", FIRST_PARTITION], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.slow
def test_make_runs_first_look_starts_the_partitions_on_its_first_day(tmp_path):
    """`python -m fraud_assets.first_look` (what `make run` calls) on 2 days of a small world:
    it records the first day, builds the features of that first partition (whose 37-day lookback
    lies before the partitions), and a code location loaded afterwards starts there."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = _environment(
        DAGSTER_HOME=str(home),
        FRAUDOPS_STATE_DIR=str(tmp_path / "state"),
        FRAUDOPS_STORAGE=str(tmp_path / "storage"),
        FRAUDOPS_CARDHOLDERS="300",
    )
    command = [sys.executable, "-m", "fraud_assets.first_look", "--days", "2", "--end", "2026-03-02"]
    done = subprocess.run(
        [*command, "--skip-training"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "daily partitions start on 2026-03-01" in done.stdout
    assert (tmp_path / "state" / "start_date").read_text() == "2026-03-01\n"
    assert sorted(p.name for p in (tmp_path / "storage" / "transaction_features").iterdir()) == [
        "2026-03-01.parquet",
        "2026-03-02.parquet",
    ]
    assert first_partition(tmp_path, env) == "2026-03-01"


IMPORTS = """
import importlib, pkgutil, sys
import fraud_assets.defs, fraud_assets.first_look, fraud_serving.app
from fraud_assets.core.settings import SettingsError
from fraud_assets.definitions import defs
for module in pkgutil.iter_modules(fraud_assets.defs.__path__):
    importlib.import_module(f"fraud_assets.defs.{module.name}")
print("imported")
for fix in ("FRAUDOPS_SEED", None):
    try:
        defs()
    except SettingsError as err:
        print("refused when the definitions load:", " ".join(str(err).split()))
    if fix:
        del __import__("os").environ[fix]
"""


def test_nothing_reads_the_settings_at_import(tmp_path):
    """The code location's modules, the first look and the API import with an unusable
    configuration (a bad variable, a broken recorded first day); the settings are read, and
    refused, when the definitions load."""
    (tmp_path / ".fraudops").mkdir()
    (tmp_path / ".fraudops" / "start_date").write_text("last spring")
    done = subprocess.run(
        [sys.executable, "-c", IMPORTS],
        cwd=tmp_path,
        env=_environment(FRAUDOPS_SEED="abc"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    imported, bad_seed, bad_start = done.stdout.strip().splitlines()[-3:]
    assert imported == "imported"
    assert "refused when the definitions load" in bad_seed and "FRAUDOPS_SEED='abc'" in bad_seed
    assert "refused when the definitions load" in bad_start and "holds 'last spring'" in bad_start
