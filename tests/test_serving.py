"""The scoring API (fraud_serving): discovery, swaps, integrity, validation, history features, log."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import json
import logging
import re
import threading
import time
import weakref

import dagster as dg
import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from fraud_assets.core import columns as c
from fraud_assets.core.capture import TRANSACTIONS, open_capture
from fraud_assets.core.explanations import FieldReasons, describe
from fraud_assets.core.features import CARD_FEATURES, DEVICE_FEATURES, MERCHANT_FEATURES, history_features
from fraud_assets.core.prediction_log import READ_COLUMNS
from fraud_assets.services.testing import (
    build_bundle,
    champion_record,
    record_champion,
    simulate,
    write_dagster_home,
    write_storage,
)
from fraud_serving.app import create_app
from fraud_serving.metrics import ServiceMetrics
from fraud_serving.model_provider import ServedModel
from fraud_serving.prediction_log import PredictionLogger, read_prediction_log
from fraud_serving.settings import Settings
from tests.tolerances import (
    assert_calibrated_within,
    fast_path_tolerance,
    half_ulp,
    library_tolerances,
    summation_error,
    tree_margin_bound,
)

SEED_BODY = {
    "amount": 150.50,
    "merchant_category": "online_retail",
    "merchant_country": "USA",
    "hour_of_day": 14,
    "day_of_week": 2,
    "is_online": True,
    "is_weekend": False,
    "transactions_last_24h": 3,
    "total_amount_last_24h": 450.75,
    "transactions_last_1h": 0,
    "distance_from_home": 0.0,
}
HISTORY_DAYS = 20  # days written to storage; the days after are "live" traffic


_WORLD: dict = {}  # built once per session, whichever test module asks first


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """Simulated data, two bundles (A and B), storage with the first HISTORY_DAYS days."""
    if not _WORLD:
        _WORLD.update(_build_world(tmp_path_factory.mktemp("serving")))
    return _WORLD


def _build_world(root):
    frame = simulate(days=25, n_cardholders=300, seed=7)
    days = sorted(frame[c.TIMESTAMP].dt.date.unique())
    storage = write_storage(frame, root / "storage", days=days[:HISTORY_DAYS])
    path_a, sha_a, bundle_a = build_bundle(frame, root / "models", n_estimators=30, seed=1)
    path_b, sha_b, bundle_b = build_bundle(frame, root / "models", n_estimators=20, seed=2)
    assert bundle_a.version != bundle_b.version
    live = frame[frame[c.TIMESTAMP].dt.date > days[HISTORY_DAYS - 1]].sort_values(c.TIMESTAMP, kind="stable")
    return {
        "root": root,
        "frame": frame,
        "live": live,
        "storage": storage,
        "a": (path_a, sha_a, bundle_a),
        "b": (path_b, sha_b, bundle_b),
    }


def _home_with_champion_a(directory, world):
    home = write_dagster_home(directory)
    instance = dg.DagsterInstance.from_config(str(home))
    record_champion(instance, *world["a"], mlflow_version="1")
    return home, instance


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory, world):
    """A Dagster home whose instance has bundle A as the champion (tests must not add to it)."""
    return _home_with_champion_a(tmp_path_factory.mktemp("home"), world)


@pytest.fixture
def home(tmp_path, world):
    """A Dagster home of this test's own, with bundle A as the champion (free to add champions)."""
    return _home_with_champion_a(tmp_path / "home", world)


def make_client(world, tmp_path, home_dir, **overrides) -> TestClient:
    settings = Settings(
        dagster_home=str(home_dir),
        storage=str(world["storage"]),
        prediction_log_dir=str(tmp_path / "predictions"),
        model_poll_seconds=overrides.pop("model_poll_seconds", 3600),
        **overrides,
    )
    return TestClient(create_app(settings), raise_server_exceptions=False)


@pytest.fixture
def client(world, tmp_path, shared_home):
    """A fresh app (fresh card state and log) on the shared instance."""
    with make_client(world, tmp_path, shared_home[0]) as cl:
        yield cl


@pytest.fixture
def own_client(world, tmp_path, home):
    """A fresh app on an instance of the test's own."""
    with make_client(world, tmp_path, home[0]) as cl:
        yield cl


def body_of(row, **extra) -> dict:
    body = {
        "transaction_id": row.transaction_id,
        "amount": float(row.amount),
        "card_id": row.card_id,
        "merchant_id": row.merchant_id,
        "timestamp": row.timestamp.isoformat(),
        "merchant_category": row.merchant_category,
        "entry_mode": row.entry_mode,
        "is_online": bool(row.is_online),
        "is_foreign": bool(row.is_foreign),
        "distance_from_home": float(row.distance_from_home),
    }
    if isinstance(row.device_fingerprint, str):
        body["device_fingerprint"] = row.device_fingerprint
    return {**body, **extra}


# --- scoring and model discovery ------------------------------------------------------------


def test_seed_body_is_scored_by_the_materialized_champion(client, world):
    bundle = world["a"][2]
    response = client.post("/predict", json=SEED_BODY)
    assert response.status_code == 200, response.text
    out = response.json()
    assert set(out) >= {"transaction_id", "is_fraud", "fraud_probability", "risk_level", "timestamp"}
    assert out["model_version"] == bundle.version
    assert 0 <= out["fraud_probability"] <= 1
    assert out["is_fraud"] == int(out["fraud_probability"] >= bundle.threshold)
    assert out["risk_level"] in {"low", "medium", "high", "critical"}
    assert out["risk_level"] in ({"high", "critical"} if out["is_fraud"] else {"low", "medium"})
    assert len(out["reason_codes"]) == 3
    contributions = [r["contribution"] for r in out["reason_codes"]]
    assert contributions == sorted(contributions, reverse=True)
    assert "raw_reasons" not in out

    root = client.get("/").json()
    assert root["status"] == "ok" and root["model_version"] == bundle.version
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["error"] is None and health["card_state"]["cards"] > 0
    model = client.get("/model").json()
    assert model["bundle_version"] == bundle.version and model["bundle_sha256"] == world["a"][1]
    assert model["dagster_storage_id"] >= 1 and model["mlflow_model_version"] == "1"
    assert model["threshold"] == bundle.threshold and model["training_window"] == list(bundle.training_window)
    assert model["metrics"]["auc_roc"] == 0.9 and model["loaded_at"]  # floats round-trip through JSON


def test_the_seed_body_is_explained_by_fields_it_has_with_its_values(client):
    """The seed guide's example (an `online_retail` purchase, no card or time) is explained in its
    own terms: only fields it sent, each with the value it sent, a direction and a sentence."""
    out = client.post("/predict?raw_reasons=true", json=SEED_BODY).json()
    reasons = out["reason_codes"]
    assert len(reasons) == 3
    for reason in reasons:
        assert reason["field"] in SEED_BODY, reason
        assert reason["value"] == SEED_BODY[reason["field"]], reason
        assert reason["direction"] == ("raises" if reason["contribution"] > 0 else "lowers")
        if reason["field"] == "amount":  # no card: set against the model's median transaction
            assert re.fullmatch(
                r"amount is 150\.50, [\d.]+x the median transaction \([\d,.]+\)", reason["explanation"]
            )
        else:
            assert reason["explanation"] == describe(reason["field"], SEED_BODY[reason["field"]])
    assert all("=" not in reason["field"] for reason in reasons)
    assert len(out["raw_reasons"]) == 3  # the model's own columns, on request


def test_scores_equal_the_bundle_on_the_same_features(client, world):
    """The API's probability is the bundle's own, on the features it reports."""
    bundle = world["a"][2]
    row = next(world["live"].itertuples())
    out = client.post("/predict?include_features=true", json=body_of(row)).json()
    features = {k: (np.nan if v is None else v) for k, v in out["features"].items()}
    frame = pd.DataFrame([features])
    matrix = bundle.preprocessor.transform(frame)
    # The API walks the compiled trees (float64 sums), XGBoost sums in float32: the raw
    # probabilities differ by at most a quarter of the margins' difference (the logistic's
    # slope) plus XGBoost's float32 rounding of the probability; then the same calibrator.
    trees = client.app.state.service.provider.current.trees
    margin_tol, shap_tol = library_tolerances(trees, "xgboost", depth=4)
    raw = bundle.classifier.backend_.raw_proba(matrix)
    raw_tol = margin_tol / 4 + half_ulp(1.0, np.float32)
    assert_calibrated_within(bundle.classifier.calibrator_, [out["fraud_probability"]], raw, raw_tol)
    contrib = bundle.classifier.reason_codes(matrix, top_k=3)[0]
    raw = client.post("/predict?raw_reasons=true", json=body_of(row, transaction_id="again")).json()
    assert [r["feature"] for r in raw["raw_reasons"]] == [name for name, _ in contrib]
    assert [r["contribution"] for r in raw["raw_reasons"]] == pytest.approx(
        [v for _, v in contrib], abs=shap_tol
    )
    # the business reasons are the model's contributions grouped by field: they add up alike
    # (a sum of 53 values each within shap_tol of the library's)
    grouped = FieldReasons.of(bundle.feature_names)
    library = bundle.classifier.contributions(matrix) @ grouped.weights
    for reason in out["reason_codes"]:
        at = grouped.fields.index(reason["field"])
        assert reason["contribution"] == pytest.approx(
            library[0, at], abs=len(bundle.feature_names) * shap_tol
        )
    info = client.get("/model").json()
    assert info["compiled_trees"] is True
    size = info["compiled_tree_size"]
    assert size["trees"] > 0 and size["shap_table_entries"] > 0 and 1 <= size["max_depth"] <= 4


@pytest.mark.parametrize("algorithm", ["xgboost", "lightgbm"])
def test_approximate_reasons_are_saabas_from_the_compiled_trees(world, tmp_path, algorithm):
    """reasons=approx: Saabas path attribution from the compiled trees, equal to XGBoost's
    `approx_contribs` (LightGBM has none of its own); the probability is the exact one."""
    path, sha, bundle = build_bundle(world["frame"], tmp_path, n_estimators=20, algorithm=algorithm)
    served = ServedModel.from_bundle(bundle, champion_record(path, sha, bundle))
    assert served.trees is not None
    live = world["live"].head(50)  # no history columns: those are missing (imputed)
    x = served.preprocessor.transform_columns(
        {
            col: live[col].to_numpy() if col in live else np.full(len(live), np.nan)
            for col in served.input_columns
        }
    )
    trees = served.trees
    shap_tol = library_tolerances(trees, algorithm, depth=4)[1]  # build_bundle's trees: depth 4
    exact = served.contributions(x, "exact")
    np.testing.assert_allclose(exact, bundle.classifier.contributions(x), rtol=0, atol=shap_tol)
    # The probability does not depend on the reasons asked for: the TreeSHAP pass, the Saabas
    # walk and the plain walk add the same float64 leaf values in tree order (bit-identical).
    probs, approx = served.predict(x, "approx")
    np.testing.assert_array_equal(probs, served.predict(x, "exact")[0])
    np.testing.assert_array_equal(probs, served.predict(x, "none")[0])
    np.testing.assert_array_equal(approx, served.contributions(x, "approx"))  # the same kernel
    assert not np.allclose(approx, exact, atol=1e-3)  # a different attribution
    # Saabas adds up to the margin too, minus one bias for every row: both sides are float64
    # sums of (trees x (depth + 1)) terms plus the features', every partial sum within twice
    # the margin bound (a node-mean difference is at most twice the tree's largest leaf).
    bias = trees.margin(x) - approx.sum(axis=1)
    n_terms = len(trees.roots) * 5 + x.shape[1]
    assert np.ptp(bias) <= 2 * summation_error(n_terms, 2 * tree_margin_bound(trees))
    if algorithm == "xgboost":
        import xgboost as xgb

        booster = bundle.classifier.backend_.model.get_booster()
        dmat = xgb.DMatrix(x.astype(np.float32), feature_names=booster.feature_names)
        saabas = booster.predict(dmat, pred_contribs=True, approx_contribs=True)[:, :-1]
        np.testing.assert_allclose(approx, saabas, rtol=0, atol=shap_tol)


@pytest.mark.parametrize("algorithm", ["random_forest", "logistic_regression"])
def test_uncompiled_models_serve_their_own_probabilities_and_contributions(world, tmp_path, algorithm):
    path, sha, bundle = build_bundle(world["frame"], tmp_path, n_estimators=20, algorithm=algorithm)
    served = ServedModel.from_bundle(bundle, champion_record(path, sha, bundle))
    served.warm_up()
    live = world["live"].head(300)
    x = served.preprocessor.transform_columns(
        {
            col: live[col].to_numpy() if col in live else np.full(len(live), np.nan)
            for col in served.input_columns
        }
    )
    backend = bundle.classifier.backend_
    raw_tol = fast_path_tolerance(backend, x)
    for rows in (x[:1], x):
        probs, contributions = served.predict(rows, "exact")
        frame = pd.DataFrame(rows, columns=bundle.classifier.feature_names_)  # the library's own path
        raw = backend.raw_proba(frame)
        assert_calibrated_within(bundle.classifier.calibrator_, probs, raw, raw_tol)
        # The same function on the same rows (`forest_paths`, or coef * standardized x): equal.
        np.testing.assert_array_equal(contributions, bundle.classifier.contributions(rows))
        assert served.predict(rows, "none")[1] is None


def test_503_before_any_model(world, tmp_path):
    empty_home = write_dagster_home(tmp_path / "empty")
    with make_client(world, tmp_path, empty_home) as cl:
        response = cl.post("/predict", json=SEED_BODY)
        assert response.status_code == 503
        assert "make run" in response.json()["detail"] and "train_models" in response.json()["detail"]
        assert cl.post("/predict/batch", json={"transactions": [SEED_BODY]}).status_code == 503
        assert cl.get("/model").status_code == 503
        health = cl.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "no_model"
        assert cl.get("/").status_code == 200 and cl.get("/metrics").status_code == 200


def test_tampered_bundle_is_refused_and_the_old_model_keeps_serving(own_client, world, home, tmp_path):
    client = own_client
    _, instance = home
    path_b, sha_b, bundle_b = world["b"]
    tampered = tmp_path / "tampered" / path_b.name
    tampered.parent.mkdir()
    raw = bytearray(path_b.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    tampered.write_bytes(bytes(raw))
    record_champion(instance, tampered, sha_b, bundle_b, mlflow_version="2")
    provider = client.app.state.service.provider
    assert provider.refresh() is False

    response = client.post("/predict", json=SEED_BODY)
    assert response.status_code == 200 and response.json()["model_version"] == world["a"][2].version
    health = client.get("/health").json()
    assert health["status"] == "degraded"
    assert "integrity" in health["error"] and world["a"][2].version in health["error"]
    assert "fraudops_model_refusals_total 1.0" in client.get("/metrics").text

    record_champion(instance, path_b, sha_b, bundle_b, mlflow_version="3")  # a good one heals it
    assert provider.refresh() is True
    assert client.post("/predict", json=SEED_BODY).json()["model_version"] == bundle_b.version
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/model").json()["mlflow_model_version"] == "3"


def test_a_swapped_out_model_is_freed_despite_gc_freeze(world, tmp_path, home):
    """The service freezes its startup objects out of the collector's reach; a model swapped out
    later must still be freed (nothing but plain references holds it), or every retraining
    would leak a model."""
    _, instance = home
    path_b, sha_b, bundle_b = world["b"]
    with make_client(world, tmp_path, home[0], model_poll_seconds=0.1) as cl:
        assert cl.post("/predict", json=SEED_BODY).status_code == 200
        service = cl.app.state.service
        assert gc.get_freeze_count() > 0
        first = weakref.ref(service.provider.current)
        record_champion(instance, path_b, sha_b, bundle_b, mlflow_version="2")
        deadline = time.monotonic() + 20
        while service.provider.current.version != bundle_b.version and time.monotonic() < deadline:
            time.sleep(0.05)
        assert cl.post("/predict", json=SEED_BODY).json()["model_version"] == bundle_b.version
        assert service.log.flush()  # the log's items hold their model until written
        assert first() is None


def test_swap_under_load_drops_no_request(world, tmp_path, home):

    _, instance = home
    path_b, sha_b, bundle_b = world["b"]
    versions, failures = [], []
    stop = threading.Event()
    with make_client(world, tmp_path, home[0], model_poll_seconds=0.1) as cl:

        def fire():
            while not stop.is_set():
                r = cl.post("/predict", json=SEED_BODY)
                if r.status_code != 200:
                    failures.append(r.status_code)
                else:
                    versions.append(r.json()["model_version"])

        thread = threading.Thread(target=fire)
        thread.start()
        time.sleep(0.5)
        record_champion(instance, path_b, sha_b, bundle_b, mlflow_version="2")
        deadline = time.monotonic() + 20
        while (not versions or versions[-1] != bundle_b.version) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        stop.set()
        thread.join()
    assert failures == []
    assert versions[0] == world["a"][2].version and versions[-1] == bundle_b.version
    first_b = versions.index(bundle_b.version)
    assert set(versions[first_b:]) == {bundle_b.version}  # swapped once, never back


# --- bad input ----------------------------------------------------------------------------------

BAD_BODIES = [
    ({k: v for k, v in SEED_BODY.items() if k != "amount"}, "amount"),
    ({**SEED_BODY, "amount": -5}, "amount"),
    ({**SEED_BODY, "amount": 0}, "amount"),
    ({**SEED_BODY, "amount": "150.50"}, "amount"),
    ({**SEED_BODY, "amount": 1e300}, "amount"),
    ({**SEED_BODY, "hour_of_day": 25}, "hour_of_day"),
    ({**SEED_BODY, "hour_of_day": 14.5}, "hour_of_day"),
    ({**SEED_BODY, "day_of_week": 7}, "day_of_week"),
    ({**SEED_BODY, "is_online": "maybe"}, "is_online"),
    ({**SEED_BODY, "transactions_last_24h": -1}, "transactions_last_24h"),
    ({**SEED_BODY, "distance_from_home": 1e9}, "distance_from_home"),
    ({**SEED_BODY, "timestamp": "yesterday"}, "timestamp"),
    ({**SEED_BODY, "card_id": "c1", "timestamp": "9999-12-31T00:00:00"}, "timestamp"),
    ({**SEED_BODY, "card_id": "c1", "timestamp": "0001-01-01T00:00:00"}, "timestamp"),
    ({**SEED_BODY, "merchant_fraud_rate_30d": 2}, "merchant_fraud_rate_30d"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_fields_get_422_naming_the_field(client, body, field):
    response = client.post("/predict", json=body)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["detail"]]


@pytest.mark.parametrize(
    ("query", "field"), [("reasons=all", "reasons"), ("include_features=maybe", "include_features")]
)
def test_bad_query_parameters_get_422_naming_the_parameter(client, query, field):
    for path in ("/predict", "/predict/batch"):
        body = SEED_BODY if path == "/predict" else {"transactions": [SEED_BODY]}
        response = client.post(f"{path}?{query}", json=body)
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["detail"]] == [f"query.{field}"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_get_422(client, literal):
    text = json.dumps(SEED_BODY).replace('"amount": 150.5', f'"amount": {literal}')
    response = client.post("/predict", content=text, headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "amount"


@pytest.mark.parametrize(
    ("content", "content_type", "path"),
    [
        ("{not json", "application/json", "/predict"),
        ("", "application/json", "/predict"),
        ("[]", "application/json", "/predict"),
        ("null", "application/json", "/predict"),
        (json.dumps(SEED_BODY), "text/plain", "/predict"),
        ("amount=3", "application/x-www-form-urlencoded", "/predict"),
        ('{"transactions": []}', "application/json", "/predict/batch"),
        ('{"transactions": {}}', "application/json", "/predict/batch"),
        (json.dumps([SEED_BODY]), "application/json", "/predict/batch"),
        ('{"amount": 1' + "0" * 5000 + "}", "application/json", "/predict"),
        ('{"amount": 12, "hour_of_day": ' + "9" * 400 + "}", "application/json", "/predict"),
    ],
)
def test_malformed_requests_get_4xx_never_5xx(client, content, content_type, path):
    response = client.post(path, content=content, headers={"content-type": content_type})
    assert 400 <= response.status_code < 500, (response.status_code, response.text)


def test_batch_limit_is_413_and_unknown_category_is_scored_like_training(world, tmp_path, shared_home):
    with make_client(world, tmp_path, shared_home[0], max_batch=5) as cl:
        response = cl.post("/predict/batch", json={"transactions": [SEED_BODY] * 6})
        assert response.status_code == 413 and "at most 5" in response.json()["detail"]
        huge = cl.post("/predict", json={**SEED_BODY, "merchant_country": "x" * 70_000})
        assert huge.status_code == 413
        unknown = {**SEED_BODY, "merchant_category": "spaceship_dealer"}
        absent = {k: v for k, v in SEED_BODY.items() if k != "merchant_category"}
        out = cl.post("/predict/batch", json={"transactions": [unknown, absent]}).json()["predictions"]
        assert out[0]["fraud_probability"] == out[1]["fraud_probability"]  # all-zero one-hot, as in training
        bundle = world["a"][2]
        frame = pd.DataFrame([{col: np.nan for col in bundle.preprocessor.input_columns_}])
        frame = frame.assign(**{k: v for k, v in unknown.items() if k in frame}).astype(
            {c.MERCHANT_CATEGORY: object, c.ENTRY_MODE: object}
        )
        frame[c.ENTRY_MODE] = None
        raw = bundle.classifier.backend_.raw_proba(bundle.preprocessor.transform(frame))
        # compiled walk (float64 sums) against XGBoost's float32 sums, as in test_scores_equal_...
        trees = cl.app.state.service.provider.current.trees
        raw_tol = library_tolerances(trees, "xgboost", depth=4)[0] / 4 + half_ulp(1.0, np.float32)
        assert_calibrated_within(bundle.classifier.calibrator_, [out[0]["fraud_probability"]], raw, raw_tol)


def test_api_key(world, tmp_path, shared_home):
    with make_client(world, tmp_path, shared_home[0], api_key="s3cret") as cl:
        assert cl.post("/predict", json=SEED_BODY).status_code == 401
        assert cl.post("/predict", json=SEED_BODY, headers={"X-API-Key": "wrong"}).status_code == 401
        assert cl.post("/predict/batch", json={"transactions": [SEED_BODY]}).status_code == 401
        assert cl.post("/predict", json=SEED_BODY, headers={"X-API-Key": "s3cret"}).status_code == 200
        ok = cl.post("/predict/batch", json={"transactions": [SEED_BODY]}, headers={"X-API-Key": "s3cret"})
        assert ok.status_code == 200
        assert cl.get("/health").status_code == 200 and cl.get("/metrics").status_code == 200


# --- history features -------------------------------------------------------------------------


def test_history_features_from_card_state_equal_the_batch_code(client, world):
    """Live transactions scored one by one get the features batch training computes for them."""
    frame, live = world["frame"], world["live"]
    sent = live.head(250)
    got = []
    for row in sent.itertuples():
        response = client.post("/predict?include_features=true", json=body_of(row))
        assert response.status_code == 200
        got.append(response.json()["features"])
    got = pd.DataFrame(got)
    # The batch code on everything the service has seen: the stored days and the rows sent.
    seen = pd.concat([frame[frame[c.TIMESTAMP] < live[c.TIMESTAMP].min()], sent], ignore_index=True)
    expected = history_features(seen)
    n = len(sent)
    # Bit-identical: the card state calls the batch code's kernel on the same rows in the same
    # order (amount sums walk back from the newest row; rounded to 6 decimals, which also
    # hides the order of rows at the same millisecond for cent amounts), and merchant features
    # are the same formula on the same counts.
    for name in (*CARD_FEATURES, *DEVICE_FEATURES, *MERCHANT_FEATURES):
        np.testing.assert_array_equal(got[name].to_numpy(float), expected[name][-n:], err_msg=name)


def test_a_retried_transaction_counts_once_in_later_history(client, world):
    """Clients retry on timeouts: the same transaction_id sent twice is one transaction."""
    live = world["live"]
    card = live[c.CARD_ID].value_counts().index[0]
    first, later = list(live[live[c.CARD_ID] == card].head(2).itertuples())
    answers = [client.post("/predict?include_features=true", json=body_of(first)).json() for _ in range(2)]
    assert answers[0]["fraud_probability"] == answers[1]["fraud_probability"]
    assert answers[0]["features"] == answers[1]["features"]
    after = client.post("/predict?include_features=true", json=body_of(later)).json()["features"]
    expected = history_features(pd.concat([world["frame"][world["frame"][c.TIMESTAMP] < first.timestamp],
                                           live[live[c.TRANSACTION_ID].isin([first.transaction_id, later.transaction_id])]],
                                          ignore_index=True))  # fmt: skip
    assert after["transactions_last_30d"] == expected["transactions_last_30d"][-1]  # first counted once


def test_client_values_win_and_history_needs_card_and_timestamp(client, world):
    row = next(world["live"].itertuples())
    given = client.post(
        "/predict?include_features=true",
        json=body_of(row, transactions_last_24h=42, seconds_since_last_txn=7),
    ).json()["features"]
    assert given["transactions_last_24h"] == 42 and given["seconds_since_last_txn"] == 7
    assert given["transactions_last_30d"] is not None  # the rest still computed
    bare = client.post("/predict?include_features=true", json=SEED_BODY).json()["features"]
    assert bare["transactions_last_24h"] == 3 and bare["transactions_last_30d"] is None  # imputed


def test_batch_equals_singles(world, tmp_path, shared_home):
    rows = list(world["live"].iloc[300:360].itertuples())
    bodies = [body_of(r) for r in rows] + [SEED_BODY]
    with make_client(world, tmp_path / "one", shared_home[0]) as cl:
        singles = [cl.post("/predict", json=b).json() for b in bodies]
    with make_client(world, tmp_path / "two", shared_home[0]) as cl:
        batch = cl.post("/predict/batch", json={"transactions": bodies}).json()
    assert batch["count"] == len(bodies)
    assert [p["timestamp"] for p in batch["predictions"][:-1]] == [r.timestamp.isoformat() for r in rows]
    for one, many in zip(singles, batch["predictions"], strict=True):
        assert one["transaction_id"] == many["transaction_id"] or one["transaction_id"].startswith("txn-")
        # Bit-identical: the same features (one card state), and the compiled trees sum each
        # row's margin in tree order whatever the batch size and kernel; the logistic and the
        # calibrator work element by element.
        assert one["fraud_probability"] == many["fraud_probability"]
        assert one["is_fraud"] == many["is_fraud"] and one["risk_level"] == many["risk_level"]
        assert [r["field"] for r in one["reason_codes"]] == [r["field"] for r in many["reason_codes"]]


def test_concurrent_singles_are_scored_together_as_if_one_by_one(world, tmp_path, shared_home):
    """/predict requests that arrive together share one model call (`coalescing`) and get the
    answers they would have got one at a time; the log holds each transaction's own latency."""
    rows = list(world["live"].iloc[500:580].itertuples())
    bodies = [body_of(r) for r in rows] + [SEED_BODY]
    with make_client(world, tmp_path / "one", shared_home[0]) as cl:
        one_by_one = [cl.post("/predict?include_features=true", json=b).json() for b in bodies]

    with make_client(world, tmp_path / "two", shared_home[0]) as cl:
        app = cl.app

        async def all_at_once():
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
                sent = [api.post("/predict?include_features=true", json=b) for b in bodies]
                return await asyncio.gather(*sent)

        answers = asyncio.run(all_at_once())
        assert app.state.service.log.flush()
        metrics = cl.get("/metrics").text
    assert [a.status_code for a in answers] == [200] * len(bodies)
    calls = float(
        re.search(r'fraudops_model_call_transactions_count\{endpoint="/predict"\} (\S+)', metrics)[1]
    )
    scored = float(
        re.search(r'fraudops_model_call_transactions_sum\{endpoint="/predict"\} (\S+)', metrics)[1]
    )
    assert scored == len(bodies) and calls < len(bodies) / 4  # scored together, in a few calls
    for one, together in zip(one_by_one, (a.json() for a in answers), strict=True):
        assert together["transaction_id"] == one["transaction_id"] or one["transaction_id"].startswith("txn-")
        assert together["fraud_probability"] == one["fraud_probability"]  # as in test_batch_equals_singles
        assert together["features"] == one["features"]
        assert together["reason_codes"] == one["reason_codes"]
    log = read_prediction_log(tmp_path / "two" / "predictions")
    assert sorted(log["transaction_id"].tolist()[:-1]) == sorted(r.transaction_id for r in rows)
    assert log["latency_ms"].notna().all() and (log["latency_ms"] > 0).all()
    assert log["latency_ms"].nunique() > 1  # each request's own


# --- prediction log and metrics ---------------------------------------------------------------


def test_prediction_log_and_metrics(client, world, tmp_path):
    rows = list(world["live"].head(5).itertuples())
    for row in rows:
        assert client.post("/predict", json=body_of(row)).status_code == 200
    client.post("/predict/batch", json={"transactions": [SEED_BODY, SEED_BODY]})
    assert client.app.state.service.log.flush()
    log = read_prediction_log(tmp_path / "predictions")
    assert len(log) == 7
    assert log["transaction_id"].head(5).tolist() == [r.transaction_id for r in rows]
    assert {
        "fraud_probability",
        "is_fraud",
        "model_version",
        "latency_ms",
        "amount",
        "transactions_last_24h",
    } <= set(log)
    assert (
        log["transactions_last_30d"].head(5).notna().all()
        and log["transactions_last_30d"].tail(2).isna().all()
    )
    assert (log["model_version"] == world["a"][2].version).all() and (log["latency_ms"] > 0).all()
    today = dt.datetime.now(dt.UTC).date()
    assert len(read_prediction_log(tmp_path / "predictions", day=today)) == 7

    text = client.get("/metrics").text
    assert 'fraudops_http_requests_total{endpoint="/predict",method="POST",status="200"} 5.0' in text
    assert 'fraudops_http_request_duration_seconds_bucket{endpoint="/predict"' in text
    assert "fraudops_fraud_probability_count 7.0" in text
    assert "fraudops_decisions_total{" in text and "fraudops_prediction_log_dropped_total 0.0" in text
    assert f'bundle_version="{world["a"][2].version}"' in text


def test_a_big_batch_is_logged_as_answered(world, tmp_path, shared_home):
    """A batch large enough to be logged in pieces reads back with the answer's values."""
    rows = list(world["live"].iloc[400:850].itertuples())
    with make_client(world, tmp_path, shared_home[0], capture=str(tmp_path / "capture")) as cl:
        answer = cl.post(
            "/predict/batch?include_features=true", json={"transactions": [body_of(r) for r in rows]}
        )
        assert answer.status_code == 200
        assert cl.app.state.service.log.flush()
    predictions = answer.json()["predictions"]
    log = read_prediction_log(tmp_path / "predictions")
    assert len(log) == len(rows) == len(predictions)
    assert log["transaction_id"].tolist() == [p["transaction_id"] for p in predictions]
    assert log["fraud_probability"].tolist() == [p["fraud_probability"] for p in predictions]
    assert log["reason_codes"].tolist() == [p["reason_codes"] for p in predictions]
    # the transactions as sent are the capture feed's: one record for the call, in order
    (record,) = open_capture(str(tmp_path / "capture")).read(TRANSACTIONS, None, 10).records
    sent = json.loads(record.line)
    assert [body["card_id"] for body in sent["rows"]] == [r.card_id for r in rows]
    assert sent["ids"] == log["transaction_id"].tolist()
    # every column the reader knows was written under its name (the writer and reader agree)
    assert log.columns[: len(READ_COLUMNS)].tolist() == list(READ_COLUMNS)
    assert log[list(READ_COLUMNS)].notna().all().all()
    assert log["risk_level"].tolist() == [p["risk_level"] for p in predictions]
    assert log["is_fraud"].tolist() == [p["is_fraud"] for p in predictions]
    for name in ("amount", "transactions_last_24h", "merchant_category"):
        assert log[name].tolist() == [p["features"][name] for p in predictions], name


def test_full_log_queue_drops_and_counts_without_blocking(tmp_path):
    metrics = ServiceMetrics()
    logger = PredictionLogger(tmp_path / "log", max_queue=1, metrics=metrics)  # writer not started
    record = {"scored_at": "2026-01-01T00:00:00+00:00", "transaction_id": "t"}
    started = time.perf_counter()
    for _ in range(100):
        logger.submit([record])
    assert time.perf_counter() - started < 0.5
    assert logger.dropped == 99
    assert "fraudops_prediction_log_dropped_total 99.0" in metrics.render()[0].decode()
    logger.start()
    assert logger.flush(5)
    logger.close()
    assert len(read_prediction_log(tmp_path / "log")) == 1


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
def test_an_unexpected_failure_is_a_500_with_the_error_id_of_its_log_line(client, monkeypatch, caplog, path):
    """Not a 503 "retry shortly": retrying a bug does not help; the id finds the traceback."""

    def broken(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr(client.app.state.service.scorer, "score", broken)
    with caplog.at_level(logging.ERROR, logger="fraud_serving"):
        response = client.post(path, json=SEED_BODY if path == "/predict" else {"transactions": [SEED_BODY]})
    assert response.status_code == 500, response.text
    error_id = response.json()["error_id"]
    assert len(error_id) == 12 and error_id in response.json()["detail"]
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert len(logged) == 1 and "RuntimeError: boom" in logged[0].exc_text
    assert f'fraudops_internal_errors_total{{endpoint="{path}"}} 1.0' in client.get("/metrics").text
    assert client.post("/predict", json={"amount": -1}).status_code == 422  # the app goes on


def test_the_library_runtime_serves_what_the_compiled_one_does(world, tmp_path, shared_home, caplog):
    """FRAUDOPS_MODEL_RUNTIME=library: the model's own library serves (logged), with the answers
    the accelerator gives, within the rounding the two arithmetics allow (`library_tolerances`)."""
    body = {**SEED_BODY, "transaction_id": "same"}
    with make_client(world, tmp_path / "c", shared_home[0]) as cl:
        compiled = cl.post("/predict?include_features=true", json=body).json()
        trees = cl.app.state.service.provider.current.trees
        assert cl.get("/model").json()["runtime"] == "compiled"
    with (
        caplog.at_level(logging.INFO, logger="fraud_serving"),
        make_client(world, tmp_path / "l", shared_home[0], model_runtime="library") as cl,
    ):
        library = cl.post("/predict?include_features=true", json=body).json()
        assert cl.get("/model").json()["runtime"] == "library"
        assert cl.app.state.service.provider.current.trees is None
    assert any(
        "through its library" in r.getMessage() and "MODEL_RUNTIME" in r.getMessage() for r in caplog.records
    )
    bundle = world["a"][2]
    features = {k: (np.nan if v is None else v) for k, v in library["features"].items()}
    x = bundle.preprocessor.transform(pd.DataFrame([features])).to_numpy()
    raw = bundle.classifier.backend_.raw_proba_fast(x)
    assert (
        library["fraud_probability"] == bundle.classifier.calibrator_.transform(raw)[0]
    )  # the library's own
    margin_tol, shap_tol = library_tolerances(trees, "xgboost", depth=4)
    raw_tol = margin_tol / 4 + half_ulp(1.0, np.float32)  # as in test_scores_equal_the_bundle_...
    assert_calibrated_within(bundle.classifier.calibrator_, [compiled["fraud_probability"]], raw, raw_tol)
    assert [r["field"] for r in compiled["reason_codes"]] == [r["field"] for r in library["reason_codes"]]
    for a, b in zip(compiled["reason_codes"], library["reason_codes"], strict=True):
        assert a["contribution"] == pytest.approx(b["contribution"], abs=len(bundle.feature_names) * shap_tol)


def test_a_model_the_accelerator_cannot_check_is_served_by_its_library(world, tmp_path, monkeypatch, caplog):
    """Compiled trees that disagree with the library (here: a tolerance of nothing) are not
    refused: the library serves the model, and a log line says why."""
    from fraud_serving import runtime

    path, sha, bundle = world["a"]
    monkeypatch.setattr(runtime, "library_tolerances", lambda *a, **k: (-1.0, -1.0))
    with caplog.at_level(logging.INFO, logger="fraud_serving"):
        served = ServedModel.from_bundle(bundle, champion_record(path, sha, bundle))
    served.warm_up()
    assert served.trees is None and served.info["runtime"] == "library"
    assert any("compiled trees disagree" in r.getMessage() for r in caplog.records)
