"""fraudops: credit-card fraud detection on Dagster.

The Python API of the seed guide, for notebooks and scripts (no Dagster needed):

    >>> from fraud_assets import FraudDataGenerator, validate_data
    >>> df = FraudDataGenerator(n_samples=10_000, fraud_rate=0.01, seed=42).generate()
    >>> validate_data(df, schema_type="raw")
    (True, None)

The Dagster code location lives in `fraud_assets.definitions`.
"""

from fraud_assets.core.generator import DriftKnobs, FraudDataGenerator, SimulationConfig, TransactionSimulator
from fraud_assets.core.validation import split_transactions, validate_data

__all__ = [
    "DriftKnobs",
    "FraudDataGenerator",
    "SimulationConfig",
    "TransactionSimulator",
    "split_transactions",
    "validate_data",
]
