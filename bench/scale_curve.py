"""The scale curve: time and peak resident memory per stage, at several card populations.

Each stage runs in a fresh process (its peak memory is its own, `ru_maxrss`), on files the
earlier stages wrote in a scratch folder, the way the assets read them:

- ``generate``: the simulator's transactions of the lookback and the days after it
  (`LOOKBACK_DAYS` + ``--days``), written as one Parquet file per day;
- ``ingest``: each day's file split into validated and rejected rows (`split_transactions`,
  what `validated_transactions` runs), written per day;
- ``features-1d`` / ``features-7d``: the features of the last day, and of the last 7 days in one
  step (a single-run backfill), by card shard (`features_of_days`, what `transaction_features`
  runs; ``--shards``).

Not yet here (issue 22): training, a day's drift report, the API's start, and the cluster
profile's workers; run those through `bench/scale_out.py`. The 300,000-card population needs a
quiet machine (docs/scale-out.md gives the command).

    .venv/bin/python bench/scale_curve.py --cards 3000 30000 [--shards 1 4] [--days 7]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fraud_assets.core.features import LOOKBACK_DAYS

FIRST_DAY = datetime.date(2026, 3, 1)
STAGES = ("generate", "ingest", "features-1d", "features-7d")


def _days(days: int) -> list[datetime.date]:
    return [FIRST_DAY + datetime.timedelta(days=k) for k in range(LOOKBACK_DAYS + days)]


def stage(name: str, folder: Path, cards: int, days: int, shards: int) -> dict[str, object]:
    """Run one stage in this process; its rows and time."""
    import pandas as pd

    t0 = time.perf_counter()
    if name == "generate":
        from fraud_assets.core.generator import SimulationConfig, TransactionSimulator

        span = _days(days)
        frame = TransactionSimulator(SimulationConfig(seed=42, n_cardholders=cards)).generate_days(
            span[0], span[-1]
        )
        (folder / "raw").mkdir(exist_ok=True)
        for day, rows in frame.groupby(frame["timestamp"].dt.date):
            rows.reset_index(drop=True).to_parquet(folder / "raw" / f"{day}.parquet")
        rows = len(frame)
    elif name == "ingest":
        from fraud_assets.core.validation import split_transactions

        (folder / "validated").mkdir(exist_ok=True)
        rows = 0
        for path in sorted((folder / "raw").glob("*.parquet")):
            outcome = split_transactions(pd.read_parquet(path))
            outcome.validated.to_parquet(folder / "validated" / path.name)
            rows += outcome.n_rows
    else:
        from fraud_assets.core.storage import Location
        from fraud_assets.defs.features import features_of_days
        from fraud_assets.defs.io_managers import ParquetDays

        n = 1 if name == "features-1d" else 7
        last = _days(days)[-1]
        wanted = [last - datetime.timedelta(days=k) for k in range(n + LOOKBACK_DAYS - 1, -1, -1)]
        paths = tuple(Location.of(str(folder / "validated" / f"{d}.parquet")) for d in wanted)
        starts = [pd.Timestamp(d) for d in wanted[-n:]]
        _, day = features_of_days(ParquetDays(paths), shards, None, pd.Timedelta(days=7), starts)
        rows = day.history_rows
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"stage": name, "cards": cards, "shards": shards, "rows": rows, "seconds": round(seconds, 2),
            "peak_rss_mb": round(peak_mb, 1)}  # fmt: skip


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--stage":
        name, folder, cards, days, shards = sys.argv[2:7]
        print(json.dumps(stage(name, Path(folder), int(cards), int(days), int(shards))))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cards", type=int, nargs="+", default=[3_000, 30_000])
    p.add_argument("--shards", type=int, nargs="+", default=[1, 4])
    p.add_argument("--days", type=int, default=7, help="days after the lookback (the 7-day backfill)")
    args = p.parse_args()
    print("| stage | cards | shards | rows | s | peak RSS MB | µs/row | load |")
    print("|---|---|---|---|---|---|---|---|")
    for cards in args.cards:
        with tempfile.TemporaryDirectory(prefix="scale_curve_") as tmp:
            runs = [("generate", 1), ("ingest", 1)]
            runs += [(s, n) for n in args.shards for s in ("features-1d", "features-7d")]
            for name, shards in runs:
                child = [
                    sys.executable,
                    __file__,
                    "--stage",
                    name,
                    tmp,
                    str(cards),
                    str(args.days),
                    str(shards),
                ]
                done = subprocess.run(child, check=True, capture_output=True, text=True)
                r = json.loads(done.stdout.strip().splitlines()[-1])
                per_row = 1e6 * r["seconds"] / max(int(r["rows"]), 1)
                print(
                    f"| {r['stage']} | {cards:,} | {r['shards']} | {int(r['rows']):,} | {r['seconds']} | "
                    f"{r['peak_rss_mb']} | {per_row:.1f} | {os.getloadavg()[0]:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
