"""One landing file as an Arrow table, exactly as received, or a `LandingFileError` that names
the file, what is wrong and where (the byte, the row), and the fix.

Why pyarrow: its CSV reader parses a million rows of 28 columns in about a second (pandas' takes
~8 s), in parallel, and keeps the text as Arrow strings (``pd.ArrowDtype``), which the checks and
the Parquet IO manager use without turning each value into a Python object. CSV values are all
read as text, so ``"007"`` stays ``"007"`` and an unreadable amount is there to be reported.
A file is accepted by the rules of pandas' CSV reader, the reading users know: where pyarrow's
reader is more lenient (a quote never closed), `check_text` refuses the file as pandas does.
"""

from __future__ import annotations

import codecs
import csv
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from fraud_assets.core.landing_settings import LandingSettings

SUPPORTED_SUFFIXES = (".csv", ".parquet", ".pq")
# How a landing file's text is held in pandas. Large strings (64-bit offsets) because that is the
# type Parquet files of this dtype come back as: the raw days round-trip without a conversion.
TEXT = pd.ArrowDtype(pa.large_string())
_TEXT_CHECK_BLOCK = 1 << 24  # bytes read at a time when checking a CSV file's text


class LandingFileError(ValueError):
    """A landing file cannot be read as transactions; the message names the file and the fix."""


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
            # newlines_in_values: a quoted value may span lines, as pandas' reader allows.
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


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """Text stays Arrow strings; other types convert as ``pd.read_parquet`` converts them."""
    for i, column in enumerate(table.columns):
        plain = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
        if pa.types.is_string(plain):
            plain = TEXT.pyarrow_dtype
        if plain != column.type:
            table = table.set_column(i, table.field(i).with_type(plain), column.cast(plain))
    return table.to_pandas(types_mapper={TEXT.pyarrow_dtype: TEXT}.get)
