"""Training through Dagster on small data: candidates, evaluation, MLflow registry, champion gate."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from fraud_assets.core import columns as c
from fraud_assets.core.bundle import ModelBundle
from fraud_assets.core.contract import ChampionRecord
from fraud_assets.core.registry import ModelRegistry
from fraud_assets.defs.champion import champion_model
from fraud_assets.defs.evaluation import model_evaluation
from fraud_assets.defs.features import features_job, merchant_risk, transaction_features
from fraud_assets.defs.ingestion import raw_transactions
from fraud_assets.defs.io_managers import STEP_IO_MANAGER, PartitionedParquetIOManager, PickleIOManager
from fraud_assets.defs.labels import collect_labels, ingest_labels_job
from fraud_assets.defs.monitoring import drift_reference
from fraud_assets.defs.registry import challenger_model, champion_gate, training_job
from fraud_assets.defs.resources import (
    CapturedTrafficResource,
    FeatureShardsResource,
    LabelFeedResource,
    LandingZoneResource,
    ModelRegistryResource,
    ModelStoreResource,
    TransactionSimulatorResource,
    mlflow_resource,
)
from fraud_assets.defs.sensors import RANGE_END, RANGE_START, ingest_transactions_job
from fraud_assets.defs.training import CANDIDATE_ASSETS, training_data
from fraud_assets.defs.validation import validate_transactions

# 35 days: the held-out days must be days whose labels are all in (a label delay before the end)
FIRST, LAST = "2026-02-22", "2026-03-28"
QUICK = {"n_trials": 1, "imbalance_methods": ["class_weight"]}
# One candidate whose safety cap is shorter than a trial: it must say so, up to the evaluation.
CAPPED = "logistic_regression_model"
CANDIDATES = [a.key.path[-1] for a in CANDIDATE_ASSETS]


def platform_defs(tmp_path) -> dg.Definitions:
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    return dg.Definitions(
        assets=[
            raw_transactions,
            validate_transactions,
            collect_labels,
            transaction_features,
            merchant_risk,
            training_data,
            *CANDIDATE_ASSETS,
            model_evaluation,
            challenger_model,
            champion_model,
            drift_reference,
        ],
        asset_checks=[champion_gate],
        jobs=[ingest_transactions_job, ingest_labels_job, features_job, training_job],
        resources={
            "io_manager": PartitionedParquetIOManager(base_path=str(tmp_path / "storage")),
            "model_io_manager": PickleIOManager(base_path=str(tmp_path / "objects")),
            STEP_IO_MANAGER: PickleIOManager(base_path=str(tmp_path / "steps")),
            "simulator": TransactionSimulatorResource(cardholders=500, seed=3),
            "landing_zone": LandingZoneResource(path=str(tmp_path / "landing")),
            "label_feed": LabelFeedResource(path=str(tmp_path / "labels")),
            "feature_shards": FeatureShardsResource(),
            "captured_traffic": CapturedTrafficResource(storage=str(tmp_path / "storage")),
            "model_store": ModelStoreResource(base_path=str(tmp_path / "models")),
            "model_registry": ModelRegistryResource(tracking_uri=tracking),
            "mlflow": mlflow_resource.configured(
                {
                    "experiment_name": "test",
                    "mlflow_tracking_uri": tracking,
                    "artifact_location": str(tmp_path / "artifacts"),
                }
            ),
        },
    )


def train(defs, instance, selection=None):
    run_config = {"ops": {name: {"config": QUICK} for name in CANDIDATES}}
    run_config["ops"][CAPPED] = {"config": {**QUICK, "n_trials": 2, "tuning_cap_seconds": 1e-9}}
    run_config["ops"]["training_data"] = {"config": {"warmup_days": 0}}  # 35 days: no room to warm up
    if selection:
        run_config = {"ops": {}}
    return defs.resolve_job_def("train_models").execute_in_process(
        instance=instance, run_config=run_config, asset_selection=selection, raise_on_error=False
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("platform")
    defs = platform_defs(tmp_path)
    with dg.instance_for_test() as instance:
        tags = {RANGE_START: FIRST, RANGE_END: LAST}
        for job in ("ingest_transactions", "ingest_labels", "build_features"):
            assert defs.resolve_job_def(job).execute_in_process(instance=instance, tags=tags).success
        result = train(defs, instance)
        yield defs, instance, tmp_path, result


def test_training_registers_a_champion_with_its_report(trained):
    _, instance, tmp_path, result = trained
    assert result.success
    meta = instance.get_latest_materialization_event(
        dg.AssetKey("model_evaluation")
    ).asset_materialization.metadata
    assert meta["best_model"].value in ("logistic_regression", "random_forest", "xgboost", "lightgbm")
    assert 0.5 < meta["auc_roc"].value <= 1 and 0 < meta["average_precision"].value <= 1
    for key in ("comparison", "confusion_matrix", "segments", "roc_curves", "precision_recall_curves"):
        assert key in meta
    assert "data:image/png;base64," in meta["roc_curves"].value
    champion = instance.get_latest_materialization_event(dg.AssetKey("champion_model")).asset_materialization
    sha = champion.metadata["bundle_sha256"].value
    registry = ModelRegistry(f"sqlite:///{tmp_path}/mlflow.db")
    assert registry.champion().version == champion.metadata["mlflow_model_version"].value == "1"
    assert registry.champion().bundle_sha256 == sha
    # Why, in the UI: the gate's verdict.
    assert champion.metadata["promotion"].value == "promotion"
    assert champion.metadata["promotion_reason"].value.startswith("champion_gate promoted: first model")
    run = registry.client.get_run(champion.metadata["mlflow_run_id"].value)
    assert run.info.status == "FINISHED"
    assert any(k.startswith("test.") for k in run.data.metrics)
    artifacts = {a.path for a in registry.client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/evaluation_report.json" in artifacts and "evaluation/roc.png" in artifacts


def test_the_champion_is_refit_up_to_the_label_delay(trained):
    """Selection and calibration use the held-out days; the served model then trains on every
    label known when training ran (the last day's end): its window ends a label delay before it,
    not before the held-out days, and it has the evaluated model's threshold and calibrator."""
    _, instance, tmp_path, _ = trained
    training = pd.read_parquet(tmp_path / "storage" / "training_data.parquet")
    test_start = training.loc[training["split"] == "test", c.TIMESTAMP].min()
    meta = instance.get_latest_materialization_event(dg.AssetKey("training_data")).asset_materialization
    now = pd.Timestamp(meta.metadata["labels_as_of"].value)  # the last day's end: when training ran
    assert now == pd.Timestamp(LAST) + pd.Timedelta(days=1)
    known = training[training["label_known_now"]]
    assert (known[c.LABEL_KNOWN_AT] < now).all()
    assert known[c.TIMESTAMP].max() >= test_start  # held-out days whose labels are in: refit on
    champion = instance.get_latest_materialization_event(dg.AssetKey("champion_model")).asset_materialization
    record = ChampionRecord.from_metadata({k: v.value for k, v in champion.metadata.items()})
    window_end = pd.Timestamp(record.training_window[1])
    assert window_end == known[c.TIMESTAMP].max().normalize()
    # Legit labels arrive 7 days after the transaction (chargebacks sooner): the window ends
    # within 8 days of now, and after the candidates' own training rows.
    assert now - window_end <= pd.Timedelta(days=8)
    assert window_end > training.loc[training["split"] == "train", c.TIMESTAMP].max()
    evaluated = pd.read_pickle(tmp_path / "objects" / f"{record.algorithm}_model.pkl")
    bundle = ModelBundle.load(record.bundle_uri, expected_sha256=record.bundle_sha256)
    assert bundle.classifier.fit_info_["refit_on_latest_labels"]
    assert bundle.classifier.fit_info_["n_train_rows"] == len(known)
    assert bundle.classifier.threshold == evaluated.classifier.threshold
    assert bundle.classifier.calibrator_ is not None
    assert bundle.classifier.calibration == evaluated.classifier.calibration


def test_the_api_serves_the_trained_champion_from_the_pipeline_s_storage(trained):
    """The real assets' outputs, read by the real API: the champion's metadata (the contract's
    record), its bundle, the stored card history and merchant risk."""
    from fastapi.testclient import TestClient

    from fraud_assets.core.champion_history import latest_champion
    from fraud_serving.app import create_app
    from fraud_serving.settings import Settings
    from tests.test_serving import SEED_BODY

    _, instance, tmp_path, _ = trained
    champion = instance.get_latest_materialization_event(dg.AssetKey("champion_model")).asset_materialization
    settings = Settings(
        storage=str(tmp_path / "storage"),
        prediction_log_dir=str(tmp_path / "predictions"),
        model_poll_seconds=3600,
    )
    with TestClient(create_app(settings, source=lambda: latest_champion(instance))) as client:
        health = client.get("/health").json()
        assert health["status"] == "ok", health
        assert health["card_state"]["bootstrap"] == "loaded" and health["merchant_risk"]["day"] == LAST
        answer = client.post("/predict", json=SEED_BODY)
        assert answer.status_code == 200
        assert answer.json()["model_version"] == champion.metadata["bundle_version"].value
        model = client.get("/model").json()
        assert model["mlflow_model_version"] == champion.metadata["mlflow_model_version"].value == "1"
        assert model["bundle_sha256"] == champion.metadata["bundle_sha256"].value


def test_a_tuning_cut_short_by_its_safety_cap_is_reported_up_to_the_evaluation(trained):
    _, instance, tmp_path, result = trained
    assert result.success

    def metadata(asset: str) -> dict:
        return instance.get_latest_materialization_event(dg.AssetKey(asset)).asset_materialization.metadata

    capped = metadata(CAPPED)
    assert capped["tuning_capped"].value is True
    assert (capped["trials"].value, capped["trials_requested"].value) == (1, 2)
    assert "may pick other parameters" in capped["tuning_cap_note"].value
    assert metadata("xgboost_model")["tuning_capped"].value is False
    assert "tuning_cap_note" not in metadata("xgboost_model")
    logs = [e.message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
    assert any("logistic_regression: tuning hit its safety cap" in m for m in logs)
    evaluation = metadata("model_evaluation")
    assert evaluation["reproducible"].value is False
    assert "logistic_regression: tuning hit its safety cap" in evaluation["warnings"].value
    assert "| logistic_regression |" in evaluation["tuning_budget"].value
    champion = metadata("champion_model")
    registry = ModelRegistry(f"sqlite:///{tmp_path}/mlflow.db")
    run_id = champion["mlflow_run_id"].value
    assert registry.client.get_run(run_id).data.tags["reproducible"] == "false"
    report = json.loads(
        Path(registry.client.download_artifacts(run_id, "evaluation/evaluation_report.json")).read_text()
    )
    assert report["reproducible"] is False and report["tuning"]["logistic_regression"]["capped"] is True
    assert report["tuning"]["lightgbm"] == {**report["tuning"]["lightgbm"], "trials": 1, "capped": False}
    assert len(report["warnings"]) == 1


def test_a_worse_challenger_is_recorded_but_not_promoted(trained):
    defs, instance, tmp_path, _ = trained
    # Candidates trained on shuffled labels: real models, deliberately worse.
    from fraud_assets.core.candidates import Candidate
    from fraud_assets.core.preprocessor import FraudPreprocessor
    from fraud_assets.core.training import FraudClassifier

    training = pd.read_parquet(tmp_path / "storage" / "training_data.parquet")
    rows = training[training["split"] == "train"]
    shuffled = np.random.default_rng(0).permutation(rows[c.IS_FRAUD].astype(int).to_numpy())
    pre = FraudPreprocessor().fit(rows)
    X = pre.transform(rows)
    for name in CANDIDATES:
        algorithm = name.removesuffix("_model")
        clf = FraudClassifier(algorithm, n_estimators=20, calibration="none").fit(X, shuffled)
        obj = Candidate(algorithm, pre, clf, {"imbalance_method": "none"})
        pd.to_pickle(obj, tmp_path / "objects" / f"{name}.pkl")
    result = train(
        defs,
        instance,
        selection=[dg.AssetKey(k) for k in ("model_evaluation", "challenger_model", "champion_model")],
    )
    assert not result.success  # the blocking gate failed
    (gate,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "champion_gate"]
    assert not gate.passed and "the champion stays" in gate.description
    registry = ModelRegistry(f"sqlite:///{tmp_path}/mlflow.db")
    assert registry.champion().version == "1"
    assert registry.get("2").tags["champion_gate"].startswith("rejected:")
    latest = instance.get_latest_materialization_event(dg.AssetKey("champion_model")).asset_materialization
    assert latest.metadata["mlflow_model_version"].value == "1"


def test_bad_training_windows_fail_clearly(tmp_path):
    defs = platform_defs(tmp_path)
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("train_models").execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("training_data")], raise_on_error=False
        )
        assert not result.success
        assert "transaction_features: none of the requested partitions exists" in failure_text(result)


def failure_text(result) -> str:
    """Every message in the failed steps' error chains."""
    texts = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        while error is not None:
            texts.append(error.message)
            error = error.cause
    return " ".join(texts)


def test_a_candidate_trains_on_a_stratified_sample_of_the_configured_size(trained):
    """`sample_rows`: that many training rows, each label keeping its share; the sample and its
    weighting are in the candidate's metadata and report."""
    defs, instance, tmp_path, _ = trained
    training = pd.read_parquet(tmp_path / "storage" / "training_data.parquet")
    rows = training[training["split"] == "train"]
    size, frauds = len(rows) // 3, int(rows[c.IS_FRAUD].sum())
    result = defs.resolve_job_def("train_models").execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey("lightgbm_model")],
        run_config={"ops": {"lightgbm_model": {"config": {**QUICK, "sample_rows": size}}}},
    )
    assert result.success
    meta = instance.get_latest_materialization_event(dg.AssetKey("lightgbm_model")).asset_materialization
    sample = meta.metadata["training_sample"].value
    assert sample["population_by_label"] == {"0": len(rows) - frauds, "1": frauds}
    assert abs(sample["rows"] - size) <= 1  # each label's share rounded to whole rows
    assert abs(sample["rows_by_label"]["1"] - frauds * size / len(rows)) <= 1
    candidate = pd.read_pickle(tmp_path / "objects" / "lightgbm_model.pkl")
    assert candidate.report["training_sample"] == sample
    assert candidate.classifier.fit_info_["n_train_rows"] <= sample["rows"]
