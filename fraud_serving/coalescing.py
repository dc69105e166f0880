"""Single-transaction requests that arrive together are scored together, in one model call.

Why: scoring one transaction is mostly fixed cost per call (NumPy and Numba calls on arrays of
length one: ~0.3 ms), so four transactions cost about what one does. Under concurrent load the
`/predict` requests that reach the event loop in the same turn are handed to one
`Scorer.score` call, exactly as if they had come as a batch (same card state, same features,
same model: that call is what `/predict/batch` runs), and each gets its own answer back.

Nothing waits on a timer: a request waits at most one turn of the event loop (microseconds) for
the others already parsed in that turn. This is the "dynamic batching" of model servers
(Triton, TF Serving, Ray Serve) without the batching window, so one client's latency is unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np

MAX_GROUP = 64  # transactions per model call; a larger backlog is scored in several calls

# (model, rows, started per row, options, requests) -> ScoreResult; raises to fail all
ScoreGroup = Callable[[Any, list[dict], np.ndarray, Any, int], Any]


class Coalescer:
    """Collects `/predict` transactions for one event-loop turn, then scores them in groups of
    the same model and options. Use only from the event loop's thread."""

    def __init__(self, score_group: ScoreGroup, max_group: int = MAX_GROUP) -> None:
        self._score_group = score_group
        self._max_group = max_group
        self._pending: list[tuple[Any, dict, float, Any, asyncio.Future]] = []

    async def score(self, model: Any, row: dict, started: float, options: Any) -> bytes:
        """The transaction's prediction as JSON bytes; raises what scoring raised."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)  # after the handlers already scheduled in this turn
        self._pending.append((model, row, started, options, future))
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        groups: dict[tuple[int, Any], list] = {}
        for item in pending:
            groups.setdefault((id(item[0]), item[3]), []).append(item)  # options: hashable
        for items in groups.values():
            for start in range(0, len(items), self._max_group):
                self._run(items[start : start + self._max_group])

    def _run(self, items: list) -> None:
        model, _, _, options, _ = items[0]
        rows = [item[1] for item in items]
        started = np.fromiter((item[2] for item in items), dtype=np.float64, count=len(items))
        try:
            result = self._score_group(model, rows, started, options, len(items))
        except Exception as exc:  # every waiting request fails the same way (a 503)
            for *_, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        for (*_, future), answer in zip(items, result.rows, strict=True):
            if not future.done():  # a client that went away cancelled its future
                future.set_result(answer)
