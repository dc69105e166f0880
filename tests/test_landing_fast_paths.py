"""The landing path's fast paths give exactly what the general rules give, on tricky inputs.

Reading (pyarrow's CSV reader), timestamps (Arrow's ISO cast), coercion (Arrow casts, one
reading per distinct value), the RE2 format checks and the daily Parquet files each have a
general counterpart; these tests hold the two side by side.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from fraud_assets.core import coercion, landing_files
from fraud_assets.core import columns as c
from fraud_assets.core.coercion import coerce_column, coerce_column_general
from fraud_assets.core.ingest import (
    LandingFileError,
    LandingSettings,
    covered_days,
    read_landing_file,
)
from fraud_assets.core.schemas import COUNTRY_PATTERN, ID_PATTERN, IP_PATTERN, str_matches
from fraud_assets.core.timestamps import parse_timestamps, parse_timestamps_general
from fraud_assets.core.validation import FAILED_CHECKS, REJECTION_REASON, lost_rows, split_transactions
from fraud_assets.defs.io_managers import concat_days, split_by_day

TEXT = pd.ArrowDtype(pa.large_string())  # as landing files are read
ISO = pd.date_range("2026-03-01", periods=300, freq="37min").strftime("%Y-%m-%dT%H:%M:%S").tolist()


def as_text(values: list) -> pd.Series:
    return pd.Series(pd.array(values, dtype=TEXT))


def same(a: pd.Series, b: pd.Series) -> bool:
    a, b = a.reset_index(drop=True), b.reset_index(drop=True)
    return bool(((a == b).fillna(False) | (a.isna() & b.isna())).all())


TRICKY_TIMES = [
    "2026-03-02T10:00:00",
    "2026-03-02 10:00:00.5",
    "2026-03-02T10:00:00.123456789",
    "2026-03-02",
    "2026-03-02T10",
    "2026-03-02T10:00:00Z",
    "2026-03-02T10:00:00+02:00",
    "2026-03-02T11:00:00-05:00",
    "2026-03-02T10:00:00+0200",
    "2026-03-02T10+02:00",
    "2026-03-02Z",
    "20260302T100000",
    "2026-3-2 10:00:00",
    "2026-03-02T24:00:00",
    "2026-02-30 10:00:00",
    "2026-03-02T10:00:60",
    " 2026-03-02T10:00:00",
    "2026-03-02t10:00:00",
    "2026-03-02T10:00:00,5",
    "2026-03-02T10:00:00.1234567891",
    "1600-01-01",
    "2300-01-01",
    "03/02/2026 10:00",
    "2 March 2026 10:00",
    "Mon, 02 Mar 2026 10:00:00 +0200",
    "31/02/2026 25:61",
    "not a time",
    "1767225600",
    "",
    None,
]


@pytest.mark.parametrize("value", TRICKY_TIMES)
@pytest.mark.parametrize("make", [as_text, lambda v: pd.Series(v, dtype=object)], ids=["arrow", "object"])
def test_timestamp_fast_path_reads_each_value_as_the_general_rule(value, make):
    # alone (the whole-column cast fails or succeeds), and among ISO values (the per-value path)
    for values in ([value], [*ISO[:150], value, *ISO[150:]]):
        series = make(values)
        assert same(parse_timestamps(series), parse_timestamps_general(series)), value


def test_timestamps_keep_the_wall_clock_when_offsets_change():
    # a file across a daylight-saving change: the offset is dropped, the local clock kept
    values = ["2026-03-28T23:30:00+01:00", "2026-03-29T03:30:00+02:00", "2026-03-29T04:00:00"]
    for series in (as_text(values), pd.Series(values, dtype=object)):
        assert parse_timestamps(series).tolist() == [
            pd.Timestamp("2026-03-28 23:30"),
            pd.Timestamp("2026-03-29 03:30"),
            pd.Timestamp("2026-03-29 04:00"),
        ]


TRICKY_NUMBERS = [
    "12.50", "99", "+5", ".5", "5.", "00012", "-0", "1E5", "1e-400", " 7", "8 ", "\t9\n",
    "0.00010353126857927187", "-1487.3250617977753", "123456789012345678901234567890",
    "inf", "-Infinity", "nan", "1e500", "abc", "1,5", "1_000", "0x10", "--5", "", None,
]  # fmt: skip
TRICKY_FLAGS = ["True", "false", " yes ", "N", "T", "1", "0", "maybe", "TRUE ", "", None]
TRICKY_SMALL_INTS = ["1", "1.0", "1.5", "-3", "127", "128", "-129", "x", " 2 ", "", None]


@pytest.mark.parametrize(
    ("dtype", "values"),
    [
        ("float64", TRICKY_NUMBERS),
        ("boolean", TRICKY_FLAGS),
        ("Int8", TRICKY_SMALL_INTS),
        ("string", ["USA", " usa", "007", "", None]),
    ],
)
def test_coercion_fast_paths_match_the_general_rule(dtype, values):
    rng = np.random.default_rng(0)
    for sample in ([v] for v in values):
        _assert_coerced_alike(sample, dtype)
    _assert_coerced_alike(list(rng.choice(np.array(values, dtype=object), 2_000)), dtype)


def _assert_coerced_alike(values: list, dtype: str) -> None:
    general, general_bad = coerce_column_general(pd.Series(values, dtype=object), dtype)
    for series in (as_text(values), pd.Series(values, dtype=object)):
        fast, fast_bad = coerce_column(series, dtype)
        assert str(fast.dtype) == str(general.dtype)
        assert same(fast, general), (values[:5], fast.head().tolist(), general.head().tolist())
        assert (fast_bad == general_bad).all()


def test_clean_numerals_are_read_exactly():
    # pandas' to_numeric is a unit in the last place off for ~1/4 of 17-digit numerals;
    # both paths give Python's correctly rounded float
    numerals = [repr(float(x)) for x in np.random.default_rng(1).standard_normal(5_000) * 1e3]
    exact = np.array([float(v) for v in numerals])
    for rule in (coerce_column, coerce_column_general):
        values, bad = rule(as_text(numerals), "float64")
        assert not bad.any() and (values.to_numpy() == exact).all()


def test_high_and_low_cardinality_text_convert_alike():
    ids = [f"TXN{i:08d}" for i in range(3_000)]
    countries = ["USA", "CAN", None] * 1_000
    for values in (ids, countries):
        fast, _ = coerce_column(as_text(values), "string")
        assert fast.dtype == "string" and same(fast, pd.Series(values, dtype="string"))


def test_format_checks_read_like_python_re_except_a_trailing_newline():
    values = ["TXN0001", "card_7.a:b-c", "has space", "", "-lead", "x" * 64, "x" * 65, "ÄBC", "USA", "usa",
              "10.1.2.3", "999.1.1.1", "::1", "fe80::1:2", "1.2.3"]  # fmt: skip
    for pattern in (ID_PATTERN, COUNTRY_PATTERN, IP_PATTERN):
        python = [re.match(pattern, v) is not None for v in values]
        for series in (pd.Series(values, dtype="string"), as_text(values)):
            assert str_matches(series, pattern).tolist() == python
    # Python's $ also matches before a final newline; RE2's does not: a stray newline is an error
    assert (
        re.match(COUNTRY_PATTERN, "USA\n")
        and not str_matches(pd.Series(["USA\n"], dtype="string"), COUNTRY_PATTERN)[0]
    )


# --- reading files ----------------------------------------------------------------------------

TRICKY_CSV = (
    "\ufeffid,when,card,shop,value,note,,note\r\n"
    'T1,2026-03-02T10:00:00,C1,M1,12.50,"a, quoted ""comma""",x,first\r\n'
    'T2,2026-03-02 11:00:00,C1,M2,007,"two\nlines",,second\r\n'
    "\r\n"
    'T3,2026-03-02T12:00:00Z,"",M1,  ,NA,,null\r\n'
    "T4,2026-03-03T01:00:00+02:00,C2,M3,abc,Café,y,\r\n"
)


def test_csv_reader_gives_what_pandas_gives(tmp_path):
    path = tmp_path / "tricky.csv"
    path.write_text(TRICKY_CSV, encoding="utf-8", newline="")
    ours = read_landing_file(
        path, LandingSettings(column_mapping={"transaction_id": "id", "timestamp": "when"})
    )
    theirs = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
    theirs = theirs.rename(columns={"id": c.TRANSACTION_ID, "when": c.TIMESTAMP})
    assert list(ours.columns[: len(theirs.columns)]) == list(theirs.columns)  # Unnamed: 6, note.1
    for col in theirs.columns:
        assert same(ours[col].astype(object), theirs[col].astype(object)), col
    assert ours["partition_date"].tolist() == ["2026-03-02", "2026-03-02", "2026-03-02", "2026-03-03"]


def test_a_short_line_is_named(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text("transaction_id,timestamp,amount\nT1,2026-03-02T10:00:00,5\nT2,2026-03-02T11:00:00\n")
    for read in (read_landing_file, covered_days):  # the run, and already the sensor
        with pytest.raises(LandingFileError, match=r"Row #3: Expected 3 columns, got 2"):
            read(path, LandingSettings())


def test_a_quote_never_closed_is_named_not_swallowed(tmp_path):
    # pyarrow would read "5\nT2,..." to the end of the file as one amount: one row, not two
    path = tmp_path / "quote.csv"
    path.write_text('transaction_id,timestamp,amount\nT1,2026-03-02T10:00:00,"5\nT2,2026-03-02T11:00:00,6\n')
    for read in (read_landing_file, covered_days):
        with pytest.raises(LandingFileError, match="a quoted value is never closed"):
            read(path, LandingSettings())
    # a stray quote inside an unquoted value is text, as pandas read it
    path.write_text("transaction_id,timestamp,user_agent\nT1,2026-03-02T10:00:00,5'10\" tall\n")
    assert read_landing_file(path, LandingSettings())[c.USER_AGENT].tolist() == ["5'10\" tall"]


def test_the_sensor_reads_the_timestamps_only(tmp_path):
    path = tmp_path / "days.csv"
    frame = pd.DataFrame({"when": ["2026-03-02T23:59:59", "2026-03-04T00:00:00"], "value": ["x", "y"]})
    frame.to_csv(path, index=False)
    settings = LandingSettings(column_mapping={"timestamp": "when"})
    assert [d.isoformat() for d in covered_days(path, settings)] == ["2026-03-02", "2026-03-04"]
    with pytest.raises(LandingFileError, match=r"amount <- 'amt'"):
        covered_days(path, LandingSettings(column_mapping={"timestamp": "when", "amount": "amt"}))
    with pytest.raises(LandingFileError, match="required column 'timestamp' is missing"):
        covered_days(path, LandingSettings())


@pytest.mark.parametrize("block", [7, 1 << 24])
def test_a_bad_byte_anywhere_is_named_by_the_sensor(tmp_path, monkeypatch, block):
    monkeypatch.setattr(landing_files, "_TEXT_CHECK_BLOCK", block)  # 7: characters split across blocks
    path = tmp_path / "shops.csv"
    good = "timestamp,shop\n2026-03-02T10:00:00,Café Ünïcode\n".encode()
    path.write_bytes(good + "2026-03-02T11:00:00,caf\xe9\n".encode("latin-1"))
    offset = len(good) + len("2026-03-02T11:00:00,caf")
    message = rf"not valid utf-8 text \(byte 0xe9 at offset {offset}\) on line 3;.*latin-1"
    with pytest.raises(LandingFileError, match=message):
        covered_days(path, LandingSettings())
    assert len(covered_days(path, LandingSettings(encoding="latin-1"))) == 1


def test_a_configured_timestamp_format_is_rewritten_as_iso(tmp_path):
    path = tmp_path / "eu.csv"
    path.write_text(
        "transaction_id,timestamp,card_id,merchant_id,amount\n"
        "T1,02/03/2026 10:00,C1,M1,5\nT2,03/03/2026 23:30,C1,M1,6\nT3,yesterday,C1,M1,7\n"
    )
    rows = read_landing_file(path, LandingSettings(timestamp_format="%d/%m/%Y %H:%M"))
    assert rows["partition_date"].tolist() == ["2026-03-02", "2026-03-03", "2026-03-02"]
    outcome = split_transactions(rows)
    assert outcome.validated[c.TIMESTAMP].tolist() == [
        pd.Timestamp("2026-03-02 10:00"),
        pd.Timestamp("2026-03-03 23:30"),
    ]
    assert outcome.rejected[c.TIMESTAMP].tolist() == ["yesterday"]


# --- the whole split, fast against general ------------------------------------------------------


def broken_file_frame(n: int = 400) -> pd.DataFrame:
    """Every column of the contract as text, with one bad value of each kind and duplicates."""
    ts = pd.date_range("2026-03-02 06:00", periods=n, freq="11min")
    online = np.arange(n) % 3 == 0
    frame = pd.DataFrame(
        {
            c.TRANSACTION_ID: [f"T{i:05d}" for i in range(n)],
            c.TIMESTAMP: ts.strftime("%Y-%m-%dT%H:%M:%S"),
            c.CARD_ID: [f"C{i % 23}" for i in range(n)],
            c.MERCHANT_ID: [f"M{i % 7}" for i in range(n)],
            c.AMOUNT: [f"{5 + i * 1.37:.2f}" for i in range(n)],
            c.MERCHANT_CATEGORY: [c.MERCHANT_CATEGORIES[i % 12] for i in range(n)],
            c.MERCHANT_COUNTRY: "USA",
            c.TXN_COUNTRY: ["USA" if i % 5 else "CAN" for i in range(n)],
            c.CARD_HOME_COUNTRY: "USA",
            c.TXN_LAT: "40.7128",
            c.TXN_LON: "-74.006",
            c.CARD_HOME_LAT: "41.8781",
            c.CARD_HOME_LON: "-87.6298",
            c.IS_ONLINE: np.where(online, "True", "False"),
            c.DEVICE_FINGERPRINT: np.where(online, "abcd1234abcd", ""),
            c.IP_ADDRESS: np.where(online, "10.1.2.3", ""),
            c.HOUR_OF_DAY: ts.hour.astype(str),
            c.IS_FRAUD: ["1" if i % 40 == 0 else "0" for i in range(n)],
            "loyalty_tier": "gold",
        }
    )
    bad = {
        (3, c.AMOUNT): "abc", (4, c.AMOUNT): "-5", (5, c.TIMESTAMP): "31/02/2026 25:61",
        (6, c.TIMESTAMP): "2026-03-02T10:00:00+02:00", (7, c.TRANSACTION_ID): "T00001",
        (8, c.CARD_ID): "", (9, c.MERCHANT_CATEGORY): "spaceship", (10, c.TXN_COUNTRY): "usa",
        (12, c.IP_ADDRESS): "999.1.1.1", (13, c.HOUR_OF_DAY): "25", (14, c.IS_FRAUD): "2",
        (15, c.IS_ONLINE): "maybe", (16, c.TXN_LAT): "91", (17, c.TRANSACTION_ID): "has space",
        (18, c.TIMESTAMP): "", (19, c.IS_FRAUD): "", (20, c.AMOUNT): "1e500",
    }  # fmt: skip
    for (row, col), value in bad.items():
        frame.loc[row, col] = value
    return frame


def test_split_through_fast_paths_equals_split_through_general_rules(tmp_path, monkeypatch):
    path = tmp_path / "broken.csv"
    broken_file_frame().to_csv(path, index=False)
    raw = read_landing_file(path, LandingSettings())
    fast = split_transactions(raw)

    # the general rules on the same rows held as Python objects, as pandas' reader gave them
    as_objects = raw.astype({col: object for col in raw.columns if raw[col].dtype == TEXT})
    monkeypatch.setattr(coercion, "coerce_column", coerce_column_general)
    monkeypatch.setattr(coercion, "parse_timestamps", parse_timestamps_general)
    general = split_transactions(as_objects)

    pd.testing.assert_frame_equal(
        fast.validated.drop(columns="loyalty_tier"), general.validated.drop(columns="loyalty_tier")
    )
    assert (
        fast.validated["loyalty_tier"].astype(object).tolist() == general.validated["loyalty_tier"].tolist()
    )
    pd.testing.assert_frame_equal(fast.rejected, general.rejected)
    # every broken row but two: an offset is read as the local clock (row 6 then fails its
    # hour_of_day instead), and an empty label is an unlabelled row (row 19)
    rows = sorted(fast.rejected["source_row"] - 1)
    assert rows == [3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17, 18, 20]
    assert lost_rows(raw, fast.validated, fast.rejected) is None
    reasons = dict(zip(fast.rejected["source_row"] - 1, fast.rejected[FAILED_CHECKS], strict=True))
    assert (
        reasons[20] == "amount:parses_as_float64"
        and reasons[6] == "hour_of_day+timestamp:hour_of_day_matches_timestamp"
    )
    row16 = fast.rejected[fast.rejected[c.TRANSACTION_ID] == "T00016"].iloc[0]
    assert row16[c.TXN_LAT] == "91" and "less_than_or_equal_to(90) (value 91.0)" in row16[REJECTION_REASON]


@pytest.mark.parametrize("asset", ["raw", "validated", "rejected"])
def test_daily_files_round_trip_every_dtype(tmp_path, asset):
    path = tmp_path / "broken.csv"
    broken_file_frame().to_csv(path, index=False)
    raw = read_landing_file(path, LandingSettings())
    outcome = split_transactions(raw)
    frame, column = {
        "raw": (raw, "partition_date"),
        "validated": (outcome.validated, c.TIMESTAMP),
        "rejected": (outcome.rejected, "partition_date"),
    }[asset]
    keys = ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]
    days = split_by_day(frame, column, keys, asset)
    assert [key for key, _ in days] == keys and days[0][1].num_rows == 0  # a day without rows
    # Parquet keeps text as "string"; pandas reads it back in its default storage (validation
    # holds it as Arrow strings: the contract's Text accepts either)
    text = {col: "string" for col, dtype in frame.dtypes.items() if isinstance(dtype, pd.StringDtype)}
    pd.testing.assert_frame_equal(concat_days([table for _, table in days]), frame.astype(text))
    with pytest.raises(ValueError, match=r"partition\(s\) \['2026-03-02'\] are outside"):
        split_by_day(frame, column, keys[2:], asset)


def test_nothing_lost_notices_a_missing_or_doubled_row():
    raw = pd.DataFrame({c.TRANSACTION_ID: pd.array(["a", "b", "b", None], dtype=TEXT)})
    assert lost_rows(raw, raw.iloc[:2], raw.iloc[2:]) is None
    # one 'a' lost, one 'b' counted twice: raw minus validated+rejected, per ID
    assert "{'a': 1, 'b': -1}" in lost_rows(raw, raw.iloc[[1, 2]], raw.iloc[[3, 1]])


def test_settings_the_reader_cannot_use_are_refused_up_front():
    with pytest.raises(ValueError, match="csv_separator must be one character"):
        LandingSettings(csv_separator=";;")
    with pytest.raises(ValueError, match="unknown text encoding 'utf-9'"):
        LandingSettings(encoding="utf-9")
