"""Traffic without a payment network: plays transactions through the scoring API at a chosen
rate, and posts their labels later, when their delays say they became known.

    python -m fraud_assets.replay --days 2026-12-07 --rate 50
    python -m fraud_assets.replay --file data/my_day.csv --rate 200 --batch 100 --clients 4

The transactions are generated days (the seeded generator with the configured seed, population
and drift knobs: the pipeline's own, so card histories continue) or a landing file (read through
the configured column mapping). They are sent in time order, to ``POST /predict`` one by one or to
``POST /predict/batch`` in batches, at ``--rate`` transactions per second. The replay keeps a
clock of its own: the timestamp of the transaction being sent. A label is posted to
``POST /labels`` when that clock passes the moment it became known (``label_known_at``: the
chargeback of a fraud arrives days later); when the transactions are done, the clock goes on at
the same pace until the last label is posted (``--labels end`` posts them all at once instead,
``--labels none`` not at all). Only fraud is posted (as chargebacks): a transaction without a
chargeback counts as genuine once its label delay has passed.

Usable from Python (tests, benchmarks): `replay(frame, url, ...)` returns a `ReplayReport`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import queue
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import pandas as pd

from fraud_assets.core import columns as c
from fraud_assets.core.generator import SimulationConfig, TransactionSimulator
from fraud_assets.core.ingest import read_landing_file
from fraud_assets.core.settings import load_settings
from fraud_assets.core.timestamps import parse_timestamps
from fraud_assets.core.validation import LINEAGE_COLUMNS

LabelMode = Literal["follow", "end", "none"]
# What a transaction does not tell when it is scored: never sent to /predict.
OUTCOME_COLUMNS = (c.IS_FRAUD, c.LABEL_KNOWN_AT, c.FRAUD_SCENARIO)
LABEL_SOURCE = "chargeback"
LABEL_BATCH = 500  # labels per POST /labels


@dataclass
class ReplayReport:
    sent: int = 0  # transactions sent
    answered: list[str] = field(default_factory=list)  # transaction ids answered 200
    failed: dict[str, int] = field(default_factory=dict)  # status (or error) -> transactions
    labels_posted: int = 0
    labels_failed: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)  # per request

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        return {
            "sent": self.sent,
            "answered": len(self.answered),
            "failed": self.failed,
            "labels_posted": self.labels_posted,
            "labels_failed": self.labels_failed,
            "seconds": round(self.seconds, 3),
            "transactions_per_second": round(self.rate, 1),
            "latency_ms_p50": round(float(np.nanpercentile(lat, 50)), 3),
            "latency_ms_p99": round(float(np.nanpercentile(lat, 99)), 3),
        }


# --- what to play ---------------------------------------------------------------------------------


def generated_days(first: dt.date, last: dt.date) -> pd.DataFrame:
    """The configured generator's transactions of those days (the pipeline's own population)."""
    settings = load_settings()
    config = SimulationConfig(
        seed=settings.seed,
        n_cardholders=settings.cardholders,
        fraud_rate=settings.fraud_rate,
        drift=settings.drift_knobs(),
    )
    return TransactionSimulator(config).generate_days(first, last)


def landing_file(path: str | Path) -> pd.DataFrame:
    """A landing file through the configured column mapping (``FRAUDOPS_LANDING_MAPPING``)."""
    from fraud_assets.core.landing_settings import LandingSettings

    settings = load_settings()
    landing = LandingSettings(
        column_mapping=settings.landing_mapping,
        timestamp_format=settings.timestamp_format,
        label_delay_days=settings.label_delay_days,
        encoding=settings.landing_encoding,
    )
    frame = read_landing_file(path, landing).drop(columns=list(LINEAGE_COLUMNS), errors="ignore")
    frame[c.TIMESTAMP] = parse_timestamps(frame[c.TIMESTAMP], None)
    if c.IS_FRAUD in frame:
        frame[c.IS_FRAUD] = pd.to_numeric(frame[c.IS_FRAUD], errors="coerce")
        frame[c.LABEL_KNOWN_AT] = parse_timestamps(frame[c.LABEL_KNOWN_AT].astype(object), None)
    return frame


def request_bodies(frame: pd.DataFrame) -> list[dict]:
    """Each row as a request body: JSON values, absent where null, outcome columns left out."""
    sent = frame.drop(columns=[col for col in OUTCOME_COLUMNS if col in frame])
    for col in sent.columns:
        if pd.api.types.is_datetime64_any_dtype(sent[col].dtype):
            sent[col] = sent[col].dt.strftime("%Y-%m-%dT%H:%M:%S")
    records = json.loads(sent.to_json(orient="records", date_format="iso"))
    return [{k: v for k, v in record.items() if v is not None} for record in records]


def chargebacks(frame: pd.DataFrame) -> pd.DataFrame:
    """The fraud labels of ``frame``, oldest known first: transaction id and when it became known."""
    if c.IS_FRAUD not in frame or c.LABEL_KNOWN_AT not in frame:
        return pd.DataFrame(columns=[c.TRANSACTION_ID, c.LABEL_KNOWN_AT])
    fraud = frame[(frame[c.IS_FRAUD] == 1) & frame[c.LABEL_KNOWN_AT].notna()]
    return fraud[[c.TRANSACTION_ID, c.LABEL_KNOWN_AT]].sort_values(c.LABEL_KNOWN_AT, kind="stable")


def label_body(rows: pd.DataFrame) -> dict:
    return {
        "labels": [
            {
                "label_id": f"replay-{tid}-{LABEL_SOURCE}",
                "transaction_id": tid,
                "is_fraud": True,
                "reported_at": known.strftime("%Y-%m-%dT%H:%M:%S"),
                "source": LABEL_SOURCE,
            }
            for tid, known in zip(rows[c.TRANSACTION_ID], rows[c.LABEL_KNOWN_AT], strict=True)
        ]
    }


# --- playing --------------------------------------------------------------------------------------


def replay(
    frame: pd.DataFrame,
    url: str,
    *,
    rate: float = 50.0,
    batch: int = 1,
    clients: int = 1,
    labels: LabelMode = "follow",
    api_key: str | None = None,
    timeout: float = 30.0,
    max_label_wait: float = 3600.0,
    on_progress: Callable[[ReplayReport], None] | None = None,
) -> ReplayReport:
    """Send ``frame``'s transactions (time order) at ``rate`` per second, then their labels."""
    if rate <= 0 or batch < 1 or clients < 1:
        raise ValueError("rate must be > 0, batch and clients >= 1")
    frame = frame.sort_values([c.TIMESTAMP, c.TRANSACTION_ID], kind="stable").reset_index(drop=True)
    bodies = request_bodies(frame)
    stamps = frame[c.TIMESTAMP].to_numpy("datetime64[ns]")
    due_labels = chargebacks(frame) if labels != "none" else chargebacks(frame.iloc[0:0])
    headers = {"X-API-Key": api_key} if api_key else {}
    report = ReplayReport()
    lock = threading.Lock()
    work: queue.Queue = queue.Queue(maxsize=clients * 4)

    def send(client: httpx.Client, part: Sequence[dict]) -> None:
        started = time.perf_counter()
        try:
            if batch == 1:
                response = client.post("/predict", json=part[0])
            else:
                response = client.post("/predict/batch", json={"transactions": list(part)})
            status = str(response.status_code)
        except httpx.HTTPError as err:
            status, response = type(err).__name__, None
        elapsed = (time.perf_counter() - started) * 1000
        with lock:
            report.latencies_ms.append(elapsed)
            if response is not None and response.status_code == 200:
                answer = response.json()
                predictions = answer["predictions"] if batch > 1 else [answer]
                report.answered.extend(p["transaction_id"] for p in predictions)
            else:
                report.failed[status] = report.failed.get(status, 0) + len(part)

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=timeout, headers=headers) as client:
            while (part := work.get()) is not None:
                send(client, part)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    poster = httpx.Client(base_url=url, timeout=timeout, headers=headers)
    posted = 0

    def post_labels(until: np.datetime64 | None) -> None:
        nonlocal posted
        known = due_labels[c.LABEL_KNOWN_AT].to_numpy("datetime64[ns]")
        end = len(known) if until is None else int(np.searchsorted(known, until, side="right"))
        while posted < end:
            part = due_labels.iloc[posted : min(end, posted + LABEL_BATCH)]
            try:
                ok = poster.post("/labels", json=label_body(part)).status_code == 200
            except httpx.HTTPError:
                ok = False
            with lock:
                if ok:
                    report.labels_posted += len(part)
                else:
                    report.labels_failed += len(part)
            posted += len(part)

    started = time.monotonic()
    try:
        for k, start in enumerate(range(0, len(bodies), batch)):
            wait = started + start / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            work.put(bodies[start : start + batch])
            report.sent += len(bodies[start : start + batch])
            if labels == "follow":
                post_labels(stamps[start])
            if on_progress is not None and k % 100 == 0:
                on_progress(report)
        for _ in threads:
            work.put(None)
        for thread in threads:
            thread.join()
        report.seconds = time.monotonic() - started
        if labels == "end":
            post_labels(None)
        elif labels == "follow" and posted < len(due_labels) and len(stamps) > 1:
            _follow(stamps, report.seconds, due_labels, post_labels, max_label_wait)
    finally:
        poster.close()
    return report


def _follow(stamps: np.ndarray, seconds: float, due: pd.DataFrame, post: Callable, max_wait: float) -> None:
    """The replay's clock goes on at its pace after the last transaction, until every label is
    posted (or ``max_wait`` seconds passed; the rest are posted then)."""
    span = (stamps[-1] - stamps[0]) / np.timedelta64(1, "s")
    pace = span / seconds if seconds > 0 and span > 0 else math.inf  # simulated seconds per second
    began, last = time.monotonic(), stamps[-1]
    for known in due[c.LABEL_KNOWN_AT].to_numpy("datetime64[ns]"):
        wait = (known - last) / np.timedelta64(1, "s") / pace - (time.monotonic() - began)
        if time.monotonic() - began + max(0.0, wait) > max_wait:
            break
        if wait > 0:
            time.sleep(wait)
        post(known)
    post(None)


# --- the command line -----------------------------------------------------------------------------


def _days(text: str) -> tuple[dt.date, dt.date]:
    first, _, last = text.partition("..")
    return dt.date.fromisoformat(first), dt.date.fromisoformat(last or first)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fraud_assets.replay",
        description="Play transactions through the scoring API at a chosen rate, then post their labels.",
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--days",
        type=_days,
        help="generated days, YYYY-MM-DD or YYYY-MM-DD..YYYY-MM-DD (default: today)",
    )
    what.add_argument("--file", type=Path, help="a landing file (CSV or Parquet), read through the mapping")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the scoring API (default %(default)s)")
    p.add_argument("--rate", type=float, default=50.0, help="transactions per second (default %(default)s)")
    p.add_argument(
        "--batch", type=int, default=1, help="transactions per request: 1 = /predict, more = /predict/batch"
    )
    p.add_argument("--clients", type=int, default=1, help="concurrent connections (default %(default)s)")
    p.add_argument("--limit", type=int, help="play only the first N transactions")
    p.add_argument(
        "--labels",
        choices=("follow", "end", "none"),
        default="follow",
        help="follow: post each chargeback when the replay's clock reaches it (default); end: all after "
        "the transactions; none",
    )
    p.add_argument("--max-label-wait", type=float, default=3600.0, help="seconds to keep following labels")
    p.add_argument("--api-key", help="X-API-Key (default: FRAUDOPS_API_KEY)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.file is not None:
        frame = landing_file(args.file)
        what = str(args.file)
    else:
        first, last = args.days or (dt.date.today(), dt.date.today())
        frame = generated_days(first, last)
        what = f"generated {first}..{last}"
    if args.limit is not None:
        frame = frame.sort_values([c.TIMESTAMP, c.TRANSACTION_ID], kind="stable").head(args.limit)
    key = args.api_key or load_settings().api_key_value()
    print(f"replaying {len(frame)} transactions ({what}) to {args.url} at {args.rate:g}/s", file=sys.stderr)
    report = replay(
        frame,
        args.url,
        rate=args.rate,
        batch=args.batch,
        clients=args.clients,
        labels=args.labels,
        api_key=key,
        max_label_wait=args.max_label_wait,
        on_progress=lambda r: print(f"  {r.sent} sent, {len(r.answered)} answered", file=sys.stderr),
    )
    print(json.dumps(report.summary(), indent=2))
    return 0 if not report.failed and not report.labels_failed else 1


if __name__ == "__main__":
    sys.exit(main())
