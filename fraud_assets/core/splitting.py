"""Time-ordered, label-delay-aware train/test splits. Never random.

Fraud patterns move over time and labels arrive late: a model is trained on older days and
judged on the most recent ones, with a gap between them as long as the label delay, and it
only learns from labels that were known when training happened.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from fraud_assets.core import columns as c
from fraud_assets.core.features import HISTORY_FEATURES, add_history_features


@dataclass(frozen=True)
class TimeSplit:
    train_end: pd.Timestamp  # exclusive
    test_start: pd.Timestamp  # inclusive; the model is trained then, with the labels known by then
    test_end: pd.Timestamp  # inclusive (last transaction)


def time_split(timestamps: pd.Series, test_size: float = 0.2, gap_days: float = 7.0) -> TimeSplit:
    """The cut points: test = the latest ``test_size`` share of the time span, train ends a gap
    of ``gap_days`` before it."""
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be between 0 and 1, not {test_size}")
    if gap_days < 0:
        raise ValueError(f"gap_days must be >= 0, not {gap_days}")
    ts = pd.to_datetime(timestamps)
    if ts.empty:
        raise ValueError("cannot split an empty dataset")
    start, end = ts.min(), ts.max()
    test_start = start + (end - start) * (1 - test_size)
    train_end = test_start - pd.Timedelta(days=gap_days)
    if train_end <= start:
        raise ValueError(
            f"the data spans {start} to {end}: too short for a {gap_days}-day gap before a "
            f"{test_size:.0%} test window; generate or load more days (at least {gap_days / test_size:.0f})"
        )
    return TimeSplit(train_end=train_end, test_start=test_start, test_end=end)


def minimum_days_to_train(
    *,
    warmup_days: int,
    test_fraction: float,
    gap_days: float,
    fold_gap_days: float,
    min_train_fraction: float,
    label_delay_days: float = 0.0,
) -> int:
    """The fewest whole days of data that a training run accepts: warm-up, split, then tuning folds.

    The latest ``label_delay_days`` hold only the labels that came early (chargebacks), so the
    split leaves them out: after the ``warmup_days``, and before them, the labelled rows span W
    days. `time_split` puts the test window at
    the latest ``test_fraction`` of W and ends training ``gap_days`` before it, leaving a training
    span T = (1 - test_fraction) * W - gap_days. `time_ordered_folds` cuts T at
    ``min_train_fraction`` and needs the rest to exceed the folds' gap:
    (1 - min_train_fraction) * T > fold_gap_days (the split itself only needs T > 0, which this
    implies). So W > (fold_gap_days / (1 - min_train_fraction) + gap_days) / (1 - test_fraction).
    N days of data span a little less than N - warmup_days - label_delay_days (the first
    transaction comes after midnight, the last before the next one), hence the next whole number
    above the bound.
    """
    span = (fold_gap_days / (1 - min_train_fraction) + gap_days) / (1 - test_fraction)
    return warmup_days + math.floor(span + label_delay_days) + 1


TRAIN, TEST, EXCLUDED = "train", "test", "excluded"


def assign_split(
    frame: pd.DataFrame, test_size: float = 0.2, gap_days: float = 7.0
) -> tuple[pd.Series, TimeSplit]:
    """Each labelled row's role: ``train``, ``test`` or ``excluded`` (in the gap, or its label was
    not yet known when the test window began); unlabelled rows are excluded too."""
    labelled = frame[c.IS_FRAUD].notna() if c.IS_FRAUD in frame else pd.Series(False, index=frame.index)
    if not labelled.any():
        raise ValueError("no labelled rows: the training window has no is_fraud labels")
    split = time_split(frame.loc[labelled, c.TIMESTAMP], test_size, gap_days)
    ts = frame[c.TIMESTAMP]
    known = frame[c.LABEL_KNOWN_AT] < split.test_start if c.LABEL_KNOWN_AT in frame else True
    role = pd.Series(EXCLUDED, index=frame.index, dtype=object)
    role[labelled & (ts < split.train_end) & known] = TRAIN
    role[labelled & (ts >= split.test_start)] = TEST
    return role, split


def require_both_classes(labels: pd.Series, what: str) -> None:
    """Training needs frauds and non-frauds; say which is missing and where."""
    frauds = int(labels.sum()) if len(labels) else 0
    if len(labels) == 0 or frauds in (0, len(labels)):
        raise ValueError(
            f"{what} has {len(labels)} labelled rows and {frauds} frauds: it needs both classes; "
            "widen the window or check the labels"
        )


def prepare_train_test_split(
    df: pd.DataFrame,
    test_size: float = 0.2,
    gap_days: float = 7.0,
    target: str = c.IS_FRAUD,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """``X_train, X_test, y_train, y_test`` split by time, as in the seed guide.

    History features are computed first on the whole event stream (they only look back, so
    this leaks nothing). Training keeps the rows before the gap whose label was known when the
    test window begins (when the model is trained and deployed); the test set is the latest
    window with its eventual labels. Unlabelled rows are left out of both.
    """
    if target not in df:
        raise ValueError(
            f"the data has no {target!r} column: unlabelled data can be scored, not split for training"
        )
    if missing := [col for col in (c.TIMESTAMP, c.CARD_ID, c.MERCHANT_ID, c.AMOUNT) if col not in df]:
        raise ValueError(f"the data lacks required column(s) {missing}")
    data = df if set(HISTORY_FEATURES) & set(df.columns) else add_history_features(df)
    data = data.sort_values(c.TIMESTAMP, kind="stable")
    if target != c.IS_FRAUD:
        data = data.drop(columns=[c.IS_FRAUD], errors="ignore").rename(columns={target: c.IS_FRAUD})
    role, split = assign_split(data, test_size, gap_days)
    train, test = data[role == TRAIN], data[role == TEST]
    require_both_classes(train[c.IS_FRAUD], f"the training window (before {split.train_end})")
    y_train = train[c.IS_FRAUD].astype("int64").rename(target)
    y_test = test[c.IS_FRAUD].astype("int64").rename(target)
    return train.drop(columns=[c.IS_FRAUD]), test.drop(columns=[c.IS_FRAUD]), y_train, y_test
