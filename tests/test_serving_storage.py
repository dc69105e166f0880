"""The scoring API on each storage backend (a local folder, moto's S3 server): the card history
and merchant risk it starts from, the champion's bundle, the prediction log, and what /health
says about them, including when the storage cannot be used."""

from __future__ import annotations

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from fraud_assets.core import columns as c
from fraud_assets.core.champion_history import latest_champion
from fraud_assets.core.contract import VALIDATED_TRANSACTIONS, asset_location
from fraud_assets.core.prediction_log import read_prediction_log
from fraud_assets.core.storage import Location
from fraud_assets.services.testing import build_bundle, record_champion, simulate, write_storage
from fraud_serving.app import create_app
from fraud_serving.settings import Settings
from tests.test_serving import body_of

STORED_DAYS = 12


@pytest.fixture(scope="module")
def frame():
    return simulate(days=15, n_cardholders=300, seed=7)


def endpoint_of(root: Location) -> str | None:
    return root.options.get("client_kwargs", {}).get("endpoint_url")


def app_on(root: Location, instance) -> TestClient:
    settings = Settings(
        storage=root.url,
        s3_endpoint_url=endpoint_of(root),
        prediction_log_dir=root.join("predictions").url,
        model_poll_seconds=3600,
    )
    return TestClient(
        create_app(settings, source=lambda: latest_champion(instance)), raise_server_exceptions=False
    )


def test_the_api_starts_from_the_pipeline_s_storage_and_logs_there(storage_root, frame, instance):
    days = sorted(frame[c.TIMESTAMP].dt.date.unique())
    write_storage(frame, storage_root, days=days[:STORED_DAYS])
    path, sha, bundle = build_bundle(frame, storage_root / "models", n_estimators=10)
    record_champion(instance, path, sha, bundle)
    live = frame[frame[c.TIMESTAMP].dt.date > days[STORED_DAYS - 1]]
    with app_on(storage_root, instance) as client:
        health = client.get("/health").json()
        assert health["status"] == "ok", health
        assert health["storage"] == {
            "location": storage_root.url,
            "endpoint": storage_root.endpoint(),
            "error": None,
        }
        cards = health["card_state"]
        assert cards["bootstrap"] == "loaded" and cards["error"] is None and cards["skipped_files"] == []
        assert cards["bootstrapped_rows"] > 0 and cards["cards"] > 0
        assert cards["source"] == asset_location(storage_root, VALIDATED_TRANSACTIONS).url
        assert cards["days"] == [days[0].isoformat(), days[STORED_DAYS - 1].isoformat()]
        assert health["merchant_risk"]["day"] == days[STORED_DAYS - 1].isoformat()
        assert client.get("/model").json()["bundle_uri"] == path.url  # the bundle, read from there

        rows = list(live.head(3).itertuples())
        answers = [client.post("/predict?include_features=true", json=body_of(row)).json() for row in rows]
        assert all(a["model_version"] == bundle.version for a in answers)
        assert answers[0]["features"]["transactions_last_30d"] is not None  # history from the store
        assert client.app.state.service.log.flush()
        assert (
            client.get("/health").json()["prediction_log"]["location"] == storage_root.join("predictions").url
        )
    logged = read_prediction_log(storage_root / "predictions")
    assert logged["transaction_id"].tolist() == [row.transaction_id for row in rows]


def test_an_empty_storage_is_said_not_silent(storage_root, instance):
    with app_on(storage_root, instance) as client:
        health = client.get("/health").json()
    cards = health["card_state"]
    assert cards["bootstrap"] == "empty" and cards["bootstrapped_rows"] == 0
    assert f"no validated_transactions under {cards['source']}" in cards["error"]
    assert health["storage"]["error"] is None and health["status"] == "no_model"


def test_a_storage_that_cannot_be_used_is_said(s3_endpoint, instance):
    url = "s3://no-such-bucket-for-the-api/fraudops"
    root = Location.of(url, {"client_kwargs": {"endpoint_url": s3_endpoint}})
    with app_on(root, instance) as client:
        health = client.get("/health").json()
        assert "bucket 'no-such-bucket-for-the-api' does not exist" in health["storage"]["error"]
        assert health["card_state"]["bootstrap"] == "failed"
        assert "does not exist" in health["card_state"]["error"]
        assert "does not exist" in health["merchant_risk"]["error"]
        # with a model it would serve, degraded: here there is none yet
        assert health["status"] == "no_model"


def test_a_champion_is_served_degraded_when_the_storage_fails(s3_endpoint, frame, tmp_path, instance):
    path, sha, bundle = build_bundle(frame, tmp_path / "models", n_estimators=10)
    record_champion(instance, path, sha, bundle)
    root = Location.of("s3://no-such-bucket-for-the-api/x", {"client_kwargs": {"endpoint_url": s3_endpoint}})
    with app_on(root, instance) as client:
        assert client.get("/health").json()["status"] == "degraded"
        response = client.post("/predict", json={"amount": 12.5, "merchant_category": "grocery"})
        assert response.status_code == 200  # scoring goes on without history


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst
