"""The platform on the Handbook's data, run the way a user runs it: only through its user-file path.

The transactions go into a landing CSV with six columns under the file's own names
(id, time, card, terminal, amount, label), mapped onto fraudops' names through the landing
zone's configuration (``FRAUDOPS_LANDING_MAPPING``, label delay 7 days), in a fresh
``DAGSTER_HOME`` and storage. Then the platform's own definitions do the work:

1. ``landing_files_sensor`` is evaluated once and its run request launches ``ingest_transactions``;
2. ``build_features`` for the days before the first test day;
3. ``train_models`` with its defaults (one training, as a user would: no retraining per week);
4. ``build_features`` for the test days;
5. the champion bundle (preprocessor + classifier, loaded with its SHA-256) scores the test days'
   ``transaction_features`` through ``fraud_assets.core.evaluation.fraud_scores``.

The platform takes its configuration from the environment (its definitions read it when they
load, the Dagster instance comes from ``DAGSTER_HOME``), so `score_with_platform` runs steps 1-5
in a child process (``python -m bench.external.platform_run``) with that environment, and reads
back the scores (Parquet) and what the run learned about the platform (JSON).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]
LANDING_FILE = "handbook_transactions.csv"
# ours: theirs, exactly what a user writes into .env.
MAPPING = {
    "transaction_id": "id",
    "timestamp": "time",
    "card_id": "card",
    "merchant_id": "terminal",
    "amount": "amount",
    "is_fraud": "label",
}
LABEL_DELAY_DAYS = 7
# --quick only (a smoke run on a few weeks of data): the tests' small tuning budget, and no
# warm-up days left out of training. The benchmark runs train_models with its defaults.
QUICK_TUNING = {"n_trials": 1, "imbalance_methods": ["class_weight"]}
QUICK_WINDOW = {"warmup_days": 0}
CANDIDATE_FIELDS = (
    "trials",
    "tuning_seconds",
    "fit_seconds",
    "imbalance_method",
    "holdout_average_precision",
)
SCORES_FILE = "scores.parquet"
LOG_FILE = "platform.log"
PROGRESS = "  platform:"
REPORT_FILE = "platform.json"


def write_landing_csv(transactions: pd.DataFrame, path: Path) -> Path:
    """The simulator's table as a user's export: six columns under the file's own names."""
    frame = pd.DataFrame(
        {
            "id": transactions["TRANSACTION_ID"].to_numpy(),
            "time": transactions["TX_DATETIME"].dt.strftime("%Y-%m-%d %H:%M:%S").to_numpy(),
            "card": transactions["CUSTOMER_ID"].to_numpy(),
            "terminal": transactions["TERMINAL_ID"].to_numpy(),
            "amount": transactions["TX_AMOUNT"].map("{:.2f}".format).to_numpy(),
            "label": transactions["TX_FRAUD"].to_numpy(),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def platform_environment(workdir: Path, start_date: str) -> dict[str, str]:
    """Everything the platform keeps, under ``workdir``: a fresh instance, storage, registry."""
    state = workdir / "state"
    return {
        "DAGSTER_HOME": str(workdir / "dagster_home"),
        "FRAUDOPS_STATE_DIR": str(state),
        "FRAUDOPS_STORAGE": str(state / "storage"),
        "FRAUDOPS_MODELS": str(state / "models"),
        "FRAUDOPS_PREDICTION_LOG_DIR": str(state / "predictions"),
        "FRAUDOPS_MLFLOW_TRACKING_URI": f"sqlite:///{state}/mlflow/mlflow.db",
        "FRAUDOPS_MLFLOW_ARTIFACTS": str(state / "mlflow" / "artifacts"),
        "FRAUDOPS_LANDING_DIR": str(workdir / "landing"),
        "FRAUDOPS_LANDING_MAPPING": json.dumps(MAPPING),
        "FRAUDOPS_LABEL_DELAY_DAYS": str(LABEL_DELAY_DAYS),
        "FRAUDOPS_START_DATE": start_date,
    }


def score_with_platform(
    transactions: pd.DataFrame,
    workdir: Path,
    first_test_day: dt.date,
    last_test_day: dt.date,
    *,
    quick: bool = False,
    log=print,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The champion's scores of every transaction of the test days (indexed by TRANSACTION_ID):
    ``score`` as the platform serves it, ``raw_score`` before calibration; and the run's report.
    ``transactions`` are landed up to ``last_test_day`` included."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = platform_environment(workdir, str(transactions["TX_DATETIME"].min().date()))
    for folder in ("DAGSTER_HOME", "FRAUDOPS_LANDING_DIR"):
        Path(env[folder]).mkdir(parents=True, exist_ok=True)
    # A fresh instance as `dagster dev` would make it, minus the telemetry banner in the log.
    (Path(env["DAGSTER_HOME"]) / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    landed = transactions[transactions["TX_DATETIME"] < pd.Timestamp(last_test_day) + pd.Timedelta(days=1)]
    t0 = time.perf_counter()
    write_landing_csv(landed, Path(env["FRAUDOPS_LANDING_DIR"]) / LANDING_FILE)
    log(f"{PROGRESS} landing file {len(landed):,} rows written in {time.perf_counter() - t0:.1f} s")
    command = [
        sys.executable,
        "-m",
        "bench.external.platform_run",
        "--workdir",
        str(workdir),
        "--first-test-day",
        first_test_day.isoformat(),
        "--last-test-day",
        last_test_day.isoformat(),
        *(["--quick"] if quick else []),
    ]
    child_env = {
        **os.environ,
        **env,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    log_path = workdir / LOG_FILE
    with (
        log_path.open("w") as log_file,
        subprocess.Popen(
            command, cwd=workdir, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as child,
    ):
        for line in child.stdout:  # everything to the log file; our own progress lines to the console too
            log_file.write(line)
            if line.startswith(PROGRESS):
                log(line.rstrip())
    if child.returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-40:])
        raise RuntimeError(f"the platform run failed (exit {child.returncode}); end of {log_path}:\n{tail}")
    scores = pd.read_parquet(workdir / SCORES_FILE)
    report = json.loads((workdir / REPORT_FILE).read_text())
    return scores.set_index("transaction_id"), report


# --- the child process ---------------------------------------------------------------------


def _days(first: dt.date, last: dt.date) -> list[str]:
    return [(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


class _Platform:
    """The platform's definitions and a fresh instance, configured by the environment."""

    def __init__(self) -> None:
        import dagster as dg

        from fraud_assets.definitions import defs

        self.dg = dg
        self.defs = defs()
        self.instance = dg.DagsterInstance.get()  # DAGSTER_HOME: the fresh home
        self.timings: dict[str, float] = {}

    def execute(self, stage: str, job: str, *, tags=None, run_config=None):
        t0 = time.perf_counter()
        result = self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance, tags=tags or {}, run_config=run_config or {}, raise_on_error=False
        )
        self.timings[stage] = round(time.perf_counter() - t0, 1)
        if not result.success:
            failures = [event.message for event in result.all_events if event.is_failure][:5]
            raise RuntimeError(f"{job} ({stage}) failed: {failures}")
        print(f"{PROGRESS} {stage} ({job}) done in {self.timings[stage]} s", flush=True)
        return result

    def ingest_landing_files(self) -> dict[str, Any]:
        """What the running sensor does on its next tick, then the run it requests."""
        sensor = self.defs.resolve_sensor_def("landing_files_sensor")
        t0 = time.perf_counter()
        # The daemon builds only the resources a sensor asks for (here the landing zone).
        needed = {key: self.defs.resources[key] for key in sensor.required_resource_keys}
        context = self.dg.build_sensor_context(
            instance=self.instance, definitions=self.defs, resources=needed
        )
        tick = sensor.evaluate_tick(context)
        self.timings["sensor_tick"] = round(time.perf_counter() - t0, 1)
        if not tick.run_requests:
            raise RuntimeError(f"landing_files_sensor requested no run: {tick.skip_message}")
        counts: dict[str, int] = {"raw": 0, "validated": 0, "rejected": 0}
        for request in tick.run_requests:
            result = self.execute(
                "ingest", "ingest_transactions", tags=request.tags, run_config=request.run_config
            )
            for check in result.get_asset_check_evaluations():
                if check.check_name == "nothing_lost":
                    for key in counts:
                        counts[key] += int(check.metadata[key].value)
        return counts

    def latest_metadata(self, asset: str) -> dict[str, Any]:
        event = self.instance.get_latest_materialization_event(self.dg.AssetKey(asset))
        if event is None:
            raise RuntimeError(f"{asset} was never materialized")
        return {key: value.value for key, value in event.asset_materialization.metadata.items()}


def run(workdir: Path, first_test_day: dt.date, last_test_day: dt.date, quick: bool) -> None:
    """Steps 1-5 of the module docstring; writes the scores and the report into ``workdir``."""
    from fraud_assets.core.bundle import ModelBundle
    from fraud_assets.core.champion_history import current_champion
    from fraud_assets.core.evaluation import fraud_scores
    from fraud_assets.core.settings import load_settings
    from fraud_assets.defs.sensors import RANGE_END, RANGE_START
    from fraud_assets.defs.training import CANDIDATE_ASSETS

    platform = _Platform()
    rows = platform.ingest_landing_files()
    first_day = load_settings().partition_start().day
    history = {
        RANGE_START: first_day.isoformat(),
        RANGE_END: (first_test_day - dt.timedelta(days=1)).isoformat(),
    }
    platform.execute("features_before_test", "build_features", tags=history)
    run_config = {}
    if quick:
        ops = {a.key.path[-1]: {"config": QUICK_TUNING} for a in CANDIDATE_ASSETS}
        run_config = {"ops": {**ops, "training_data": {"config": QUICK_WINDOW}}}
    platform.execute("train_models", "train_models", run_config=run_config)
    test_days = _days(first_test_day, last_test_day)
    platform.execute(
        "features_test_days", "build_features", tags={RANGE_START: test_days[0], RANGE_END: test_days[-1]}
    )

    champion = current_champion(platform.instance)
    bundle = ModelBundle.load(champion.bundle_uri, expected_sha256=champion.bundle_sha256)
    t0 = time.perf_counter()
    with platform.defs.get_asset_value_loader(instance=platform.instance) as loader:
        frame = loader.load_asset_value(
            "transaction_features",
            partition_key_range=platform.dg.PartitionKeyRange(test_days[0], test_days[-1]),
        )
    scored = pd.DataFrame(
        {
            "transaction_id": frame["transaction_id"].astype("int64"),
            "score": fraud_scores(bundle.preprocessor, bundle.classifier, frame),
            # Diagnostic only: the same model before calibration, to see what calibration's ties cost.
            "raw_score": bundle.classifier.backend_.raw_proba(bundle.preprocessor.transform(frame)),
        }
    )
    platform.timings["scoring"] = round(time.perf_counter() - t0, 1)
    scored.to_parquet(workdir / SCORES_FILE, index=False)

    candidates = {a.key.path[-1]: platform.latest_metadata(a.key.path[-1]) for a in CANDIDATE_ASSETS}
    features_meta = platform.latest_metadata("transaction_features")
    evaluation = platform.latest_metadata("model_evaluation")
    window = list(champion.training_window)
    report = {
        "rows": rows,
        "algorithm": champion.algorithm,
        "threshold": champion.threshold,
        "training_window": window,
        "days_from_training_end_to_first_test_day": (first_test_day - dt.date.fromisoformat(window[1])).days,
        # train_models' defaults cap each candidate's tuning at 3 trials and 30 s: what each got.
        "candidates": {name: {k: meta.get(k) for k in CANDIDATE_FIELDS} for name, meta in candidates.items()},
        "holdout_metrics": {
            k: evaluation[k] for k in ("auc_roc", "average_precision", "card_precision_at_100")
        },
        "features_computed": features_meta.get("features"),
        "features_left_out": features_meta.get("features_left_out"),
        "model_inputs": list(bundle.preprocessor.feature_names_),
        "model_inputs_left_out": {k: list(v) for k, v in bundle.preprocessor.missing_features_.items()},
        "calibration": bundle.classifier.calibration,
        "imbalance_method": bundle.classifier.imbalance_method,
        "distinct_scores": int(np.unique(scored["score"]).size),
        "distinct_raw_scores": int(np.unique(scored["raw_score"]).size),
        "scored_rows": len(scored),
        "timings_seconds": platform.timings,
        "quick": quick,
    }
    (workdir / REPORT_FILE).write_text(json.dumps(report, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the platform on a landing folder (child process).")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--first-test-day", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--last-test-day", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    run(args.workdir, args.first_test_day, args.last_test_day, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
