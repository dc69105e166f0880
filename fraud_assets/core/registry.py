"""The MLflow model registry: candidates become versions of `fraud-detector`; one is `champion`.

The `champion` alias is a mirror: the champion is the latest `champion_model` materialization
(`fraud_assets.core.champion_history`), and :meth:`ModelRegistry.mirror` moves the alias to it
(called at the end of `champion_model` and on every tick of `champion_alias_sensor`, which
repairs a crash between the two writes or an alias moved by hand). Nothing decides anything
from the alias.

Format, chosen deliberately: the model is logged with MLflow's **pyfunc** flavour wrapping our
own model bundle (`fraud_assets.core.bundle`) as an artifact. MLflow 3's scikit-learn flavour
serializes with skops and refuses XGBoost/LightGBM objects unless declared trusted, and it would
lose the preprocessor, threshold and SHA-256 that travel in the bundle. The pyfunc model
verifies the bundle's SHA-256 when it loads, and `mlflow models serve` can serve it.

Every version carries tags describing it (`bundle_uri`, `bundle_sha256`, `algorithm`, the
headline metrics, and the gate's verdict `champion_gate`), for people browsing MLflow.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from fraud_assets.core.champion_history import ChampionMaterialization
from fraud_assets.core.contract import PROMOTION, ContractError
from fraud_assets.core.storage import Location

MODEL_NAME = "fraud-detector"
CHAMPION = "champion"
GATE_TAG = "champion_gate"  # the version tag holding the gate's verdict
# Given, so MLflow does not spend ~45 s inferring requirements at every log_model; our own
# package travels with the model through code_paths.
PIP_REQUIREMENTS = ["pandas", "numpy", "scikit-learn", "xgboost-cpu", "lightgbm", "fsspec"]
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # fraud_assets/


def ensure_experiment(tracking_uri: str, name: str, artifact_location: str | None) -> str:
    """Create the experiment with our artifact location if it does not exist yet; its id."""
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    # A folder, made absolute; a URI (s3://..., or mlflow-artifacts:/... served by a tracking
    # server, which has a single slash) is the store's business.
    if artifact_location and not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+:/", artifact_location):
        Path(artifact_location).mkdir(parents=True, exist_ok=True)
        artifact_location = Path(artifact_location).resolve().as_uri()
    return client.create_experiment(name, artifact_location=artifact_location)


class FraudBundleModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: scores a DataFrame of transactions with a verified model bundle.

    Input rows carry the event columns and history features the bundle's preprocessor uses;
    the output has `fraud_probability` and `is_fraud` at the bundle's threshold.
    """

    def load_context(self, context) -> None:
        from fraud_assets.core.bundle import ModelBundle

        meta = json.loads(Path(context.artifacts["bundle_meta"]).read_text())
        self.bundle = ModelBundle.load(context.artifacts["bundle"], expected_sha256=meta["sha256"])

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        matrix = self.bundle.preprocessor.transform(model_input)
        proba = self.bundle.classifier.predict_proba(matrix)[:, 1]
        return pd.DataFrame(
            {"fraud_probability": proba, "is_fraud": (proba >= self.bundle.threshold).astype(int)}
        )


@dataclass(frozen=True)
class RegisteredVersion:
    version: str
    run_id: str
    bundle_uri: str
    bundle_sha256: str
    tags: dict[str, str]

    @property
    def metrics(self) -> dict[str, float]:
        return {k.removeprefix("metric."): float(v) for k, v in self.tags.items() if k.startswith("metric.")}


class ModelRegistry:
    """Register model versions and move the `champion` alias; tracking URI is configuration."""

    def __init__(self, tracking_uri: str, model_name: str = MODEL_NAME):
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def log_bundle_model(self, bundle: Location, sha256: str, artifact_path: str = "model") -> str:
        """Log the bundle as a pyfunc model in the active run; returns the model URI.

        The bundle is read through our storage (any location, with its options) into a local
        copy, so MLflow never needs credentials or an endpoint for the model store itself."""
        with tempfile.TemporaryDirectory() as tmp:
            meta = Path(tmp) / "bundle_meta.json"
            meta.write_text(json.dumps({"sha256": sha256, "bundle_uri": str(bundle)}))
            local = bundle if bundle.is_local else Location.of(Path(tmp) / bundle.name)
            if not bundle.is_local:
                local.write_bytes(bundle.read_bytes())
            info = mlflow.pyfunc.log_model(
                name=artifact_path,
                python_model=FraudBundleModel(),
                artifacts={"bundle": local.url, "bundle_meta": str(meta)},
                pip_requirements=PIP_REQUIREMENTS,
                code_paths=[str(PACKAGE_DIR)],
            )
        return info.model_uri

    def register(
        self, model_uri: str, run_id: str, bundle_uri: str, sha256: str, tags: dict[str, Any]
    ) -> str:
        """A new version of the registered model, tagged so it can be found and verified."""
        with contextlib.suppress(MlflowException):  # exists already
            self.client.create_registered_model(self.model_name)
        # A logged model (MLflow 3's models:/<model id>) is named by its id too: a tracking
        # server refuses the source without it (a local store does not check).
        model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/") else None
        version = self.client.create_model_version(
            self.model_name,
            source=model_uri,
            run_id=run_id,
            tags={k: str(v) for k, v in tags.items()},
            model_id=model_id,
        )
        for key, value in {"bundle_uri": bundle_uri, "bundle_sha256": sha256}.items():
            self.client.set_model_version_tag(self.model_name, version.version, key, value)
        return str(version.version)

    def get(self, version: str) -> RegisteredVersion:
        mv = self.client.get_model_version(self.model_name, version)
        return RegisteredVersion(
            str(mv.version),
            mv.run_id,
            mv.tags.get("bundle_uri", ""),
            mv.tags.get("bundle_sha256", ""),
            dict(mv.tags),
        )

    def alias_version(self) -> str | None:
        """The version the `champion` alias names, or None when it names none."""
        try:
            mv = self.client.get_model_version_by_alias(self.model_name, CHAMPION)
        except MlflowException:
            return None
        return str(mv.version)

    def champion(self) -> RegisteredVersion | None:
        """The version the `champion` alias names (the mirror), or None when it names none."""
        version = self.alias_version()
        return None if version is None else self.get(version)

    def mirror(self, latest: ChampionMaterialization | None) -> str:
        """Make the `champion` alias name the champion of ``latest`` (the latest `champion_model`
        materialization), tagging the version with that materialization and why it became
        champion; says what it found or did. The tags are written before the alias moves, so an
        alias that names the champion has its tags."""
        if latest is None:
            return "no champion_model materialization yet: the alias waits for the first champion"
        try:
            champion = latest.champion()
        except ContractError as err:
            return f"the latest champion_model materialization is unreadable, the alias stays: {err}"
        version = champion.mlflow_model_version
        if version is None:
            return f"champion {champion.name} has no MLflow version: no alias to move"
        before = self.alias_version()
        if before == version:
            return f"the `{CHAMPION}` alias names the champion, {champion.name}"
        tags = {
            "champion_materialization": str(latest.storage_id),
            "champion_promotion": f"{champion.promotion or PROMOTION} at {champion.promoted_at}: "
            f"{champion.reason or 'no reason recorded'}",
        }
        for key, value in tags.items():
            self.client.set_model_version_tag(self.model_name, version, key, value)
        self.client.set_registered_model_alias(self.model_name, CHAMPION, version)
        was = f"v{before}" if before else "no version"
        return f"moved the `{CHAMPION}` alias from {was} to the champion, {champion.name}"

    def record_challenger(self, version: str, outcome: str) -> None:
        """Note on a version why it was or was not promoted (visible in the MLflow UI)."""
        self.client.set_model_version_tag(self.model_name, version, GATE_TAG, outcome)

    def gate_verdict(self, version: str) -> str | None:
        """What `champion_gate` noted on a version (:meth:`record_challenger`), if anything."""
        return self.get(version).tags.get(GATE_TAG)
