"""The seed guide's snippets run as written, with only `src.data.*` / `src.models.*` -> `fraud_assets.*`."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

TRAIN_LOCALLY = """
from fraud_assets.generator import FraudDataGenerator
from fraud_assets.preprocessor import FraudPreprocessor, prepare_train_test_split
from fraud_assets.fraud_classifier import FraudClassifier

# Generate data
gen = FraudDataGenerator(n_samples=10000, fraud_rate=0.01)
df = gen.generate()

# Split and preprocess
X_train, X_test, y_train, y_test = prepare_train_test_split(df)
preprocessor = FraudPreprocessor()
X_train_proc = preprocessor.fit_transform(X_train)
X_test_proc = preprocessor.transform(X_test)

# Train model
model = FraudClassifier(algorithm='xgboost')
model.fit(X_train_proc, y_train)

# Evaluate
metrics = model.evaluate(X_test_proc, y_test)
print(f'AUC-ROC: {metrics["auc_roc"]:.4f}')
print(f'Precision: {metrics["precision"]:.4f}')
print(f'Recall: {metrics["recall"]:.4f}')
"""

USAGE_EXAMPLES = """
from fraud_assets.generator import FraudDataGenerator

generator = FraudDataGenerator(
    n_samples=100000,    # Number of transactions
    fraud_rate=0.01,     # 1% fraud
    n_cardholders=10000, # Unique cardholders
    seed=42              # Reproducibility
)

df = generator.generate()
generator.save(df, file_format='parquet')
generator.save(df, file_format='csv')

from fraud_assets.schema import validate_data

# Validate DataFrame
is_valid, error = validate_data(df, schema_type='raw')

if not is_valid:
    print(f"Validation failed: {error}")
print(f"VALID {is_valid}")

from fraud_assets.preprocessor import FraudPreprocessor, prepare_train_test_split

X_train, X_test, y_train, y_test = prepare_train_test_split(df)
X_val, y_val = X_test, y_test

preprocessor = FraudPreprocessor(
    scaling_method='standard',
    create_interactions=True
)

# Fit on training data
X_train_transformed = preprocessor.fit_transform(X_train, y_train)

# Transform test data
X_test_transformed = preprocessor.transform(X_test)

# Save for production
preprocessor.save('models/preprocessor.pkl')

from fraud_assets.fraud_classifier import FraudClassifier

# Create classifier
model = FraudClassifier(
    algorithm='xgboost',
    handle_imbalance=True,  # Apply SMOTE
    n_estimators=100,
    max_depth=6,
    learning_rate=0.1
)

# Train
model.fit(X_train_transformed, y_train)

# Predict
y_pred = model.predict(X_test_transformed)
y_proba = model.predict_proba(X_test_transformed)

# Evaluate
metrics = model.evaluate(X_test_transformed, y_test)
print(f"AUC-ROC: {metrics['auc_roc']:.4f}")

# Feature importance
importance = model.get_feature_importance(top_n=10)
print(importance)

# Optimize threshold
X_val = preprocessor.transform(X_val)
optimal_threshold = model.optimize_threshold(X_val, y_val, metric='f1')
print(f"THRESHOLD {optimal_threshold:.4f}")
print(f"PREDICTED {int(y_pred.sum())} OF {len(y_pred)}")
"""


def run_snippet(code: str, cwd) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def number(label: str, text: str) -> float:
    match = re.search(rf"{label}:? ([0-9.]+)", text)
    assert match, f"no {label!r} in output:\n{text}"
    return float(match.group(1))


def test_train_models_locally_snippet(tmp_path):
    out = run_snippet(TRAIN_LOCALLY, tmp_path)
    auc, precision, recall = (number(k, out) for k in ("AUC-ROC", "Precision", "Recall"))
    assert 0.6 < auc <= 1.0  # a real model on 28 days of 130 cards, not a coin
    assert 0.0 <= precision <= 1.0 and 0.0 <= recall <= 1.0


def test_usage_examples_and_validator_cli(tmp_path):
    out = run_snippet(USAGE_EXAMPLES, tmp_path)
    assert "VALID True" in out
    assert 0.8 < number("AUC-ROC", out) <= 1.0
    assert 0.0 < number("THRESHOLD", out) < 1.0
    assert (tmp_path / "models" / "preprocessor.pkl").exists()
    (csv,) = (tmp_path / "data" / "raw").glob("fraud_*.csv")
    assert (tmp_path / "data" / "raw" / csv.name.replace(".csv", ".parquet")).exists()

    ok = subprocess.run(
        [sys.executable, "-m", "fraud_assets.validator", str(csv)], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "valid (100000 rows" in ok.stdout

    bad = pd.read_csv(csv, nrows=50)
    bad.loc[3, "amount"] = -10
    bad.loc[4, "hour_of_day"] = 25
    bad.loc[5, "transaction_id"] = bad.loc[6, "transaction_id"]
    bad_path = tmp_path / "bad.csv"
    bad.to_csv(bad_path, index=False)
    failed = subprocess.run(
        [sys.executable, "-m", "fraud_assets.validator", str(bad_path)], capture_output=True, text=True
    )
    assert failed.returncode == 1
    assert "greater_than(0) [column 'amount']" in failed.stdout and "-10.0" in failed.stdout
    assert "[column 'hour_of_day']" in failed.stdout and "25" in failed.stdout
    assert "unique_transaction_id [column 'transaction_id']" in failed.stdout

    missing = subprocess.run(
        [sys.executable, "-m", "fraud_assets.validator", str(tmp_path / "nope.csv")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "cannot read" in missing.stderr


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"algorithm": "svm"}, "unknown algorithm"),
    ],
)
def test_classifier_errors_say_what_to_do(kwargs, message):
    from fraud_assets.fraud_classifier import FraudClassifier

    X = pd.DataFrame({"amount": [1.0, 2.0, 3.0, 4.0, 5.0]})
    with pytest.raises(ValueError, match=message):  # judged by fit, as in scikit-learn
        FraudClassifier(**kwargs).fit(X, [0, 1, 0, 1, 0])
