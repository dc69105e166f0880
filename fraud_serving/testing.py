"""Helpers for tests and benchmarks: a small model bundle, a Dagster home, a recorded champion.

Not used by the service itself.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from fraud_assets.core import columns as c
from fraud_assets.core.bundle import ModelBundle, frame_fingerprint
from fraud_assets.core.features import MerchantRiskSnapshot
from fraud_assets.core.generator import SimulationConfig, TransactionSimulator
from fraud_assets.core.models.classifier import FraudClassifier
from fraud_assets.core.preprocessor import FraudPreprocessor
from fraud_assets.core.splitting import prepare_train_test_split

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
    directory: str | Path,
    *,
    n_estimators: int = 30,
    seed: int = 42,
    created_at: str = "",
    algorithm: str = "xgboost",
) -> tuple[Path, str, ModelBundle]:
    """Train a small tree-ensemble bundle (XGBoost by default) on ``frame`` and save it;
    ``(path, sha256, bundle)``."""
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
    return Path(path), sha, bundle


def write_dagster_home(home: str | Path) -> Path:
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML.format(base=home.resolve()))
    return home


def record_champion(
    instance, path: str | Path, sha256: str, bundle: ModelBundle, mlflow_version: str = "1"
) -> int:
    """Record a `champion_model` materialization (as the registry asset would) and return its storage id."""
    import dagster as dg

    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            "champion_model",
            metadata={
                "bundle_uri": dg.MetadataValue.path(str(path)),
                "bundle_sha256": sha256,
                "bundle_version": bundle.version,
                "mlflow_model_version": mlflow_version,
                "mlflow_run_id": f"run-{mlflow_version}",
                "algorithm": bundle.algorithm,
                "threshold": dg.MetadataValue.float(float(bundle.threshold)),
                "training_window": " .. ".join(bundle.training_window),
                "auc_roc": dg.MetadataValue.float(0.9),
            },
        )
    )
    result = instance.fetch_materializations(dg.AssetKey("champion_model"), limit=1)
    return int(result.records[0].storage_id)


def write_storage(frame: pd.DataFrame, storage: str | Path, days: list[dt.date] | None = None) -> Path:
    """Daily `validated_transactions` and `merchant_risk` files from ``frame`` (for ``days``, default all)."""
    storage = Path(storage)
    (storage / "validated_transactions").mkdir(parents=True, exist_ok=True)
    (storage / "merchant_risk").mkdir(parents=True, exist_ok=True)
    day_of = frame[c.TIMESTAMP].dt.date
    for day in days or sorted(day_of.unique()):
        frame[day_of == day].to_parquet(storage / "validated_transactions" / f"{day}.parquet")
        snapshot = MerchantRiskSnapshot.compute(frame, pd.Timestamp(day) + pd.Timedelta(days=1))
        snapshot.to_frame().to_parquet(storage / "merchant_risk" / f"{day}.parquet")
    return storage
