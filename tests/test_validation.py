"""Validation loses nothing: each bad input ends in a precise, named outcome."""

from __future__ import annotations

import pandas as pd
import pytest

from fraud_assets.core import columns as c
from fraud_assets.core.ingest import LandingFileError, LandingSettings, read_landing_file
from fraud_assets.core.validation import (
    FAILED_CHECKS,
    DatasetValidationError,
    fraud_rate_issue,
    lost_rows,
    split_transactions,
    validate_data,
)


def clean_frame(n: int = 200) -> pd.DataFrame:
    """A small valid frame built by hand, independent of the generator."""
    ts = pd.date_range("2026-03-02 08:00", periods=n, freq="7min")
    return pd.DataFrame(
        {
            c.TRANSACTION_ID: [f"T{i:05d}" for i in range(n)],
            c.TIMESTAMP: ts,
            c.CARD_ID: [f"C{i % 17}" for i in range(n)],
            c.MERCHANT_ID: [f"M{i % 5}" for i in range(n)],
            c.AMOUNT: [10.0 + i for i in range(n)],
            c.MERCHANT_CATEGORY: [("grocery", "travel", "jewelry", "online_retail")[i % 4] for i in range(n)],
            c.IS_ONLINE: [i % 4 == 3 for i in range(n)],
            c.DEVICE_FINGERPRINT: ["abcd1234abcd1234" if i % 4 == 3 else None for i in range(n)],
            c.IP_ADDRESS: ["10.1.2.3" if i % 4 == 3 else None for i in range(n)],
            c.DAY_OF_WEEK: ts.dayofweek.astype("int8"),
            c.IS_WEEKEND: ts.dayofweek >= 5,
            c.IS_FRAUD: [int(i % 50 == 0) for i in range(n)],
        }
    )


def rejected_checks(frame: pd.DataFrame) -> dict[str, str]:
    outcome = split_transactions(frame)
    assert lost_rows(frame, outcome.validated, outcome.rejected) is None
    return dict(zip(outcome.rejected[c.TRANSACTION_ID], outcome.rejected[FAILED_CHECKS], strict=True))


def test_clean_frame_is_fully_validated_and_typed():
    frame = clean_frame()
    outcome = split_transactions(frame)
    assert outcome.rejected.empty and not outcome.issues
    assert len(outcome.validated) == len(frame)
    v = outcome.validated
    assert str(v[c.AMOUNT].dtype) == "float64" and str(v[c.IS_WEEKEND].dtype) == "boolean"
    assert v[c.HOUR_OF_DAY].tolist() == frame[c.TIMESTAMP].dt.hour.tolist()  # derived when absent
    assert v[c.TIMESTAMP].is_monotonic_increasing
    assert validate_data(frame) == (True, None)
    assert validate_data(v, schema_type="validated") == (True, None)


def test_missing_required_column_is_a_dataset_error_naming_it():
    frame = clean_frame().drop(columns=[c.AMOUNT])
    with pytest.raises(DatasetValidationError, match="required column 'amount' is missing"):
        split_transactions(frame)
    ok, error = validate_data(frame)
    assert not ok and "'amount'" in error


def test_wrong_type_rejects_only_that_row_with_its_value():
    frame = clean_frame().astype({c.AMOUNT: object})
    frame.loc[3, c.AMOUNT] = "twelve"
    assert rejected_checks(frame) == {"T00003": "amount:parses_as_float64"}
    reason = split_transactions(frame).rejected.loc[0, "rejection_reason"]
    assert "'twelve'" in reason


def test_nulls_in_required_columns_are_rejected():
    frame = clean_frame()
    frame.loc[5, c.CARD_ID] = None
    frame.loc[6, c.MERCHANT_ID] = None
    assert rejected_checks(frame) == {"T00005": "card_id:not_nullable", "T00006": "merchant_id:not_nullable"}


def test_negative_and_zero_amounts_are_rejected():
    frame = clean_frame()
    frame.loc[[7, 8], c.AMOUNT] = [-5.0, 0.0]
    assert rejected_checks(frame) == {"T00007": "amount:greater_than", "T00008": "amount:greater_than"}


def test_duplicate_ids_keep_the_first_and_reject_the_rest():
    frame = clean_frame()
    frame.loc[9, c.TRANSACTION_ID] = "T00001"
    outcome = split_transactions(frame)
    assert outcome.rejected[FAILED_CHECKS].tolist() == ["transaction_id:unique_transaction_id"]
    assert outcome.rejected[c.AMOUNT].tolist() == ["19.0"]  # the later row, kept as received
    assert outcome.validated[c.TRANSACTION_ID].is_unique


def test_unparseable_timestamp_is_rejected_with_the_text():
    frame = clean_frame().astype({c.TIMESTAMP: object})
    frame.loc[2, c.TIMESTAMP] = "31/02/2026 25:61"
    outcome = split_transactions(frame)
    assert outcome.rejected[FAILED_CHECKS].tolist() == ["timestamp:parses_as_datetime64[ns]"]
    assert "31/02/2026 25:61" in outcome.rejected.loc[0, "rejection_reason"]


def test_unknown_category_and_bad_formats_are_rejected():
    frame = clean_frame()
    frame.loc[1, c.MERCHANT_CATEGORY] = "spaceship"
    frame.loc[3, c.IP_ADDRESS] = "999.1.1.1"
    frame.loc[4, c.TRANSACTION_ID] = "has space"
    assert rejected_checks(frame) == {
        "T00001": "merchant_category:isin",
        "T00003": "ip_address:str_matches",
        "has space": "transaction_id:str_matches",
    }


def test_inconsistent_weekend_flag_is_rejected():
    frame = clean_frame()
    frame.loc[0, c.IS_WEEKEND] = True  # 2026-03-02 is a Monday
    checks = rejected_checks(frame)
    assert checks == {"T00000": "day_of_week+is_weekend:weekend_consistent_with_day_of_week"}


def test_extra_columns_are_kept():
    frame = clean_frame()
    frame["loyalty_tier"] = "gold"
    outcome = split_transactions(frame)
    assert outcome.validated["loyalty_tier"].eq("gold").all()


def test_fraud_rate_out_of_range_is_a_dataset_issue():
    frame = clean_frame()
    frame[c.IS_FRAUD] = 0
    frame.loc[: len(frame) // 5, c.IS_FRAUD] = 1
    issue = fraud_rate_issue(frame)
    assert issue is not None and issue.column == c.IS_FRAUD and "outside" in issue.message
    assert any(i.check == "fraud_rate_in_range" for i in split_transactions(frame).issues)


def test_unlabelled_rows_are_valid():
    frame = clean_frame()
    frame[c.IS_FRAUD] = pd.array([pd.NA] * len(frame), dtype="Int8")
    outcome = split_transactions(frame)
    assert outcome.rejected.empty and outcome.validated[c.IS_FRAUD].isna().all()


# --- files ------------------------------------------------------------------------------------


def write_csv(tmp_path, frame, name="txns.csv", **kwargs):
    path = tmp_path / name
    frame.to_csv(path, index=False, **kwargs)
    return path


def test_empty_file_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(LandingFileError, match="empty"):
        read_landing_file(path, LandingSettings())
    header_only = tmp_path / "header.csv"
    header_only.write_text("transaction_id,timestamp,card_id,merchant_id,amount\n")
    with pytest.raises(LandingFileError, match="no rows"):
        read_landing_file(header_only, LandingSettings())


def test_non_utf8_csv_names_the_byte_and_the_fix(tmp_path):
    frame = clean_frame(4).iloc[:, :5].copy()
    frame.loc[0, c.MERCHANT_ID] = "Café"
    path = write_csv(tmp_path, frame, encoding="latin-1")
    with pytest.raises(LandingFileError, match=r"not valid utf-8 text \(byte 0xe9 at offset \d+\).*latin-1"):
        read_landing_file(path, LandingSettings())
    rows = read_landing_file(path, LandingSettings(encoding="latin-1"))
    assert rows.loc[0, c.MERCHANT_ID] == "Café"


def test_five_columns_and_a_label_with_a_mapping(tmp_path):
    frame = pd.DataFrame(
        {
            "id": ["a1", "a2", "a3"],
            "when": ["2026-03-02 10:00:00", "2026-03-02 23:30:00", "2026-03-03 01:00:00"],
            "card": ["c1", "c1", "c2"],
            "shop": ["s1", "s2", "s1"],
            "value": ["12.50", "99", "7"],
            "fraud": ["0", "1", "0"],
        }
    )
    settings = LandingSettings(
        column_mapping={
            "transaction_id": "id",
            "timestamp": "when",
            "card_id": "card",
            "merchant_id": "shop",
            "amount": "value",
            "is_fraud": "fraud",
        },
        label_delay_days=7,
    )
    rows = read_landing_file(write_csv(tmp_path, frame), settings)
    assert rows["partition_date"].tolist() == ["2026-03-02", "2026-03-02", "2026-03-03"]
    assert rows["source_row"].tolist() == [1, 2, 3]
    assert (rows[c.LABEL_KNOWN_AT] - pd.to_datetime(frame["when"])).dt.days.eq(7).all()
    outcome = split_transactions(rows)
    assert outcome.rejected.empty and len(outcome.validated) == 3
    assert outcome.validated[c.IS_FRAUD].tolist() == [0, 1, 0]


def test_mapping_to_a_column_the_file_lacks_is_named(tmp_path):
    path = write_csv(tmp_path, clean_frame(4))
    with pytest.raises(LandingFileError, match=r"amount <- 'AMT'"):
        read_landing_file(path, LandingSettings(column_mapping={"amount": "AMT"}))
    with pytest.raises(ValueError, match="unknown target"):
        LandingSettings(column_mapping={"amout": "x"})


def test_unreadable_timestamps_in_a_file_are_kept_and_rejected(tmp_path):
    frame = clean_frame(8).astype({c.TIMESTAMP: object})
    frame.loc[4, c.TIMESTAMP] = "not a time"
    rows = read_landing_file(write_csv(tmp_path, frame), LandingSettings())
    assert rows.loc[4, "partition_date"] == "2026-03-02"  # filed under the file's first day
    outcome = split_transactions(rows)
    assert len(outcome.rejected) == 1 and len(outcome.validated) == 7
    assert outcome.rejected.loc[0, "source_row"] == 5


def test_the_validated_contract_is_the_outputs_dagster_type():
    """The type check validates the output in place: a passing frame is left as it is, a failing
    one fails the step with every failed check named (as dagster-pandera reports them)."""
    import dagster as dg

    from fraud_assets.defs.validation import ValidatedTransactions

    validated = split_transactions(clean_frame()).validated
    before = validated.copy()
    assert dg.check_dagster_type(ValidatedTransactions, validated).success
    pd.testing.assert_frame_equal(validated, before)

    broken = validated.iloc[::-1].reset_index(drop=True)  # out of time order
    broken.loc[0, c.AMOUNT] = -1.0
    result = dg.check_dagster_type(ValidatedTransactions, broken)
    assert not result.success
    assert "timestamps_ordered" in result.description and "greater_than(0)" in result.description
    assert ValidatedTransactions.metadata["schema"].value.columns  # the UI's column schema
