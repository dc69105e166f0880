"""The default data must let the product's published targets be met.

The platform's asset checks require AUC-ROC > 0.90, average precision > 0.85 and precision
> 0.80 at 90% recall. This runs the reference model (the pipeline's own features, split and
preprocessor, a fixed LightGBM) on the platform's default data and asserts the targets with
a margin, so a generator change that makes them unreachable (say, more invisible fraud) is
caught here rather than by a failing asset check.
"""

from __future__ import annotations

import datetime

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from fraud_assets.core.generator import SimulationConfig, TransactionSimulator
from fraud_assets.core.preprocessor import FraudPreprocessor
from fraud_assets.core.splitting import prepare_train_test_split

START = datetime.date(2026, 1, 1)
DAYS = 30  # the platform's default window: test = last 6 days, 7-day label gap, ~17 days of training


def precision_at_recall(y: np.ndarray, score: np.ndarray, recall: float) -> float:
    """Best precision among the operating points with at least this recall."""
    precision, rec, _ = precision_recall_curve(y, score)
    return float(precision[rec >= recall].max())


def recall_at_precision(y: np.ndarray, score: np.ndarray, precision: float) -> float:
    """Best recall among the operating points with at least this precision (0 if none)."""
    prec, rec, _ = precision_recall_curve(y, score)
    ok = prec >= precision
    return float(rec[ok].max()) if ok.any() else 0.0


@pytest.fixture(scope="module")
def scored():
    lgb = pytest.importorskip("lightgbm")
    sim = TransactionSimulator(SimulationConfig(seed=42, n_cardholders=3_000, fraud_rate=0.01))
    df = sim.generate_days(START, START + datetime.timedelta(days=DAYS - 1))
    X_train, X_test, y_train, y_test = prepare_train_test_split(df)
    pre = FraudPreprocessor()
    A, B = pre.fit_transform(X_train), pre.transform(X_test)
    model = lgb.LGBMClassifier(
        n_estimators=400,
        learning_rate=0.03,
        num_leaves=31,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.7,
        random_state=0,
        n_jobs=1,  # reproducible, and immune to thread contention on a busy machine
        verbose=-1,
    ).fit(A, y_train)
    return y_test.to_numpy(), model.predict_proba(B)[:, 1], X_test["fraud_scenario"].to_numpy()


def test_reference_model_meets_published_targets(scored):
    y, score, _ = scored
    auc = roc_auc_score(y, score)
    ap = average_precision_score(y, score)
    p90 = precision_at_recall(y, score, 0.9)
    print(f"AUC {auc:.3f}  AP {ap:.3f}  precision@90% recall {p90:.3f}  ({int(y.sum())} test frauds)")
    # targets 0.90 / 0.85 / 0.80, with a margin (seed 42 measured 0.989 / 0.959 / 0.976)
    assert auc > 0.92
    assert ap > 0.87
    assert p90 > 0.82


def test_visible_scenarios_are_caught_and_lost_stolen_is_not(scored):
    """Recall at precision 0.8 against all legit rows, per scenario: the data is learnable
    through the visible scenarios, while lost/stolen cards stay genuinely hard."""
    y, score, scenario = scored
    legit = y == 0
    recall = {
        name: recall_at_precision(y[legit | (scenario == name)], score[legit | (scenario == name)], 0.8)
        for name in ("card_testing", "account_takeover", "compromised_merchant", "lost_stolen")
    }
    print({k: round(v, 3) for k, v in recall.items()})
    assert recall["card_testing"] > 0.95 and recall["account_takeover"] > 0.9
    assert recall["compromised_merchant"] > 0.75
    assert recall["lost_stolen"] < 0.5
