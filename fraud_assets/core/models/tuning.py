"""Time-aware model selection: prequential folds, Optuna tuning, and the train-a-candidate recipe.

Random splits are never used: fraud patterns move and labels arrive late, so every fold trains
on the past, skips a gap as long as the label delay, and validates on the block after it.

Tuning budgets are counts of trials, never seconds: a slower or busier machine must explore the
same trials and pick the same model. A time limit exists only as a safety cap; when it cuts a
search short, the result says so (``TuningResult.capped``) and may differ between machines.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import average_precision_score, roc_auc_score

from fraud_assets.core.metrics import card_precision_at_k
from fraud_assets.core.models.backends import ALGORITHMS
from fraud_assets.core.models.classifier import IMBALANCE_METHODS, FraudClassifier

TUNING_METRICS = {"average_precision": average_precision_score, "auc_roc": roc_auc_score}
# Card Precision@100 (the Handbook's top-k metric: per day, the share of fraudulent cards among
# the 100 an investigator would look at) needs each row's card and day as well.
CARD_PRECISION = "card_precision_at_100"
SELECTION_METRICS: tuple[str, ...] = (*TUNING_METRICS, CARD_PRECISION)


def fold_score(metric: str, y: np.ndarray, scores: np.ndarray, timestamps, card_ids=None) -> float:
    """One validation block's score for ``metric`` (one of ``SELECTION_METRICS``; Card
    Precision@100 needs each row's card id, which `tune` checks before the first fit)."""
    if metric == CARD_PRECISION:
        return float(card_precision_at_k(y, scores, timestamps, card_ids, k=100))
    return float(TUNING_METRICS[metric](y, scores))


DEFAULT_GAP = pd.Timedelta("7D")
# The first tuning fold trains on at least this share of the days (the training days a first
# look needs depend on it: core.splitting.minimum_days_to_train).
DEFAULT_MIN_TRAIN_FRACTION = 0.4

# Boosted trees are tuned no deeper than this. Why: the scoring API explains every decision with
# exact TreeSHAP, whose cost grows with leaves x depth, and its tables with 2^depth per leaf. On
# the platform's data, average precision was 0.920-0.926 at depth 3-5 and 0.927-0.930 at 6-8,
# while 1,000 rows' exact reasons cost 2-17 ms at depth <= 5, 12-27 ms at depth 6 and 63-90 ms
# at depth 8 (two runs); LightGBM's unbounded leaf-wise trees cost 13-25 ms at 16 leaves and
# outgrew the tables at 32. See `bench/bench_tree_depth.py` and docs/benchmarks.md.
SERVING_MAX_DEPTH = 5


@dataclass(frozen=True)
class TuningPlan:
    """How a candidate is tuned: the budget, the search, the folds, the seed and the threads.

    One value shared by ``tune`` and ``train_candidate`` (and built from the Dagster config in
    one place), so a default lives once. ``n_trials`` is a count of Optuna trials (0 skips the
    search in ``train_candidate``: default parameters, the first imbalance method);
    ``cap_seconds`` is a safety cap only (see ``tune``). ``random_state`` and ``n_jobs`` also
    apply to the candidate's final fit.
    """

    n_trials: int = 20
    cap_seconds: float | None = None
    imbalance_methods: tuple[str, ...] = ("class_weight", "smote")
    metric: str = "average_precision"
    gap: pd.Timedelta | str = DEFAULT_GAP
    n_folds: int = 3
    min_train_fraction: float = DEFAULT_MIN_TRAIN_FRACTION
    random_state: int = 42
    n_jobs: int | None = None

    def __post_init__(self) -> None:
        n = self.n_trials
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"n_trials must be a whole number of trials (0: no tuning), got {n!r}")
        if self.cap_seconds is not None and not self.cap_seconds > 0:
            raise ValueError(f"cap_seconds must be positive (or None for no cap), got {self.cap_seconds!r}")
        if self.metric not in SELECTION_METRICS:
            raise ValueError(f"unknown tuning metric {self.metric!r}; valid: {', '.join(SELECTION_METRICS)}")
        bad = [m for m in self.imbalance_methods if m not in IMBALANCE_METHODS]
        if bad or not self.imbalance_methods:
            raise ValueError(
                f"imbalance_methods must be among {', '.join(IMBALANCE_METHODS)}, got {self.imbalance_methods}"
            )


def time_ordered_folds(
    timestamps: Any,
    n_folds: int = 3,
    gap: pd.Timedelta | str = DEFAULT_GAP,
    min_train_fraction: float = DEFAULT_MIN_TRAIN_FRACTION,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Prequential (expanding-window) folds over time, as positional ``(train_idx, val_idx)`` arrays.

    The first cut is at ``min_train_fraction`` of the time span. Fold ``k`` trains on every row
    before ``cut_k``, skips ``gap`` (the label delay) and validates on ``[cut_k + gap,
    cut_k + gap + block)``; the next cut is one block later, the last block ends at the last
    timestamp (inclusive). Rows need not be sorted. Raises ``ValueError`` when the span is too
    short for the gap and folds, or a fold comes out empty.
    """
    if n_folds < 1:
        raise ValueError(f"n_folds must be at least 1, got {n_folds}")
    if not 0 < min_train_fraction < 1:
        raise ValueError(f"min_train_fraction must be in (0, 1), got {min_train_fraction}")
    gap = pd.Timedelta(gap)
    if gap < pd.Timedelta(0):
        raise ValueError(f"gap must not be negative, got {gap}")
    ts = pd.to_datetime(pd.Series(np.asarray(timestamps))).to_numpy(dtype="datetime64[ns]")
    if len(ts) == 0:
        raise ValueError("no timestamps: nothing to split")
    if pd.isna(ts).any():
        raise ValueError("timestamps contain missing values")
    start, end = ts.min(), ts.max()
    span = pd.Timedelta(end - start)
    first_cut = start + span * min_train_fraction
    block = (pd.Timedelta(end - first_cut) - gap) / n_folds
    if block <= pd.Timedelta(0):
        raise ValueError(
            f"the data spans {span} but {min_train_fraction:.0%} of it for the first training window, "
            f"a gap of {gap} and {n_folds} validation block(s) need more: add days or shorten the gap"
        )
    positions = np.arange(len(ts))
    folds = []
    for k in range(n_folds):
        cut = first_cut + k * block
        val_start = cut + gap
        val_end = val_start + block
        train = positions[ts < cut]
        in_val = (ts >= val_start) & ((ts < val_end) if k < n_folds - 1 else (ts <= end))
        val = positions[in_val]
        if len(train) == 0 or len(val) == 0:
            raise ValueError(
                f"fold {k} is empty ({len(train)} training rows, {len(val)} validation rows): "
                "the time span is too short or too sparse for these folds"
            )
        folds.append((train, val))
    return folds


def search_space(trial: optuna.Trial, algorithm: str) -> dict[str, Any]:
    """Small, sensible hyperparameter ranges per algorithm (FraudClassifier keyword arguments)."""
    if algorithm == "logistic_regression":
        return {"C": trial.suggest_float("C", 1e-3, 10.0, log=True)}
    if algorithm == "random_forest":
        # Each tree sees a bootstrap sample of 10-30% of the rows: forests on hundreds of
        # thousands of rows stay fast enough to tune, and rare-class recall barely changes.
        return {
            "n_estimators": trial.suggest_int("n_estimators", 50, 150, step=25),
            "max_depth": trial.suggest_int("max_depth", 6, 14),
            "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 50, log=True),
            "max_features": trial.suggest_categorical("max_features", ["sqrt", 0.3]),
            "max_samples": trial.suggest_float("max_samples", 0.1, 0.3),
        }
    if algorithm == "xgboost":
        return {
            "n_estimators": trial.suggest_int("n_estimators", 100, 400, step=50),
            "max_depth": trial.suggest_int("max_depth", 3, SERVING_MAX_DEPTH),
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
            "subsample": trial.suggest_float("subsample", 0.6, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
            "min_child_weight": trial.suggest_float("min_child_weight", 1.0, 20.0, log=True),
            "reg_lambda": trial.suggest_float("reg_lambda", 0.1, 10.0, log=True),
        }
    if algorithm == "lightgbm":
        return {
            "n_estimators": trial.suggest_int("n_estimators", 100, 400, step=50),
            "max_depth": SERVING_MAX_DEPTH,  # leaf-wise growth, but never deeper than this
            "num_leaves": trial.suggest_int("num_leaves", 8, 2**SERVING_MAX_DEPTH, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 10, 200, log=True),
            "subsample": trial.suggest_float("subsample", 0.6, 1.0),
            "subsample_freq": 1,
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
            "reg_lambda": trial.suggest_float("reg_lambda", 0.01, 10.0, log=True),
        }
    raise ValueError(f"unknown algorithm {algorithm!r}; valid: {', '.join(ALGORITHMS)}")


def cap_note(algorithm: str, n_run: int, n_requested: int, cap_seconds: float | None) -> str:
    """The warning of a tuning search the safety cap cut short."""
    return (
        f"{algorithm}: tuning hit its safety cap of {cap_seconds:g} s after {n_run} of {n_requested} trials; "
        "a faster or less busy machine runs more trials and may pick other parameters (or another "
        "champion). Raise the cap (tuning_cap_seconds) or lower n_trials for a result that does not "
        "depend on the machine."
    )


@dataclass
class TuningResult:
    algorithm: str
    best_params: dict[str, Any]  # FraudClassifier keyword arguments, imbalance_method excluded
    best_score: float  # mean validation metric over the folds
    imbalance_method: str  # the method of the best trial
    metric: str
    trials: pd.DataFrame  # one row per trial: number, state, score, seconds, fold_scores, params
    elapsed_seconds: float
    n_folds: int
    fold_sizes: list[tuple[int, int]] = field(default_factory=list)  # (train rows, validation rows)
    n_trials_requested: int = 0  # the budget
    cap_seconds: float | None = None  # the safety cap
    capped: bool = False  # the cap stopped the search before the budget was spent

    @property
    def cap_note(self) -> str:
        """Why the result may differ between machines, or "" when the budget was spent."""
        return (
            cap_note(self.algorithm, len(self.trials), self.n_trials_requested, self.cap_seconds)
            if self.capped
            else ""
        )

    def classifier_kwargs(self) -> dict[str, Any]:
        return {**self.best_params, "imbalance_method": self.imbalance_method}


def _usable_folds(folds, y: np.ndarray, imbalance_methods) -> list[tuple[np.ndarray, np.ndarray]]:
    min_pos = 2 if "smote" in imbalance_methods else 1
    usable = []
    for train, val in folds:
        y_tr, y_va = y[train], y[val]
        if min_pos <= y_tr.sum() < len(y_tr) and 0 < y_va.sum() < len(y_va):
            usable.append((train, val))
    if not usable:
        raise ValueError(
            "no time fold has fraud in both its training and its validation rows: "
            "tuning needs more days of labelled data (or fewer folds)"
        )
    return usable


def tune(
    algorithm: str,
    X: pd.DataFrame,
    y: Any,
    timestamps: Any,
    plan: TuningPlan = TuningPlan(),
    *,
    card_ids: Any = None,
) -> TuningResult:
    """Optuna TPE search (seeded) over ``search_space`` plus the imbalance method, on time folds.

    Each trial fits uncalibrated models on every fold's training rows (SMOTE, when chosen,
    inside ``fit`` on those rows only) and scores the mean ``plan.metric`` ("average_precision"
    or "auc_roc"; "card_precision_at_100" with ``card_ids``) on the validation blocks. The budget
    is ``plan.n_trials`` trials: the same data, seed and budget give the same trials on any
    machine. ``plan.cap_seconds`` is a safety cap only: no trial starts after it (a running one
    finishes; the first always runs), and a search it cuts short is marked ``capped``. Folds
    without fraud on both sides are skipped. ``plan.n_jobs``: training threads per fit (default
    ``TRAIN_THREADS``).
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; valid: {', '.join(ALGORITHMS)}")
    if plan.n_trials < 1:
        raise ValueError(f"n_trials must be a whole number of trials, at least 1, got {plan.n_trials!r}")
    if plan.metric == CARD_PRECISION and card_ids is None:
        raise ValueError(f"{CARD_PRECISION} needs each row's timestamp and card id (card_ids)")
    n_trials, cap_seconds, random_state = plan.n_trials, plan.cap_seconds, plan.random_state
    imbalance_methods, metric = plan.imbalance_methods, plan.metric
    y_arr = np.asarray(y).ravel().astype(np.int64)
    if len(X) != len(y_arr) or len(X) != len(timestamps):
        raise ValueError(f"X ({len(X)}), y ({len(y_arr)}) and timestamps ({len(timestamps)}) must be aligned")
    folds = _usable_folds(
        time_ordered_folds(timestamps, plan.n_folds, plan.gap, plan.min_train_fraction),
        y_arr,
        imbalance_methods,
    )
    ts_arr = np.asarray(timestamps)
    cards = None if card_ids is None else np.asarray(card_ids)
    threads = {} if plan.n_jobs is None else {"n_jobs": plan.n_jobs}

    def objective(trial: optuna.Trial) -> float:
        params = search_space(trial, algorithm)
        method = trial.suggest_categorical("imbalance_method", list(imbalance_methods))
        scores = []
        for train, val in folds:
            clf = FraudClassifier(
                algorithm,
                imbalance_method=method,
                calibration="none",
                random_state=random_state,
                **params,
                **threads,
            )
            clf.fit(X.iloc[train], y_arr[train])
            proba = clf.predict_proba(X.iloc[val])[:, 1]
            fold_cards = None if cards is None else cards[val]
            scores.append(fold_score(metric, y_arr[val], proba, ts_arr[val], fold_cards))
        trial.set_user_attr("fold_scores", scores)
        return float(np.mean(scores))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=random_state))
    started = time.perf_counter()
    study.optimize(objective, n_trials=1, catch=())  # the cap never stops the first trial
    if n_trials > 1:
        left = None if cap_seconds is None else max(0.0, cap_seconds - (time.perf_counter() - started))
        study.optimize(objective, n_trials=int(n_trials) - 1, timeout=left, catch=())
    elapsed = time.perf_counter() - started

    rows = []
    for t in study.trials:
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "score": t.value,
                "seconds": duration,
                "fold_scores": t.user_attrs.get("fold_scores"),
                **t.params,
            }
        )
    best = study.best_trial
    best_params = {k: v for k, v in best.params.items() if k != "imbalance_method"}
    # Fixed (non-searched) entries of the space, e.g. lightgbm's max_depth and subsample_freq=1.
    fixed = search_space(optuna.trial.FixedTrial(best.params), algorithm)
    best_params = {**fixed, **best_params}
    return TuningResult(
        algorithm=algorithm,
        best_params=best_params,
        best_score=float(best.value),
        imbalance_method=best.params["imbalance_method"],
        metric=metric,
        trials=pd.DataFrame(rows),
        elapsed_seconds=elapsed,
        n_folds=len(folds),
        fold_sizes=[(len(tr), len(va)) for tr, va in folds],
        n_trials_requested=int(n_trials),
        cap_seconds=cap_seconds,
        capped=len(study.trials) < n_trials,
    )


def train_candidate(
    algorithm: str,
    X_train: pd.DataFrame,
    y_train: Any,
    timestamps_train: Any,
    plan: TuningPlan = TuningPlan(),
    *,
    calibration: str = "isotonic",
    calibration_fraction: float = 0.2,
    threshold_objective: str = "f1",
    threshold_kwargs: dict[str, Any] | None = None,
    card_ids: Any = None,
) -> tuple[FraudClassifier, dict[str, Any]]:
    """Tune, refit, calibrate and set the threshold: a candidate model ready to be evaluated.

    Rows are put in time order. The latest ``calibration_fraction`` of them is held out: the
    model trains on the earlier rows with the tuned parameters (``plan``, see ``TuningPlan``),
    the calibrator and then the threshold (``threshold_objective``, see ``metrics.threshold_for``)
    are fitted on the held-out slice. ``plan.n_trials=0`` skips tuning (default parameters,
    first imbalance method).

    Returns the fitted classifier and a report: params, imbalance method, tuning score and
    trials, whether the cap cut tuning short (``tuning_capped``, ``tuning_cap_note``), row
    counts, windows, the held-out slice's metrics and timings.
    """
    ts = pd.to_datetime(pd.Series(np.asarray(timestamps_train)))
    y_arr = np.asarray(y_train).ravel().astype(np.int64)
    if not (len(X_train) == len(y_arr) == len(ts)):
        raise ValueError(f"X_train ({len(X_train)}), y_train ({len(y_arr)}) and timestamps must be aligned")
    order = np.argsort(ts.to_numpy(), kind="stable")
    X_sorted = X_train.iloc[order].reset_index(drop=True)
    y_sorted, ts_sorted = y_arr[order], ts.iloc[order].reset_index(drop=True)
    cards_sorted = None if card_ids is None else np.asarray(card_ids)[order]

    started = time.perf_counter()
    tuning: TuningResult | None = None
    if plan.n_trials == 0:
        kwargs: dict[str, Any] = {"imbalance_method": plan.imbalance_methods[0]}
    else:
        tuning = tune(algorithm, X_sorted, y_sorted, ts_sorted, plan, card_ids=cards_sorted)
        kwargs = tuning.classifier_kwargs()
    tuned_at = time.perf_counter()

    cut = len(X_sorted) - round(len(X_sorted) * calibration_fraction)
    if cut <= 0 or cut >= len(X_sorted):
        raise ValueError(f"calibration_fraction {calibration_fraction} leaves no rows on one side")
    X_fit, y_fit = X_sorted.iloc[:cut], y_sorted[:cut]
    X_hold, y_hold = X_sorted.iloc[cut:], y_sorted[cut:]
    if plan.n_jobs is not None:
        kwargs["n_jobs"] = plan.n_jobs
    clf = FraudClassifier(algorithm, calibration=calibration, random_state=plan.random_state, **kwargs)
    clf.fit(X_fit, y_fit, X_val=X_hold, y_val=y_hold)
    threshold = clf.optimize_threshold(X_hold, y_hold, metric=threshold_objective, **(threshold_kwargs or {}))
    fitted_at = time.perf_counter()

    report: dict[str, Any] = {
        "algorithm": algorithm,
        "params": clf.get_params(),
        "imbalance_method": clf.imbalance_method_,
        "tuning_metric": plan.metric,
        "tuning_score": tuning.best_score if tuning else None,
        "n_trials": len(tuning.trials) if tuning else 0,
        "n_trials_requested": plan.n_trials,
        "tuning_cap_seconds": plan.cap_seconds,
        "tuning_capped": bool(tuning and tuning.capped),
        "tuning_cap_note": tuning.cap_note if tuning else "",
        "trials": tuning.trials if tuning else pd.DataFrame(),
        "n_folds": tuning.n_folds if tuning else 0,
        "calibration": calibration,
        "threshold": threshold,
        "threshold_objective": threshold_objective,
        "n_train_rows": int(cut),
        "n_holdout_rows": len(X_hold),
        "train_window": (str(ts_sorted.iloc[0]), str(ts_sorted.iloc[cut - 1])),
        "holdout_window": (str(ts_sorted.iloc[cut]), str(ts_sorted.iloc[-1])),
        "holdout_metrics": clf.evaluate(X_hold, y_hold),
        "tuning_seconds": tuned_at - started,
        "fit_seconds": fitted_at - tuned_at,
    }
    return clf, report


def refit_on_latest_labels(fitted: FraudClassifier, X: pd.DataFrame, y: Any) -> FraudClassifier:
    """The same recipe trained on every row whose label is known now, up to the label delay.

    Why: model selection, calibration and the threshold need rows the model did not train on,
    so a candidate's training ends weeks before the present (the held-out days, then the label
    delay). Fraud teams then retrain the chosen recipe on everything known, so the served model
    has seen the latest patterns. The tuned parameters and imbalance method are kept; so are
    the calibrator and the threshold fitted on held-out rows (the refit model scores unseen rows
    on the same scale: same parameters and class weights; the calibrated map is strictly
    increasing, so ranking is the refit model's own).
    """
    refit = clone(fitted).set_params(calibration="none").fit(X, y)
    refit.set_params(calibration=fitted.calibration, threshold=fitted.threshold)
    refit.calibrator_ = fitted.calibrator_
    refit.fit_info_ = {**refit.fit_info_, "refit_on_latest_labels": True}
    return refit
