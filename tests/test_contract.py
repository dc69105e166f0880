"""The contract between the pipeline and the API (`core.contract`): one definition both sides use,
and the coupling is real: what the registry asset writes is what the API's provider reads."""

from __future__ import annotations

import dagster as dg
import pytest

from fraud_assets.core.champion_history import latest_champion
from fraud_assets.core.contract import (
    CHAMPION_MODEL,
    MERCHANT_RISK,
    VALIDATED_TRANSACTIONS,
    ChampionRecord,
    ContractError,
    partition_location,
)
from fraud_assets.core.storage import Location
from fraud_assets.defs import champion as champion_defs
from fraud_assets.defs import registry as registry_defs
from fraud_assets.defs.champion import champion_model
from fraud_assets.defs.io_managers import PickleIOManager
from fraud_assets.defs.resources import ModelRegistryResource, ModelStoreResource
from fraud_assets.services.testing import build_bundle, simulate
from fraud_serving.model_provider import ModelProvider

SHA = "ab" * 32


def a_record(**changes) -> ChampionRecord:
    values = {
        "version": "20260301T000000-xgboost-0123abcd",
        "bundle_uri": "s3://models/20260301T000000-xgboost-0123abcd.pkl",
        "bundle_sha256": SHA,
        "algorithm": "xgboost",
        "threshold": 0.42,
        "training_window": ("2026-01-01", "2026-02-20"),
        "metrics": {"auc_roc": 0.93, "average_precision": 0.61, "brier": 0.01},
        "mlflow_model_version": "7",
        "mlflow_run_id": "r-1",
        "promoted_at": "2026-03-01T00:00:00+00:00",
    }
    return ChampionRecord(**{**values, **changes})


def test_the_record_survives_dagster_metadata(instance):
    """Written as the registry asset writes it (`record_metadata`), stored by a Dagster
    instance, read as the API reads it (`latest_champion`): the same record."""
    record = a_record()
    instance.report_runless_asset_event(
        dg.AssetMaterialization(CHAMPION_MODEL, metadata=registry_defs.record_metadata(record))
    )
    stored = latest_champion(instance)
    assert stored.champion() == record
    assert stored.metadata["auc_roc"] == 0.93  # the headline metrics stay plottable in the UI
    assert ChampionRecord.from_metadata(record.to_metadata()) == record


def test_a_malformed_record_is_refused_with_what_is_wrong():
    metadata = a_record().to_metadata()
    with pytest.raises(ContractError, match="lack 'bundle_sha256'"):
        ChampionRecord.from_metadata({k: v for k, v in metadata.items() if k != "bundle_sha256"})
    with pytest.raises(ContractError, match="64 lowercase hex"):
        ChampionRecord.from_metadata({**metadata, "bundle_sha256": "abc"})
    with pytest.raises(ContractError, match="threshold must be a probability"):
        ChampionRecord.from_metadata({**metadata, "threshold": 1.5})


def test_records_written_before_the_contract_still_read():
    """Earlier `champion_model` materializations: no `metrics` object, the headline metrics
    flattened; a user's existing champion keeps serving after an upgrade."""
    earlier = {
        "bundle_uri": "/srv/models/v.pkl",
        "bundle_sha256": SHA,
        "bundle_version": "v",
        "mlflow_model_version": "3",
        "mlflow_run_id": "r",
        "algorithm": "lightgbm",
        "threshold": 0.3,
        "training_window": "2026-01-01 .. 2026-02-01",
        "auc_roc": 0.91,
        "promoted_at": "2026-02-02T00:00:00+00:00",
    }
    record = ChampionRecord.from_metadata(earlier)
    assert record.training_window == ("2026-01-01", "2026-02-01") and record.metrics == {"auc_roc": 0.91}


def test_the_asset_keys_the_api_reads_are_the_pipeline_s(env, tmp_path):
    from fraud_assets.definitions import defs

    keys = {key.to_user_string() for key in defs().resolve_asset_graph().get_all_asset_keys()}
    assert {CHAMPION_MODEL, VALIDATED_TRANSACTIONS, MERCHANT_RISK} <= keys


def test_partition_layout():
    root = Location.of("s3://bucket/fraudops")
    assert (
        partition_location(root, MERCHANT_RISK, "2026-03-01").url
        == "s3://bucket/fraudops/merchant_risk/2026-03-01.parquet"
    )
    assert (
        partition_location(root, ["training_data"], None).url == "s3://bucket/fraudops/training_data.parquet"
    )


# --- the coupling: the real registry asset's output, read by the API's provider ---------------------


class _Promotions:
    def __init__(self) -> None:
        self.promoted: list[str] = []

    def gate_verdict(self, version: str) -> str:
        return "promoted: a test challenger"

    def mirror(self, latest) -> str:
        """What the alias would follow: the latest champion_model materialization."""
        self.promoted.append(latest.metadata.get("mlflow_model_version"))
        return "mirrored"


PROMOTIONS = _Promotions()


class RecordingRegistry(ModelRegistryResource):
    """MLflow's registry stands aside: only what the alias is asked to follow is recorded (the
    metadata are the test)."""

    def registry(self):
        return PROMOTIONS


@pytest.fixture(scope="module")
def saved_bundle(tmp_path_factory):
    frame = simulate(days=15, n_cardholders=300, seed=7)
    return build_bundle(frame, tmp_path_factory.mktemp("models"), n_estimators=10)


def materialize_champion(instance, tmp_path, saved_bundle) -> None:
    """`champion_model`, the real asset, promoting a challenger recorded as `challenger_model`
    records it (`ModelBundle.record`)."""
    path, sha, bundle = saved_bundle

    @dg.asset(name="challenger_model", io_manager_key="model_io_manager")
    def challenger():
        return bundle.record(path, sha, mlflow_model_version="1", mlflow_run_id="run-1")

    result = dg.materialize(
        [challenger, champion_model],
        resources={
            "model_io_manager": PickleIOManager(base_path=str(tmp_path / "objects")),
            "model_registry": RecordingRegistry(tracking_uri="unused"),
            "model_store": ModelStoreResource(base_path=str(tmp_path / "models")),
        },
        instance=instance,
    )
    assert result.success


def test_the_api_serves_what_the_registry_asset_recorded(instance, tmp_path, saved_bundle):
    materialize_champion(instance, tmp_path, saved_bundle)
    provider = ModelProvider(lambda: latest_champion(instance))  # what the API polls
    assert provider.refresh() and provider.error is None
    _, sha, bundle = saved_bundle
    served = provider.current
    assert served.version == bundle.version and served.info["bundle_sha256"] == sha
    assert served.champion.promoted_at and served.info["mlflow_model_version"] == "1"
    assert PROMOTIONS.promoted[-1] == "1"


@pytest.mark.parametrize("renamed", ["bundle_sha256", "bundle_uri", "bundle_version", "threshold"])
def test_renaming_a_key_in_the_registry_asset_breaks_serving(
    instance, tmp_path, saved_bundle, monkeypatch, renamed
):
    """Were the registry asset to write a key under another name, the API would refuse its
    champion, saying which key is missing: the two sides are coupled through the contract."""
    original = champion_defs.record_metadata

    def renaming(record):
        metadata = original(record)
        metadata[f"{renamed}_renamed"] = metadata.pop(renamed)
        return metadata

    monkeypatch.setattr(champion_defs, "record_metadata", renaming)
    materialize_champion(instance, tmp_path, saved_bundle)
    provider = ModelProvider(lambda: latest_champion(instance))
    assert not provider.refresh() and provider.current is None
    assert f"lack '{renamed}'" in provider.error
