"""`make bench` runs every benchmark in bench/, as the README says: here each in its quick mode,
on a small world (the scoring API's test champion and data) so that none has to skip."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fraud_assets.core.features import add_history_features
from fraud_assets.core.splitting import EXCLUDED, assign_split
from tests.test_serving import home, world  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(path.name for path in (ROOT / "bench").glob("bench_*.py"))
_spec = importlib.util.spec_from_file_location("run_all", ROOT / "bench" / "run_all.py")
run_all = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_all)


@pytest.fixture
def storage(world, tmp_path):  # noqa: F811
    """The world's daily files, plus the `training_data` asset's file that bench_tree_depth reads."""
    storage = tmp_path / "storage"
    storage.mkdir()
    for folder in Path(world["storage"]).iterdir():
        (storage / folder.name).symlink_to(folder)
    features = add_history_features(world["frame"])
    role, _ = assign_split(features)
    features.assign(split=role.to_numpy())[role.to_numpy() != EXCLUDED].to_parquet(
        storage / "training_data.parquet"
    )
    return storage


def test_make_bench_runs_every_benchmark(storage, home):  # noqa: F811
    result = subprocess.run(
        ["make", "--no-print-directory", "bench", "QUICK=1", f"DAGSTER_HOME={home[0]}"],
        cwd=ROOT,
        env={**os.environ, "FRAUDOPS_STORAGE": str(storage)},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    summary = dict(
        line.split(": ", 1) for line in result.stdout.split("== summary", 1)[1].strip().splitlines()
    )
    assert sorted(summary) == BENCHMARKS
    assert all(outcome.startswith("ok") for outcome in summary.values()), summary


@pytest.mark.parametrize(
    "benchmark",
    [
        "bench_serving.py",
        "bench_tree_depth.py",
        "bench_batch_stages.py",
        "bench_capture.py",
        "bench_shadow.py",
    ],
)
def test_benchmarks_of_what_make_run_built_say_what_is_missing(benchmark, tmp_path):
    empty_home = tmp_path / "home"
    empty_home.mkdir()
    (empty_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / benchmark), "--quick"],
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": str(empty_home), "FRAUDOPS_STORAGE": str(tmp_path / "storage")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == run_all.SKIPPED, result.stdout[-2000:] + result.stderr[-2000:]
    assert "skipped:" in result.stdout and "make run" in result.stdout
