"""Stage 7, monitoring: drift of each day against the champion's reference, and the served
model's performance once the chargebacks are in.

`drift_reference` is a fixed sample of the champion's training rows with the champion's scores,
materialized with every training run, so each drift report compares against the data the
served model learned from.

The champion is the latest `champion_model` materialization, read through
`fraud_assets.core.champion_history` as the gate and the API read it; `champion_model` stays an
upstream dependency of the assets that score with it, for lineage.
"""

import dagster as dg
import numpy as np
import pandas as pd

from fraud_assets.core import columns as c
from fraud_assets.core.bundle import ModelBundle
from fraud_assets.core.champion_history import current_champion
from fraud_assets.core.contract import CHAMPION_MODEL, ChampionRecord
from fraud_assets.core.drift import DriftThresholds, drift_report, performance_report, reference_profile
from fraud_assets.core.evaluation import fraud_scores
from fraud_assets.core.features import FEATURE_COLUMNS
from fraud_assets.core.labels import join_labels
from fraud_assets.core.prediction_log import read_prediction_log
from fraud_assets.core.splitting import TRAIN
from fraud_assets.defs.label_feed import fed_labels, labels_input
from fraud_assets.defs.partitions import daily_partitions, single_run
from fraud_assets.defs.resources import (
    LabelFeedResource,
    ModelStoreResource,
    PredictionLogResource,
    ReportStoreResource,
)

SCORE = "fraud_score"
DRIFT_REFERENCE = "drift_reference"  # the asset that the rollback rebuilds with the champion
REFERENCE_ROWS = 20_000
PERFORMANCE_WINDOW = (-14, -8)  # days before the partition: one week whose labels are known
# The columns a drift report compares: what the model sees, plus its score.
MONITORED = (*FEATURE_COLUMNS, SCORE)


class DriftConfig(dg.Config):
    """The seed's drift-score thresholds (share of drifted columns)."""

    warning: float = 0.15
    critical: float = 0.20


def monitored_columns(frame: pd.DataFrame) -> list[str]:
    return [col for col in MONITORED if col in frame]


def _champion(
    context: dg.AssetExecutionContext, model_store: ModelStoreResource
) -> tuple[ChampionRecord, ModelBundle]:
    """The champion's record and its bundle, verified against its SHA-256."""
    champion = current_champion(context.instance)
    if champion is None:
        raise ValueError(
            f"there is no champion yet (no {CHAMPION_MODEL} materialization): run the train_models job first"
        )
    return champion, ModelBundle.load(model_store.location(champion.bundle_uri), champion.bundle_sha256)


def _scored(frame: pd.DataFrame, bundle: ModelBundle) -> pd.DataFrame:
    return frame.assign(**{SCORE: fraud_scores(bundle.preprocessor, bundle.classifier, frame)})


@dg.asset(
    ins={"training_data": dg.AssetIn()},
    deps=[CHAMPION_MODEL],
    group_name="monitoring",
    kinds={"pandas", "parquet"},
    description=(
        "The reference every drift report compares against: a fixed, seeded sample of at most "
        f"{REFERENCE_ROWS:,} of the served champion's training rows (warm-up days left out), the "
        "monitored feature columns and the champion's score, with normalised types "
        "(`reference_profile`, docs/drift.md)."
    ),
)
def drift_reference(
    context: dg.AssetExecutionContext, training_data: pd.DataFrame, model_store: ModelStoreResource
):
    champion, bundle = _champion(context, model_store)
    train = training_data[training_data["split"] == TRAIN]
    scored = _scored(train, bundle)
    reference = reference_profile(scored, monitored_columns(scored), max_rows=REFERENCE_ROWS)
    context.add_output_metadata(
        {
            "dagster/row_count": len(reference),
            "sampled_from": f"{len(train):,} training rows, {train[c.TIMESTAMP].min()} .. {train[c.TIMESTAMP].max()}",
            "champion_version": champion.mlflow_model_version or champion.version,
            "columns": dg.MetadataValue.json(list(reference.columns)),
        }
    )
    return reference


def _report_metadata(result, html_path: str | None, thresholds: DriftConfig) -> dict:
    table = result.per_feature
    meta = {
        "drift_score": dg.MetadataValue.float(round(float(result.drift_share), 4)),
        "drift_level": result.level,
        "dataset_drift": bool(result.dataset_drift),
        "thresholds": f"warning > {thresholds.warning}, critical > {thresholds.critical}",
        "drifted_columns": dg.MetadataValue.json(table.loc[table["drifted"], "column"].tolist()),
        "per_feature": dg.MetadataValue.md(table.round(4).to_markdown(index=False)),
        "rows_current": result.n_current,
        "rows_reference": result.n_reference,
    }
    if html_path:
        meta["html_report"] = dg.MetadataValue.path(html_path)
    return meta


DRIFT_CHECK = dg.AssetCheckSpec(
    "drift_below_critical",
    asset="drift_report",
    description=(
        "The day's drift score (share of drifted columns) stays at or below the warning threshold: "
        "fails with WARN above it (0.15 by default) and with ERROR above the critical one (0.20)."
    ),
)


@dg.asset(
    name="drift_report",
    ins={"transaction_features": dg.AssetIn(), "drift_reference": dg.AssetIn()},
    deps=[CHAMPION_MODEL],
    partitions_def=daily_partitions,
    group_name="monitoring",
    kinds={"evidently"},
    io_manager_key="model_io_manager",
    check_specs=[DRIFT_CHECK],
    description=(
        "Evidently data drift of the day's features and champion scores against the champion's "
        "training reference: per-feature table, the share of drifted columns as the drift score, "
        "the dataset-drift flag, and the full HTML report."
    ),
)
def daily_drift_report(
    context: dg.AssetExecutionContext,
    config: DriftConfig,
    transaction_features: pd.DataFrame,
    drift_reference: pd.DataFrame,
    model_store: ModelStoreResource,
    report_store: ReportStoreResource,
):
    current = _scored(transaction_features, _champion(context, model_store)[1])
    result = _drift(drift_reference, current, config)
    html_path = report_store.save_html(result.html, "drift", context.partition_key)
    yield dg.Output(_summary(result, html_path), metadata=_report_metadata(result, html_path, config))
    yield _drift_check(result, config)


def _drift(reference: pd.DataFrame, current: pd.DataFrame, config: DriftConfig):
    if reference is None or reference.empty:
        raise ValueError(
            "the champion's drift reference is missing or empty: materialize `drift_reference` "
            "(it is built by the train_models job) before drift reports"
        )
    columns = [col for col in monitored_columns(reference) if col in current]
    return drift_report(
        reference, current, columns, thresholds=DriftThresholds(config.warning, config.critical)
    )


def _summary(result, html_path: str | None) -> dict:
    return {
        "drift_score": float(result.drift_share),
        "level": result.level,
        "dataset_drift": bool(result.dataset_drift),
        "per_feature": result.per_feature,
        "html_report": html_path,
    }


def _drift_check(
    result, config: DriftConfig, check_name: str = "drift_below_critical"
) -> dg.AssetCheckResult:
    """Passes at or below the warning threshold; fails with WARN above it and with ERROR above the
    critical one. Neither blocks anything: retraining follows the report's `drift_level` (the
    drift sensor), not the check."""
    return dg.AssetCheckResult(
        check_name=check_name,
        passed=result.level == "ok",
        severity=dg.AssetCheckSeverity.ERROR if result.level == "critical" else dg.AssetCheckSeverity.WARN,
        description=f"drift score {result.drift_share:.3f}: {result.level} (warning > {config.warning}, critical > {config.critical})",
        metadata={"drift_score": float(result.drift_share), "drift_level": result.level},
    )


@dg.asset(
    name="live_drift_report",
    ins={"drift_reference": dg.AssetIn()},
    partitions_def=daily_partitions,
    group_name="monitoring",
    kinds={"evidently"},
    io_manager_key="model_io_manager",
    check_specs=[
        dg.AssetCheckSpec(
            "live_drift_below_critical",
            asset="live_drift_report",
            description=(
                "Live traffic's drift score stays at or below the warning threshold: fails with WARN "
                "above it (0.15 by default) and with ERROR above the critical one (0.20)."
            ),
        )
    ],
    description=(
        "The same drift report on live traffic: the transactions the scoring API scored that day "
        "(its prediction log: the model's input values and scores) against the champion's reference. "
        "Empty until the API has scored something: `make run` starts it (port 8000, or API_PORT); send "
        "transactions with card_id, merchant_id and timestamp to POST /predict or /predict/batch "
        "(README, docs/serving.md), then materialize this asset for that day (the UTC day of "
        "scoring: the log's file name, FRAUDOPS_PREDICTION_LOG_DIR/<day>.jsonl)."
    ),
)
def live_drift_report(
    context: dg.AssetExecutionContext,
    config: DriftConfig,
    drift_reference: pd.DataFrame,
    prediction_log: PredictionLogResource,
    report_store: ReportStoreResource,
):
    traffic = read_prediction_log(prediction_log.location(), context.partition_key)
    if traffic.empty:
        raise ValueError(
            f"no scored transactions logged for {context.partition_key} in {prediction_log.path}: "
            "the scoring API writes them there (FRAUDOPS_PREDICTION_LOG_DIR)"
        )
    current = traffic.rename(columns={"fraud_probability": SCORE})
    result = _drift(drift_reference, current, config)
    html_path = report_store.save_html(result.html, "live_drift", context.partition_key)
    yield dg.Output(_summary(result, html_path), metadata=_report_metadata(result, html_path, config))
    yield _drift_check(result, config, "live_drift_below_critical")


@dg.asset(
    ins={
        "transaction_features": dg.AssetIn(
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=PERFORMANCE_WINDOW[0], end_offset=PERFORMANCE_WINDOW[1]
            ),
            metadata={"allow_missing_partitions": True},
        ),
        # the labels of that week reported by the partition's end (a day more: see features)
        "fraud_labels": labels_input(PERFORMANCE_WINDOW[0] - 1, 0),
    },
    deps=[CHAMPION_MODEL],
    partitions_def=daily_partitions,
    backfill_policy=single_run,
    group_name="monitoring",
    kinds={"scikit-learn"},
    io_manager_key="model_io_manager",
    check_specs=[
        dg.AssetCheckSpec(
            "served_model_auc",
            asset="model_performance",
            description="AUC-ROC of the served model on labelled traffic: warning below 0.80, critical below 0.75.",
        )
    ],
    description=(
        "The served champion scored on the week of transactions whose labels have arrived "
        "(8 to 14 days before the partition's day), each with its latest label reported by the "
        "day's end (`fraud_labels`): AUC-ROC, average precision, Card Precision@100. "
        "Days the champion was trained on are left out (they would flatter it), so right after "
        "training the week may hold fewer rows, or none."
    ),
)
def model_performance(
    context: dg.AssetExecutionContext,
    transaction_features: pd.DataFrame,
    fraud_labels: pd.DataFrame,
    model_store: ModelStoreResource,
    label_feed: LabelFeedResource,
):
    as_of = pd.Timestamp(context.partition_time_window.end).tz_localize(None)
    champion, bundle = _champion(context, model_store)
    trained_until = bundle.training_window[1]  # the last day of its training rows
    labels = join_labels(transaction_features, fed_labels(fraud_labels), label_feed.genuine_after())
    now = labels.events.as_of(as_of)  # each transaction's latest label reported by the day's end
    frame = transaction_features.assign(**{c.IS_FRAUD: now.is_fraud, c.LABEL_KNOWN_AT: now.known_at})
    known = pd.Series(now.labelled(), index=frame.index)
    seen = frame[c.TIMESTAMP] < pd.Timestamp(trained_until) + pd.Timedelta(days=1)
    labelled, left_out = frame[known & ~seen], int((known & seen).sum())
    scores = fraud_scores(bundle.preprocessor, bundle.classifier, labelled) if len(labelled) else np.array([])
    context_cols = [col for col in (c.TIMESTAMP, c.CARD_ID) if col in labelled]
    report = performance_report(
        labelled[c.IS_FRAUD].astype("int64").to_numpy() if len(labelled) else np.array([], dtype="int64"),
        scores,
        bundle.threshold,
        context=labelled[context_cols].reset_index(drop=True) if len(labelled) else None,
    )
    if report["n"] == 0 and left_out:
        report["reason"] = (
            f"all {left_out} labelled transactions of the week are from the champion's training days "
            f"(until {trained_until}): nothing unseen to judge it on yet"
        )
    level = report["level"]
    auc = report.get("auc_roc")
    yield dg.Output(
        report,
        metadata={
            "level": level,
            "labelled_rows": len(labelled),
            "left_out_training_rows": left_out,
            "trained_until": trained_until,
            "champion_version": champion.mlflow_model_version or champion.version,
            **{
                k: dg.MetadataValue.float(round(float(v), 4))
                for k, v in report.items()
                if k in ("auc_roc", "average_precision", "card_precision_at_100") and v is not None
            },
        },
    )
    yield dg.AssetCheckResult(
        passed=level in ("ok", "unknown"),
        severity=dg.AssetCheckSeverity.ERROR if level == "critical" else dg.AssetCheckSeverity.WARN,
        description=f"AUC-ROC {auc:.3f}: {level}"
        if auc is not None
        else f"no AUC yet: {report.get('reason', level)}",
    )
