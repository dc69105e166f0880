"""The prediction log: every scored transaction, append-only, one JSON Lines file per day.

Requests only put a compact item on a bounded queue (``put_nowait``); a background thread turns
items into JSON lines and appends them to ``<log dir>/<YYYY-MM-DD>.jsonl`` (the UTC day the
request was scored). Logging never slows or fails a request: when the queue is full the item
is dropped and its transactions counted (``fraudops_prediction_log_dropped`` in ``/metrics``);
and the writer serializes while no request is in flight (for at most `MAX_DEFER_SECONDS` a
round), a piece at a time, because two threads of one interpreter take turns: a writer turning
a 1,000-transaction batch into JSON held up the next request by 20 ms.

One line per model call (a batch request, or the single-transaction requests scored together,
see `coalescing`): ``scored_at`` (UTC ISO), ``model_version``, ``threshold``, ``latency_ms``
(time spent in the service for the request; a list, one per transaction, for single requests
scored together), then the transactions as columns:
``transaction_id``, ``card_id``, ``merchant_id``, ``timestamp`` (the transaction's),
``fraud_probability``, ``is_fraud``, ``risk_level``, ``reason_codes``, ``features`` (a column
per model input value: what the monitoring compares to the training data; ``null`` = missing,
imputed) and ``input`` (the request bodies as sent). Columns, not one object per transaction,
because building a thousand objects would take the interpreter from the requests being served.

The monitoring stage reads it with `fraud_assets.core.prediction_log.read_prediction_log`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

import pydantic_core

from fraud_assets.core.prediction_log import read_prediction_log  # noqa: F401  (the reader of this log)

log = logging.getLogger("fraud_serving.prediction_log")

_STOP = object()
BATCH_SECONDS = 0.05
MAX_DEFER_SECONDS = 0.2  # under continuous load the writer waits at most this long per round


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class PredictionLogger:
    """Bounded queue + writer thread. ``submit`` is non-blocking; ``close`` flushes."""

    def __init__(self, directory: str | os.PathLike, max_queue: int = 100_000, metrics=None) -> None:
        self.directory = Path(directory)
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.metrics = metrics
        self.dropped = 0
        self.written = 0
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._in_flight = 0
        self._quiet = threading.Event()  # set while no request is in flight
        self._quiet.set()

    def request_started(self) -> None:
        """A request arrived (called on the event loop: the counter has one writer)."""
        self._in_flight += 1
        self._quiet.clear()

    def request_finished(self) -> None:
        self._in_flight -= 1
        if self._in_flight <= 0:
            self._in_flight = 0
            self._quiet.set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="fraudops-prediction-log", daemon=True)
            self._thread.start()

    def submit(self, batch) -> None:
        """Queue the records of one request (one queue item); drop and count them if the queue is full.

        ``batch`` is a list of JSON-ready dicts (each with ``scored_at``), or an object with
        ``__len__`` and ``line_pieces()`` (the scorer's compact item: the pieces of its JSON line,
        serialized here, in the writer thread).
        """
        try:
            self._idle.clear()
            self.queue.put_nowait(batch)
        except queue.Full:
            self._drop(len(batch))

    def _drop(self, n: int) -> None:
        self.dropped += n
        if self.metrics is not None:
            self.metrics.log_dropped.inc(n)

    def _run(self) -> None:
        while True:
            items = [self.queue.get()]
            # Let requests accumulate for a moment: one wake-up and one write per file for many
            # requests, instead of competing with every request for the interpreter.
            time.sleep(BATCH_SECONDS)
            while True:
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            stop = any(i is _STOP for i in items)
            lines: list[bytes] = []
            deadline = time.monotonic() + MAX_DEFER_SECONDS
            for item in items:
                if item is _STOP:
                    continue
                try:
                    if hasattr(item, "line_pieces"):
                        pieces = []
                        for piece in item.line_pieces():  # each piece waits for a quiet moment
                            self._quiet.wait(max(0.0, deadline - time.monotonic()))
                            pieces.append(piece)
                        lines.append(b"".join(pieces))
                    else:
                        lines.extend(map(_line, item))
                except Exception:  # a record that cannot be built is dropped, never the thread
                    log.exception("cannot build prediction log records")
                    self._drop(len(item))
            if lines:
                self._write(lines)
            if self.queue.empty():
                self._idle.set()
            if stop:
                return

    def _write(self, lines: list[bytes]) -> None:
        by_day: dict[bytes, list[bytes]] = {}
        for line in lines:  # each line starts with {"scored_at":"YYYY-MM-DD...
            by_day.setdefault(line[14:24], []).append(line)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for day, day_lines in by_day.items():
                with open(self.directory / f"{day.decode()}.jsonl", "ab") as fh:
                    fh.write(b"\n".join(day_lines) + b"\n")
            self.written += len(lines)
            if self.metrics is not None:
                self.metrics.log_written.inc(len(lines))
            self.error = None
        except OSError as err:
            self.error = f"cannot write the prediction log under {self.directory}: {err}"
            log.error(self.error)
            self._drop(len(lines))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is written (tests, shutdown)."""
        return self._idle.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self.queue.put(_STOP, timeout=timeout)
        self._thread.join(timeout)
        self._thread = None


def _line(record: dict[str, Any]) -> bytes:
    """One record as a JSON line, ``scored_at`` first; non-finite numbers become null."""
    record = {"scored_at": record["scored_at"], **record}
    try:
        return pydantic_core.to_json(record, inf_nan_mode="null", fallback=str)
    except Exception:
        return json.dumps(_sanitize(record), default=str, separators=(",", ":")).encode()


def _sanitize(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sanitize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_sanitize(v) for v in value]
    return _clean(value)


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
