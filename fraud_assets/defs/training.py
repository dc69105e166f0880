"""Stage 4, training: the time-ordered training set and one asset per candidate model.

Each candidate (logistic regression baseline, random forest, XGBoost, LightGBM) is its own
asset, so the lineage shows them side by side; tuning runs under a budget set in the launchpad.
"""

from typing import Literal

import dagster as dg
import numpy as np
import pandas as pd

from fraud_assets.core import columns as c
from fraud_assets.core.bundle import frame_fingerprint
from fraud_assets.core.candidates import Candidate
from fraud_assets.core.features import LOOKBACK_DAYS
from fraud_assets.core.labels import LABEL_SOURCE, join_labels
from fraud_assets.core.models.tuning import SERVING_MAX_DEPTH
from fraud_assets.core.preprocessor import FraudPreprocessor
from fraud_assets.core.sampling import stratified_sample
from fraud_assets.core.splitting import EXCLUDED, TEST, TRAIN, assign_split, require_both_classes
from fraud_assets.core.training import ALGORITHMS, TuningPlan, train_candidate
from fraud_assets.defs.label_feed import ALL_LABELS, fed_labels
from fraud_assets.defs.metadata import preview
from fraud_assets.defs.resources import LabelFeedResource

SPLIT = "split"
# True where the row's label was known when training runs (the end of the last day of data):
# the rows the chosen model is refit on (`challenger_model`).
KNOWN_NOW = "label_known_now"
# Each candidate's tuning budget. Three trials keep `make run` (75 days, ~259,000 training rows)
# at about 3.5 minutes of training on a 2-core machine (3 min 24 s CPU measured; 13 min wall
# while the machine ran at load 7), the random forest taking most of it; see docs/benchmarks.md.
DEFAULT_TRIALS = 3
# Safety cap per candidate, 5x the slowest candidate's tuning under that load (374 s).
DEFAULT_CAP_SECONDS = 1800.0


class TrainingWindowConfig(dg.Config):
    """Which days to learn from and how to hold out the most recent ones."""

    max_days: int = 0  # 0: every materialized day of transaction_features
    test_fraction: float = 0.2  # the latest share of the window, held out for evaluation
    gap_days: float = 7.0  # between training and test, and the label delay of files without label_known_at
    # Rows of the first days of the data have incomplete history windows (a 30-day velocity on
    # day 3 counts 3 days), unlike anything served later: leave them out of training and of
    # the drift reference.
    warmup_days: int = LOOKBACK_DAYS


@dg.asset(
    ins={
        "transaction_features": dg.AssetIn(metadata={"allow_missing_partitions": True}),
        "fraud_labels": ALL_LABELS,
    },
    group_name="training",
    kinds={"pandas", "parquet"},
    description=(
        "Labelled feature rows of the training window, each with its latest label as of training "
        "time (`fraud_labels`; genuine when no label came within the label delay) and marked "
        "`train` or `test` by time: test is the most recent share of the days whose labels are in, "
        "train ends a label-delay gap earlier and only keeps labels that were known when the test "
        "window began. Never a random split."
    ),
)
def training_data(
    context: dg.AssetExecutionContext,
    config: TrainingWindowConfig,
    transaction_features: pd.DataFrame,
    fraud_labels: pd.DataFrame,
    label_feed: LabelFeedResource,
):
    frame = transaction_features.sort_values(c.TIMESTAMP, kind="stable").reset_index(drop=True)
    if config.max_days > 0 and len(frame):
        start = frame[c.TIMESTAMP].max().normalize() - pd.Timedelta(days=config.max_days - 1)
        frame = frame[frame[c.TIMESTAMP] >= start].reset_index(drop=True)
    if config.warmup_days > 0 and len(frame):
        warm = frame[c.TIMESTAMP].min().normalize() + pd.Timedelta(days=config.warmup_days)
        warmup_rows = int((frame[c.TIMESTAMP] < warm).sum())
        frame = frame[frame[c.TIMESTAMP] >= warm].reset_index(drop=True)
        context.log.info(
            f"left out {warmup_rows} rows before {warm.date()}: their history windows are incomplete"
        )
    if frame.empty:
        raise ValueError(
            "the training window is empty: materialize transaction_features for more days (the first "
            f"{config.warmup_days} days only warm up the history windows; set warmup_days to change that)"
        )
    now = training_time(frame)
    delay = label_feed.genuine_after()
    labels = join_labels(frame, fed_labels(fraud_labels), delay).events.as_of(now)
    frame[c.IS_FRAUD] = pd.array(labels.is_fraud, dtype="Float64").astype("Int8")
    frame[c.LABEL_KNOWN_AT] = labels.known_at
    frame[LABEL_SOURCE] = labels.source
    # Held-out and training rows are days whose labels are all in: in the latest label delay
    # only the chargebacks that came early are known, a sample full of fraud.
    matured = (frame[c.TIMESTAMP] < now - delay).to_numpy()
    role, split = assign_split(frame[matured], config.test_fraction, config.gap_days)
    frame[SPLIT] = EXCLUDED
    frame.loc[matured, SPLIT] = role.to_numpy()
    frame[KNOWN_NOW] = labels_known_now(frame, config.gap_days)
    frame = frame[frame[SPLIT].isin([TRAIN, TEST]) | frame[KNOWN_NOW]].reset_index(drop=True)
    require_both_classes(
        frame.loc[frame[SPLIT] == TRAIN, c.IS_FRAUD], f"the training rows (before {split.train_end})"
    )
    require_both_classes(
        frame.loc[frame[SPLIT] == TEST, c.IS_FRAUD], f"the test rows (from {split.test_start})"
    )
    counts = frame.groupby(SPLIT)[c.IS_FRAUD].agg(rows="size", frauds="sum")
    known = frame[frame[KNOWN_NOW]]
    context.add_output_metadata(
        {
            "dagster/row_count": len(frame),
            "train_window": f"{frame.loc[frame[SPLIT] == TRAIN, c.TIMESTAMP].min()} .. {split.train_end}",
            "test_window": f"{split.test_start} .. {split.test_end}",
            "refit_window": f"{known[c.TIMESTAMP].min()} .. {known[c.TIMESTAMP].max()}",
            "refit_rows": len(known),
            "labels_as_of": str(now),
            "labels_by_source": dg.MetadataValue.json(
                frame[LABEL_SOURCE].dropna().astype(str).value_counts().to_dict()
            ),
            "rows_by_split": dg.MetadataValue.md(counts.to_markdown()),
            "data_fingerprint": frame_fingerprint(frame),
            "preview": preview(frame),
        }
    )
    return frame


def training_time(frame: pd.DataFrame) -> pd.Timestamp:
    """When training runs: the end of the last day of ``frame``."""
    return frame[c.TIMESTAMP].max().normalize() + pd.Timedelta(days=1)


def labels_known_now(frame: pd.DataFrame, delay_days: float) -> pd.Series:
    """Rows whose label is known at the end of the last day of ``frame`` (when training runs):
    ``label_known_at`` before then, or, without that column, a transaction older than the delay."""
    now = training_time(frame)
    labelled = frame[c.IS_FRAUD].notna()
    if c.LABEL_KNOWN_AT in frame:
        return labelled & (frame[c.LABEL_KNOWN_AT] < now)
    return labelled & (frame[c.TIMESTAMP] < now - pd.Timedelta(days=delay_days))


def split_xy(frame: pd.DataFrame, role: str) -> tuple[pd.DataFrame, np.ndarray]:
    part = frame[frame[SPLIT] == role]
    return part, part[c.IS_FRAUD].astype("int64").to_numpy()


# The training sample's seed: the same rows are drawn on every machine.
SAMPLE_SEED = 42


def sampled(
    frame: pd.DataFrame, y: np.ndarray, size: int
) -> tuple[pd.DataFrame, np.ndarray, dict[str, object] | None]:
    """``size`` rows of ``frame`` stratified by label, in time order, and how they were drawn
    (`fraud_assets.core.sampling`); every row and None when ``size`` is 0 or covers them all."""
    sample = stratified_sample(y, size, SAMPLE_SEED)
    if sample is None:
        return frame, y, None
    return frame.iloc[sample.rows], y[sample.rows], sample.describe()


class CandidateConfig(dg.Config):
    """Tuning budget and decision rule of one candidate; the defaults keep `make run` quick.

    The budget is a count of trials, so the same data, seed and config train the same model on
    any machine. ``tuning_cap_seconds`` is a safety cap only, far above what the budget needs;
    a search it cuts short is reported (log warning, metadata, the evaluation report) because
    its result then depends on the machine's speed.
    """

    n_trials: int = DEFAULT_TRIALS
    # Train on this many of the training rows, stratified by label (0: every row). The model
    # records the sample and its weighting; the challenger's refit draws as many.
    sample_rows: int = 0
    tuning_cap_seconds: float = DEFAULT_CAP_SECONDS
    imbalance_methods: list[str] = ["class_weight", "smote"]  # tuned among: class_weight, smote, none
    # Model selection on the prequential folds: average precision (default), AUC-ROC, or the
    # Handbook's Card Precision@100 (what a team of investigators sees).
    tuning_metric: Literal["average_precision", "auc_roc", "card_precision_at_100"] = "average_precision"
    calibration: Literal["isotonic", "sigmoid", "none"] = "isotonic"
    threshold_objective: Literal["f1", "recall", "precision", "cost"] = "f1"
    target_recall: float = 0.9
    cost_missed_fraud: float = 100.0
    cost_false_alarm: float = 5.0


def _candidate(algorithm: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{algorithm}_model",
        group_name="models",
        kinds={"scikit-learn" if algorithm in ("logistic_regression", "random_forest") else algorithm},
        io_manager_key="model_io_manager",
        required_resource_keys={"mlflow"},
        description=(
            f"{algorithm.replace('_', ' ').title()} candidate: tuned with Optuna on prequential time "
            "folds (imbalance handling tuned too, SMOTE inside training folds only), refit, "
            "calibrated on the latest training slice, threshold chosen there."
            + (
                f" Trees are tuned no deeper than {SERVING_MAX_DEPTH} levels, so the scoring API's "
                "exact reason codes stay cheap."
                if algorithm in ("xgboost", "lightgbm")
                else ""
            )
        ),
    )
    def candidate(
        context: dg.AssetExecutionContext, config: CandidateConfig, training_data: pd.DataFrame
    ) -> Candidate:
        train, y_train = split_xy(training_data, TRAIN)
        train, y_train, sample = sampled(train, y_train, config.sample_rows)
        preprocessor = FraudPreprocessor().fit(train, y_train)
        classifier, report = train_candidate(
            algorithm,
            preprocessor.transform(train),
            y_train,
            train[c.TIMESTAMP],
            TuningPlan(
                n_trials=config.n_trials,
                cap_seconds=config.tuning_cap_seconds,
                imbalance_methods=tuple(config.imbalance_methods),
                metric=config.tuning_metric,
            ),
            card_ids=train[c.CARD_ID].to_numpy(),
            calibration=config.calibration,
            threshold_objective=config.threshold_objective,
            threshold_kwargs=_threshold_kwargs(config),
        )
        if sample is not None:
            report = {**report, "training_sample": sample}
        holdout = report["holdout_metrics"]
        if report["tuning_capped"]:
            context.log.warning(report["tuning_cap_note"])
        mlflow = context.resources.mlflow
        mlflow.log_params({f"{algorithm}.{k}": v for k, v in report["params"].items()})
        mlflow.log_metrics({f"{algorithm}.holdout_{k}": float(v) for k, v in holdout.items()})
        context.add_output_metadata(
            {
                "imbalance_method": report["imbalance_method"],
                "tuning_score": float(report["tuning_score"] or np.nan),
                "trials": report["n_trials"],
                "trials_requested": report["n_trials_requested"],
                "tuning_capped": report["tuning_capped"],
                **({"tuning_cap_note": report["tuning_cap_note"]} if report["tuning_capped"] else {}),
                "tuning_seconds": round(report["tuning_seconds"], 1),
                "fit_seconds": round(report["fit_seconds"], 1),
                "threshold": round(float(report["threshold"]), 6),
                "holdout_average_precision": round(float(holdout["average_precision"]), 4),
                "features": len(preprocessor.feature_names_),
                "features_left_out": dg.MetadataValue.json(preprocessor.missing_features_),
                "trials_table": dg.MetadataValue.md(_trials_markdown(report["trials"])),
                "training_sample": dg.MetadataValue.json(
                    sample or {"rows": len(train), "method": "every row"}
                ),
            }
        )
        return Candidate(algorithm, preprocessor, classifier, report)

    return candidate


def _threshold_kwargs(config: CandidateConfig) -> dict:
    if config.threshold_objective == "recall":
        return {"target_recall": config.target_recall}
    if config.threshold_objective == "cost":
        return {"cost_fn": config.cost_missed_fraud, "cost_fp": config.cost_false_alarm}
    return {}


def _trials_markdown(trials: pd.DataFrame) -> str:
    if trials is None or trials.empty:
        return "_no tuning_"
    return trials.sort_values("score", ascending=False).head(10).to_markdown(index=False)


CANDIDATE_ASSETS = [_candidate(algorithm) for algorithm in ALGORITHMS]
CANDIDATE_KEYS = [a.key for a in CANDIDATE_ASSETS]
