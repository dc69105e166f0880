"""Reading a user's own transaction files (CSV or Parquet) from a landing folder.

A file is mapped onto fraudops' column names by a column mapping and kept as received: CSV
values stay text (so ``"007"`` is not turned into ``7`` and an unreadable amount is still there
to be reported); timestamps are rewritten to ISO text only when a configured format reads them.
Every row remembers its file and row number.

Why pyarrow: its CSV reader parses a million rows of 28 columns in well under a second on one
core, where pandas' took ~8 s, and keeps the text as Arrow strings (``pd.ArrowDtype``), which
the Parquet IO manager writes and reads without converting each value to a Python object.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from fraud_assets.core import columns as c
from fraud_assets.core.timestamps import day_keys, parse_timestamps
from fraud_assets.core.validation import PARTITION_DATE, SOURCE_FILE, SOURCE_ROW, positional

SUPPORTED_SUFFIXES = (".csv", ".parquet", ".pq")
KNOWN_COLUMNS = frozenset(c.ALL_COLUMNS)
# How a landing file's text is held in pandas. Large strings (64-bit offsets) because that is the
# type Parquet files of this dtype come back as: the raw days round-trip without a conversion.
TEXT = pd.ArrowDtype(pa.large_string())
_TEXT_CHECK_BLOCK = 1 << 24  # bytes read at a time when checking a CSV file's text


class LandingFileError(ValueError):
    """A landing file cannot be read as transactions; the message names the file and the fix."""


@dataclass(frozen=True)
class LandingSettings:
    """How to read a user's files.

    ``column_mapping`` maps our column name to the name in the file, e.g.
    ``{"transaction_id": "txn_ref", "timestamp": "created", "is_fraud": "chargeback"}``;
    columns already named like ours need no entry.
    """

    column_mapping: Mapping[str, str] = field(default_factory=dict)
    timestamp_format: str | None = None
    label_delay_days: float = 7.0
    encoding: str = "utf-8"
    csv_separator: str = ","

    def __post_init__(self) -> None:
        unknown = sorted(set(self.column_mapping) - KNOWN_COLUMNS)
        if unknown:
            raise ValueError(
                f"column_mapping has unknown target column(s) {unknown}; "
                f"map onto these names: {sorted(KNOWN_COLUMNS)}"
            )
        targets = list(self.column_mapping.values())
        twice = sorted({name for name in targets if targets.count(name) > 1})
        if twice:
            raise ValueError(f"column_mapping uses file column(s) {twice} for several targets")
        if self.label_delay_days < 0:
            raise ValueError(f"label_delay_days must be >= 0, not {self.label_delay_days}")
        if len(self.csv_separator) != 1:
            raise ValueError(f"csv_separator must be one character, not {self.csv_separator!r}")
        try:
            codecs.lookup(self.encoding)
        except LookupError as err:
            raise ValueError(f"unknown text encoding {self.encoding!r} (e.g. utf-8, latin-1)") from err

    @classmethod
    def from_json(cls, mapping_json: str | None, **kwargs: object) -> LandingSettings:
        """Build settings from a JSON column mapping (as kept in an environment variable)."""
        mapping: dict[str, str] = {}
        if mapping_json and mapping_json.strip():
            try:
                mapping = json.loads(mapping_json)
            except json.JSONDecodeError as err:
                raise ValueError(f"column mapping is not valid JSON ({err}): {mapping_json!r}") from err
            if not isinstance(mapping, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
            ):
                raise ValueError('column mapping must be a JSON object of strings, e.g. {"amount": "amt"}')
        return cls(column_mapping=mapping, **kwargs)  # type: ignore[arg-type]

    def file_column(self, ours: str) -> str:
        """The name our column has in the file."""
        return self.column_mapping.get(ours, ours)


def list_landing_files(folder: str | Path) -> list[Path]:
    """Transaction files in the landing folder, in name order; hidden and temp files skipped."""
    root = Path(folder)
    if not root.exists():
        return []
    return sorted(
        p
        for p in root.iterdir()
        if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES and not p.name.startswith((".", "_"))
    )


def file_signature(path: Path) -> str:
    """Changes whenever the file is replaced or rewritten."""
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


# --- reading a file into Arrow ----------------------------------------------------------------


def _check_file(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise LandingFileError(f"{path}: unsupported file type {suffix!r}; use .csv or .parquet")
    if path.stat().st_size == 0:
        raise LandingFileError(f"{path}: the file is empty (0 bytes)")
    return suffix


def file_columns(path: Path, settings: LandingSettings) -> list[str]:
    """The file's column names, read from the CSV header or the Parquet schema only."""
    if _check_file(path) == ".csv":
        return _csv_header(path, settings)
    try:
        return list(pq.read_schema(path).names)
    except Exception as err:  # pyarrow raises several types for corrupt files
        raise LandingFileError(f"{path}: not a readable Parquet file: {err}") from err


def _csv_header(path: Path, settings: LandingSettings) -> list[str]:
    """Header names as pandas would give them: empty ones ``Unnamed: i``, repeats ``name.1``."""
    encoding = "utf-8-sig" if codecs.lookup(settings.encoding).name == "utf-8" else settings.encoding
    try:
        with path.open(encoding=encoding, newline="") as handle:
            header = next(csv.reader(handle, delimiter=settings.csv_separator), None)
    except UnicodeDecodeError:
        check_text(path, settings)  # raises, naming the byte
        raise
    if not header:
        raise LandingFileError(f"{path}: the file has no header and no rows")
    names: list[str] = []
    for i, name in enumerate(header):
        name = name or f"Unnamed: {i}"
        base, n = name, 0
        while name in names:
            n += 1
            name = f"{base}.{n}"
        names.append(name)
    return names


def check_text(path: Path, settings: LandingSettings) -> None:
    """Raise `LandingFileError` when the file is not text in its encoding (naming the first bad
    byte) or ends inside a quoted value (pyarrow would read the rest of the file as that value).

    One pass over the bytes. Pure-ASCII blocks (most of a typical file) are valid in any
    ASCII-compatible encoding and are not decoded: ~0.1 s for 300 MB, so the sensor checks the
    whole file. Quotes are counted: an even count means every quote is closed, unless a stray
    quote sits inside an unquoted value (``5'10" tall``); an odd count is settled by pandas.
    """
    decoder = codecs.getincrementaldecoder(settings.encoding)()
    ascii_compatible = 'azAZ09,;"\n'.encode(settings.encoding) == b'azAZ09,;"\n'
    offset, lines, quotes = 0, 0, 0
    with path.open("rb") as handle:
        while block := handle.read(_TEXT_CHECK_BLOCK):
            if not (ascii_compatible and block.isascii() and not decoder.getstate()[0]):
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as err:
                    # err.start counts from the bytes the decoder held back, then this block
                    start = max(err.start - (len(err.object) - len(block)), 0)
                    line = lines + block[:start].count(b"\n") + 1
                    raise LandingFileError(
                        f"{path}: not valid {settings.encoding} text (byte {block[start]:#04x} at "
                        f"offset {offset + start}) on line {line}; "
                        "re-encode the file as UTF-8 or set the landing zone's encoding "
                        "(e.g. FRAUDOPS_LANDING_ENCODING=latin-1)"
                    ) from None
            offset += len(block)
            lines += block.count(b"\n")
            quotes += block.count(b'"')
    if ascii_compatible and quotes % 2 == 0:
        return
    try:  # pandas' reader refuses a file that ends inside a quoted value
        pd.read_csv(path, dtype=str, usecols=[0], sep=settings.csv_separator, encoding=settings.encoding)
    except pd.errors.ParserError as err:
        if "EOF inside string" in str(err):
            raise LandingFileError(
                f"{path}: not a readable CSV file: a quoted value is never closed ({err}); "
                'close it with a " or remove the stray quote'
            ) from None


def read_table(path: str | Path, settings: LandingSettings, columns: list[str] | None = None) -> pa.Table:
    """The file as an Arrow table: CSV columns as text, Parquet columns as typed in the file.

    ``columns`` (file column names) reads only those; the sensor reads just the timestamps.
    """
    path = Path(path)
    if _check_file(path) == ".csv":
        table = _read_csv(path, settings, columns)
    else:
        try:
            table = pq.read_table(path, columns=columns)
        except Exception as err:  # pyarrow raises several types for corrupt files
            raise LandingFileError(f"{path}: not a readable Parquet file: {err}") from err
    if table.num_rows == 0:
        raise LandingFileError(f"{path}: the file has a header but no rows")
    return table


def _read_csv(path: Path, settings: LandingSettings, columns: list[str] | None) -> pa.Table:
    names = _csv_header(path, settings)

    def read(use_threads: bool) -> pa.Table:
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=1, encoding=settings.encoding, use_threads=use_threads
            ),
            # newlines_in_values: a quoted value may span lines, as pandas' reader allowed.
            parse_options=pacsv.ParseOptions(delimiter=settings.csv_separator, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, TEXT.pyarrow_dtype),  # text as received, typed later
                include_columns=columns,
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )

    try:
        table = read(use_threads=True)
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        if isinstance(err, UnicodeDecodeError) or "UTF8" in str(err):
            check_text(path, settings)  # raises, naming the byte
            raise LandingFileError(f"{path}: not valid {settings.encoding} text ({err})") from None
        try:  # read again on one thread: only then does pyarrow name the row
            read(use_threads=False)
        except pa.ArrowInvalid as located:
            err = located
        fix = (
            f"; every line needs the header's {len(names)} fields, separated by {settings.csv_separator!r}"
            if "columns, got" in str(err)
            else ""
        )
        raise LandingFileError(f"{path}: not a readable CSV file ({err}){fix}") from None
    check_text(path, settings)
    return table


def map_columns(names: list[str], settings: LandingSettings, source: str) -> dict[str, str]:
    """How to rename a file's columns onto ours; unmapped columns keep their own names."""
    missing = sorted(
        f"{ours} <- {theirs!r}" for ours, theirs in settings.column_mapping.items() if theirs not in names
    )
    if missing:
        raise LandingFileError(
            f"{source}: column_mapping names column(s) the file does not have ({missing}); "
            f"the file's columns are {names}"
        )
    renames = {theirs: ours for ours, theirs in settings.column_mapping.items()}
    clash = sorted(ours for theirs, ours in renames.items() if ours in names and ours != theirs)
    if clash:
        raise LandingFileError(
            f"{source}: the file already has column(s) {clash} and column_mapping maps another "
            "column onto them; remove one of the two"
        )
    if settings.file_column(c.TIMESTAMP) not in names:
        raise LandingFileError(
            f"{source}: required column 'timestamp' is missing (columns: {names}); "
            'map it with column_mapping, e.g. {"timestamp": "<your timestamp column>"}'
        )
    return renames


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Text stays Arrow strings; other types convert as ``pd.read_parquet`` converts them."""
    for i, column in enumerate(table.columns):
        plain = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if pa.types.is_string(plain):
            plain = TEXT.pyarrow_dtype
        if plain != column.type:
            table = table.set_column(i, table.field(i).with_type(plain), column.cast(plain))
    return table.to_pandas(types_mapper={TEXT.pyarrow_dtype: TEXT}.get)


# --- landing files as raw transactions ---------------------------------------------------------


def _timestamps(frame: pd.DataFrame, path: Path, settings: LandingSettings) -> pd.Series:
    parsed = parse_timestamps(frame[c.TIMESTAMP], settings.timestamp_format)
    if parsed.isna().all():
        examples = frame[c.TIMESTAMP].head(3).tolist()
        raise LandingFileError(
            f"{path}: no value of column 'timestamp' could be read as a date-time "
            f"(examples: {examples}); set timestamp_format (FRAUDOPS_TIMESTAMP_FORMAT)"
        )
    return parsed


def _partition_days(parsed: pd.Series) -> np.ndarray:
    """Each row's day; rows whose timestamp is unreadable are filed under the file's first day."""
    return day_keys(parsed.fillna(parsed.min()))


def read_landing_file(path: str | Path, settings: LandingSettings) -> pd.DataFrame:
    """One landing file as raw transactions: mapped, lineage added, each row's partition day.

    Rows whose timestamp cannot be read are kept and filed under the file's first day, where
    validation rejects them with the value that failed.
    """
    path = Path(path)
    names = file_columns(path, settings)
    renames = map_columns(names, settings, str(path))
    frame = _to_pandas(read_table(path, settings)).rename(columns=renames)
    parsed = _timestamps(frame, path, settings)
    if settings.timestamp_format and not pd.api.types.is_datetime64_any_dtype(frame[c.TIMESTAMP].dtype):
        # Rewrite what the configured format read as ISO text, which validation reads without
        # the format; keep the rest as received, to be rejected with its own text.
        iso = pa.array(parsed, type=pa.timestamp("ns")).cast(TEXT.pyarrow_dtype)
        received = pa.array(frame[c.TIMESTAMP], type=TEXT.pyarrow_dtype, from_pandas=True)
        frame[c.TIMESTAMP] = pd.Series(pc.coalesce(iso, received), dtype=TEXT, index=frame.index)
    if c.IS_FRAUD in frame and c.LABEL_KNOWN_AT not in frame:
        frame[c.LABEL_KNOWN_AT] = parsed + pd.Timedelta(days=settings.label_delay_days)
    frame[PARTITION_DATE] = _partition_days(parsed)
    frame[SOURCE_FILE] = path.name
    frame[SOURCE_ROW] = np.arange(1, len(frame) + 1)
    return frame


def read_landing_days(
    files: Iterable[Path], settings: LandingSettings, days: Iterable[str]
) -> tuple[pd.DataFrame, list[str]]:
    """All rows of the landing files that belong to the given days, and the files they came from.

    Each file is read once, whatever the number of days.
    """
    wanted = set(days)
    parts, used = [], []
    for path in files:
        frame = read_landing_file(path, settings)
        keep = frame[PARTITION_DATE].isin(wanted).to_numpy()
        if keep.any():
            parts.append(frame if keep.all() else frame[keep])
            used.append(path.name)
    if not parts:
        return pd.DataFrame(columns=[*c.REQUIRED_COLUMNS, PARTITION_DATE]), used
    if len(parts) == 1:
        return positional(parts[0]), used
    return pd.concat(parts, ignore_index=True), used


def covered_days(path: str | Path, settings: LandingSettings) -> list[dt.date]:
    """The days a landing file has transactions on, from its timestamp column alone.

    This is what the sensor evaluates for each new file, so it parses one column, not the file:
    pyarrow still checks that every line has the header's number of fields, and `check_text`
    that the whole file is text; a value that does not parse is for validation to reject.
    """
    path = Path(path)
    names = file_columns(path, settings)
    map_columns(names, settings, str(path))
    column = settings.file_column(c.TIMESTAMP)
    frame = _to_pandas(read_table(path, settings, columns=[column])).rename(columns={column: c.TIMESTAMP})
    days = np.unique(_partition_days(_timestamps(frame, path, settings)))
    return [dt.date.fromisoformat(day) for day in days]
