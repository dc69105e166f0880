"""Rows per second of a user's landing file through the real path (sensor, ingest run, validation).

A user drops a file of ~1,000,000 transactions over ~120 days into the landing folder. This
times what happens next, end to end: the `landing_files_sensor` tick that finds the days the
file covers, then the one `ingest_transactions` run it requests (`raw_transactions` with
source=landing, then `validate_transactions`), executed in process on a fresh instance with
the storages of the project's ``dagster.yaml`` (SQLite, the batched event log of
`fraud_assets.services.event_log_storage`) and the real Parquet IO manager writing one file per day for
each of the three assets. Each file's row gives the least CPU time of the process over the
repeats beside the wall times: on a shared machine it moves much less with load.

Four files, written once into ``--data-dir`` (735 MB for a million rows each) and reused:

* ``csv``: the generator's output saved as CSV (every canonical column, ISO timestamps);
* ``parquet``: the same rows as Parquet (typed columns);
* ``mapped_csv``: only the five required columns and the label, under a user's own column
  names (read through a column mapping), timestamps as ``YYYY-MM-DD HH:MM:SS``, plus an extra
  column the platform does not know;
* ``bad_rows_csv``: ``csv`` with ~1% of rows broken in eleven ways (unparseable and negative
  amounts, unreadable timestamps, duplicate IDs, a missing card, an unknown category, a
  lowercase country, an impossible IP, a wrong hour, a label of 2, an online flag of "maybe"),
  so that the rejection path is exercised.

``--stages`` also times each stage on its own (reading, mapping and timestamps, coercion,
Pandera, derived columns, the rejected frame, writing and reading the daily partitions, the
checks of the validated output), to show where the time goes.

    .venv/bin/python bench/bench_landing.py [--rows 1000000] [--repeat 3] [--variants csv ...]
                                            [--stages] [--data-dir .fraudops/bench/landing] [--quick]

``--quick`` (what ``make bench QUICK=1`` runs): 20,000 rows, one repeat, stages included, files
in a temporary folder; a check that it runs, the figures mean nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import yaml
from run_all import parse_args

from fraud_assets.core import columns as c
from fraud_assets.core import ingest, validation
from fraud_assets.core.coercion import coerce_to_contract
from fraud_assets.core.generator import write_frame
from fraud_assets.defs.ingestion import raw_transactions
from fraud_assets.defs.io_managers import PartitionedParquetIOManager
from fraud_assets.defs.metadata import transaction_summary
from fraud_assets.defs.partitions import PartitionStartResource, daily_partitions, single_run
from fraud_assets.defs.resources import (
    CapturedTrafficResource,
    LandingZoneResource,
    TransactionSimulatorResource,
)
from fraud_assets.defs.sensors import ingest_transactions_job, landing_files_sensor
from fraud_assets.defs.validation import ValidatedTransactions, validate_transactions
from fraud_assets.generator import FraudDataGenerator

CARDHOLDERS = 3_000  # ~8,300 transactions a day: a million rows span ~120 days
SEED = 42
VARIANTS = ("csv", "parquet", "mapped_csv", "bad_rows_csv")
# Run logs at WARNING: the DEBUG console lines (~800 a run) would bury the figures; every event
# is still stored in the instance's SQLite event log, which is what costs.
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
ROOT = Path(__file__).resolve().parents[1]
STORAGES = ("run_storage", "event_log_storage", "schedule_storage")
USER_MAPPING = {
    "transaction_id": "txn_ref",
    "timestamp": "created",
    "card_id": "card",
    "merchant_id": "shop",
    "amount": "amt",
    "is_fraud": "chargeback",
}


@dataclass(frozen=True)
class LandingCase:
    name: str
    path: Path
    mapping: dict[str, str]


def break_rows(frame: pd.DataFrame, seed: int = SEED) -> pd.DataFrame:
    """About 1% of rows broken, each in one of eleven ways; every other row stays valid."""
    rng = np.random.default_rng(seed)
    out = frame.astype(
        {col: object for col in (c.AMOUNT, c.TIMESTAMP, c.HOUR_OF_DAY, c.IS_FRAUD, c.IS_ONLINE)}
    )
    rows = rng.choice(np.arange(1, len(out)), size=11 * (len(out) // 1000), replace=False)
    groups = np.array_split(rows, 11)
    online = out[c.IS_ONLINE].astype(bool).to_numpy()
    out.loc[groups[0], c.AMOUNT] = "abc"
    out.loc[groups[1], c.AMOUNT] = "-5.00"
    out.loc[groups[2], c.TIMESTAMP] = "31/02/2026 25:61"
    out.loc[groups[3], c.TRANSACTION_ID] = out[c.TRANSACTION_ID].to_numpy()[groups[3] - 1]
    out.loc[groups[4], c.CARD_ID] = None
    out.loc[groups[5], c.MERCHANT_CATEGORY] = "spaceship"
    out.loc[groups[6], c.TXN_COUNTRY] = "usa"
    ip_rows = groups[7][online[groups[7]]]
    out.loc[ip_rows, c.IP_ADDRESS] = "999.1.1.1"
    out.loc[groups[8], c.HOUR_OF_DAY] = (out.loc[groups[8], c.HOUR_OF_DAY].astype(int) + 1) % 24
    out.loc[groups[9], c.IS_FRAUD] = 2
    out.loc[groups[10], c.IS_ONLINE] = "maybe"
    return out


def build_cases(folder: Path, rows: int) -> dict[str, LandingCase]:
    """The four landing files (written on first use, reused after)."""
    root = folder / f"{rows}_rows"  # one landing folder per file: the sensor sees just that file
    paths = {
        "csv": root / "csv" / "generator.csv",
        "parquet": root / "parquet" / "generator.parquet",
        "mapped_csv": root / "mapped_csv" / "user.csv",
        "bad_rows_csv": root / "bad_rows_csv" / "bad_rows.csv",
    }
    if not all(path.exists() for path in paths.values()):
        frame = FraudDataGenerator(n_samples=rows, n_cardholders=CARDHOLDERS, seed=SEED).generate()
        user = frame[list(USER_MAPPING)].rename(columns=USER_MAPPING)
        user["created"] = frame[c.TIMESTAMP].dt.strftime("%Y-%m-%d %H:%M:%S")
        user["channel"] = np.where(frame[c.IS_ONLINE], "web", "store")
        contents = {"csv": frame, "parquet": frame, "mapped_csv": user, "bad_rows_csv": break_rows(frame)}
        for name, path in paths.items():
            # Written under a hidden name, then renamed: an interrupted run leaves no half file.
            hidden = write_frame(contents[name], path.with_name(f".{path.name}"), path.suffix[1:])
            hidden.rename(path)
    return {
        name: LandingCase(name, path, USER_MAPPING if name == "mapped_csv" else {})
        for name, path in paths.items()
    }


def definitions(case: LandingCase, storage: Path) -> dg.Definitions:
    return dg.Definitions(
        assets=[raw_transactions, validate_transactions],
        jobs=[ingest_transactions_job],
        sensors=[landing_files_sensor],
        resources={
            "io_manager": PartitionedParquetIOManager(base_path=str(storage)),
            "simulator": TransactionSimulatorResource(),
            "landing_zone": LandingZoneResource(path=str(case.path.parent), column_mapping=case.mapping),
            "captured_traffic": CapturedTrafficResource(storage=str(storage)),
            "partition_start": PartitionStartResource(
                day=daily_partitions.start.date().isoformat(), source="the benchmark"
            ),
        },
    )


@contextlib.contextmanager
def fresh_instance(project_storage: bool = True):
    """A new, empty instance with the storages of the project's ``dagster.yaml`` (folders under a
    temporary one), or with Dagster's default SQLite storage."""
    with tempfile.TemporaryDirectory() as home:
        overrides = {}
        if project_storage:
            config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
            for key in STORAGES:
                storage = config[key]
                storage["config"]["base_dir"] = str(Path(home) / storage["config"]["base_dir"])
                overrides[key] = storage
        with dg.instance_for_test(overrides=overrides, temp_dir=home) as instance:
            yield instance


def end_to_end(case: LandingCase) -> dict[str, object]:
    """One sensor tick and the run it requests, on a fresh instance and fresh storage."""
    with tempfile.TemporaryDirectory() as tmp, fresh_instance() as instance:
        defs = definitions(case, Path(tmp) / "storage")
        sensor = defs.resolve_sensor_def("landing_files_sensor")
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        tick = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources)
        )
        t1 = time.perf_counter()
        (request,) = tick.run_requests
        result = defs.resolve_job_def("ingest_transactions").execute_in_process(
            instance=instance,
            tags=request.tags,
            run_config={**request.run_config, **QUIET},
            raise_on_error=False,
        )
        t2 = time.perf_counter()
        cpu = time.process_time() - cpu0
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        days = len(instance.get_materialized_partitions(dg.AssetKey("validated_transactions")))
        validated = _metadata(instance, "validated_transactions")["dagster/row_count"].value
        rejected = _metadata(instance, "rejected_transactions")["dagster/row_count"].value
    return {
        "sensor_s": t1 - t0,
        "run_s": t2 - t1,
        "total_s": t2 - t0,
        "cpu_s": cpu,
        "success": result.success,
        "checks": checks,
        "days": days,
        "validated": validated,
        "rejected": rejected,
    }


def warm_up(case: LandingCase) -> None:
    """Time the stages once on the file's first rows, so that first-use costs (imports, pyarrow's
    thread pools) are not counted in the first stages."""
    with tempfile.TemporaryDirectory() as tmp:
        head = ingest.read_table(case.path, ingest.LandingSettings(column_mapping=case.mapping))
        path = Path(tmp) / case.path.name
        write_frame(head.slice(0, 2_000).to_pandas(), path, case.path.suffix[1:])
        stages(LandingCase(case.name, path, case.mapping))


def stages(case: LandingCase) -> list[tuple[str, float, float]]:
    """Each stage of the path on its own: (stage, wall seconds, CPU seconds of this process)."""
    settings = ingest.LandingSettings(column_mapping=case.mapping)
    timings: list[tuple[str, float, float]] = []

    def timed(label: str, fn: Callable[[], object]):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        timings.append((label, time.perf_counter() - wall, time.process_time() - cpu))
        return result

    days = timed("sensor: covered days", lambda: ingest.covered_days(case.path, settings))
    keys = [day.isoformat() for day in days]
    timed("read the file (pyarrow)", lambda: ingest.read_table(case.path, settings))
    raw, _ = timed(
        "read_landing_days: read, map, timestamps, days",
        lambda: ingest.read_landing_days([case.path], settings, keys),
    )
    timed("raw metadata", lambda: transaction_summary(raw))
    with tempfile.TemporaryDirectory() as tmp:
        io = PartitionedParquetIOManager(base_path=tmp)
        span = dg.PartitionKeyRange(keys[0], keys[-1])

        def write(key: str, frame: pd.DataFrame, column: str) -> None:
            io.handle_output(
                dg.build_output_context(
                    asset_key=key,
                    asset_partitions_def=daily_partitions,
                    asset_partition_key_range=span,
                    definition_metadata={"partition_expr": column},
                ),
                frame,
            )

        timed("write raw days (Parquet)", lambda: write("raw_transactions", raw, validation.PARTITION_DATE))
        raw = timed(
            "load raw days",
            lambda: io.load_input(
                dg.build_input_context(
                    asset_key=dg.AssetKey("raw_transactions"),
                    asset_partitions_def=daily_partitions,
                    asset_partition_key_range=span,
                )
            ),
        )
        coerced, _ = timed("coerce to the contract's dtypes", lambda: coerce_to_contract(raw))
        timed("Pandera, raw contract (lazy) + failure cases", lambda: validation._schema_failures(coerced))
        timed("duplicate IDs", lambda: validation._duplicate_failures(coerced))
        outcome = timed("split_transactions (all of the split)", lambda: validation.split_transactions(raw))
        validated, rejected = outcome.validated, outcome.rejected
        timed("rejected frame", lambda: validation.rejected_frame(raw, outcome.failures))
        timed(
            "Pandera, validated contract (the output's Dagster type check)",
            lambda: dg.check_dagster_type(ValidatedTransactions, validated),
        )
        timed("write validated days", lambda: write("validated_transactions", validated, c.TIMESTAMP))
        timed(
            "write rejected days", lambda: write("rejected_transactions", rejected, validation.PARTITION_DATE)
        )
        timed("nothing_lost check", lambda: validation.lost_rows(raw, validated, rejected))
        timed("validated metadata", lambda: transaction_summary(validated))
    return timings


class _NoStorage(dg.ConfigurableIOManager):
    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        pass

    def load_input(self, context: dg.InputContext) -> None:
        return None


def dagster_floor(days: int, project_storage: bool = True) -> float:
    """Seconds Dagster itself spends on a run of this shape over ``days`` partitions, with no data.

    The same partitions, assets, outputs and checks as `ingest_transactions`, each step doing
    nothing: what is left is Dagster's bookkeeping (planned and materialization events per
    partition and asset in SQLite), which no change to the data path can remove. On the
    project's instance storage (the batched event log), or with ``project_storage=False`` on
    Dagster's default `SqliteEventLogStorage` (one commit per event), for comparison.
    """
    # the batched storage turns Dagster's batching on for the process: restored after
    with mock.patch.dict(os.environ):
        return _floor(days, project_storage)


def _floor(days: int, project_storage: bool) -> float:

    @dg.asset(
        name="raw_transactions",
        partitions_def=daily_partitions,
        backfill_policy=single_run,
        check_specs=[dg.AssetCheckSpec("required_columns_present", asset="raw_transactions", blocking=True)],
    )
    def raw():
        yield dg.Output(None)
        yield dg.AssetCheckResult(check_name="required_columns_present", passed=True)

    checks = ("nothing_lost", "fraud_rate_in_range", "rejected_share_within_limit")

    @dg.multi_asset(
        outs={"validated_transactions": dg.AssetOut(), "rejected_transactions": dg.AssetOut()},
        partitions_def=daily_partitions,
        backfill_policy=single_run,
        deps=["raw_transactions"],
        check_specs=[
            dg.AssetCheckSpec(name, asset="validated_transactions", blocking=True) for name in checks
        ],
    )
    def validate():
        yield dg.Output(None, "validated_transactions")
        yield dg.Output(None, "rejected_transactions")
        for name in checks:
            yield dg.AssetCheckResult(check_name=name, asset_key="validated_transactions", passed=True)

    job = dg.define_asset_job(
        "ingest_transactions",
        selection=["raw_transactions", "validated_transactions", "rejected_transactions"],
    )
    defs = dg.Definitions(assets=[raw, validate], jobs=[job], resources={"io_manager": _NoStorage()})
    first = dt.date(2026, 1, 1)
    tags = {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": (first + dt.timedelta(days=days - 1)).isoformat(),
    }
    with fresh_instance(project_storage) as instance:
        t0 = time.perf_counter()
        assert (
            defs.resolve_job_def("ingest_transactions")
            .execute_in_process(instance=instance, tags=tags, run_config=QUIET)
            .success
        )
        return time.perf_counter() - t0


def _metadata(instance: dg.DagsterInstance, key: str):
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    return event.asset_materialization.metadata


def load() -> str:
    return "{:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())


def print_stages(case: LandingCase) -> None:
    warm_up(case)
    print(f"\n## stages, {case.name} (load {load()})\n\n| stage | wall s | CPU s |\n|---|---:|---:|")
    timings = stages(case)
    for label, wall, cpu in timings:
        print(f"| {label} | {wall:.2f} | {cpu:.2f} |", flush=True)
    print(f"| (load after: {load()}) | | |\n")


def print_end_to_end(case: LandingCase, rows: int, repeat: int, compare: bool = True) -> None:
    """Best of ``repeat`` runs, each followed by the Dagster floor of its shape (same load);
    ``compare``: also the floor on Dagster's default event log, once."""
    before = load()
    runs, floors = [], []
    for _ in range(repeat):
        with mock.patch.dict(os.environ):
            runs.append(end_to_end(case))
        floors.append(dagster_floor(int(runs[-1]["days"])))
    # once: on a busy disk it takes minutes (a commit per event)
    default_floor = dagster_floor(int(runs[-1]["days"]), project_storage=False) if compare else float("nan")
    run, floor = min(runs, key=lambda r: r["total_s"]), min(floors)
    data = run["total_s"] - floor
    print(
        f"| {case.name} | {rows:,} / {run['days']} | {run['sensor_s']:.2f} | {run['run_s']:.2f} | "
        f"{run['total_s']:.2f} | {rows / run['total_s']:,.0f} | {min(r['cpu_s'] for r in runs):.2f} | "
        f"{floor:.2f} ({default_floor:.2f}) | "
        f"{data:.2f} | {f'{rows / data:,.0f}' if data > 0 else 'within the noise'} | "
        f"{run['validated']:,} / {run['rejected']:,} | {run['success']} | "
        f"{before} -> {load()} |",
        flush=True,
    )
    if not all(run["checks"].get(k) for k in ("nothing_lost", "rejected_share_within_limit")):
        print(f"  checks: {json.dumps(run['checks'])}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--stages", action="store_true", help="also time each stage on its own")
    p.add_argument("--data-dir", type=Path, default=Path(".fraudops/bench/landing"))
    args = parse_args(p, rows=20_000, repeat=1, stages=True, data_dir=None)
    with (
        tempfile.TemporaryDirectory(prefix="fraudops-landing-")
        if args.data_dir is None
        else contextlib.nullcontext(args.data_dir)
    ) as folder:
        report(build_cases(Path(folder), args.rows), args)


def report(cases: dict[str, LandingCase], args: argparse.Namespace) -> None:
    machine = f"{os.cpu_count()}-core {platform.machine()}, Python {platform.python_version()}"
    print(f"# landing files: {machine}, pandas {pd.__version__}, pyarrow {pa.__version__}, {dt.date.today()}")
    for name in args.variants if args.stages else ():
        print_stages(cases[name])
    print(
        f"\n## end to end, best of {args.repeat} (seconds; the Dagster floor is the same run with no "
        "data, in brackets on Dagster's default SQLite event log, not with --quick)\n\n"
        "| file | rows / days | sensor | run | total | rows/s | CPU (least) | Dagster floor | data path | "
        "rows/s of the data path | validated / rejected | run succeeded | load |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"
    )
    for name in args.variants:
        print_end_to_end(cases[name], args.rows, args.repeat, compare=not args.quick)


if __name__ == "__main__":
    main()
