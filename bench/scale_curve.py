"""The scale curve: time and peak resident memory per stage, at several card populations.

Each stage runs in a fresh process (its peak memory is its own, `ru_maxrss`), on files the
earlier stages wrote in a scratch folder, the way the assets read them:

- ``generate``: the simulator's transactions of the lookback and the days after it
  (`LOOKBACK_DAYS` + ``--days``), written as one Parquet file per day;
- ``ingest``: each day's file split into validated and rejected rows (`split_transactions`,
  what `validated_transactions` runs), written per day;
- ``features-1d`` / ``features-7d``: the features of the last day, and of the last 7 days in one
  step (a single-run backfill), by card shard (`features_of_days`, what `transaction_features`
  runs; ``--shards``);
- ``online-state``: the API's start with the Redis online state (``FRAUDOPS_ONLINE_STATE``): the
  card history of the validated days loaded into a Redis server of its own
  (`RedisCardState.bootstrap`, what each API worker runs), with Redis' own memory after it
  (``INFO memory``: ``used_memory`` above the empty server's) per card and per row, and
  ``MEMORY USAGE`` of a sample of card keys.

Not yet here (issue 22): training and a day's drift report; the cluster profile's workers are
in `bench/scale_out.py` (``shards``). The 300,000-card population needs a
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
STAGES = ("generate", "ingest", "features-1d", "features-7d", "online-state")
VALIDATED = "validated_transactions"  # the folder of the validated days, as the API reads them


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

        (folder / VALIDATED).mkdir(exist_ok=True)
        rows = 0
        for path in sorted((folder / "raw").glob("*.parquet")):
            outcome = split_transactions(pd.read_parquet(path))
            outcome.validated.to_parquet(folder / VALIDATED / path.name)
            rows += outcome.n_rows
    elif name == "online-state":
        found = online_state(folder)  # its seconds: the loading's, not the server's start
        return {"stage": name, "cards": cards, "shards": shards, "peak_rss_mb": round(_peak_mb(), 1), **found}
    else:
        from fraud_assets.core.storage import Location
        from fraud_assets.defs.features import features_of_days
        from fraud_assets.defs.io_managers import ParquetDays

        n = 1 if name == "features-1d" else 7
        last = _days(days)[-1]
        wanted = [last - datetime.timedelta(days=k) for k in range(n + LOOKBACK_DAYS - 1, -1, -1)]
        paths = tuple(Location.of(str(folder / VALIDATED / f"{d}.parquet")) for d in wanted)
        starts = [pd.Timestamp(d) for d in wanted[-n:]]
        _, day = features_of_days(ParquetDays(paths), shards, None, pd.Timedelta(days=7), starts)
        rows = day.history_rows
    seconds = time.perf_counter() - t0
    peak_mb = _peak_mb()
    return {"stage": name, "cards": cards, "shards": shards, "rows": rows, "seconds": round(seconds, 2),
            "peak_rss_mb": round(peak_mb, 1)}  # fmt: skip


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def online_state(folder: Path) -> dict[str, object]:
    """The card history of the validated days loaded into a fresh Redis (the API's start with
    ``FRAUDOPS_ONLINE_STATE``); the rows loaded and what Redis holds for them."""
    import random

    import pyarrow.parquet as pq

    from fraud_assets.core.storage import Location
    from fraud_assets.services import devservices
    from fraud_assets.services.service import start_in_order, stop
    from fraud_serving.online_state import PREFIX, RedisCardState

    port = devservices.free_port()
    server = devservices.redis(port, log=str(folder / "redis.log"))
    start_in_order([server])
    try:
        state = RedisCardState(f"redis://127.0.0.1:{port}/0")
        empty, t0 = state.redis.info("memory")["used_memory"], time.perf_counter()
        rows = state.bootstrap(Location.of(str(folder)))
        seconds = round(time.perf_counter() - t0, 2)
        used = state.redis.info("memory")["used_memory"] - empty
        cards = [card.decode() for card in state.redis.smembers(PREFIX + "cards")]
        sample = random.Random(0).sample(cards, min(200, len(cards)))
        zsets = [state.redis.memory_usage(f"{PREFIX}card:{card}", samples=0) for card in sample]
        files = list((folder / VALIDATED).glob("*.parquet"))
        stored = sum(f.stat().st_size for f in files) / sum(
            pq.ParquetFile(f).metadata.num_rows for f in files
        )
        return {"rows": rows, "seconds": seconds, "redis_cards": len(cards), "parquet_bytes_per_row": stored, "redis_bytes": used, "keys": state.redis.dbsize(),
                "card_key_bytes": sum(zsets) / len(zsets)}  # fmt: skip
    finally:
        stop([server])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--stage":
        name, folder, cards, days, shards = sys.argv[2:7]
        print(json.dumps(stage(name, Path(folder), int(cards), int(days), int(shards))))
        return
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cards", type=int, nargs="+", default=[3_000, 30_000])
    p.add_argument("--shards", type=int, nargs="+", default=[1, 4])
    p.add_argument("--days", type=int, default=7, help="days after the lookback (the 7-day backfill)")
    p.add_argument(
        "--stages", nargs="+", choices=STAGES, default=list(STAGES), help="generate and ingest first"
    )
    args = p.parse_args()
    redis_lines = []
    print("| stage | cards | shards | rows | s | peak RSS MB | µs/row | load |")
    print("|---|---|---|---|---|---|---|---|")
    for cards in args.cards:
        with tempfile.TemporaryDirectory(prefix="scale_curve_") as tmp:
            runs = [(s, 1) for s in ("generate", "ingest", "online-state") if s in args.stages]
            runs += [(s, n) for n in args.shards for s in ("features-1d", "features-7d") if s in args.stages]
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
                if "redis_bytes" in r:
                    redis_lines.append(
                        f"| {cards:,} | {r['redis_cards']:,} | {int(r['rows']):,} | {r['keys']:,} | "
                        f"{r['redis_bytes'] / 2**20:.1f} | {r['redis_bytes'] / r['redis_cards']:,.0f} | "
                        f"{r['redis_bytes'] / max(int(r['rows']), 1):.0f} | {r['card_key_bytes']:,.0f} | "
                        f"{r['parquet_bytes_per_row']:.0f} |"
                    )
    if redis_lines:
        head = "cards | cards held | rows held | keys | Redis used_memory MB | B/card | B/row | card key B"
        print(f"\n| {head} | validated Parquet B/row |\n" + "|---" * 9 + "|")
        print("\n".join(redis_lines), flush=True)


if __name__ == "__main__":
    main()
