"""The capture feed: what the scoring API accepted, kept durably until the pipeline files it.

One mechanism, two streams: `TRANSACTIONS` (every transaction the API scored) and `LABELS`
(what ``POST /labels`` accepted). The API appends a record **before it answers**, so nothing that
was answered is lost when the API process dies:

- a local folder (the default, ``<state dir>/capture``): append-only segment files, one per API
  worker process and stream, written with one ``write(2)`` per record group. When ``append``
  returns the bytes are the kernel's: a killed process loses nothing, a machine or power failure
  may lose what the kernel had not yet written to disk (seconds), unless ``fsync`` is on (then
  each append waits for the disk: milliseconds on most disks);
- a ``redis://`` URL: a Redis Stream per stream (``XADD``), shared by every worker and replica.
  Redis keeps what it was given as its persistence is configured (AOF ``everysec``: at most a
  second of writes on a Redis crash; ``always``: none).

Appending needs a local file or a stream: an object store (``s3://...``) cannot append, and is
refused with a message naming the setting.

The reader (the pipeline's sensor) takes records after a cursor, at least once; the sensor files
them by day into the pipeline's storage (`file_records`), where `read_filed` gives each day's
rows back, deduplicated by id (a retried request, a replayed stream or a record read twice adds
nothing twice).

Record format (one JSON object per line, ``received_at`` first):
``{"received_at": "<UTC ISO>", "ids": [...], "rows": [...]}`` for transactions (one record per
model call: ``rows[i]`` the transaction as the API validated it, ``ids[i]`` its id as answered),
``{"received_at": "<UTC ISO>", "rows": [...]}`` for labels.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pydantic_core

from fraud_assets.core.storage import Location, is_url

TRANSACTIONS = "transactions"
LABELS = "labels"
STREAMS = (TRANSACTIONS, LABELS)
ID_FIELDS = {TRANSACTIONS: "transaction_id", LABELS: "label_id"}  # what makes a row the same row
OFF = "off"
RECEIVED_AT = "received_at"
FILED_FOLDERS = {TRANSACTIONS: "api_transactions", LABELS: "api_labels"}  # under the storage root

SEGMENT_BYTES = 64 << 20  # a worker's segment is sealed and a new one started past this size
READ_BYTES = 256 << 20  # a reader takes at most this much of the feed per read
REDIS_PREFIX = "fraudops:capture:"
_HEAD = b'{"' + RECEIVED_AT.encode() + b'":"'


class CaptureError(OSError):
    """The feed cannot take (or give) records; the message names the feed and the cause."""


# --- records --------------------------------------------------------------------------------------


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stamp(at: dt.datetime | str | None) -> str:
    if isinstance(at, str):
        return at
    return (at or now_utc()).isoformat(timespec="microseconds")


def transactions_line(received_at: dt.datetime | str, ids: Sequence[str], rows: Sequence[dict]) -> bytes:
    """One model call's record: the rows as validated (plain values, datetimes allowed) and their
    ids as answered."""
    return pydantic_core.to_json(
        {RECEIVED_AT: _stamp(received_at), "ids": ids, "rows": rows}, inf_nan_mode="null", fallback=str
    )


def labels_line(rows: Sequence[dict], received_at: dt.datetime | str | None = None) -> bytes:
    """One ``POST /labels`` record: the accepted rows (plain values, datetimes allowed)."""
    return pydantic_core.to_json(
        {RECEIVED_AT: _stamp(received_at), "rows": rows}, inf_nan_mode="null", fallback=str
    )


def received_at_of(line: bytes) -> str | None:
    """The record's ``received_at``, read from its first bytes (None if the line is not a record)."""
    if not line.startswith(_HEAD):
        return None
    end = line.find(b'"', len(_HEAD))
    return line[len(_HEAD) : end].decode() if end > 0 else None


def decode(stream: str, line: bytes) -> tuple[str, list[dict]]:
    """A record's ``received_at`` and its rows, each with ``received_at`` (and, for transactions,
    ``transaction_id`` as answered). Raises ValueError for a line that is not a record."""
    record = pydantic_core.from_json(line, allow_inf_nan=True)
    if not isinstance(record, dict) or not isinstance(record.get("rows"), list):
        raise ValueError("not a capture record (no rows)")
    received = str(record.get(RECEIVED_AT) or "")
    rows = [dict(row) for row in record["rows"] if isinstance(row, dict)]
    if len(rows) != len(record["rows"]):
        raise ValueError("a row is not a JSON object")
    if stream == TRANSACTIONS:
        ids = record.get("ids")
        if not isinstance(ids, list) or len(ids) != len(rows):
            raise ValueError("ids and rows differ in length")
        for row, tid in zip(rows, ids, strict=True):
            row["transaction_id"] = tid
    for row in rows:
        row[RECEIVED_AT] = received
    return received, rows


def transaction_day(row: dict) -> str:
    """The day a captured transaction belongs to: its timestamp's (the card's local wall-clock
    date, an offset ignored), else the UTC day it was received (it is then rejected by validation
    for its missing timestamp, under that day)."""
    return _day(row.get("timestamp")) or _day(row.get(RECEIVED_AT)) or "unknown"


def label_day(row: dict) -> str:
    """The day a captured label is filed under: the day it was reported, else the day received."""
    return _day(row.get("reported_at")) or _day(row.get(RECEIVED_AT)) or "unknown"


DAY_OF = {TRANSACTIONS: transaction_day, LABELS: label_day}


def _day(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return dt.date.fromisoformat(value[:10]).isoformat()
    except ValueError:
        return None


# --- the feed -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CapturedRecord:
    position: str  # where the record is in the feed (a segment and offset, or a stream entry id)
    line: bytes


@dataclass(frozen=True)
class CaptureBatch:
    records: list[CapturedRecord]
    cursor: str | None  # after the last record returned (unchanged when none)
    more: bool  # records remain after this batch


@dataclass(frozen=True)
class Lag:
    records: int  # records after the cursor
    oldest_received_at: str | None  # of the oldest of them

    def oldest_age_seconds(self, now: dt.datetime | None = None) -> float | None:
        if not self.oldest_received_at:
            return None
        at = dt.datetime.fromisoformat(self.oldest_received_at)
        return max(0.0, ((now or now_utc()) - at).total_seconds())


class CaptureFeed(Protocol):
    where: str

    def append(self, stream: str, lines: Sequence[bytes]) -> None: ...
    def read(self, stream: str, cursor: str | None, limit: int) -> CaptureBatch: ...
    def lag(self, stream: str, cursor: str | None) -> Lag: ...
    def release(self, stream: str, cursor: str | None) -> None: ...
    def close(self) -> None: ...


def capture_kind(where: str) -> str:
    """``off``, ``redis`` or ``local``; ValueError for a location that cannot be appended to."""
    if where.strip().lower() == OFF:
        return OFF
    if where.startswith(("redis://", "rediss://")):
        return "redis"
    if is_url(where):
        raise ValueError(
            f"{where!r} cannot hold the capture feed: it appends to files, which an object store "
            "cannot do; give a local folder (each API process appends to its own files there), a "
            "redis:// URL (a Redis Stream shared by every worker and replica) or off"
        )
    return "local"


def open_capture(where: str, *, fsync: bool = False) -> CaptureFeed | None:
    """The feed configured by ``FRAUDOPS_CAPTURE``: a local folder, a ``redis://`` URL, or
    ``off`` (None). `CaptureError` for an object store's URL."""
    try:
        kind = capture_kind(where)
    except ValueError as err:
        raise CaptureError(f"FRAUDOPS_CAPTURE: {err}") from None
    if kind == OFF:
        return None
    if kind == "redis":
        return RedisFeed(where)
    return LocalFeed(where, fsync=fsync)


def _check_stream(stream: str) -> None:
    if stream not in STREAMS:
        raise ValueError(f"unknown capture stream {stream!r}; streams: {', '.join(STREAMS)}")


def _joined(lines: Sequence[bytes]) -> bytes:
    for line in lines:
        if b"\n" in line:
            raise ValueError("a capture record must be one line (JSON without raw newlines)")
    return b"".join(line + b"\n" for line in lines)


# --- local segment files -------------------------------------------------------------------------

OPEN_SUFFIX = ".jsonl"
SEALED_SUFFIX = ".sealed.jsonl"


@dataclass
class _Segment:
    path: Path
    fd: int
    size: int
    pid: int


@dataclass
class LocalFeed:
    """Append-only segment files under ``<folder>/<stream>/``: ``<UTC time>-<host>-<pid>-<random>``
    followed by ``.jsonl`` while a worker appends to it, ``.sealed.jsonl`` once it is full or its
    worker stopped. Each worker process writes its own segments only (no lock between processes)."""

    where: str
    fsync: bool = False
    _segments: dict[str, _Segment] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.folder = Path(os.path.abspath(self.where))
        self.where = str(self.folder)  # what /health and the sensor name: the same folder for every process

    def stream_folder(self, stream: str) -> Path:
        _check_stream(stream)
        return self.folder / stream

    # -- writing

    def append(self, stream: str, lines: Sequence[bytes]) -> None:
        data = _joined(lines)
        if not data:
            return
        with self._lock:
            segment = self._segment(stream)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(segment.fd, view)
                    view = view[written:]
                if self.fsync:
                    os.fdatasync(segment.fd)
            except OSError as err:
                # A part written before the failure is cut off again, so the next record starts on
                # a line of its own; if even that fails, the next append starts a new segment.
                try:
                    os.ftruncate(segment.fd, segment.size)
                except OSError:
                    self._close(stream)
                raise CaptureError(f"cannot append to the capture feed {segment.path}: {err}") from err
            segment.size += len(data)
            if segment.size >= SEGMENT_BYTES:
                self._seal(stream)

    def _segment(self, stream: str) -> _Segment:
        segment = self._segments.get(stream)
        if segment is not None and segment.pid == os.getpid():
            return segment
        if segment is not None:  # inherited through a fork: that file is the parent's
            self._segments.pop(stream)
        folder = self.stream_folder(stream)
        moment = now_utc().strftime("%Y%m%dT%H%M%S%f")
        host = socket.gethostname().replace("-", "_").replace(".", "_") or "host"
        path = folder / f"{moment}-{host}-{os.getpid()}-{os.urandom(4).hex()}{OPEN_SUFFIX}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as err:
            raise CaptureError(f"cannot open a capture segment in {folder}: {err}") from err
        segment = _Segment(path, fd, 0, os.getpid())
        self._segments[stream] = segment
        return segment

    def _close(self, stream: str) -> _Segment | None:
        segment = self._segments.pop(stream, None)
        if segment is not None and segment.pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(segment.fd)
        return segment

    def _seal(self, stream: str) -> None:
        segment = self._close(stream)
        if segment is not None and segment.pid == os.getpid():
            with contextlib.suppress(OSError):
                segment.path.rename(_sealed_name(segment.path))

    def close(self) -> None:
        """Seal this process's segments (a worker that stops cleanly)."""
        with self._lock:
            for stream in list(self._segments):
                self._seal(stream)

    # -- reading

    def _listing(self, stream: str) -> list[tuple[str, Path]]:
        """(segment id, path) of every segment, oldest first (ids start with the UTC time)."""
        folder = self.stream_folder(stream)
        if not folder.is_dir():
            return []
        found = [
            (name.split(".", 1)[0], folder / name)
            for name in os.listdir(folder)
            if name.endswith(OPEN_SUFFIX) and not name.startswith(".")
        ]
        return sorted(found)

    def read(self, stream: str, cursor: str | None, limit: int) -> CaptureBatch:
        offsets = _offsets(cursor)
        records: list[CapturedRecord] = []
        budget, more = READ_BYTES, False
        for seg_id, path in self._listing(stream):
            start = offsets.get(seg_id, 0)
            try:
                size = path.stat().st_size
            except FileNotFoundError:  # sealed (renamed) since the listing: read it next time
                more = True
                continue
            if size <= start:
                continue
            if len(records) >= limit or budget <= 0:
                more = True  # unread bytes in a segment not reached
                break
            with open(path, "rb") as handle:
                handle.seek(start)
                data = handle.read(min(size - start, budget))
            end = data.rfind(b"\n") + 1  # only whole lines: a line being written is not read
            at = 0
            while at < end and len(records) < limit:
                stop = data.index(b"\n", at)
                records.append(CapturedRecord(f"{seg_id}:{start + at}", data[at:stop]))
                at = stop + 1
            offsets[seg_id] = start + at
            budget -= at
            more = more or at < end or start + len(data) < size  # left behind by the limits
        existing = {seg_id for seg_id, _ in self._listing(stream)}
        kept = {seg_id: off for seg_id, off in offsets.items() if seg_id in existing}
        return CaptureBatch(records, json.dumps(kept, sort_keys=True) if kept else cursor, more)

    def lag(self, stream: str, cursor: str | None) -> Lag:
        offsets = _offsets(cursor)
        count, oldest = 0, None
        for seg_id, path in self._listing(stream):
            start = offsets.get(seg_id, 0)
            try:
                with open(path, "rb") as handle:
                    handle.seek(start)
                    first = True
                    while chunk := handle.read(16 << 20):
                        if first:
                            at = received_at_of(chunk[: chunk.find(b"\n") + 1 or None])
                            if at and (oldest is None or at < oldest):
                                oldest = at
                            first = False
                        count += chunk.count(b"\n")
            except FileNotFoundError:
                continue
        return Lag(count, oldest)

    def release(self, stream: str, cursor: str | None) -> None:
        """Delete sealed segments read to their end (their records are filed)."""
        offsets = _offsets(cursor)
        for seg_id, path in self._listing(stream):
            if not path.name.endswith(SEALED_SUFFIX):
                continue
            with contextlib.suppress(FileNotFoundError):
                if offsets.get(seg_id, -1) >= path.stat().st_size:
                    path.unlink()


def _sealed_name(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(OPEN_SUFFIX) + SEALED_SUFFIX)


def _offsets(cursor: str | None) -> dict[str, int]:
    if not cursor:
        return {}
    try:
        value = json.loads(cursor)
    except json.JSONDecodeError as err:
        raise CaptureError(f"not a cursor of a local capture feed: {cursor[:80]!r}") from err
    if not isinstance(value, dict):
        raise CaptureError(f"not a cursor of a local capture feed: {cursor[:80]!r}")
    return {str(k): int(v) for k, v in value.items()}


# --- Redis Streams --------------------------------------------------------------------------------


class RedisFeed:
    """A Redis Stream per stream (``fraudops:capture:<stream>``), one entry per record (field
    ``d``); the cursor is the last entry id read."""

    def __init__(self, url: str) -> None:
        import redis

        self.where = url
        self.redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self._errors = (redis.ConnectionError, redis.TimeoutError, redis.ResponseError)

    @staticmethod
    def key(stream: str) -> str:
        _check_stream(stream)
        return REDIS_PREFIX + stream

    @contextlib.contextmanager
    def _talking(self, what: str):
        try:
            yield
        except self._errors as err:
            raise CaptureError(f"capture feed {self.where}: cannot {what}: {err}") from err

    def append(self, stream: str, lines: Sequence[bytes]) -> None:
        _joined(lines)  # the same one-line rule as the files
        key = self.key(stream)
        with self._talking("append"):
            if len(lines) == 1:
                self.redis.xadd(key, {"d": lines[0]})
                return
            pipe = self.redis.pipeline(transaction=False)
            for line in lines:
                pipe.xadd(key, {"d": line})
            pipe.execute()

    def read(self, stream: str, cursor: str | None, limit: int) -> CaptureBatch:
        with self._talking("read"):
            entries = self.redis.xrange(
                self.key(stream), f"({cursor}" if cursor else "-", "+", count=limit + 1
            )
        more = len(entries) > limit
        entries = entries[:limit]
        records = [CapturedRecord(entry_id.decode(), fields[b"d"]) for entry_id, fields in entries]
        return CaptureBatch(records, records[-1].position if records else cursor, more)

    def lag(self, stream: str, cursor: str | None) -> Lag:
        key = self.key(stream)
        with self._talking("measure the lag of"):
            first = self.redis.xrange(key, f"({cursor}" if cursor else "-", "+", count=1)
            if not first:
                return Lag(0, None)
            total = int(self.redis.xlen(key))
            before = len(self.redis.xrange(key, "-", cursor, count=10_000)) if cursor else 0
        return Lag(max(0, total - before), received_at_of(first[0][1][b"d"]))

    def release(self, stream: str, cursor: str | None) -> None:
        if cursor:
            with self._talking("trim"):
                self.redis.xtrim(self.key(stream), minid=cursor, approximate=False)

    def close(self) -> None:
        self.redis.close()


# --- filing: the stream becomes daily partitions --------------------------------------------------


@dataclass
class Filing:
    """What `file_records` did: rows filed per day, and the records it could not read."""

    days: dict[str, int] = field(default_factory=dict)
    records: int = 0
    unreadable: list[str] = field(default_factory=list)  # positions (and why)


def filed_folder(storage: Location, stream: str, day: str | None = None) -> Location:
    """``<storage>/api_<stream>/`` (and ``/<day>/``): where the sensor files a stream's rows."""
    folder = storage.join(FILED_FOLDERS[stream])
    return folder.join(day) if day else folder


def file_records(storage: Location, stream: str, records: Sequence[CapturedRecord]) -> Filing:
    """File captured records under their days: one new file per day, ``<first received>-<hash of
    the positions>.jsonl`` (the same records always make the same name, so filing again rewrites
    rather than adds), each row one JSON line."""
    filing = Filing(records=len(records))
    if not records:
        return filing
    day_of = DAY_OF[stream]
    by_day: dict[str, list[bytes]] = {}
    first_received: str | None = None
    for record in records:
        try:
            received, rows = decode(stream, record.line)
        except ValueError as err:
            filing.unreadable.append(f"{record.position}: {err}")
            continue
        first_received = first_received or received
        for row in rows:
            by_day.setdefault(day_of(row), []).append(
                pydantic_core.to_json(row, inf_nan_mode="null", fallback=str)
            )
    digest = hashlib.sha256("\n".join(r.position for r in records).encode()).hexdigest()[:20]
    moment = (first_received or "").replace("-", "").replace(":", "").replace("+0000", "")[:22]
    name = f"{moment or 'unknown'}-{digest}.jsonl"
    for day, lines in sorted(by_day.items()):
        filed_folder(storage, stream, day).join(name).write_bytes(b"\n".join(lines) + b"\n")
        filing.days[day] = len(lines)
    return filing


def read_filed(storage: Location, stream: str, days: Iterable[str]) -> list[dict]:
    """The filed rows of ``days``, in capture order, each id once (the first captured wins)."""
    key = ID_FIELDS[stream]
    parts = [
        part
        for day in sorted(set(days))
        for part in filed_folder(storage, stream, day).list()
        if part.name.endswith(".jsonl") and not part.name.startswith(".")
    ]
    parts.sort(key=lambda part: (part.name, part.url))
    seen: set = set()
    rows: list[dict] = []
    for blob in Location.read_many(parts):
        for line in blob.splitlines():
            if not line.strip():
                continue
            row = pydantic_core.from_json(line, allow_inf_nan=True)
            ident = row.get(key)
            if ident is not None:
                if ident in seen:
                    continue
                seen.add(ident)
            rows.append(row)
    return rows
