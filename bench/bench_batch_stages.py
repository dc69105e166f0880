"""Where a 1,000-transaction `/predict/batch` spends its CPU time, stage by stage, in-process.

The scoring API of `fraud_serving.app` is built in this process on the champion of the Dagster
instance at DAGSTER_HOME (default: the project root; `make run` creates one), its card state
bootstrapped from the stored `validated_transactions`. Each batch is 1,000 transactions of the
latest stored day moved N days forward (new transactions of known cards: the card state adds
them and computes their history), sent through the app's ASGI interface (FastAPI routing,
dependencies, body parsing, scoring, the answer's JSON) without a socket.

Measured as CPU time (``time.process_time``: every thread of the process, Numba's included), the
best of ``--repeats`` batches, because wall time on a shared machine measures the machine. Each
stage is the inclusive CPU time of one function of the request path (wrapped for the run), so a
stage's figure contains the stages it calls. The prediction log's JSON line is built in its
writer thread after the answer; it is timed on its own ("log line, writer thread").

    .venv/bin/python bench/bench_batch_stages.py [--repeats 30] [--reasons exact] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse() -> argparse.Namespace:
    from run_all import parse_args

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=30, help="batches per mode (best of these)")
    p.add_argument("--size", type=int, default=1000, help="transactions per batch")
    p.add_argument("--reasons", default="exact,none", help="reason modes to measure, comma-separated")
    p.add_argument("--threads", type=int, default=0, help="NUMBA_NUM_THREADS (0: Numba's default)")
    return parse_args(p, repeats=3)


ARGS = parse()
if ARGS.threads:
    os.environ["NUMBA_NUM_THREADS"] = str(ARGS.threads)  # before Numba is imported

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from bench_serving import bodies_from, latest_full_day, what_make_run_built  # noqa: E402
from run_all import skip  # noqa: E402

from fraud_assets.core.explanations import FieldReasons  # noqa: E402
from fraud_serving import responses, routers, scoring  # noqa: E402
from fraud_serving.app import create_app  # noqa: E402
from fraud_serving.model_provider import ServedModel  # noqa: E402
from fraud_serving.settings import Settings  # noqa: E402

SPENT: dict[str, list[float]] = defaultdict(list)  # stage -> CPU seconds of each call


def timed(name: str, function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        start = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            SPENT[name].append(time.process_time() - start)

    return wrapper


class _TimedAdapter:
    """`BATCH_ROWS` with its ``validate_json`` timed (a TypeAdapter's methods cannot be patched)."""

    def __init__(self, adapter) -> None:
        self._adapter = adapter
        self.validate_json = timed("parse and validate the body", adapter.validate_json)

    def __getattr__(self, name):
        return getattr(self._adapter, name)


def instrument(service) -> None:
    """Wrap the request path's stages (this process only)."""
    routers.scoring.BATCH_ROWS = _TimedAdapter(routers.scoring.BATCH_ROWS)
    scorer = service.scorer
    scorer.score = timed("Scorer.score (all below)", scorer.score)
    scorer._inputs = timed("  input columns (history included)", scorer._inputs)
    scorer._history = timed("    history: card state + merchant risk", scorer._history)
    service.cards.remember = timed("      card state remember", service.cards.remember)
    model = service.provider.current
    pre = model.preprocessor
    pre.transform_columns = timed("  model matrix (preprocessor)", pre.transform_columns)
    object.__setattr__(model, "runtime", _TimedRuntime(model.runtime))
    FieldReasons.explain = timed("  business reasons: group, pick, describe", FieldReasons.explain)
    scoring.responses = _TimedResponses()
    service.log.submit = timed("prediction log submit", service.log.submit)
    routers.scoring.responses = scoring.responses


class _TimedRuntime:
    def __init__(self, runtime) -> None:
        self._runtime = runtime
        self.predict = timed("  model: probability + contributions", runtime.predict)

    def __getattr__(self, name):
        return getattr(self._runtime, name)


class _TimedResponses:
    reason_codes = staticmethod(timed("  reasons JSON", responses.reason_codes))
    predictions = staticmethod(timed("  predictions JSON", responses.predictions))
    batch = staticmethod(timed("answer JSON join", responses.batch))

    def __getattr__(self, name):
        return getattr(responses, name)


async def post(app, path: str, query: str, body: bytes) -> tuple[int, bytes]:
    """One request through the ASGI interface (no socket)."""
    sent = False
    out: dict = {"body": b""}

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
        "root_path": "", "headers": [(b"content-type", b"application/json"),
                                     (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
    }  # fmt: skip
    await app(scope, receive, send)
    return out["status"], out["body"]


def main() -> None:
    settings, _, days = what_make_run_built()
    app = create_app(
        Settings(
            dagster_home=os.environ["DAGSTER_HOME"],
            storage=settings.storage,
            prediction_log_dir=tempfile.mkdtemp(prefix="fraudops-stages-"),
            model_poll_seconds=3600,
            max_batch=max(ARGS.size, 1000),
            online_state=settings.online_state,
        )
    )
    service = app.state.service
    service.log.start = lambda: None  # no writer thread: each request's log item is timed here
    service.start()
    gc.freeze()  # as the app's lifespan does after startup
    model: ServedModel = service.provider.current
    if model is None:
        skip(service.provider.error or "no model loaded")
    print(f"champion {model.version}: {json.dumps(model.info.get('compiled_tree_size'))}")
    print(
        f"NUMBA_NUM_THREADS={os.environ.get('NUMBA_NUM_THREADS', 'default')}, load {os.getloadavg()[0]:.1f}"
    )
    _, last = latest_full_day(days)
    instrument(service)
    loop = asyncio.new_event_loop()
    shift = 1
    try:
        for reasons in ARGS.reasons.split(","):
            SPENT.clear()
            total, wall, log_line = [], [], []
            for k in range(ARGS.repeats + 2):  # two warm-up batches
                start = (k * ARGS.size) % max(len(last) - ARGS.size, 1)
                payload = json.dumps(
                    {
                        "transactions": bodies_from(
                            last.iloc[start : start + ARGS.size], pd.Timedelta(days=shift)
                        )
                    }
                )
                shift += 1
                t0, w0 = time.process_time(), time.perf_counter()
                status, answer = loop.run_until_complete(
                    post(app, "/predict/batch", f"reasons={reasons}", payload.encode())
                )
                t1, w1 = time.process_time(), time.perf_counter()
                if status != 200:
                    raise SystemExit(f"{status}: {answer[:300]!r}")
                item = service.log.queue.get_nowait()  # the writer's work, timed here, not in the request
                l0 = time.process_time()
                b"".join(item.line_pieces())
                log_line.append(time.process_time() - l0)
                if k >= 2:
                    total.append(t1 - t0)
                    wall.append(w1 - w0)
            best = {name: min(values[2:]) * 1000 for name, values in SPENT.items()}
            print(
                f"\nreasons={reasons}: {ARGS.repeats} batches of {ARGS.size}, load {os.getloadavg()[0]:.1f}"
            )
            print(f"  {'whole request (ASGI), CPU':44s} best {min(total) * 1000:6.2f} ms, "
                  f"median {np.median(total) * 1000:6.2f} ms (wall: best {min(wall) * 1000:.2f}, "
                  f"median {np.median(wall) * 1000:.2f})")  # fmt: skip
            for name, ms in best.items():
                print(f"  {name:44s} best {ms:6.2f} ms, median {np.median(SPENT[name][2:]) * 1000:6.2f} ms")
            print(f"  {'log line, writer thread':44s} best {min(log_line[2:]) * 1000:6.2f} ms")
            print(f"  answer: {len(answer):,} bytes")
    finally:
        service.stop()
        loop.close()


if __name__ == "__main__":
    main()
