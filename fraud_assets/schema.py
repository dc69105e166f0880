"""The seed guide's ``src.data.schema``: Pandera contracts and `validate_data`.

>>> from fraud_assets.schema import validate_data
>>> is_valid, error = validate_data(df, schema_type="raw")
"""

from fraud_assets.core.schemas import RawTransactionSchema, ValidatedTransactionSchema
from fraud_assets.core.validation import check_report, split_transactions, validate_data

__all__ = [
    "RawTransactionSchema",
    "ValidatedTransactionSchema",
    "check_report",
    "split_transactions",
    "validate_data",
]
