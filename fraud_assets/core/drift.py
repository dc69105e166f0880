"""Drift of a day's features and scores against the champion's training reference, and the served
model's performance once labels arrive. Pure domain code (no Dagster); see docs/drift.md.

The drift score is the share of tested columns whose distribution moved, judged per column with
Evidently's distance tests (not p-values, which flag every tiny shift on large samples):

- numerical columns: Wasserstein distance normed by the reference's standard deviation;
- categorical columns and 0/1 flags: Jensen-Shannon distance between the category shares;
- a column drifts when its distance reaches its threshold: 0.1, or 0.2 for the few features
  whose day-to-day noise on drift-free data reaches 0.1 (`COLUMN_THRESHOLDS`);
- calendar columns (`day_of_week`, `is_weekend`) are shown but never counted: a daily batch
  holds one weekday by construction, so they would "drift" every day.

Both sides are cut to a fixed, seeded sample of at most ``max_rows`` rows, so a report takes the
same few seconds on a 100,000-row day as on a 20,000-row one, and the distances carry sampling
noise of about 0.01, far below the thresholds. `reference_profile` produces that sample once,
so it can be stored with the champion and reused every day.

    reference = reference_profile(training_rows, columns)   # once, stored with the champion
    result = drift_report(reference, today, columns)
    result.drift_share, result.level                          # e.g. 0.042, "ok"
    result.per_feature[result.per_feature["drifted"]]
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fraud_assets.core import columns as c
from fraud_assets.core.metrics import evaluate_scores

NUMERICAL = "numerical"
CATEGORICAL = "categorical"
CALENDAR = "calendar"
# Evidently drift methods (the `method` of its ValueDrift metric).
NUMERICAL_METHOD = "wasserstein"  # Wasserstein distance / reference std
CATEGORICAL_METHOD = "jensenshannon"  # Jensen-Shannon distance of the category shares
DEFAULT_THRESHOLD = 0.1
# Features whose distance between drift-free days and the reference reaches 0.1-0.19 (measured
# on 31 generated days, docs/drift.md): 24h windows follow the weekly rhythm (a Monday's last
# 24 hours is a Sunday), merchant fraud rates follow fraud episodes. Real drift moves them by
# 0.4-0.9, so 0.2 still catches it.
COLUMN_THRESHOLDS: dict[str, float] = {
    "transactions_last_24h": 0.2,
    "total_amount_last_24h": 0.2,
    "merchant_fraud_rate_7d": 0.2,
    "merchant_fraud_rate_30d": 0.2,
}
CALENDAR_COLUMNS: tuple[str, ...] = (c.DAY_OF_WEEK, c.IS_WEEKEND)
# Never compared when ``columns`` is left out: keys, raw identifiers, times, labels, ground truth.
NOT_FEATURES: frozenset[str] = frozenset(
    {
        c.TRANSACTION_ID,
        c.TIMESTAMP,
        c.CARD_ID,
        c.MERCHANT_ID,
        c.DEVICE_FINGERPRINT,
        c.IP_ADDRESS,
        c.USER_AGENT,
        *c.LABEL_COLUMNS,
        c.FRAUD_SCENARIO,
        "split",
    }
)
MAX_ROWS = 20_000
LEVELS = ("ok", "warning", "critical")

PER_FEATURE_COLUMNS = [
    "column",
    "kind",
    "method",
    "statistic",
    "threshold",
    "drifted",
    "tested",
    "measure",
    "reference",
    "current",
    "missing_reference",
    "missing_current",
    "note",
]

_METHOD_NAMES = {
    NUMERICAL_METHOD: "Wasserstein distance (normed)",
    CATEGORICAL_METHOD: "Jensen-Shannon distance",
}
_MISSING_REFERENCE = (
    "the champion's training reference is missing (got {what}): drift is measured against the rows "
    "the served model was trained on. Produce it with `reference_profile(training_rows, columns)` "
    "from the champion's training split (the `drift_reference` asset, built with every training run) "
    "and pass that frame as `reference`."
)


@dataclass(frozen=True)
class DriftThresholds:
    """The seed's data-drift score thresholds: share of drifted features (strictly above)."""

    warning: float = 0.15
    critical: float = 0.20

    def __post_init__(self) -> None:
        if not (0 <= self.warning <= self.critical <= 1):
            raise ValueError(
                f"need 0 <= warning <= critical <= 1, got warning={self.warning}, critical={self.critical}"
            )

    def level(self, share: float) -> str:
        if share > self.critical:
            return "critical"
        if share > self.warning:
            return "warning"
        return "ok"


@dataclass(frozen=True)
class PerformanceThresholds:
    """The seed's model-performance thresholds on AUC-ROC (strictly below)."""

    warning_auc: float = 0.80
    critical_auc: float = 0.75

    def level(self, auc: float) -> str:
        if auc < self.critical_auc:
            return "critical"
        if auc < self.warning_auc:
            return "warning"
        return "ok"


@dataclass
class DriftResult:
    """One drift report. ``per_feature`` has one row per requested column (`PER_FEATURE_COLUMNS`):
    kind (numerical / categorical / calendar), Evidently method, statistic and threshold, drifted,
    tested (counted in the share), what ``reference``/``current`` summarise (``measure``: the mean,
    or the share of the category that moved most), missing shares and a note."""

    per_feature: pd.DataFrame
    drift_share: float  # drifted / tested columns: the drift score
    level: str  # "ok" | "warning" | "critical"
    dataset_drift: bool  # level == "critical"
    n_reference: int  # rows of each side that were compared (after sampling)
    n_current: int
    html: str | None = None  # the Evidently HTML report, when requested
    n_drifted: int = 0
    n_tested: int = 0
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    rows_reference: int = 0  # rows before sampling
    rows_current: int = 0

    @property
    def drifted_columns(self) -> list[str]:
        return self.per_feature.loc[self.per_feature["drifted"], "column"].tolist()

    def summary(self) -> dict[str, Any]:
        """JSON-friendly headline figures."""
        return {
            "drift_share": round(float(self.drift_share), 4),
            "level": self.level,
            "dataset_drift": bool(self.dataset_drift),
            "n_drifted": self.n_drifted,
            "n_tested": self.n_tested,
            "drifted_columns": self.drifted_columns,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "rows_reference": self.rows_reference,
            "rows_current": self.rows_current,
            "warning": self.thresholds.warning,
            "critical": self.thresholds.critical,
        }


# --- preparation --------------------------------------------------------------------------------


def _check_reference(reference: Any) -> pd.DataFrame:
    if reference is None:
        raise ValueError(_MISSING_REFERENCE.format(what="None"))
    if not isinstance(reference, pd.DataFrame):
        raise ValueError(f"reference must be a pandas DataFrame, got {type(reference).__name__}")
    if reference.empty:
        raise ValueError(
            _MISSING_REFERENCE.format(what=f"an empty frame with {reference.shape[1]} column(s)")
        )
    return reference


def _check_columns(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str] | None
) -> list[str]:
    if columns is None:
        columns = [col for col in reference.columns if col in current.columns and _is_feature(reference[col])]
    elif isinstance(columns, str):
        columns = [columns]
    columns = list(dict.fromkeys(columns))
    if not columns:
        raise ValueError("no columns to compare: pass the feature columns (the two frames share none)")
    missing_ref = [col for col in columns if col not in reference.columns]
    missing_cur = [col for col in columns if col not in current.columns]
    if missing_ref or missing_cur:
        parts = []
        if missing_ref:
            parts.append(f"missing in the reference: {missing_ref}")
        if missing_cur:
            parts.append(f"missing in the current data: {missing_cur}")
        raise ValueError(
            "drift columns " + "; ".join(parts) + ". Both sides need every compared column "
            "(rebuild the champion's reference when the feature set changed)"
        )
    return columns


def _is_feature(series: pd.Series) -> bool:
    return series.name not in NOT_FEATURES and not pd.api.types.is_datetime64_any_dtype(series.dtype)


def _normalise(series: pd.Series) -> pd.Series:
    """Numbers as float64 (NaN for missing, +-inf as missing), booleans as 0/1, anything else as
    object strings with NaN for missing."""
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        values[~np.isfinite(values)] = np.nan
        return pd.Series(values, index=series.index, name=series.name)
    if isinstance(series.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(series.dtype):
        raise ValueError(f"column {series.name!r} holds timestamps: drift is measured on features, not times")
    missing = series.isna().to_numpy()
    out = series.astype(object).map(str)
    out[missing] = np.nan
    return out


def _kind(name: str, ref: pd.Series, cur: pd.Series, calendar: Sequence[str]) -> str:
    if name in calendar:
        return CALENDAR
    if ref.dtype == object or cur.dtype == object:
        return CATEGORICAL
    values = np.concatenate([ref.dropna().unique(), cur.dropna().unique()])
    if len(values) and np.isin(values, (0.0, 1.0)).all():  # a 0/1 flag: compare shares
        return CATEGORICAL
    return NUMERICAL


def _sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    if len(frame) <= max_rows:
        return frame
    return frame.sample(n=max_rows, random_state=seed).sort_index()


def reference_profile(
    reference: pd.DataFrame,
    columns: Sequence[str] | None = None,
    max_rows: int = MAX_ROWS,
    seed: int = 0,
    *,
    recent_days: float | None = None,
) -> pd.DataFrame:
    """The compact, storable reference: a fixed, seeded sample of at most ``max_rows`` rows of the
    compared columns, with normalised types (floats, 0/1 flags, strings). Store it with the model
    (e.g. as Parquet) and pass it as ``reference`` to every `drift_report`; a report on it
    compares exactly what a report on the full training rows would (same sample, same seed).

    ``recent_days`` keeps only the rows of the last that many days before the reference's latest
    ``timestamp``. Use it (7 covers every weekday) when the training rows start near the start
    of the data: their history features (30-day windows, new merchant, merchant label counts)
    were computed on a history still filling up, and every later day would look drifted
    against them (docs/drift.md, "feature warm-up").
    """
    reference = _check_reference(reference)
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    if recent_days is not None:
        if c.TIMESTAMP not in reference.columns:
            raise ValueError(f"recent_days needs the {c.TIMESTAMP!r} column in the reference")
        if not recent_days > 0:
            raise ValueError(f"recent_days must be positive, got {recent_days}")
        ts = pd.to_datetime(reference[c.TIMESTAMP])
        reference = reference.loc[(ts > ts.max() - pd.Timedelta(days=recent_days)).to_numpy()]
    columns = _check_columns(reference, reference, columns)
    sample = _sample(reference[columns], max_rows, seed)
    return pd.DataFrame({col: _normalise(sample[col]) for col in columns}).reset_index(drop=True)


# --- per-column statistics ----------------------------------------------------------------------


def _measure(kind: str, ref: pd.Series, cur: pd.Series) -> tuple[str, float, float]:
    """What the reference/current columns of the table show: a mean, or the share of a category."""
    if kind == NUMERICAL:
        return "mean", float(ref.mean()), float(cur.mean())
    ref_share = ref.value_counts(normalize=True)
    cur_share = cur.value_counts(normalize=True)
    both = ref_share.reindex(ref_share.index.union(cur_share.index), fill_value=0.0)
    delta = cur_share.reindex(both.index, fill_value=0.0) - both
    key = 1.0 if set(both.index) <= {0.0, 1.0} else delta.abs().idxmax()
    label = f"share of {key:g}" if isinstance(key, float) else f"share of {key!r}"
    return label, float(both.get(key, 0.0)), float(cur_share.get(key, 0.0))


def _column_row(
    name: str, kind: str, ref: pd.Series, cur: pd.Series, threshold: float, methods: Mapping[str, str]
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "column": name,
        "kind": kind,
        "method": None,
        "statistic": np.nan,
        "threshold": threshold,
        "drifted": False,
        "tested": False,
        "measure": None,
        "reference": np.nan,
        "current": np.nan,
        "missing_reference": float(ref.isna().mean()) if len(ref) else np.nan,
        "missing_current": float(cur.isna().mean()) if len(cur) else np.nan,
        "note": "",
    }
    r, k = ref.dropna(), cur.dropna()
    measure_kind = CATEGORICAL if kind == CALENDAR else kind
    if len(r) and len(k):
        row["measure"], row["reference"], row["current"] = _measure(measure_kind, r, k)
    if kind == CALENDAR:
        row["threshold"] = np.nan
        row["note"] = "calendar column: one weekday per daily batch by construction, not counted"
        return row
    if not len(r) and not len(k):
        row["note"] = "all values missing on both sides: not tested"
        return row
    if not len(r) or not len(k):
        side = "reference" if not len(r) else "current data"
        row.update(drifted=True, tested=True, method="all missing", note=f"all values missing in the {side}")
        return row
    method = methods[kind]  # the statistic and the verdict come from the Evidently report
    row.update(method=_METHOD_NAMES.get(method, method), tested=True)
    return row


# --- the report ---------------------------------------------------------------------------------


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    thresholds: DriftThresholds = DriftThresholds(),
    max_rows: int = MAX_ROWS,
    seed: int = 0,
    html: bool = True,
    column_thresholds: Mapping[str, float] | None = None,
    default_threshold: float = DEFAULT_THRESHOLD,
    calendar_columns: Sequence[str] = CALENDAR_COLUMNS,
    numerical_method: str = NUMERICAL_METHOD,
    categorical_method: str = CATEGORICAL_METHOD,
) -> DriftResult:
    """Compare ``current`` (a day's features and scores) with ``reference`` (the champion's
    training rows, or their `reference_profile`) column by column.

    ``columns`` defaults to every column both frames share except keys, identifiers, times and
    labels (`NOT_FEATURES`). Each side is cut
    to a seeded sample of ``max_rows`` rows; same inputs and seed, same result. ``column_thresholds``
    overrides per column (default `COLUMN_THRESHOLDS`, others ``default_threshold``). Columns in
    ``calendar_columns`` are reported but not counted. The statistics and verdicts are those
    of the Evidently report (its ValueDrift metrics); ``html=False`` skips its summary metric
    and the rendering of its HTML.
    """
    reference = _check_reference(reference)
    if not isinstance(current, pd.DataFrame):
        raise ValueError(f"current must be a pandas DataFrame, got {type(current).__name__}")
    if current.empty:
        raise ValueError("the current data has no rows: nothing to compare with the reference")
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, got {max_rows}")
    columns = _check_columns(reference, current, columns)
    per_column = dict(COLUMN_THRESHOLDS if column_thresholds is None else column_thresholds)
    methods = {NUMERICAL: numerical_method, CATEGORICAL: categorical_method}

    ref_sample = _sample(reference[columns], max_rows, seed)
    cur_sample = _sample(current[columns], max_rows, seed + 1)
    ref = pd.DataFrame({col: _normalise(ref_sample[col]) for col in columns}).reset_index(drop=True)
    cur = pd.DataFrame({col: _normalise(cur_sample[col]) for col in columns}).reset_index(drop=True)

    rows = []
    for col in columns:
        kind = _kind(col, ref[col], cur[col], calendar_columns)
        both = ref[col].notna().any() and cur[col].notna().any()
        if kind != CALENDAR and both and ref[col].dtype != cur[col].dtype:
            raise ValueError(
                f"column {col!r} is {'text' if ref[col].dtype == object else 'numeric'} in the reference "
                f"but {'text' if cur[col].dtype == object else 'numeric'} in the current data"
            )
        rows.append(
            _column_row(col, kind, ref[col], cur[col], per_column.get(col, default_threshold), methods)
        )
    table = pd.DataFrame(rows, columns=PER_FEATURE_COLUMNS)
    table["drifted"] = table["drifted"].astype(bool)
    table["tested"] = table["tested"].astype(bool)
    table["statistic"] = table["statistic"].astype("float64")
    measured = _measured(table)
    snapshot = None
    if measured.any() or html:
        snapshot = _evidently_report(ref, cur, table, thresholds, summary=html)
        verdicts = _value_drift_results(snapshot)
        for i in np.flatnonzero(measured.to_numpy()):
            table.loc[i, "statistic"], table.loc[i, "drifted"] = verdicts[table.loc[i, "column"]]

    n_tested = int(table["tested"].sum())
    if n_tested == 0:
        raise ValueError(
            f"none of the columns {columns} can be tested (calendar columns, or all values missing): "
            "pass feature columns"
        )
    n_drifted = int((table["drifted"] & table["tested"]).sum())
    share = n_drifted / n_tested
    level = thresholds.level(share)
    report_html = snapshot.get_html_str(as_iframe=False) if html else None
    return DriftResult(
        per_feature=table,
        drift_share=share,
        level=level,
        dataset_drift=level == "critical",
        n_reference=len(ref),
        n_current=len(cur),
        html=report_html,
        n_drifted=n_drifted,
        n_tested=n_tested,
        thresholds=thresholds,
        rows_reference=len(reference),
        rows_current=len(current),
    )


def _method_key(display: str) -> str:
    return {v: k for k, v in _METHOD_NAMES.items()}.get(display, display)


def _measured(table: pd.DataFrame) -> pd.Series:
    """The rows whose statistic the Evidently report computes (tested, values on both sides)."""
    return table["tested"] & (table["method"] != "all missing")


def _evidently_report(
    ref: pd.DataFrame,
    cur: pd.DataFrame,
    table: pd.DataFrame,
    thresholds: DriftThresholds,
    summary: bool = True,
):
    """The Evidently report of the tested columns, configured exactly as the table: one
    ValueDrift per column with its method and threshold, and (``summary``, for the HTML) the
    drifted-columns count. Its results are the table's statistics and verdicts."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import DriftedColumnsCount, ValueDrift

    tested = table[_measured(table)]
    names = tested["column"].tolist()
    numerical = tested.loc[tested["kind"] == NUMERICAL, "column"].tolist()
    categorical = tested.loc[tested["kind"] == CATEGORICAL, "column"].tolist()
    methods = {row.column: _method_key(row.method) for row in tested.itertuples()}
    limits = {row.column: float(row.threshold) for row in tested.itertuples()}
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    count = DriftedColumnsCount(
        columns=names,
        drift_share=thresholds.critical,
        per_column_method=methods,
        per_column_threshold=limits,
    )
    metrics = [
        *([count] if summary else []),
        *(ValueDrift(column=col, method=methods[col], threshold=limits[col]) for col in names),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snapshot = Report(metrics, include_tests=True).run(
            Dataset.from_pandas(cur[names], data_definition=definition),
            Dataset.from_pandas(ref[names], data_definition=definition),
        )
    return snapshot


def _value_drift_results(snapshot) -> dict[str, tuple[float, bool]]:
    """Column -> (drift score, drifted) of each ValueDrift in the report, read from its public
    ``dict()`` output: a metric's value, and its test's status (FAIL when the column drifted)."""
    out = snapshot.dict()
    columns = {
        metric["id"]: (metric["config"]["column"], float(metric["value"]))
        for metric in out["metrics"]
        if metric["config"]["type"].endswith("ValueDrift")
    }
    results = {}
    for test in out["tests"]:
        found = columns.get(test["metric_config"]["metric_id"])
        if found is not None:
            status = getattr(test["status"], "value", test["status"])
            results[found[0]] = (found[1], str(status) == "FAIL")
    missing = {column for column, _ in columns.values()} - results.keys()
    if missing:
        raise RuntimeError(f"the Evidently report has no drift test for {sorted(missing)}")
    return results


# --- performance on delayed labels --------------------------------------------------------------


def performance_report(
    y_true: Any,
    scores: Any,
    threshold: float,
    context: pd.DataFrame | None = None,
    *,
    thresholds: PerformanceThresholds = PerformanceThresholds(),
) -> dict[str, Any]:
    """The served model's metrics on the transactions whose labels are known, with a level.

    Reuses `evaluate_scores` (AUC-ROC, average precision, precision/recall at ``threshold``,
    Card Precision@100 when ``context`` has timestamp and card_id). ``level`` follows the seed:
    "warning" below 0.80 AUC, "critical" below 0.75, else "ok"; "unknown" with a ``reason`` when
    AUC is undefined: no labels yet, or a single class. Missing labels (NaN) are left out and
    counted in ``n_unlabelled``.
    """
    y = pd.to_numeric(pd.Series(np.asarray(y_true, dtype=object).ravel()), errors="coerce").to_numpy(
        "float64"
    )
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape[0] != s.shape[0]:
        raise ValueError(f"y_true has {y.shape[0]} rows but scores has {s.shape[0]}: they must be aligned")
    if context is not None and len(context) != len(y):
        raise ValueError(f"context has {len(context)} rows but y_true has {len(y)}: they must be aligned")
    known = ~np.isnan(y)
    base: dict[str, Any] = {
        "level": "unknown",
        "reason": None,
        "n": int(known.sum()),
        "n_fraud": int(y[known].sum()),
        "n_unlabelled": int((~known).sum()),
        "auc_roc": None,
        "average_precision": None,
        "threshold": float(threshold),
        "warning_auc": thresholds.warning_auc,
        "critical_auc": thresholds.critical_auc,
    }
    n, n_fraud = base["n"], base["n_fraud"]
    if n == 0:
        base["reason"] = (
            "no labelled transactions yet: labels (chargebacks) arrive days to weeks after the "
            "transaction, so performance is measured on older days"
        )
        return base
    if n_fraud == 0 or n_fraud == n:
        which = "no fraud" if n_fraud == 0 else "only fraud"
        base["reason"] = f"{which} among the {n} labelled transactions: AUC-ROC is undefined"
        return base
    ctx = context.loc[known].reset_index(drop=True) if context is not None else None
    metrics = evaluate_scores(y[known].astype("int64"), s[known], threshold, context=ctx)
    out = {**base, **metrics}
    out["n_unlabelled"] = base["n_unlabelled"]
    out["level"] = thresholds.level(metrics["auc_roc"])
    if out["level"] != "ok":
        limit = thresholds.critical_auc if out["level"] == "critical" else thresholds.warning_auc
        out["reason"] = f"AUC-ROC {metrics['auc_roc']:.3f} below {limit:.2f}"
    return out
