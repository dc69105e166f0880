"""The review queue end to end, with the scoring API as a real process: traffic is replayed,
`GET /alerts` lists the day's top cards, analysts post their decisions to `POST /labels`, the
decided cards are gone from the next `GET /alerts`, and after the capture sensor, the label feed
and `train_models`, the decisions are the labels of those transactions in the new training data."""

from __future__ import annotations

import datetime as dt
import time

import dagster as dg
import httpx
import pandas as pd
import pytest

from fraud_assets.core import columns as c
from fraud_assets.core.labels import LABEL_SOURCE
from fraud_assets.replay import replay
from fraud_assets.services.testing import start_api, stop_processes
from tests.test_label_loop import api_env, build_history, file_and_retrain, pipeline
from tests.test_serving import home, world  # noqa: F401  (fixtures: the API's champion and population)

pytestmark = pytest.mark.slow
CAPACITY = 10
KEY = {"X-API-Key": "analyst-key"}


def queue_of(client: httpx.Client, day: str, cards: int, timeout: float = 120) -> dict:
    """The day's queue once the prediction log holds the traffic of ``cards`` cards (it is written
    every flush)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get("/alerts", params={"day": day}, headers=KEY)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        if body["cards_scored"] >= cards or time.monotonic() > deadline:
            return body
        time.sleep(0.5)


# A safety cap, not a speed check: history, an API process, two ingests and a training run take
# 3-7 minutes on 2 cores depending on what else runs; the suite's default cap is 10.
@pytest.mark.timeout(1800)
def test_alerts_are_worked_and_the_decisions_are_the_next_training_labels(
    world,  # noqa: F811
    home,  # noqa: F811
    tmp_path,
):
    feed = str(tmp_path / "capture")
    defs = pipeline(tmp_path / "pipeline", feed)
    live = world["live"]
    at = dict(zip(live[c.TRANSACTION_ID], live[c.TIMESTAMP], strict=True))
    today = dt.datetime.now(dt.UTC).date().isoformat()  # the UTC day the API scores the replay
    with dg.instance_for_test() as instance:
        build_history(defs, instance)
        env = api_env(
            home[0],
            world,
            tmp_path,
            feed,
            FRAUDOPS_PREDICTION_LOG_FLUSH_SECONDS="0",  # the queue reads what the log has written
            FRAUDOPS_REVIEW_CAPACITY=str(CAPACITY),
            FRAUDOPS_API_KEY=KEY["X-API-Key"],
        )
        proc, base = start_api(env, tmp_path / "api.log")
        try:
            with httpx.Client(base_url=base, timeout=30) as client:
                report = replay(
                    live, base, rate=5000, batch=50, clients=2, labels="none", api_key=KEY["X-API-Key"]
                )
                assert not report.failed and set(report.answered) == set(live[c.TRANSACTION_ID])
                first = queue_of(client, today, live[c.CARD_ID].nunique())
                assert first["cards_scored"] == live[c.CARD_ID].nunique() and first["cards_reviewed"] == 0
                listed = first["alerts"]
                assert [a["rank"] for a in listed] == list(range(1, CAPACITY + 1))
                assert all(a["reasons"] and a["recent_transactions"] for a in listed)
                # the analysts work the first three cards: fraud, genuine, fraud
                decisions = {
                    a["transaction_id"]: fraud
                    for a, fraud in zip(listed[:3], (True, False, True), strict=True)
                }
                body = {
                    "labels": [
                        {
                            "label_id": f"review-{tid}",
                            "transaction_id": tid,
                            "is_fraud": fraud,
                            "reported_at": (at[tid] + pd.Timedelta(hours=1)).isoformat(),
                            "reason": "reviewed from the queue",
                        }
                        for tid, fraud in decisions.items()
                    ]
                }
                assert client.post("/labels", json=body, headers=KEY).status_code == 200
                after = client.get("/alerts", params={"day": today}, headers=KEY).json()
        finally:
            stop_processes(proc)
        decided_cards = {a["card_id"] for a in listed[:3]}
        assert after["cards_reviewed"] == 3
        assert not decided_cards & {a["card_id"] for a in after["alerts"]}
        assert [a["card_id"] for a in after["alerts"]][: CAPACITY - 3] == [a["card_id"] for a in listed[3:]]

        file_and_retrain(defs, instance, live)

    training = pd.read_parquet(tmp_path / "pipeline" / "storage" / "training_data.parquet").set_index(
        c.TRANSACTION_ID
    )
    decided = training.loc[list(decisions)]
    assert decided[c.IS_FRAUD].astype(int).to_dict() == {tid: int(fraud) for tid, fraud in decisions.items()}
    assert (decided[LABEL_SOURCE] == "analyst").all()
