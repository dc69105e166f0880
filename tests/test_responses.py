"""The scoring answers' JSON, built column by column, and the score histogram."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from fraud_serving import responses
from fraud_serving.metrics import SCORE_BUCKETS, ScoreHistogram
from fraud_serving.schemas import BatchResponse
from tests.tolerances import summation_error

ODD = ["plain", "a,\nb", 'quote " and \\ backslash', "ünïcødé ✓", ",\n", "", "tab\there"]


def test_json_values_are_each_value_as_json():
    values = [*ODD, 1, 2.5, -1e-300, 1e300, None, True, float("nan")]
    texts = responses.json_values(values)
    assert len(texts) == len(values)
    decoded = [json.loads(t) for t in texts]
    assert decoded[:-1] == values[:-1] and decoded[-1] is None  # NaN -> null
    assert responses.json_values([]) == [] and responses.json_values(["x"]) == [b'"x"']
    stamps = [dt.datetime(2026, 11, 27, 2, 10), dt.datetime(2026, 11, 27, 2, 10, 5, 1)]
    assert [json.loads(t) for t in responses.json_values(stamps)] == [d.isoformat() for d in stamps]


@pytest.mark.parametrize("k", [0, 3])
def test_predictions_follow_the_schema_and_keep_every_value(k):
    rng = np.random.default_rng(k)
    n = len(ODD)
    names = [f'feature "{j}"' for j in range(10)]
    top = rng.integers(0, 10, (n, k))
    contributions, values = rng.normal(size=(n, k)), rng.normal(size=(n, k))
    probabilities = rng.random(n)
    flagged = probabilities >= 0.5
    features = {"amount": rng.random(n), "merchant_category": np.array(ODD, dtype=object)}
    features["amount"][0] = np.nan
    rows = responses.predictions(
        ODD, flagged, probabilities, [b"low"] * n, ["2026-01-01T00:00:00"] * n, "v1",
        responses.reason_codes([json.dumps(x).encode() for x in names], top, contributions, values),
        responses.features_objects(features),
    )  # fmt: skip
    body = BatchResponse.model_validate_json(responses.batch(rows, "v1"))
    assert body.count == n and body.model_version == "v1"
    for i, pred in enumerate(body.predictions):
        assert pred.transaction_id == ODD[i] and pred.is_fraud == int(flagged[i])
        assert pred.fraud_probability == probabilities[i]  # exact: shortest round-trip text
        assert [r.feature for r in pred.reason_codes] == [names[j] for j in top[i]]
        assert [r.contribution for r in pred.reason_codes] == contributions[i].tolist()
        assert [r.value for r in pred.reason_codes] == values[i].tolist()
        assert pred.features["merchant_category"] == ODD[i]
    assert body.predictions[0].features["amount"] is None


def test_score_histogram_equals_prometheus_own():
    rng = np.random.default_rng(0)
    scores = np.concatenate([rng.random(997), [0.0, 0.05, 1.0]])  # values on the edges too
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    mine = ScoreHistogram("fraudops_fraud_probability", "scores", SCORE_BUCKETS, ours)
    reference = Histogram("fraudops_fraud_probability", "scores", buckets=SCORE_BUCKETS, registry=theirs)
    mine.observe_many(scores[:500])
    mine.observe_many(scores[500:])
    for value in scores:
        reference.observe(value)

    def samples(registry) -> dict[str, float]:
        lines = generate_latest(registry).decode().splitlines()
        return dict(
            line.rsplit(" ", 1) for line in lines
            if line.startswith("fraudops_fraud_probability_") and "_created" not in line
        )  # fmt: skip

    mine_samples, their_samples = samples(ours), samples(theirs)
    total = "fraudops_fraud_probability_sum"
    # The sum of 1,000 scores in [0, 1]: ours adds two chunk sums (NumPy's), prometheus one score
    # at a time; each adds 1,000 terms with partial sums below 1,000 (the text is repr: exact).
    tolerance = 2 * summation_error(len(scores), len(scores))
    assert float(mine_samples.pop(total)) == pytest.approx(
        float(their_samples.pop(total)), rel=0, abs=tolerance
    )
    assert mine_samples == their_samples
    assert len(mine_samples) == len(SCORE_BUCKETS) + 2  # the buckets, +Inf and the count
