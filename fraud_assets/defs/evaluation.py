"""Stage 5, evaluation: every candidate on the same held-out days, with fraud's metrics."""

import json
import tempfile
from pathlib import Path
from typing import Literal

import dagster as dg
import pandas as pd

from fraud_assets.core import columns as c
from fraud_assets.core.candidates import ModelEvaluation, candidates_of
from fraud_assets.core.evaluation import (
    TARGETS,
    best_candidate,
    comparison_table,
    evaluate_candidate,
    tuning_budgets,
)
from fraud_assets.core.plots import feature_importance_png, png_markdown, pr_curve_png, roc_curve_png
from fraud_assets.core.splitting import TEST
from fraud_assets.defs.training import CANDIDATE_KEYS, split_xy


class CostConfig(dg.Config):
    """What a missed fraud and a false alarm (a review for nothing) cost: evaluation's expected
    cost, and the review queue's."""

    cost_missed_fraud: float = 100.0
    cost_false_alarm: float = 5.0


class EvaluationConfig(CostConfig):
    # Which candidate becomes the challenger, by its held-out figure.
    select_by: Literal["average_precision", "auc_roc", "card_precision_at_100"] = "average_precision"


TARGET_CHECKS = [
    dg.AssetCheckSpec(
        f"meets_{metric}_target",
        asset="model_evaluation",
        description=f"The best candidate's {metric} on the held-out days is above the seed's target {target}.",
    )
    for metric, target in TARGETS.items()
]


@dg.asset(
    ins={
        "training_data": dg.AssetIn(),
        **{key.path[-1]: dg.AssetIn(key, input_manager_key="model_io_manager") for key in CANDIDATE_KEYS},
    },
    group_name="evaluation",
    kinds={"scikit-learn", "matplotlib"},
    io_manager_key="model_io_manager",
    required_resource_keys={"mlflow"},
    check_specs=TARGET_CHECKS,
    description=(
        "Every candidate scored on the held-out days: AUC-ROC, average precision, precision at "
        "90% recall, precision/recall at the chosen threshold, confusion matrix, expected cost, "
        "Card Precision@100, metrics per segment; ROC/PR curves and feature importance. Picks the "
        "best candidate for the champion gate."
    ),
)
def model_evaluation(
    context: dg.AssetExecutionContext, config: EvaluationConfig, training_data: pd.DataFrame, **candidates
):
    test, y = split_xy(training_data, TEST)
    test = test.reset_index(drop=True)
    models = {model.algorithm: model for model in candidates_of(candidates)}
    evaluations = {
        name: evaluate_candidate(
            name,
            model.preprocessor,
            model.classifier,
            test,
            cost_fn=config.cost_missed_fraud,
            cost_fp=config.cost_false_alarm,
        )
        for name, model in models.items()
    }
    best = best_candidate(evaluations, config.select_by)
    chosen = evaluations[best]
    table = comparison_table(evaluations)
    importance = models[best].classifier.get_feature_importance(top_n=20)
    m = chosen.metrics
    confusion = pd.DataFrame(
        {"predicted legit": [m["tn"], m["fn"]], "predicted fraud": [m["fp"], m["tp"]]},
        index=["actual legit", "actual fraud"],
    )
    scores = {name: e.scores for name, e in evaluations.items()}
    charts = {
        "roc.png": roc_curve_png(y, scores),
        "pr.png": pr_curve_png(y, scores),
        "importance.png": feature_importance_png(importance, top_n=20),
    }
    budgets = tuning_budgets({name: model.report for name, model in models.items()})
    capped = [model.tuning_cap_note for model in models.values() if model.tuning_capped]
    for note in capped:
        context.log.warning(note)
    evaluation = ModelEvaluation(
        best=best,
        selected_by=config.select_by,
        metrics={name: e.metrics for name, e in evaluations.items()},
        segments=chosen.segments.to_dict(orient="records"),
        test_window=(str(test[c.TIMESTAMP].min()), str(test[c.TIMESTAMP].max())),
        imbalance_methods={name: model.imbalance_method for name, model in models.items()},
        tuning=budgets.to_dict(orient="index"),
        # False when a safety cap cut a candidate's tuning short: another machine may choose otherwise.
        reproducible=not capped,
        warnings=capped,
        best_test_scores=chosen.scores,
    )
    _log_to_mlflow(context.resources.mlflow, evaluation.report(), table, charts)
    metadata = {
        "best_model": best,
        **{k: dg.MetadataValue.float(round(float(m[k]), 4)) for k in ("auc_roc", "average_precision")},
        "precision_at_90_recall": dg.MetadataValue.float(round(float(m["precision_at_90_recall"]), 4)),
        "card_precision_at_100": dg.MetadataValue.float(round(float(m.get("card_precision_at_100", 0)), 4)),
        "comparison": dg.MetadataValue.md(table.round(4).to_markdown()),
        "confusion_matrix": dg.MetadataValue.md(confusion.to_markdown()),
        "segments": dg.MetadataValue.md(chosen.segments.round(4).to_markdown(index=False)),
        "imbalance_method_by_model": dg.MetadataValue.json(evaluation.imbalance_methods),
        "tuning_budget": dg.MetadataValue.md(budgets.to_markdown()),
        "reproducible": dg.MetadataValue.bool(evaluation.reproducible),
        **({"warnings": dg.MetadataValue.md("\n".join(f"- {note}" for note in capped))} if capped else {}),
        "roc_curves": dg.MetadataValue.md(png_markdown(charts["roc.png"], "ROC curves")),
        "precision_recall_curves": dg.MetadataValue.md(png_markdown(charts["pr.png"], "PR curves")),
        "feature_importance": dg.MetadataValue.md(png_markdown(charts["importance.png"], best)),
        "test_rows": len(test),
        "test_frauds": int(y.sum()),
    }
    yield dg.Output(evaluation, metadata=metadata)
    for metric, target in TARGETS.items():
        value = float(m[metric])
        yield dg.AssetCheckResult(
            check_name=f"meets_{metric}_target",
            passed=value > target,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{best}: {metric} = {value:.4f} (target > {target})",
            metadata={"value": value, "target": target},
        )


def _log_to_mlflow(mlflow, report: dict, table: pd.DataFrame, charts: dict[str, bytes]) -> None:
    """The report, the comparison and the charts as artifacts of this run's MLflow run; the tag
    `reproducible` says whether a tuning cap made the result depend on the machine."""
    mlflow.set_tag("reproducible", str(report["reproducible"]).lower())
    for name, row in table.iterrows():
        mlflow.log_metrics({f"test.{name}.{k}": float(v) for k, v in row.items() if pd.notna(v)})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "evaluation_report.json").write_text(json.dumps(report, indent=2, default=str))
        (folder / "comparison.md").write_text(table.to_markdown())
        for filename, png in charts.items():
            (folder / filename).write_bytes(png)
        mlflow.log_artifacts(str(folder), artifact_path="evaluation")
