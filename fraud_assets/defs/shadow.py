"""The shadow challenger's evidence and the decision it leads to.

While a challenger is registered and not promoted (`fraud_assets.core.shadow.shadow_challenger`),
the scoring API scores live traffic with it in shadow and logs its probability beside the
champion's. `shadow_comparison` (daily, `compare_shadow_daily`) compares the two on the logged
transactions whose labels are known (`fraud_labels`, as of now): average precision, AUC-ROC and
the card precision at the review capacity, each with a paired bootstrap interval. With
``FRAUDOPS_GATE_REQUIRES_SHADOW`` the gate holds a challenger that passed on the held-out days;
once the comparison has enough labels, `shadow_decision_sensor` runs `decide_on_shadow_evidence`:
`champion_gate` again (it reads the comparison and promotes or refuses, noting why on the MLflow
version and in its evaluation's metadata) and `champion_model`, which only runs when it passed.
"""

import datetime as dt

import dagster as dg
import pandas as pd

from fraud_assets.core import columns as c
from fraud_assets.core.champion_history import current_champion, latest_materialization
from fraud_assets.core.contract import (
    CHALLENGER_MODEL,
    CHAMPION_GATE,
    CHAMPION_MODEL,
    LOG_SHADOW_FIELDS,
    SHADOW_COMPARISON,
)
from fraud_assets.core.labels import join_labels
from fraud_assets.core.plots import png_markdown, pr_curve_png
from fraud_assets.core.prediction_log import read_log_columns
from fraud_assets.core.shadow import (
    DECISION,
    compare_on_labels,
    labelled_pairs,
    shadow_challenger,
    shadow_pairs,
)
from fraud_assets.defs.label_feed import ALL_LABELS, fed_labels
from fraud_assets.defs.monitoring import DRIFT_REFERENCE
from fraud_assets.defs.resources import (
    LabelFeedResource,
    ModelRegistryResource,
    PredictionLogResource,
    ShadowEvidenceResource,
)

GATE_KEY = dg.AssetCheckKey(dg.AssetKey(CHALLENGER_MODEL), CHAMPION_GATE)


# What the comparison reads of the prediction log: who scored each transaction, with what.
LOGGED = (c.TRANSACTION_ID, c.CARD_ID, c.TIMESTAMP, "model_version", "fraud_probability", *LOG_SHADOW_FIELDS)


def _logged_since(prediction_log: PredictionLogResource, since: float | None) -> pd.DataFrame:
    """The prediction log's days from the challenger's registration (UTC) to today, the columns
    the comparison reads (read a line's columns at a time, `read_log_columns`)."""
    today = dt.datetime.now(dt.UTC).date()
    first = dt.datetime.fromtimestamp(since, dt.UTC).date() if since else today
    days = pd.date_range(first, today, freq="D").date
    frames = [read_log_columns(prediction_log.location(), day.isoformat(), LOGGED) for day in days]
    return pd.concat(frames, ignore_index=True)


@dg.asset(
    name=SHADOW_COMPARISON,
    ins={"fraud_labels": ALL_LABELS},
    deps=[CHALLENGER_MODEL, CHAMPION_MODEL],
    group_name="monitoring",
    kinds={"scikit-learn", "matplotlib"},
    io_manager_key="model_io_manager",
    description=(
        "The champion and the challenger scored in shadow on the same live transactions (the "
        "scoring API's prediction log), on those whose label is known now (`fraud_labels`): average "
        "precision, AUC-ROC and the card precision at the review capacity (FRAUDOPS_REVIEW_CAPACITY "
        "cards a day), each with a paired bootstrap interval (FRAUDOPS_SHADOW_RESAMPLES resamples, "
        "seeded). `enough_evidence` once FRAUDOPS_SHADOW_MIN_LABELS labelled transactions and "
        "FRAUDOPS_SHADOW_MIN_FRAUDS frauds are in; `decision` is what `champion_gate` will do "
        "with it (the challenger needs at least the champion's average precision)."
    ),
)
def shadow_comparison(
    context: dg.AssetExecutionContext,
    fraud_labels: pd.DataFrame,
    prediction_log: PredictionLogResource,
    shadow_evidence: ShadowEvidenceResource,
    label_feed: LabelFeedResource,
):
    held = shadow_challenger(context.instance, GATE_KEY)
    champion = current_champion(context.instance)
    if held is None or champion is None:
        why = "no challenger in shadow" if champion is not None else "no champion yet"
        yield dg.Output({"status": why}, metadata={"status": why, "enough_evidence": False})
        return
    challenger = held.champion()
    pairs = shadow_pairs(
        _logged_since(prediction_log, held.materialized_at), champion.version, challenger.version
    )
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    labels = join_labels(
        pairs[[c.TRANSACTION_ID, c.TIMESTAMP]], fed_labels(fraud_labels), label_feed.genuine_after()
    )
    labelled, y = labelled_pairs(pairs, lambda _: labels.events.as_of(now).is_fraud)
    frauds = int(y.sum())
    metadata = {
        "status": "compared" if 0 < frauds < len(y) else "too few labels to compare",
        "challenger_version": challenger.version,
        "champion_version": champion.version,
        "challenger": challenger.name,
        "champion": champion.name,
        "scored_in_shadow": len(pairs),
        "labelled": len(y),
        "frauds": frauds,
        "min_labels": shadow_evidence.min_labels,
        "min_frauds": shadow_evidence.min_frauds,
        "review_capacity": shadow_evidence.review_capacity,
    }
    report: dict = dict(metadata)
    enough = False
    if 0 < frauds < len(y):
        champion_scores = labelled["fraud_probability"].to_numpy("float64")
        challenger_scores = labelled["shadow_probability"].to_numpy("float64")
        comparison = compare_on_labels(
            y,
            champion_scores,
            challenger_scores,
            labelled[c.TIMESTAMP],
            labelled[c.CARD_ID],
            capacity=shadow_evidence.review_capacity,
            resamples=shadow_evidence.resamples,
            seed=shadow_evidence.seed,
        )
        enough = comparison.enough(shadow_evidence.min_labels, shadow_evidence.min_frauds)
        decision, why = comparison.decision()
        figures = {key: dg.MetadataValue.float(round(v, 6)) for key, v in comparison.figures().items()}
        metadata.update(figures)
        metadata.update(
            {
                DECISION: decision,
                "decision_reason": why,
                "resamples": comparison.usable_resamples,
                "precision_recall": dg.MetadataValue.md(
                    png_markdown(
                        pr_curve_png(
                            y,
                            {
                                f"champion {champion.name}": champion_scores,
                                f"challenger {challenger.name}": challenger_scores,
                            },
                        ),
                        "precision-recall, champion and challenger",
                    )
                ),
            }
        )
        report.update({DECISION: decision, "decision_reason": why, **comparison.figures()})
    metadata["enough_evidence"] = enough
    report["enough_evidence"] = enough
    context.log.info(
        f"{challenger.name} in shadow against {champion.name}: {len(pairs)} scored, {len(y)} labelled "
        f"({frauds} frauds), enough evidence: {enough}"
    )
    yield dg.Output(report, metadata=metadata)


compare_shadow_job = dg.define_asset_job(
    "compare_shadow",
    selection=dg.AssetSelection.assets(SHADOW_COMPARISON),
    description="Champion and shadow challenger compared on the labelled live traffic (`shadow_comparison`).",
)

compare_shadow_daily = dg.ScheduleDefinition(
    name="compare_shadow_daily",
    job=compare_shadow_job,
    cron_schedule="30 6 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every morning: `shadow_comparison` on the labels known by then (nothing to do without a challenger in shadow).",
)

decide_job = dg.define_asset_job(
    "decide_on_shadow_evidence",
    selection=dg.AssetSelection.checks(GATE_KEY) | dg.AssetSelection.assets(CHAMPION_MODEL, DRIFT_REFERENCE),
    description=(
        "`champion_gate` judges the held challenger again, now on `shadow_comparison`'s evidence; "
        "`champion_model` (and `drift_reference`) follow only when it promotes."
    ),
)


@dg.sensor(
    job=decide_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "With FRAUDOPS_GATE_REQUIRES_SHADOW: when the latest `shadow_comparison` has enough labelled "
        "live transactions of the challenger held in shadow, runs `decide_on_shadow_evidence` (once "
        "per comparison). Skips, saying why, otherwise."
    ),
)
def shadow_decision_sensor(context: dg.SensorEvaluationContext, model_registry: ModelRegistryResource):
    if not model_registry.gate_requires_shadow:
        return dg.SkipReason(
            "FRAUDOPS_GATE_REQUIRES_SHADOW is off: the gate decides on the held-out days alone"
        )
    latest = latest_materialization(context.instance, SHADOW_COMPARISON)
    if latest is None:
        return dg.SkipReason(f"no `{SHADOW_COMPARISON}` yet")
    evidence = latest.metadata
    if not evidence.get("enough_evidence"):
        return dg.SkipReason(
            f"`{SHADOW_COMPARISON}` {latest.storage_id}: {evidence.get('status')}, "
            f"{evidence.get('labelled', 0)} of {evidence.get('min_labels', '?')} labelled, "
            f"{evidence.get('frauds', 0)} of {evidence.get('min_frauds', '?')} frauds"
        )
    held = shadow_challenger(context.instance, GATE_KEY)
    if held is None or held.champion().version != evidence.get("challenger_version"):
        return dg.SkipReason(
            f"the challenger of `{SHADOW_COMPARISON}` {latest.storage_id} is decided already"
        )
    return dg.RunRequest(
        run_key=f"shadow-decision-{latest.storage_id}",
        tags={"fraudops/trigger": "shadow_evidence", "fraudops/shadow_comparison": str(latest.storage_id)},
    )
