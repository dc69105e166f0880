"""Stage 6, registry: the best candidate becomes a challenger; only a better one becomes champion.

`challenger_model` refits the best candidate's recipe on every label known now (its training
window then ends a label delay before the present, as fraud teams retrain), bundles it
(versioned file with a SHA-256), logs it to MLflow and registers it as a new version of
`fraud-detector`. The blocking `champion_gate` check compares challenger and the champion (the
latest `champion_model` materialization, `fraud_assets.core.champion_history`) on the held-out
days neither has trained on, and notes its verdict on the MLflow version. Only a challenger that
passes reaches `champion_model` (`fraud_assets.defs.champion`); one that fails stays recorded in
MLflow, tagged with why, and the champion stays.
"""

import dagster as dg
import numpy as np
import pandas as pd
from dagster_mlflow import end_mlflow_on_run_finished

from fraud_assets.core import columns as c
from fraud_assets.core.bundle import BundleLoadError, ModelBundle, frame_fingerprint
from fraud_assets.core.candidates import ModelEvaluation, candidates_of
from fraud_assets.core.champion_history import current_champion
from fraud_assets.core.contract import SHADOW_COMPARISON, ChampionRecord, ContractError
from fraud_assets.core.evaluation import fraud_scores
from fraud_assets.core.metrics import evaluate_scores
from fraud_assets.core.shadow import DECISION, HOLD, PROMOTE, REFUSE, shadow_evidence
from fraud_assets.core.splitting import TEST, TRAIN
from fraud_assets.core.training import refit_on_latest_labels
from fraud_assets.defs.resources import ModelRegistryResource, ModelStoreResource
from fraud_assets.defs.training import CANDIDATE_KEYS, KNOWN_NOW, sampled, split_xy

GATE_METRIC = "average_precision"


class ChallengerConfig(dg.Config):
    """Whether the chosen recipe is retrained on every label known now before it is registered."""

    # True: the served model trains up to the label delay (the held-out days and the gap
    # included); its recorded metrics stay those of the held-out evaluation, which it has not
    # seen. False: the evaluated candidate itself is registered (its window ends before the
    # held-out days).
    refit_on_latest_labels: bool = True


@dg.asset(
    ins={
        "training_data": dg.AssetIn(),
        "model_evaluation": dg.AssetIn(input_manager_key="model_io_manager"),
        **{key.path[-1]: dg.AssetIn(key, input_manager_key="model_io_manager") for key in CANDIDATE_KEYS},
    },
    group_name="registry",
    kinds={"mlflow"},
    io_manager_key="model_io_manager",
    required_resource_keys={"mlflow", "model_store", "model_registry"},
    description=(
        "The best candidate as one versioned model bundle (preprocessor, model, threshold, feature "
        "list, training window, data fingerprint, metrics; SHA-256), logged to MLflow as a pyfunc "
        "model and registered as a new version of `fraud-detector`."
    ),
)
def challenger_model(
    context: dg.AssetExecutionContext,
    config: ChallengerConfig,
    training_data: pd.DataFrame,
    model_evaluation: ModelEvaluation,
    **candidates,
):
    best = model_evaluation.best
    chosen = next(m for m in candidates_of(candidates) if m.algorithm == best)
    train = training_data[training_data["split"] == TRAIN]
    classifier = chosen.classifier
    sample = chosen.report.get("training_sample")
    if config.refit_on_latest_labels and KNOWN_NOW in training_data:
        train = training_data[training_data[KNOWN_NOW]].sort_values(c.TIMESTAMP, kind="stable")
        y = train[c.IS_FRAUD].astype("int64").to_numpy()
        if sample is not None:  # as many rows as the candidate trained on
            train, y, sample = sampled(train, y, int(sample["rows"]))
        classifier = refit_on_latest_labels(classifier, chosen.preprocessor.transform(train), y)
        context.log.info(
            f"{best} refit on {len(train)} rows with labels known now "
            f"({train[c.TIMESTAMP].min()} .. {train[c.TIMESTAMP].max()})"
        )
    metrics = model_evaluation.best_metrics
    bundle = ModelBundle(
        preprocessor=chosen.preprocessor,
        classifier=classifier,
        threshold=float(classifier.threshold),
        feature_names=list(classifier.feature_names_),
        algorithm=best,
        training_window=(str(train[c.TIMESTAMP].min().date()), str(train[c.TIMESTAMP].max().date())),
        data_fingerprint=frame_fingerprint(train),
        metrics=metrics,
        training_sample=sample,
    )
    store: ModelStoreResource = context.resources.model_store
    path, sha256 = bundle.save(store.bundle_directory())
    saved = ModelBundle.load(path, expected_sha256=sha256)  # what serving will load, verified

    mlflow = context.resources.mlflow
    registry = context.resources.model_registry.registry()
    mlflow.log_params({"best_algorithm": best, "bundle_version": saved.version})
    mlflow.log_metrics({f"challenger.{k}": v for k, v in metrics.items()})
    model_uri = registry.log_bundle_model(path, sha256)
    run_id = mlflow.active_run().info.run_id
    tags = {
        "algorithm": best,
        "bundle_version": saved.version,
        **{f"metric.{k}": v for k, v in metrics.items()},
    }
    version = registry.register(model_uri, run_id, str(path), sha256, tags)
    mlflow.end_run()  # one MLflow run per training run; ad-hoc UI runs get no end hook

    record = saved.record(path, sha256, mlflow_model_version=version, mlflow_run_id=run_id)
    context.add_output_metadata(record_metadata(record))
    return record


def record_metadata(record: ChampionRecord) -> dict[str, dg.MetadataValue]:
    """A record's materialization metadata: `ChampionRecord.to_metadata`, typed for the UI
    (locations as paths, numbers as floats). What every reader of the champion reads back
    (`fraud_assets.core.champion_history`)."""
    typed = {}
    for key, value in record.to_metadata().items():
        if key in ChampionRecord.LOCATION_KEYS:
            typed[key] = dg.MetadataValue.path(value)
        elif isinstance(value, float):
            typed[key] = dg.MetadataValue.float(value)
        elif isinstance(value, dict):
            typed[key] = dg.MetadataValue.json(value)
        else:
            typed[key] = dg.MetadataValue.text(str(value))
    return typed


@dg.asset_check(
    asset=challenger_model,
    additional_ins={
        "training_data": dg.AssetIn(),
        "model_evaluation": dg.AssetIn(input_manager_key="model_io_manager"),
    },
    blocking=True,
    required_resource_keys={"model_registry", "model_store"},
    description=(
        "The challenger must score at least as well as the champion (the latest `champion_model` "
        "materialization; average precision) on the held-out days neither has trained on (the "
        "challenger as evaluated, before its refit); otherwise the champion stays and nothing "
        "downstream runs. With FRAUDOPS_GATE_REQUIRES_SHADOW it must also do so on live traffic: "
        "it is held (`decision: hold`), scored in shadow by the API, until `shadow_comparison` has "
        "enough labels; `shadow_decision_sensor` then runs this check again, which promotes or "
        "refuses it. The verdict (`decision` and why) is also noted on the challenger's MLflow version."
    ),
)
def champion_gate(
    context: dg.AssetCheckExecutionContext,
    challenger_model: ChampionRecord,
    training_data: pd.DataFrame,
    model_evaluation: ModelEvaluation,
):
    test, y = split_xy(training_data, TEST)
    store: ModelStoreResource = context.resources.model_store
    # Verified as serving will load it; its scores on the held-out days are those of the recipe
    # before the refit (which trained on those days), kept by model_evaluation.
    challenger = ModelBundle.load(store.location(challenger_model.bundle_uri), challenger_model.bundle_sha256)
    passed, outcome, metadata = _verdict(
        context, store, challenger_model, challenger, model_evaluation.best_test_scores, test, y
    )
    decision = PROMOTE if passed else REFUSE
    registry: ModelRegistryResource = context.resources.model_registry
    if passed and registry.gate_requires_shadow and "champion_version" in metadata:  # a champion to beat
        decision, outcome, shadow = _on_live_traffic(context.instance, challenger_model, outcome)
        metadata.update(shadow)
    metadata[DECISION] = decision
    registry.registry().record_challenger(
        challenger_model.mlflow_model_version, f"{VERDICTS[decision]}: {outcome}"
    )
    return dg.AssetCheckResult(
        passed=decision == PROMOTE,
        description=outcome + ("" if decision == PROMOTE else "; the champion stays"),
        metadata=metadata,
    )


VERDICTS = {PROMOTE: "promoted", HOLD: "held", REFUSE: "rejected"}  # the MLflow tag's first word


def _on_live_traffic(instance, record: ChampionRecord, offline: str) -> tuple[str, str, dict]:
    """With ``FRAUDOPS_GATE_REQUIRES_SHADOW``: a challenger that passed on the held-out days is
    held in shadow until `shadow_comparison` has enough labelled live transactions of it and the
    champion, then promoted or refused on them."""
    champion = current_champion(instance)
    evidence = shadow_evidence(instance, record, champion)
    if evidence is None:
        why = f"no `{SHADOW_COMPARISON}` of {record.name} against {champion.name} yet"
        return HOLD, f"awaiting shadow evidence: {why} (held-out days: {offline})", {}
    counts = {key: evidence.get(key) for key in ("labelled", "frauds", "min_labels", "min_frauds")}
    if not evidence.get("enough_evidence"):
        why = (
            f"{counts['labelled']} of {counts['min_labels']} labelled live transactions, "
            f"{counts['frauds']} of {counts['min_frauds']} frauds"
        )
        return HOLD, f"awaiting shadow evidence: {why} (held-out days: {offline})", counts
    decision = str(evidence[DECISION])
    figures = {key: evidence[key] for key in SHADOW_FIGURES if key in evidence}
    return (
        decision,
        f"on live traffic, {evidence['decision_reason']} (held-out days: {offline})",
        {
            **counts,
            **figures,
        },
    )


SHADOW_FIGURES = (
    "champion.average_precision",
    "challenger.average_precision",
    "difference.average_precision",
)


def _verdict(
    context: dg.AssetCheckExecutionContext,
    store: ModelStoreResource,
    record: ChampionRecord,
    challenger: ModelBundle,
    scores: np.ndarray,
    test: pd.DataFrame,
    y: np.ndarray,
) -> tuple[bool, str, dict]:
    """Whether the challenger may replace the champion, why, and the figures compared."""
    first = {"challenger": _average_precision(y, scores, challenger.threshold)}
    try:
        champion = current_champion(context.instance)
        if champion is None:
            outcome = f"first model: no champion yet; challenger {GATE_METRIC} {first['challenger']:.4f}"
            return True, outcome, first
        incumbent = ModelBundle.load(store.location(champion.bundle_uri), champion.bundle_sha256)
    except (ContractError, BundleLoadError) as err:  # a champion we cannot verify is no reason to keep it
        context.log.warning(f"the champion cannot be loaded ({err}); replacing it")
        return True, f"champion unusable: {err}", first
    challenger_score, champion_score, where = _compare(scores, challenger.threshold, incumbent, test, y)
    passed = challenger_score >= champion_score
    outcome = (
        f"challenger {record.name} {GATE_METRIC} {challenger_score:.4f} "
        f"{'>=' if passed else '<'} champion {champion.name} {champion_score:.4f} {where}"
    )
    figures = {
        "challenger": challenger_score,
        "champion": champion_score,
        "champion_version": champion.mlflow_model_version or champion.version,
    }
    return passed, outcome, figures


def _compare(
    challenger_scores: np.ndarray, challenger_threshold: float, incumbent: ModelBundle, test: pd.DataFrame, y
) -> tuple[float, float, str]:
    """``(challenger's figure, champion's figure, where they were measured)``: only the held-out
    days after the champion's training window are out of sample for both; when they do not hold
    both classes (the champion trained on them), each model's own held-out evaluation."""
    unseen = (
        test[c.TIMESTAMP] >= pd.Timestamp(incumbent.training_window[1]) + pd.Timedelta(days=1)
    ).to_numpy()
    if unseen.any() and 0 < y[unseen].sum() < unseen.sum():
        champion_scores = fraud_scores(incumbent.preprocessor, incumbent.classifier, test[unseen])
        return (
            _average_precision(y[unseen], challenger_scores[unseen], challenger_threshold),
            _average_precision(y[unseen], champion_scores, incumbent.threshold),
            f"on {int(unseen.sum())} held-out rows neither model trained on",
        )
    return (
        _average_precision(y, challenger_scores, challenger_threshold),
        float(incumbent.metrics[GATE_METRIC]),
        "each on its own held-out days (the champion trained on all of these)",
    )


def _average_precision(y, scores, threshold: float) -> float:
    return float(evaluate_scores(y, scores, threshold)[GATE_METRIC])


training_job = dg.define_asset_job(
    "train_models",
    selection=dg.AssetSelection.groups("training", "models", "evaluation", "registry")
    | dg.AssetSelection.assets("drift_reference"),
    description="Train every candidate, evaluate them, register the best; promote it only if it beats the champion.",
    hooks={end_mlflow_on_run_finished},
)
