"""The API's side of the capture feed (`fraud_assets.core.capture`): what it accepts becomes data.

Every model call's transactions (a batch request, or the single requests scored together, see
`coalescing`: one record, one ``write(2)`` or one ``XADD`` for all of them) are appended to the
feed after scoring and before the answers are sent; ``POST /labels`` appends its labels the same
way. When the feed cannot take a record the request fails with 503 (`CaptureUnavailable`):
an answer is only sent for what was captured, so the promise "nothing answered is lost" holds.

No pandas and one serialization per call: the rows as the API validated them, their ids as
answered (the client's, or the ones the scorer generated) and the time they were scored (the
prediction log's ``scored_at``, so both can be joined).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter

from fraud_assets.core.capture import (
    LABELS,
    TRANSACTIONS,
    CaptureError,
    CaptureFeed,
    labels_line,
    open_capture,
    transactions_line,
)
from fraud_serving.online_state import DependencyUnavailable


class CaptureUnavailable(DependencyUnavailable):
    """The capture feed refused a record: the request is answered 503, naming the feed."""


class TrafficCapture:
    """Appends records to the feed and counts them (``/metrics``, ``/health``)."""

    def __init__(self, feed: CaptureFeed, registry=None) -> None:
        self.feed = feed
        self.records = 0
        self.rows = 0
        self.failures = 0
        self.error: str | None = None
        self.last_error_at: float | None = None
        self._rows = self._failures = None
        if registry is not None:
            self._rows = Counter(
                "fraudops_capture_rows", "Rows appended to the capture feed", ["stream"], registry=registry
            )
            self._failures = Counter(
                "fraudops_capture_failures",
                "Records the capture feed refused (their requests were answered 503)",
                ["stream"],
                registry=registry,
            )

    @classmethod
    def open(cls, where: str, *, fsync: bool = False, registry=None) -> TrafficCapture | None:
        """The configured feed (``FRAUDOPS_CAPTURE``), or None when it is ``off``."""
        feed = open_capture(where, fsync=fsync)
        return None if feed is None else cls(feed, registry)

    def append(self, stream: str, lines: Sequence[bytes], rows: int | None = None) -> None:
        """Append records (``rows``: how many rows they hold, for the counts; default one a
        record); `CaptureUnavailable` (503) when the feed refuses them."""
        rows = len(lines) if rows is None else rows
        try:
            self.feed.append(stream, lines)
        except CaptureError as err:
            self.failures += len(lines)
            self.error, self.last_error_at = str(err), time.time()
            if self._failures is not None:
                self._failures.labels(stream=stream).inc(len(lines))
            raise CaptureUnavailable(str(err)) from err
        self.records += len(lines)
        self.rows += rows
        self.error = None
        if self._rows is not None:
            self._rows.labels(stream=stream).inc(rows)

    def transactions(self, scored_at: str, ids: Sequence[str], rows: Sequence[dict]) -> None:
        """One model call's transactions, as validated, with their ids as answered."""
        self.append(TRANSACTIONS, [transactions_line(scored_at, ids, rows)], len(rows))

    def labels(self, rows: Sequence[dict]) -> None:
        """One ``POST /labels`` call's accepted labels (plain JSON values, datetimes allowed)."""
        self.append(LABELS, [labels_line(rows)], len(rows))

    def health(self) -> dict[str, Any]:
        return {
            "feed": self.feed.where,
            "records": self.records,
            "rows": self.rows,
            "failures": self.failures,
            "error": self.error,
        }

    def close(self) -> None:
        self.feed.close()
