"""The day count `make run` needs: the minimum `first_look` derives from the training defaults is
exactly what the training code accepts, fewer days are refused with a message naming it, and the
Makefile and the README agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from fraud_assets import first_look
from fraud_assets.core import columns as c
from fraud_assets.core.splitting import TRAIN
from fraud_assets.core.training import TuningPlan, train_candidate
from fraud_assets.defs.resources import LabelFeedResource
from fraud_assets.defs.training import SPLIT, TrainingWindowConfig, training_data

ROOT = Path(__file__).resolve().parents[1]


def minute_by_minute(days: int, last_day: str = "2026-03-31") -> pd.DataFrame:
    """One labelled transaction a minute over ``days`` whole days, 3% fraud, labels known 2 days
    (fraud) or 7 days (legit) later: dense enough that every tuning fold holds fraud, so that only
    the time span decides whether training is possible. The first row is at 00:00:30 and the last
    at 23:59:30, like a day of real traffic that starts after midnight and ends before the next."""
    start = pd.Timestamp(last_day) - pd.Timedelta(days=days - 1)
    timestamps = pd.date_range(start + pd.Timedelta(seconds=30), periods=days * 1440, freq="min")
    rng = np.random.default_rng(0)
    fraud = (rng.random(len(timestamps)) < 0.03).astype("int64")
    return pd.DataFrame(
        {
            c.TIMESTAMP: timestamps,
            c.AMOUNT: rng.lognormal(3.5, 1.0, len(timestamps)) * np.where(fraud == 1, 3.0, 1.0),
            c.IS_FRAUD: fraud,
            c.LABEL_KNOWN_AT: timestamps + pd.to_timedelta(np.where(fraud == 1, 2, 7), unit="D"),
        }
    )


def train_on(frame: pd.DataFrame):
    """What `train_models` does with the defaults: the `training_data` asset, then a candidate."""
    data = training_data(
        dg.build_asset_context(),
        TrainingWindowConfig(),
        frame,
        fraud_labels=pd.DataFrame(),  # the rows carry their labels
        label_feed=LabelFeedResource(path="labels"),
    )
    train = data[data[SPLIT] == TRAIN]
    return train_candidate(
        "logistic_regression",
        train[[c.AMOUNT]],
        train[c.IS_FRAUD],
        train[c.TIMESTAMP],
        TuningPlan(n_trials=1, imbalance_methods=("class_weight",)),
    )


def test_the_minimum_trains_and_one_day_fewer_cannot():
    least = first_look.minimum_days()
    _, report = train_on(minute_by_minute(least))
    assert report["n_folds"] >= 1 and report["n_train_rows"] > 0
    with pytest.raises(ValueError, match="validation block"):
        train_on(minute_by_minute(least - 1))


def test_first_look_refuses_too_few_days_and_names_the_minimum(capsys):
    least = first_look.minimum_days()
    with pytest.raises(SystemExit) as refused:
        first_look.main(["--days", str(least - 1)])
    assert refused.value.code == 2
    message = capsys.readouterr().err
    assert f"--days {least - 1} is too few" in message and f"at least {least} days" in message


def test_make_run_and_the_readme_agree_with_the_minimum():
    least = first_look.minimum_days()
    days = int(re.search(r"^DAYS\s*\?=\s*(\d+)", (ROOT / "Makefile").read_text(), re.M).group(1))
    assert days >= least
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"builds {days} days" in readme and f"at least {least} days" in readme
