"""The label feed's domain code: value rules, label checks, supersession, waiting labels,
idempotency by label id, and labels read point in time (fraud_assets/core/labels.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from fraud_assets.core import columns as c
from fraud_assets.core.ingest import LandingSettings, read_landing_file
from fraud_assets.core.label_files import check_label_files, covered_days, label_settings
from fraud_assets.core.labels import (
    CARRIED_SOURCE,
    SILENCE_SOURCE,
    check_labels,
    derived_label_ids,
    join_labels,
    stored_labels,
)
from fraud_assets.core.landing_settings import parse_mapping_json
from fraud_assets.core.validation import FAILED_CHECKS, REJECTION_REASON, SOURCE_ROW, split_transactions

DELAY = pd.Timedelta(days=7)
T0 = pd.Timestamp("2026-03-01 10:00")


def transactions(n: int = 4) -> pd.DataFrame:
    """n transactions, one a day from T0, ids T0..T{n-1}."""
    return pd.DataFrame(
        {
            c.TRANSACTION_ID: [f"T{i}" for i in range(n)],
            c.TIMESTAMP: [T0 + pd.Timedelta(days=i) for i in range(n)],
        }
    )


def fed(*rows: tuple) -> pd.DataFrame:
    """Fed labels from (label_id, transaction_id, is_fraud, reported_at[, source])."""
    frame = pd.DataFrame(
        [
            {
                "label_id": r[0],
                c.TRANSACTION_ID: r[1],
                c.IS_FRAUD: r[2],
                "reported_at": pd.Timestamp(r[3]),
                "source": r[4] if len(r) > 4 else "analyst",
            }
            for r in rows
        ]
    )
    return stored_labels(check_labels(frame, feed="api", default_source="analyst").valid)


def label_at(join, row: int, at: str) -> tuple[float, object]:
    now = join.events.as_of(pd.Timestamp(at))
    return now.is_fraud[row], now.source[row]


# --- value rules ----------------------------------------------------------------------------------


def test_value_rules_map_codes_and_reject_a_code_no_rule_maps_with_its_row_and_column(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        "id,ts,card,shop,value,channel,mode\n"
        "a1,2026-03-02 10:00:00,K1,S1,10.00,CP,05\n"
        "a2,2026-03-02 11:00:00,K1,S1,12.00,CNP,81\n"
        "a3,2026-03-02 12:00:00,K2,S1,13.00,XX,05\n"
        "a4,2026-03-02 13:00:00,K2,S1,14.00,CP,99\n"
    )
    mapping = parse_mapping_json(
        json.dumps(
            {
                "transaction_id": "id",
                "timestamp": "ts",
                "card_id": "card",
                "merchant_id": "shop",
                "amount": "value",
                "is_online": {"column": "channel", "values": {"CP": False, "CNP": True}},
                "entry_mode": {"column": "mode", "values": {"05": "chip", "81": "ecommerce"}},
            }
        )
    )
    raw = read_landing_file(path, LandingSettings.from_mapping(mapping))
    outcome = split_transactions(raw)
    valid = outcome.validated.set_index(c.TRANSACTION_ID)
    assert valid.loc["a1", c.IS_ONLINE] is np.False_ or valid.loc["a1", c.IS_ONLINE] == False  # noqa: E712
    assert bool(valid.loc["a2", c.IS_ONLINE]) and valid.loc["a2", c.ENTRY_MODE] == "ecommerce"
    assert valid.loc["a1", c.ENTRY_MODE] == "chip"
    rejected = outcome.rejected.set_index(c.TRANSACTION_ID)
    assert set(rejected.index) == {"a3", "a4"}  # never guessed: "XX" is not read as anything
    assert rejected.loc["a3", FAILED_CHECKS] == "is_online:value_rules"  # one failure, not also "unreadable"
    assert rejected.loc["a3", c.IS_ONLINE] == "XX"  # the value as received
    assert rejected.loc["a3", SOURCE_ROW] == 3  # its row in the file
    assert rejected.loc["a4", FAILED_CHECKS] == "entry_mode:value_rules"
    assert "'99'" in rejected.loc["a4", REJECTION_REASON]


@pytest.mark.parametrize(
    "mapping, message",
    [
        ('{"is_online": {"column": "channel"}}', "values"),
        ('{"is_online": {"column": "channel", "values": {}}}', "empty"),
        ('{"is_online": {"column": "channel", "values": {"CP": [1]}}}', "text, a number or true/false"),
        ('{"is_online": {"colum": "channel", "values": {"CP": true}}}', "unknown key"),
    ],
)
def test_a_bad_value_rule_is_refused_where_it_is_configured(mapping, message):
    with pytest.raises(ValueError, match=message):
        LandingSettings.from_json(mapping)


# --- label files -----------------------------------------------------------------------------------


def test_label_files_map_values_and_reject_bad_rows_with_row_column_and_reason(tmp_path):
    path = tmp_path / "chargebacks.csv"
    path.write_text(
        "txn,status,when,why\n"
        "T1,chargeback,2026-03-05 10:00:00,stolen\n"
        "T2,reversed,2026-03-06 11:00,\n"
        "T3,disputed,2026-03-06 12:00,\n"  # a status no rule maps
        "bad id,chargeback,2026-03-06 12:00,\n"
        "T5,chargeback,yesterday,\n"
        "T6,chargeback,,\n"
    )
    settings = label_settings(
        {
            "transaction_id": "txn",
            "is_fraud": {"column": "status", "values": {"chargeback": 1, "reversed": 0}},
            "reported_at": "when",
            "reason": "why",
        }
    )
    assert [d.isoformat() for d in covered_days(path, settings)] == ["2026-03-05", "2026-03-06"]
    checked = check_label_files([path], settings, ["2026-03-05", "2026-03-06"])
    valid = checked.valid.set_index(c.TRANSACTION_ID)
    assert valid[c.IS_FRAUD].to_dict() == {"T1": 1, "T2": 0}
    assert valid.loc["T1", "reason"] == "stolen" and valid.loc["T1", "source"] == "file"
    rejected = checked.rejected.set_index(SOURCE_ROW)
    assert rejected[FAILED_CHECKS].to_dict() == {
        3: "is_fraud:value_rules",
        4: "transaction_id:str_matches",
        5: "reported_at:parses_as_datetime64[ns]",
        6: "reported_at:not_null",
    }
    assert rejected.loc[3, c.IS_FRAUD] == "disputed"  # as received
    assert len(checked.valid) + len(checked.rejected) == 6  # nothing lost


def test_a_label_file_without_a_required_column_names_it(tmp_path):
    from fraud_assets.core.landing_files import LandingFileError

    path = tmp_path / "l.csv"
    path.write_text("transaction_id,reported_at\nT1,2026-03-05\n")
    with pytest.raises(LandingFileError, match=r"\['is_fraud'\]"):
        check_label_files([path], label_settings({}), ["2026-03-05"])


def test_derived_label_ids_are_the_same_for_the_same_label_and_differ_otherwise():
    frame = pd.DataFrame(
        {
            c.TRANSACTION_ID: ["T1", "T1", "T1", "T2"],
            c.IS_FRAUD: [1, 1, 0, 1],
            "reported_at": pd.to_datetime(["2026-03-05"] * 4),
            "source": ["file"] * 4,
        }
    )
    ids = derived_label_ids(frame, prefix="file").tolist()
    assert ids[0] == ids[1] and len(set(ids)) == 3 and all(i.startswith("file-") for i in ids)


# --- point in time ---------------------------------------------------------------------------------


def test_a_later_label_supersedes_and_the_history_is_kept():
    labels = fed(("cb", "T0", 1, "2026-03-10", "chargeback"), ("rev", "T0", 0, "2026-03-20", "reversal"))
    join = join_labels(transactions(), labels, DELAY)
    assert label_at(join, 0, "2026-03-09") == (0.0, SILENCE_SOURCE)  # genuine by silence from day 7
    assert label_at(join, 0, "2026-03-15") == (1.0, "chargeback")
    assert label_at(join, 0, "2026-03-25") == (0.0, "reversal")
    assert join.supersedes.tolist() == [False, True]  # the reversal supersedes the chargeback
    assert join.after_silence.tolist() == [True, False]  # the chargeback came after the delay
    assert len(join.labels) == 2  # both kept


def test_labels_reported_at_the_same_time_hold_in_feed_order():
    labels = fed(("a", "T1", 1, "2026-03-04"), ("b", "T1", 0, "2026-03-04"))
    join = join_labels(transactions(), labels, DELAY)
    assert label_at(join, 1, "2026-03-05")[0] == 0.0


def test_a_label_for_a_transaction_not_seen_yet_waits_and_joins_when_it_arrives():
    labels = fed(("early", "T9", 1, "2026-03-02"))
    waiting = join_labels(transactions(4), labels, DELAY)
    assert waiting.waiting.tolist() == [True]
    arrived = pd.concat(
        [
            transactions(4),
            pd.DataFrame({c.TRANSACTION_ID: ["T9"], c.TIMESTAMP: [pd.Timestamp("2026-03-03 09:00")]}),
        ],
        ignore_index=True,
    )
    joined = join_labels(arrived, labels, DELAY)
    assert joined.waiting.tolist() == [False]
    # reported before the transaction's own time: it counts from the transaction's time
    assert np.isnan(label_at(joined, 4, "2026-03-03 09:00")[0])
    assert label_at(joined, 4, "2026-03-03 09:01")[0] == 1.0


def test_a_label_id_received_twice_counts_once_the_first():
    labels = fed(("same", "T2", 1, "2026-03-05"), ("same", "T2", 0, "2026-03-06"))
    assert len(labels) == 1 and labels[c.IS_FRAUD].tolist() == [1]
    doubled = pd.concat([labels, labels], ignore_index=True)
    join = join_labels(transactions(), doubled, DELAY)
    assert join.duplicates == 1 and len(join.labels) == 1


def test_labels_carried_by_transaction_rows_are_one_more_source_and_are_superseded_like_any():
    frame = transactions().assign(
        **{
            c.IS_FRAUD: [0, 1, None, 0],
            c.LABEL_KNOWN_AT: [T0 + DELAY, T0 + pd.Timedelta(days=3), pd.NaT, pd.NaT],
        }
    )
    frame.loc[3, c.LABEL_KNOWN_AT] = frame.loc[3, c.TIMESTAMP] + DELAY
    labels = fed(("cb", "T0", 1, "2026-03-12", "chargeback"))
    join = join_labels(frame, labels, DELAY)
    assert label_at(join, 0, "2026-03-09") == (0.0, CARRIED_SOURCE)
    assert label_at(join, 0, "2026-03-13") == (1.0, "chargeback")
    assert join.supersedes.tolist() == [True]
    assert label_at(join, 1, "2026-03-05") == (1.0, CARRIED_SOURCE)
    assert label_at(join, 2, "2026-03-12") == (0.0, SILENCE_SOURCE)  # no label: genuine after the delay


def test_as_of_is_each_rows_latest_label_reported_before_the_time():
    """Against a direct reading of the rule, row by row, on random labels."""
    rng = np.random.default_rng(3)
    frame = transactions(30)
    rows = [
        (
            f"L{i}",
            f"T{rng.integers(30)}",
            int(rng.integers(2)),
            T0 + pd.Timedelta(hours=int(rng.integers(24 * 60))),
        )
        for i in range(80)
    ]
    labels = fed(*rows)
    join = join_labels(frame, labels, DELAY)
    for at in pd.date_range("2026-03-01", "2026-05-01", freq="37h"):
        now = join.events.as_of(at)
        for i, (tid, ts) in enumerate(zip(frame[c.TRANSACTION_ID], frame[c.TIMESTAMP], strict=True)):
            mine = labels[labels[c.TRANSACTION_ID] == tid]
            known = mine[mine["reported_at"].clip(lower=ts) < at]
            if len(known):
                latest = known.iloc[-1]  # stored_labels sorts by reported_at, stably
                expected = float(latest[c.IS_FRAUD])
            elif ts + DELAY < at:
                expected = 0.0
            else:
                expected = np.nan
            assert now.is_fraud[i] == expected or (np.isnan(expected) and np.isnan(now.is_fraud[i])), (
                tid,
                at,
            )
