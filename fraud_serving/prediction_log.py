"""The prediction log: every scored transaction, written for the monitoring stage to read.

Requests only put a compact item on a bounded queue (``put_nowait``); a background thread turns
items into JSON lines and writes them. Logging never slows or fails a request: when the queue is
full the item is dropped and its transactions counted (``fraudops_prediction_log_dropped`` in
``/metrics``); and the writer serializes while no request is in flight (for at most
`MAX_DEFER_SECONDS` a round), a piece at a time, because two threads of one interpreter take
turns: a writer turning a 1,000-transaction batch into JSON held up the next request by 20 ms.

Nothing is appended: an object store cannot append, and two workers appending to one file would
interleave. The writer keeps the lines of each UTC day in memory and writes them as one new file
(one object) under ``<log dir>/<YYYY-MM-DD>/`` at most every ``flush_seconds``
(``FRAUDOPS_PREDICTION_LOG_FLUSH_SECONDS``), sooner when `MAX_BUFFER_BYTES` are waiting, and on
``flush()``/``close()``. A failed write keeps the lines and retries at the next flush; past
``max_queue`` transactions waiting it drops them and counts them. The line schema and the
layout are the contract's (`fraud_assets.core.contract`): one line per model call (a batch
request, or the single-transaction requests scored together, see `coalescing`), the call's
facts then its transactions as columns. Columns, not one object per transaction, because building
a thousand objects would take the interpreter from the requests being served.

The monitoring stage reads it with `fraud_assets.core.prediction_log.read_prediction_log`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import threading
import time
from typing import Any

import pydantic_core

from fraud_assets.core.contract import LOG_CALL_FIELDS, line_day, prediction_log_part
from fraud_assets.core.prediction_log import read_prediction_log  # noqa: F401  (the reader of this log)
from fraud_assets.core.storage import Location

log = logging.getLogger("fraud_serving.prediction_log")

_STOP = object()
BATCH_SECONDS = 0.05
MAX_DEFER_SECONDS = 0.2  # under continuous load the writer waits at most this long per round
MAX_BUFFER_BYTES = 8 << 20  # written sooner than flush_seconds when this much is waiting
RETRY_SECONDS = 1.0  # after a failed write, the next try waits at least this long


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class _Flush:
    """A marker: everything queued before it is written when its event is set."""

    def __init__(self) -> None:
        self.done = threading.Event()


class PredictionLogger:
    """Bounded queue + writer thread. ``submit`` is non-blocking; ``flush`` and ``close`` write
    whatever is waiting."""

    def __init__(
        self,
        directory: str | os.PathLike | Location,
        max_queue: int = 100_000,
        metrics=None,
        flush_seconds: float = 5.0,
        shadow=None,
    ) -> None:
        self.directory = Location.of(directory)
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self.max_waiting = max_queue  # transactions kept for a retry after failed writes
        self.flush_seconds = flush_seconds
        self.metrics = metrics
        # scores each round's calls with the challenger in shadow (`fraud_serving.shadow`)
        self.shadow = shadow
        self.dropped = 0
        self.written = 0
        self.files_written = 0
        self.error: str | None = None
        self._thread: threading.Thread | None = None
        self._in_flight = 0
        self._quiet = threading.Event()  # set while no request is in flight
        self._quiet.set()
        # Lines waiting to be written: per day, (line, transactions in it); written when due.
        self._waiting: dict[str, list[tuple[bytes, int]]] = {}
        self._waiting_bytes = 0
        self._due: float | None = None

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
            self.queue.put_nowait(batch)
        except queue.Full:
            self._drop(len(batch))

    def _drop(self, n: int) -> None:
        self.dropped += n
        if self.metrics is not None:
            self.metrics.log_dropped.inc(n)

    def _run(self) -> None:
        while True:
            timeout = None if self._due is None else max(0.0, self._due - time.monotonic())
            try:
                items = [self.queue.get(timeout=timeout)]
            except queue.Empty:
                items = []  # the waiting lines are due
            if items:
                # Let requests accumulate for a moment: one wake-up for many requests, instead
                # of competing with every request for the interpreter.
                time.sleep(BATCH_SECONDS)
                while True:
                    try:
                        items.append(self.queue.get_nowait())
                    except queue.Empty:
                        break
            stop = any(item is _STOP for item in items)
            flushes = [item for item in items if isinstance(item, _Flush)]
            self._serialize([item for item in items if item is not _STOP and not isinstance(item, _Flush)])
            due = self._due is not None and time.monotonic() >= self._due
            if self._waiting and (stop or flushes or due or self._waiting_bytes >= MAX_BUFFER_BYTES):
                self._write()
            for marker in flushes:
                marker.done.set()
            if stop:
                return

    def _serialize(self, items: list) -> None:
        deadline = time.monotonic() + MAX_DEFER_SECONDS
        if self.shadow is not None and items:
            self._quiet.wait(MAX_DEFER_SECONDS)  # between requests, as the serializing below
            self.shadow.annotate(items)  # one vectorised call for the round; never raises
        for item in items:
            try:
                if hasattr(item, "line_pieces"):
                    pieces = []
                    for piece in item.line_pieces():  # each piece waits for a quiet moment
                        self._quiet.wait(max(0.0, deadline - time.monotonic()))
                        pieces.append(piece)
                    lines = [(b"".join(pieces), len(item))]
                else:
                    lines = [(_line(record), 1) for record in item]
                dated = [(line_day(line), line, n) for line, n in lines]
            except Exception:  # a record that cannot be built is dropped, never the thread
                log.exception("cannot build prediction log records")
                self._drop(len(item))
                continue
            for day, line, n in dated:
                if not self._waiting:
                    self._due = time.monotonic() + self.flush_seconds
                self._waiting.setdefault(day, []).append((line, n))
                self._waiting_bytes += len(line) + 1

    def _write(self) -> None:
        """Each day's waiting lines as one new file; what fails waits for the next try."""
        for day in sorted(self._waiting):
            lines = self._waiting[day]
            try:
                prediction_log_part(self.directory, day).write_bytes(
                    b"\n".join(line for line, _ in lines) + b"\n"
                )
            except OSError as err:
                self.error = f"cannot write the prediction log under {self.directory}: {err}"
                log.error(self.error)
                continue
            del self._waiting[day]
            self._waiting_bytes -= sum(len(line) + 1 for line, _ in lines)
            self.written += len(lines)
            self.files_written += 1
            if self.metrics is not None:
                self.metrics.log_written.inc(len(lines))
            self.error = None
        if not self._waiting:
            self._due, self._waiting_bytes = None, 0
            return
        waiting = sum(n for lines in self._waiting.values() for _, n in lines)
        if waiting > self.max_waiting:  # the store has been away too long: keep memory bounded
            log.error("dropping %d logged transactions that could not be written", waiting)
            self._drop(waiting)
            self._waiting, self._waiting_bytes, self._due = {}, 0, None
        else:
            self._due = time.monotonic() + max(self.flush_seconds, RETRY_SECONDS)

    def flush(self, timeout: float = 10.0) -> bool:
        """Write everything queued so far (tests, shutdown); False if not done within ``timeout``."""
        if self._thread is None:
            return self.queue.empty() and not self._waiting
        marker = _Flush()
        try:
            self.queue.put(marker, timeout=timeout)
        except queue.Full:
            return False
        return marker.done.wait(timeout) and not self._waiting

    def close(self, timeout: float = 10.0) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self.queue.put(_STOP, timeout=timeout)
        self._thread.join(timeout)
        self._thread = None


def _line(record: dict[str, Any]) -> bytes:
    """One record as a JSON line, ``scored_at`` first; non-finite numbers become null."""
    first = LOG_CALL_FIELDS[0]
    record = {first: record[first], **record}
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
