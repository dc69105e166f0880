"""Helpers for tests and benchmarks: a small model bundle, a Dagster home, a recorded champion,
a Redis server.

Not used by the service itself. Everything the pipeline would write goes through the pipeline's
own code: bundles through `ModelBundle.save` and their records through `ModelBundle.record`
(what `challenger_model` calls), the champion's metadata through `record_metadata` (what
`champion_model` calls), the daily files through the contract's layout
(`fraud_assets.core.contract.partition_location`, as the Parquet IO manager writes them).

Why through the pipeline's code: a hand-made copy of the champion's record would let the
tests pass while the pipeline and the API disagree.

`redis_server` starts the cluster profile's Redis (`fraud_assets.services.devservices`) for tests and bench.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from fraud_assets.core import columns as c
from fraud_assets.core.bundle import ModelBundle, frame_fingerprint
from fraud_assets.core.champion_history import latest_champion
from fraud_assets.core.contract import (
    CHAMPION_MODEL,
    MERCHANT_RISK,
    VALIDATED_TRANSACTIONS,
    ChampionRecord,
    partition_location,
)
from fraud_assets.core.features import MerchantRiskSnapshot
from fraud_assets.core.generator import SimulationConfig, TransactionSimulator
from fraud_assets.core.models.classifier import FraudClassifier
from fraud_assets.core.preprocessor import FraudPreprocessor
from fraud_assets.core.splitting import prepare_train_test_split
from fraud_assets.core.storage import Location
from fraud_assets.services.devservices import LOCALHOST, free_port
from fraud_assets.services.devservices import redis as redis_service
from fraud_assets.services.service import running

ROOT = Path(__file__).resolve().parents[2]  # the project, where uvicorn finds fraud_serving
DAGSTER_YAML = """storage:
  sqlite:
    base_dir: {base}/storage
local_artifact_storage:
  module: dagster._core.storage.root
  class: LocalArtifactStorage
  config:
    base_dir: {base}
telemetry:
  enabled: false
"""


def simulate(
    days: int = 25, n_cardholders: int = 300, seed: int = 7, end: dt.date | None = None
) -> pd.DataFrame:
    end = end or dt.date.today() - dt.timedelta(days=1)
    sim = TransactionSimulator(SimulationConfig(seed=seed, n_cardholders=n_cardholders))
    return sim.generate_days(end - dt.timedelta(days=days - 1), end)


def build_bundle(
    frame: pd.DataFrame,
    directory: str | os.PathLike | Location,
    *,
    n_estimators: int = 30,
    seed: int = 42,
    created_at: str = "",
    algorithm: str = "xgboost",
) -> tuple[Location, str, ModelBundle]:
    """Train a small tree-ensemble bundle (XGBoost by default) on ``frame`` and save it;
    ``(location, sha256, bundle)``."""
    X_train, _, y_train, _ = prepare_train_test_split(frame, test_size=0.2, gap_days=3)
    pre = FraudPreprocessor()
    Xt = pre.fit_transform(X_train)
    clf = FraudClassifier(algorithm, n_estimators=n_estimators, max_depth=4, random_state=seed).fit(
        Xt, y_train
    )
    clf.threshold = 0.5
    bundle = ModelBundle(
        preprocessor=pre,
        classifier=clf,
        threshold=0.5,
        feature_names=list(clf.feature_names_),
        algorithm=algorithm,
        training_window=(str(X_train[c.TIMESTAMP].min().date()), str(X_train[c.TIMESTAMP].max().date())),
        data_fingerprint=frame_fingerprint(X_train[[c.AMOUNT]]),
        metrics={"auc_roc": 0.9, "average_precision": 0.5, "precision_at_90_recall": 0.2},
        created_at=created_at,
    )
    path, sha = bundle.save(directory)
    return path, sha, bundle


def write_dagster_home(home: str | Path) -> Path:
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML.format(base=home.resolve()))
    return home


def champion_record(
    path: str | os.PathLike | Location, sha256: str, bundle: ModelBundle, mlflow_version: str = "1"
) -> ChampionRecord:
    """The record `challenger_model` would register for this saved bundle, promoted now."""
    return bundle.record(
        path, sha256, mlflow_model_version=mlflow_version, mlflow_run_id=f"run-{mlflow_version}"
    ).promoted()


def record_champion(
    instance, path: str | os.PathLike | Location, sha256: str, bundle: ModelBundle, mlflow_version: str = "1"
) -> int:
    """Record a `champion_model` materialization with the metadata the registry asset writes
    (`record_metadata`, the function it calls) and return its storage id."""
    import dagster as dg

    from fraud_assets.defs.registry import record_metadata

    record = champion_record(path, sha256, bundle, mlflow_version)
    instance.report_runless_asset_event(
        dg.AssetMaterialization(CHAMPION_MODEL, metadata=record_metadata(record))
    )
    return latest_champion(instance).storage_id


def write_storage(
    frame: pd.DataFrame, storage: str | os.PathLike | Location, days: list[dt.date] | None = None
) -> Location:
    """Daily `validated_transactions` and `merchant_risk` files from ``frame`` (for ``days``,
    default all), where the Parquet IO manager puts them."""
    root = Location.of(storage)
    day_of = frame[c.TIMESTAMP].dt.date
    for day in days or sorted(day_of.unique()):
        key = day.isoformat()
        partition_location(root, VALIDATED_TRANSACTIONS, key).write_parquet(frame[day_of == day])
        snapshot = MerchantRiskSnapshot.compute(frame, pd.Timestamp(day) + pd.Timedelta(days=1))
        partition_location(root, MERCHANT_RISK, key).write_parquet(snapshot.to_frame())
    return root


def start_api(
    env: dict[str, str], log_path: str | os.PathLike, timeout: float = 120
) -> tuple[subprocess.Popen, str]:
    """The scoring API as a uvicorn process on a free port, with ``env``; returns it and its base
    URL once ``/health`` says ok (its output goes to ``log_path``, shown if it does not start)."""
    import httpx

    port = free_port()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "fraud_serving.app:app",
                "--host",
                LOCALHOST,
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://{LOCALHOST}:{port}"
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base, timeout=5) as client:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if client.get("/health").json()["status"] == "ok":
                    return proc, base
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.1)
    stop_processes(proc)
    raise RuntimeError(f"the API did not start: {Path(log_path).read_text(errors='replace')[-3000:]}")


def stop_processes(*procs: subprocess.Popen, timeout: float = 20) -> None:
    """Terminate, wait, kill what did not stop."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def redis_server(port: int | None = None) -> Iterator[str]:
    """A real redis-server process on a free port (the cluster profile's own starter,
    `fraud_assets.services.devservices.redis`); yields its ``redis://`` URL, stops it on exit."""
    port = port or free_port()
    with running([redis_service(port, log=os.devnull)]):
        yield f"redis://{LOCALHOST}:{port}/0"
