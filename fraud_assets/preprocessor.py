"""The seed guide's ``src.data.preprocessor``: `FraudPreprocessor` and `prepare_train_test_split`."""

from fraud_assets.core.preprocessor import FraudPreprocessor
from fraud_assets.core.splitting import prepare_train_test_split

__all__ = ["FraudPreprocessor", "prepare_train_test_split"]
