"""Time-ordered, label-delay-aware train/test splits. Never random.

Fraud patterns move over time and labels arrive late: a model is trained on older days and
judged on the most recent ones, with a gap between them as long as the label delay, and it
only learns from labels that were known when training happened.
"""

from __future__ import annotations

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
    labelled = data[data[target].notna()]
    split = time_split(labelled[c.TIMESTAMP], test_size, gap_days)
    ts = labelled[c.TIMESTAMP]
    known_by_cut = labelled[c.LABEL_KNOWN_AT] < split.test_start if c.LABEL_KNOWN_AT in labelled else True
    train = labelled[(ts < split.train_end) & known_by_cut]
    test = labelled[ts >= split.test_start]
    if train[target].nunique() < 2:
        raise ValueError(
            f"the training window (before {split.train_end}) has {len(train)} labelled rows and "
            f"{int(train[target].sum()) if len(train) else 0} frauds: it needs both classes"
        )
    y_train = train[target].astype("int64")
    y_test = test[target].astype("int64")
    return train.drop(columns=[target]), test.drop(columns=[target]), y_train, y_test
