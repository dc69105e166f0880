"""Calendar columns of a timestamp: one definition for validation (batch) and scoring (requests).

Timestamps are the card's local wall-clock time (naive); the model reads the hour of day, the
day of week (Monday = 0) and whether that day is a weekend.
"""

from __future__ import annotations

import numpy as np

MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday
WEEKEND_FROM = 5  # Saturday and Sunday


def hour_and_weekday(timestamps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(hour_of_day, day_of_week, known)`` as int64 arrays and a mask; NaT rows are not ``known``
    (their hour and day are 0)."""
    ms = np.asarray(timestamps, dtype="datetime64[ms]")
    known = ~np.isnat(ms)
    values = np.where(known, ms.astype("int64"), 0)
    days = np.floor_divide(values, MS_PER_DAY)
    hour = np.floor_divide(values - days * MS_PER_DAY, MS_PER_HOUR)
    return hour, (days + EPOCH_WEEKDAY) % 7, known


def is_weekend(day_of_week: np.ndarray) -> np.ndarray:
    return np.asarray(day_of_week) >= WEEKEND_FROM
