"""Labels per second of a label file through the real path (sensor, ingest_labels run, storage).

A chargeback export of ``--labels`` labels (default 1,000,000) reported over 30 days lands in
the labels folder, in its own column names and codes (``status`` = ``chargeback``/``reversed``,
read through a column mapping with value rules); 5% of the labels reverse an earlier one. This
times, end to end: the `label_files_sensor` tick that finds the days the file covers, then the
`ingest_labels` run it requests, executed in process on a fresh instance with the storages of
the project's ``dagster.yaml``: reading and checking every label, each label id once, the join
with the transactions of the 90 days before (for the partitions' metadata: joined, waiting,
superseding, label delay) and one Parquet file per day. The transactions are there already
(their ids and times, as `validated_transactions` holds them).

It also times the domain code alone (reading, mapping, checks, the point-in-time join), and
reports the least CPU time over the repeats beside the wall time: on a shared machine CPU time
moves much less with load.

    .venv/bin/python bench/bench_labels.py [--labels 1000000] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import tempfile
import time
from pathlib import Path
from unittest import mock

import dagster as dg
import numpy as np
import pandas as pd
from bench_landing import fresh_instance
from run_all import parse_args

from fraud_assets.core import columns as c
from fraud_assets.core.label_files import check_label_files, label_settings
from fraud_assets.core.labels import join_labels, stored_labels
from fraud_assets.core.landing_settings import split_mapping
from fraud_assets.defs.io_managers import PartitionedParquetIOManager
from fraud_assets.defs.labels import collect_labels, ingest_labels_job, label_files_sensor
from fraud_assets.defs.partitions import PartitionStartResource, daily_partitions
from fraud_assets.defs.resources import CapturedTrafficResource, LabelFeedResource

DAYS = 30
FIRST_DAY = dt.date.today() - dt.timedelta(days=DAYS + 1)  # days the daily partitions have
MAPPING = {
    "transaction_id": "txn_ref",
    "is_fraud": {"column": "status", "values": {"chargeback": 1, "reversed": 0}},
    "reported_at": "reported",
    "source": "origin",
    "label_id": "case_id",
}
COLUMNS, RULES = split_mapping(MAPPING)
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def write_world(root: Path, n_labels: int, seed: int = 7) -> tuple[Path, Path]:
    """The label file (CSV) and the transactions' daily files it refers to."""
    rng = np.random.default_rng(seed)
    n_reversals = n_labels // 20
    n_tx = n_labels - n_reversals
    start = np.datetime64(FIRST_DAY, "ms")
    tx_times = start + rng.integers(0, DAYS * 86_400_000, n_tx).astype("timedelta64[ms]")
    tx_ids = np.char.add("TXN", np.arange(n_tx).astype(str))
    storage = root / "storage"
    days = tx_times.astype("datetime64[D]")
    for day in np.unique(days):
        rows = days == day
        folder = storage / "validated_transactions"
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(
            {c.TRANSACTION_ID: tx_ids[rows], c.TIMESTAMP: tx_times[rows].astype("datetime64[ns]")}
        ).to_parquet(folder / f"{day}.parquet")
    delay = rng.lognormal(np.log(5 * 86_400_000), 0.6, n_tx).astype("int64").astype("timedelta64[ms]")
    reported = np.minimum(tx_times + delay, start + np.timedelta64(DAYS * 86_400_000 - 1, "ms"))
    reversed_ = rng.choice(n_tx, n_reversals, replace=False)
    later = reported[reversed_] + rng.integers(3_600_000, 5 * 86_400_000, n_reversals).astype(
        "timedelta64[ms]"
    )
    labels = pd.DataFrame(
        {
            "case_id": np.char.add("CB", np.arange(n_labels).astype(str)),
            "txn_ref": np.concatenate([tx_ids, tx_ids[reversed_]]),
            "status": np.concatenate([np.full(n_tx, "chargeback"), np.full(n_reversals, "reversed")]),
            "reported": pd.Series(np.concatenate([reported, later])).dt.strftime("%Y-%m-%d %H:%M:%S"),
            "origin": np.concatenate([np.full(n_tx, "chargeback"), np.full(n_reversals, "reversal")]),
        }
    )
    labels = labels[labels["reported"] < f"{FIRST_DAY + dt.timedelta(days=DAYS)}"]  # within the days
    path = root / "labels" / "chargebacks.csv"
    path.parent.mkdir(parents=True)
    labels.to_csv(path, index=False)
    return path, storage


def definitions(labels_dir: Path, storage: Path) -> dg.Definitions:
    return dg.Definitions(
        # the transactions are there already: a source, as another deployment's asset would be
        assets=[collect_labels, dg.AssetSpec("validated_transactions", partitions_def=daily_partitions)],
        jobs=[ingest_labels_job],
        sensors=[label_files_sensor],
        resources={
            "io_manager": PartitionedParquetIOManager(base_path=str(storage)),
            "label_feed": LabelFeedResource(path=str(labels_dir), column_mapping=COLUMNS, value_rules=RULES),
            "captured_traffic": CapturedTrafficResource(storage=str(storage)),
            "partition_start": PartitionStartResource(
                day=daily_partitions.start.date().isoformat(), source="the benchmark"
            ),
        },
    )


def core_path(path: Path, storage: Path) -> tuple[float, float, int]:
    """The domain code alone: read, map, check, each id once, join: (wall, cpu, labels)."""
    wall, cpu = time.perf_counter(), time.process_time()
    days = [(FIRST_DAY + dt.timedelta(days=n)).isoformat() for n in range(DAYS)]
    checked = check_label_files([path], label_settings(MAPPING), days)
    labels = stored_labels(checked.valid)
    tx = pd.concat(pd.read_parquet(p) for p in sorted((storage / "validated_transactions").glob("*.parquet")))
    join_labels(tx, labels, pd.Timedelta(days=7))
    return time.perf_counter() - wall, time.process_time() - cpu, len(labels)


def dagster_path(path: Path, storage: Path) -> tuple[float, float, int, bool]:
    """The sensor's tick and the run it requests: (wall, cpu, labels stored, success)."""
    with mock.patch.dict(os.environ), fresh_instance() as instance:  # the batched event log sets a variable
        defs = definitions(path.parent, storage)
        sensor = defs.resolve_sensor_def("label_files_sensor")
        wall, cpu = time.perf_counter(), time.process_time()
        tick = sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources)
        )
        (request,) = tick.run_requests
        result = defs.resolve_job_def("ingest_labels").execute_in_process(
            instance=instance, tags=request.tags, run_config=QUIET, raise_on_error=False
        )
        elapsed, used = time.perf_counter() - wall, time.process_time() - cpu
        stored = sum(len(pd.read_parquet(p)) for p in (storage / "fraud_labels").glob("*.parquet"))
    return elapsed, used, stored, result.success


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parse_args(parser, labels=20_000, repeat=1)
    machine = f"{os.cpu_count()}-core {platform.machine()}, Python {platform.python_version()}"
    with tempfile.TemporaryDirectory() as tmp:
        path, storage = write_world(Path(tmp), args.labels)
        core = [core_path(path, storage) for _ in range(args.repeat)]
        runs = [dagster_path(path, storage) for _ in range(args.repeat)]
    labels = core[0][2]
    assert all(run[3] for run in runs) and all(run[2] == labels for run in runs), runs
    for name, timings in (
        ("domain code (read, map, check, join)", core),
        ("sensor + ingest_labels run", runs),
    ):
        wall = min(t[0] for t in timings)
        cpu = min(t[1] for t in timings)
        print(
            f"| labels | {labels:,} labels, {name} | {wall:.2f} s wall ({labels / wall:,.0f} labels/s), "
            f"{cpu:.2f} s CPU ({labels / cpu:,.0f} labels/s) | {machine} | {dt.date.today()} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
