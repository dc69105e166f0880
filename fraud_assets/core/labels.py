"""Fraud labels as their own feed: the label record, its checks, and labels read point in time.

A label says that a transaction was fraud (1) or genuine (0), who says so (``source``: a
chargeback, an analyst, a reversal, ...) and when it became known (``reported_at``). Labels
arrive days to weeks after their transaction, by transaction id, through several feeds: the
scoring API's ``POST /labels``, label files in a landing folder, the generator; transaction files
that carry ``is_fraud`` (with ``label_known_at``) are one more source. A label may arrive before
its transaction has been ingested: it waits, and joins when the transaction arrives.

Point in time (`LabelEvents.as_of`): a transaction's label as of a time t is its latest label
reported before t. A later label supersedes an earlier one (a reversed chargeback) and the
history stays in the feed. A transaction with no label reported within the label delay of its
time counts as genuine from then on (no chargeback came), until a later label says otherwise:
the card networks report frauds, never the genuine transactions, so the feed carries reports
only and its volume follows fraud, not traffic. A label reported before its transaction's own
time (a clock that runs ahead) counts from the transaction's time: nothing is known of a
transaction before it happens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fraud_assets.core import columns as c
from fraud_assets.core.capture import LABELS, CapturedRecord, file_records, labels_line
from fraud_assets.core.coercion import TEXT, RowFailure, coerce_column
from fraud_assets.core.schemas import ID_PATTERN
from fraud_assets.core.storage import Location
from fraud_assets.core.text import arrow_text
from fraud_assets.core.timestamps import day_keys, parse_timestamps
from fraud_assets.core.validation import PARTITION_DATE, SOURCE_FILE, SOURCE_ROW, rejected_frame
from fraud_assets.core.value_rules import UNMAPPED, VALUE_RULES_CHECK, unmapped_failures

# The label record's columns (transaction_id and is_fraud are the transactions' own names).
LABEL_ID = "label_id"
REPORTED_AT = "reported_at"
SOURCE = "source"
REASON = "reason"
FEED = "feed"  # how the label arrived: api, file, generator
REQUIRED_COLUMNS: tuple[str, ...] = (c.TRANSACTION_ID, c.IS_FRAUD, REPORTED_AT)
OPTIONAL_COLUMNS: tuple[str, ...] = (LABEL_ID, SOURCE, REASON)
RECORD_COLUMNS: tuple[str, ...] = (LABEL_ID, c.TRANSACTION_ID, c.IS_FRAUD, REPORTED_AT, SOURCE, REASON, FEED)
# What `fraud_labels` stores per label: the record and its lineage.
STORED_COLUMNS: tuple[str, ...] = (*RECORD_COLUMNS, SOURCE_FILE, SOURCE_ROW, PARTITION_DATE)

# The fields' rules, shared by the API's request model and the checks of label files.
LABEL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
SOURCE_PATTERN = r"^[a-z][a-z0-9_\-]{0,31}$"
MAX_REASON = 512
API_SOURCE = "analyst"  # an API label that names no source: an analyst's decision
FILE_SOURCE = "file"  # a label file without a source column

FEED_API, FEED_FILE, FEED_GENERATOR = "api", "file", "generator"
# `label_source` of a label read point in time that no feed reported.
CARRIED_SOURCE = "transactions"  # carried by the transaction row itself (a file's is_fraud)
SILENCE_SOURCE = "no_chargeback"  # genuine: no label within the label delay
LABEL_SOURCE = "label_source"


# --- checking a frame of labels -------------------------------------------------------------------


@dataclass
class LabelCheck:
    """Labels split into valid (typed, `STORED_COLUMNS` but lineage as given) and rejected (as
    received, with `failed_checks` and `rejection_reason`); nothing is dropped."""

    valid: pd.DataFrame
    rejected: pd.DataFrame
    failures: list[RowFailure]


def _text(series: pd.Series) -> pa.ChunkedArray:
    text = arrow_text(series)
    return text if text is not None else arrow_text(series.astype("string"))  # type: ignore[return-value]


def _mask(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def _failures(mask: np.ndarray, column: str, check: str, values: pd.Series) -> list[RowFailure]:
    return [RowFailure(int(row), column, check, values.iloc[row]) for row in np.flatnonzero(mask)]


def _pattern_failures(series: pd.Series, column: str, pattern: str, nullable: bool) -> list[RowFailure]:
    text = _text(series)
    null = ~_mask(pc.is_valid(text))
    bad = ~_mask(pc.match_substring_regex(text, pattern)) & ~null
    out = _failures(bad, column, "str_matches", series)
    if not nullable:
        out += _failures(null, column, "not_null", series)
    return out


def check_labels(
    frame: pd.DataFrame, *, feed: str, default_source: str, timestamp_format: str | None = None
) -> LabelCheck:
    """Split ``frame`` (the record's columns as received: text or typed) into valid and rejected
    labels. Vectorised: Python only touches the rows that fail. ``feed`` is how the labels
    arrived (a ``feed`` column of the frame says it per row), ``default_source`` the source of a
    label that names none.

    A row is rejected when a required value is missing or unreadable (``is_fraud`` must read as
    0 or 1, ``reported_at`` as a date-time), a text does not have its format (ids, source) or
    length (reason), or a value rule had no rule for its value. Raises `ValueError` naming the
    required columns the frame lacks: then no row can be judged.
    """
    if missing := [col for col in REQUIRED_COLUMNS if col not in frame]:
        raise ValueError(
            f"required label column(s) {missing} missing; columns present: {list(frame.columns)}"
        )
    frame = frame.reset_index(drop=True)
    n = len(frame)
    failures = unmapped_failures(frame)
    failures += _pattern_failures(frame[c.TRANSACTION_ID], c.TRANSACTION_ID, ID_PATTERN, nullable=False)

    label, unreadable = coerce_column(frame[c.IS_FRAUD], "Int8")
    present = label.notna().to_numpy()
    not_binary = present & ~label.isin([0, 1]).fillna(False).to_numpy(dtype=bool)
    failures += _failures(unreadable, c.IS_FRAUD, "parses_as_Int8", frame[c.IS_FRAUD])
    failures += _failures(not_binary, c.IS_FRAUD, "isin([0, 1])", frame[c.IS_FRAUD])
    failures += _failures(~present & ~unreadable, c.IS_FRAUD, "not_null", frame[c.IS_FRAUD])

    reported = parse_timestamps(frame[REPORTED_AT], timestamp_format)
    given = frame[REPORTED_AT].notna().to_numpy()
    unparsed = reported.isna().to_numpy()
    failures += _failures(given & unparsed, REPORTED_AT, "parses_as_datetime64[ns]", frame[REPORTED_AT])
    failures += _failures(~given, REPORTED_AT, "not_null", frame[REPORTED_AT])

    if SOURCE in frame:
        failures += _pattern_failures(frame[SOURCE], SOURCE, SOURCE_PATTERN, nullable=True)
        source = pd.Series(pc.fill_null(_text(frame[SOURCE]), default_source), dtype=TEXT)
    else:
        source = pd.Series([default_source] * n, dtype=TEXT)
    if REASON in frame:
        reason_text = _text(frame[REASON])
        too_long = _mask(pc.greater(pc.utf8_length(reason_text), MAX_REASON))
        failures += _failures(too_long, REASON, f"str_length(max {MAX_REASON})", frame[REASON])
        reason = pd.Series(reason_text, dtype=TEXT)
    else:
        reason = pd.Series([None] * n, dtype=TEXT)

    if LABEL_ID in frame:
        failures += _pattern_failures(frame[LABEL_ID], LABEL_ID, LABEL_ID_PATTERN, nullable=False)
    unmapped = {(f.row, f.column) for f in failures if f.check == VALUE_RULES_CHECK}
    failures = [f for f in failures if f.check == VALUE_RULES_CHECK or (f.row, f.column) not in unmapped]
    bad = np.zeros(n, dtype=bool)
    bad[[f.row for f in failures]] = True
    keep = np.flatnonzero(~bad)
    feeds = (
        pd.Series(pc.fill_null(_text(frame[FEED]), feed), dtype=TEXT)
        if FEED in frame
        else pd.Series([feed] * n, dtype=TEXT)
    )
    valid = pd.DataFrame(
        {
            c.TRANSACTION_ID: pd.Series(_text(frame[c.TRANSACTION_ID]), dtype=TEXT).iloc[keep],
            c.IS_FRAUD: label.iloc[keep].astype("int8"),
            REPORTED_AT: reported.iloc[keep],
            SOURCE: source.iloc[keep],
            REASON: reason.iloc[keep],
            FEED: feeds.iloc[keep],
        }
    )
    if LABEL_ID in frame:
        valid.insert(0, LABEL_ID, pd.Series(_text(frame[LABEL_ID]), dtype=TEXT).iloc[keep])
    else:
        valid.insert(0, LABEL_ID, derived_label_ids(valid, prefix=feed))
    for col in (SOURCE_FILE, SOURCE_ROW, PARTITION_DATE):
        if col in frame:
            valid[col] = frame[col].iloc[keep]
    lineage = (SOURCE_FILE, SOURCE_ROW, PARTITION_DATE, UNMAPPED)
    rejected = rejected_frame(frame, failures, lineage) if failures else frame.iloc[0:0]
    return LabelCheck(valid.reset_index(drop=True), rejected, failures)


_HEX = np.frombuffer(b"0123456789abcdef", dtype="S1")


def derived_label_ids(labels: pd.DataFrame, prefix: str) -> pd.Series:
    """An id for each label that has none, from its content (transaction, label, time, source):
    the same label read twice (a file dropped again) gets the same id and is added once."""
    if labels.empty:
        return pd.Series([], dtype=TEXT, index=labels.index)
    content = pd.DataFrame(
        {
            "t": labels[c.TRANSACTION_ID].astype(object),
            "y": labels[c.IS_FRAUD].astype("int64"),
            "r": labels[REPORTED_AT].astype("int64"),
            "s": labels[SOURCE].astype(object),
        }
    )
    digest = pd.util.hash_pandas_object(content, index=False).to_numpy().astype(">u8")
    octets = digest.view(np.uint8).reshape(-1, 8)
    chars = np.empty((len(octets), 16), dtype="S1")
    chars[:, 0::2], chars[:, 1::2] = _HEX[octets >> 4], _HEX[octets & 15]
    hexes = pa.array(chars.view("S16").ravel(), type=pa.binary(16)).cast(pa.string())
    ids = pc.binary_join_element_wise(pa.scalar(f"{prefix}-"), hexes, pa.scalar(""))
    return pd.Series(pd.arrays.ArrowExtensionArray(ids), index=labels.index).astype(TEXT)


def stored_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """Labels in `fraud_labels`' column order and types, each filed under its reported day, and
    a label id repeated within them kept once (its first record: the earliest reported)."""
    out = labels.copy()
    for col in (SOURCE_FILE, REASON):
        if col not in out:
            out[col] = pd.Series([None] * len(out), dtype=TEXT, index=out.index)
    if SOURCE_ROW not in out:
        out[SOURCE_ROW] = pd.array([None] * len(out), dtype="Int64")
    out[PARTITION_DATE] = day_keys(out[REPORTED_AT]) if len(out) else np.array([], dtype=object)
    out = out.sort_values(REPORTED_AT, kind="stable").drop_duplicates(LABEL_ID, keep="first")
    return out[list(STORED_COLUMNS)].reset_index(drop=True)


def empty_labels() -> pd.DataFrame:
    """No labels, with `fraud_labels`' columns and types."""
    return pd.DataFrame(
        {
            LABEL_ID: pd.Series([], dtype=TEXT),
            c.TRANSACTION_ID: pd.Series([], dtype=TEXT),
            c.IS_FRAUD: pd.Series([], dtype="int8"),
            REPORTED_AT: pd.Series([], dtype="datetime64[ns]"),
            SOURCE: pd.Series([], dtype=TEXT),
            REASON: pd.Series([], dtype=TEXT),
            FEED: pd.Series([], dtype=TEXT),
            SOURCE_FILE: pd.Series([], dtype=TEXT),
            SOURCE_ROW: pd.Series([], dtype="Int64"),
            PARTITION_DATE: pd.Series([], dtype=object),
        }
    )


CHARGEBACK = "chargeback"


def generator_label_records(transactions: pd.DataFrame) -> list[dict[str, object]]:
    """The chargebacks of generated transactions, as label records of the feed: one per fraud,
    reported when its label became known (``label_known_at``), the fraud scenario as its reason.
    Genuine transactions need no record: no chargeback within the label delay says genuine."""
    frauds = transactions[pd.to_numeric(transactions[c.IS_FRAUD], errors="coerce").eq(1).to_numpy()]
    ids = frauds[c.TRANSACTION_ID].astype(str).to_numpy()
    reported = np.datetime_as_string(frauds[c.LABEL_KNOWN_AT].to_numpy("datetime64[us]"), unit="us")
    reasons = (
        frauds[c.FRAUD_SCENARIO].astype(str).to_numpy() if c.FRAUD_SCENARIO in frauds else [None] * len(ids)
    )
    return [
        {
            LABEL_ID: f"{FEED_GENERATOR}-{tid}",
            c.TRANSACTION_ID: tid,
            c.IS_FRAUD: 1,
            REPORTED_AT: str(at),
            SOURCE: CHARGEBACK,
            REASON: reason,
            FEED: FEED_GENERATOR,
        }
        for tid, at, reason in zip(ids, reported, reasons, strict=True)
    ]


def file_generator_labels(storage: Location, transactions: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Send generated transactions' labels into the label feed, and return the transactions
    without them (and how many labels were filed).

    The chargebacks are filed by the day they are reported, where the capture sensor files the
    labels posted to the API (`fraud_assets.core.capture.file_records`): the generator produces
    them in batches inside the pipeline, so it skips the API's buffer, not the feed. One record
    per generated day; the same days filed again make the same files (refiled, not added)."""
    if c.IS_FRAUD not in transactions:
        return transactions, 0
    records, filed = [], 0
    days = day_keys(transactions[c.TIMESTAMP]) if len(transactions) else np.array([], dtype=object)
    for day in sorted(set(days)):
        rows = generator_label_records(transactions[days == day])
        filed += len(rows)
        if rows:
            line = labels_line(rows, received_at=f"{day}T00:00:00+00:00")
            records.append(CapturedRecord(f"{FEED_GENERATOR}:{day}", line))
    file_records(storage, LABELS, records)
    return transactions.drop(columns=[c.IS_FRAUD, c.LABEL_KNOWN_AT], errors="ignore"), filed


# --- reading labels point in time ----------------------------------------------------------------

NEVER = np.iinfo(np.int64).max  # "until": not superseded
_ORIGINS = ("carried", "feed", "silence")
CARRIED, FED, SILENCE = range(3)


def _ms(values) -> np.ndarray:
    """datetime64 -> int64 milliseconds; NaT becomes NEVER (never known)."""
    stamps = np.asarray(values, dtype="datetime64[ms]")
    out = stamps.astype("int64")
    out[np.isnat(stamps)] = NEVER
    return out


@dataclass(frozen=True)
class LabelsAsOf:
    """Each transaction row's label at one time: ``is_fraud`` (NaN: unknown), when it became
    known (NaT: unknown) and who said so."""

    is_fraud: np.ndarray
    known_at: np.ndarray
    source: np.ndarray

    def labelled(self) -> np.ndarray:
        return ~np.isnan(self.is_fraud)


@dataclass(frozen=True)
class LabelEvents:
    """Every label of the rows of one transaction frame, each with the span of time it holds.

    Event ``i`` labels row ``row[i]``; it holds at the times t with ``known_ms[i] < t <=
    until_ms[i]`` (until: when the next label of the row becomes known). At any time a row has
    at most one label. Built by `join_labels`; what the merchant features, the training data and
    the monitoring read.
    """

    row: np.ndarray  # int64
    is_fraud: np.ndarray  # float64, 0 or 1
    known_ms: np.ndarray  # int64
    until_ms: np.ndarray  # int64 (NEVER: the row's latest label)
    source: np.ndarray  # int32 code into ``sources``
    sources: tuple[str, ...]
    n_rows: int

    def holding(self, at_ms: int) -> np.ndarray:
        """Which events hold at ``at_ms`` (ms since the epoch, naive)."""
        return (self.known_ms < at_ms) & (at_ms <= self.until_ms)

    def as_of(self, at: pd.Timestamp | np.datetime64) -> LabelsAsOf:
        """Each row's latest label reported before ``at``."""
        held = np.flatnonzero(self.holding(int(_ms(np.array([at], dtype="datetime64[ns]"))[0])))
        rows = self.row[held]
        is_fraud = np.full(self.n_rows, np.nan)
        is_fraud[rows] = self.is_fraud[held]
        known = np.full(self.n_rows, np.datetime64("NaT"), dtype="datetime64[ms]")
        known[rows] = self.known_ms[held].astype("datetime64[ms]")
        names = np.array([*self.sources, None], dtype=object)
        code = np.full(self.n_rows, len(self.sources), dtype=np.int64)
        code[rows] = self.source[held]
        return LabelsAsOf(is_fraud, known.astype("datetime64[ns]"), names[code])


@dataclass(frozen=True)
class LabelJoin:
    """Fed labels joined to a transaction frame: the events, and per fed label (deduplicated, in
    the order of ``labels``) its row (-1: waiting for its transaction), whether it supersedes an
    earlier label of its transaction, and whether it overturns the genuine-by-silence label."""

    events: LabelEvents
    labels: pd.DataFrame
    row: np.ndarray
    supersedes: np.ndarray
    after_silence: np.ndarray
    duplicates: int

    @property
    def waiting(self) -> np.ndarray:
        return self.row < 0


def _transaction_rows(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """The row of each wanted id among ``ids`` (the first, if repeated), -1 if absent."""
    index = pd.Index(ids)
    if index.is_unique:
        return index.get_indexer(wanted)
    first = ~index.duplicated(keep="first")
    found = index[first].get_indexer(wanted)
    return np.where(found >= 0, np.flatnonzero(first)[np.maximum(found, 0)], -1)


def join_labels(
    transactions: pd.DataFrame | Mapping[str, np.ndarray],
    fed: pd.DataFrame | None = None,
    genuine_after: pd.Timedelta | None = None,
) -> LabelJoin:
    """The label events of the rows of ``transactions`` (transaction_id, timestamp; and, when a
    source carries them, is_fraud with label_known_at), from the labels they carry, the fed labels
    ``fed`` (`fraud_labels` rows) and, with ``genuine_after``, the genuine-by-silence rule.

    A label id fed twice counts once (its earliest record). Vectorised: one hash join and one
    sort of the events.
    """
    columns = set(transactions.columns if isinstance(transactions, pd.DataFrame) else transactions.keys())
    times = _ms(transactions[c.TIMESTAMP])
    n = len(times)
    sources: list[str] = [CARRIED_SOURCE, SILENCE_SOURCE]
    parts_row, parts_y, parts_known, parts_source, parts_order = [], [], [], [], []

    if c.IS_FRAUD in columns:  # labels the rows carry
        carried = pd.to_numeric(pd.Series(np.asarray(transactions[c.IS_FRAUD])), errors="coerce").to_numpy(
            "float64"
        )
        rows = np.flatnonzero(~np.isnan(carried))
        if c.LABEL_KNOWN_AT in columns:
            known = _ms(transactions[c.LABEL_KNOWN_AT])[rows]
        elif genuine_after is not None:
            known = times[rows] + int(genuine_after / pd.Timedelta(milliseconds=1))
        else:
            known = times[rows]
        parts_row.append(rows)
        parts_y.append(carried[rows])
        parts_known.append(np.maximum(known, times[rows]))
        parts_source.append(np.zeros(len(rows), dtype=np.int32))
        parts_order.append(np.zeros(len(rows), dtype=np.int64))

    if fed is None or fed.empty:
        fed = empty_labels() if fed is None or not len(fed.columns) else fed
    order = np.argsort(_ms(fed[REPORTED_AT]), kind="stable")
    fed = fed.iloc[order]
    first = ~fed[LABEL_ID].duplicated(keep="first").to_numpy() if len(fed) else np.zeros(0, dtype=bool)
    duplicates = int((~first).sum())
    fed = fed[first].reset_index(drop=True)
    if len(fed):
        ids = np.asarray(transactions[c.TRANSACTION_ID], dtype=object)
        fed_rows = _transaction_rows(ids, np.asarray(fed[c.TRANSACTION_ID], dtype=object))
    else:
        fed_rows = np.zeros(0, dtype=np.int64)
    joined = np.flatnonzero(fed_rows >= 0)
    codes, names = pd.factorize(np.asarray(fed[SOURCE], dtype=object)) if len(fed) else (np.zeros(0), [])
    sources += [str(name) for name in names]
    rows = fed_rows[joined]
    parts_row.append(rows)
    parts_y.append(pd.to_numeric(fed[c.IS_FRAUD]).to_numpy("float64")[joined])
    parts_known.append(np.maximum(_ms(fed[REPORTED_AT])[joined], times[rows]))
    parts_source.append((np.asarray(codes, dtype=np.int32) + 2)[joined])
    parts_order.append(1 + joined.astype(np.int64))  # fed after carried, in feed order

    row = np.concatenate(parts_row).astype(np.int64)
    y = np.concatenate(parts_y)
    known = np.concatenate(parts_known)
    source = np.concatenate(parts_source)
    seq = np.concatenate(parts_order)
    by = np.lexsort((seq, known, row))  # per row, in the order the labels became known
    row, y, known, source, seq = row[by], y[by], known[by], source[by], seq[by]
    same_next = np.zeros(len(row), dtype=bool)
    same_next[:-1] = row[1:] == row[:-1]
    until = np.full(len(row), NEVER, dtype=np.int64)
    until[same_next] = known[1:][same_next[:-1]]  # the next label of the same row
    first_of_row = np.ones(len(row), dtype=bool)
    first_of_row[1:] = ~same_next[:-1]

    fed_supersedes = np.zeros(len(fed), dtype=bool)
    fed_after_silence = np.zeros(len(fed), dtype=bool)
    is_fed = seq > 0
    fed_supersedes[seq[is_fed & ~first_of_row] - 1] = True
    if genuine_after is not None:  # genuine from the delay on, until the row's first label
        delay = int(genuine_after / pd.Timedelta(milliseconds=1))
        silent_from = times + delay
        first_known = np.full(n, NEVER, dtype=np.int64)
        first_known[row[first_of_row]] = known[first_of_row]
        quiet = np.flatnonzero((first_known > silent_from) & (times != NEVER))
        late = first_of_row & (known > silent_from[row]) & is_fed
        fed_after_silence[seq[late] - 1] = True
        row = np.concatenate([row, quiet])
        y = np.concatenate([y, np.zeros(len(quiet))])
        known = np.concatenate([known, silent_from[quiet]])
        until = np.concatenate([until, first_known[quiet]])
        source = np.concatenate([source, np.ones(len(quiet), dtype=np.int32)])

    events = LabelEvents(row, y, known, until, source, tuple(sources), n)
    return LabelJoin(events, fed, fed_rows, fed_supersedes, fed_after_silence, duplicates)


def carried_label_events(transactions: pd.DataFrame | Mapping[str, np.ndarray]) -> LabelEvents | None:
    """The label events of the labels ``transactions`` carry themselves (is_fraud with
    label_known_at), or None when they carry none: what a frame of generated or labelled file
    data gives the merchant features without any feed."""
    columns = set(transactions.columns if isinstance(transactions, pd.DataFrame) else transactions.keys())
    if c.IS_FRAUD not in columns or c.LABEL_KNOWN_AT not in columns:
        return None
    return join_labels(transactions).events
