"""Request and response bodies of the scoring API (pydantic; the OpenAPI schema comes from here).

Requests are validated into plain dicts (`TRANSACTION_ROWS`, `BATCH_ROWS`: TypedDicts made from
the `Transaction` model's own fields and checks), twice as fast as into model instances: a
1,000-transaction batch took 3.7 ms as models, 1.6 ms as dicts. Fields a client leaves out are
absent keys.

The query options (`ScoringOptions`) are a model too, so the OpenAPI schema documents them; the
answers carry business reason codes (`ReasonCode`: the transaction's own fields) and, on request,
the model's raw ones (`RawReasonCode`: its columns).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model
from typing_extensions import TypedDict

from fraud_assets.core.features import HISTORY_FEATURES

# Numbers are strict (a JSON string "12" is a wrong type, not a number); ints pass as floats.
# NaN and infinities are refused everywhere; ranges follow the Pandera contracts.
Amount = Annotated[
    float,
    Field(gt=0, le=1_000_000, allow_inf_nan=False, strict=True, description="Amount, > 0 and <= 1,000,000"),
]
Count = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False, strict=True)]
Money = Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False, strict=True)]
Rate = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)]
Seconds = Annotated[float, Field(ge=0, le=1e10, allow_inf_nan=False, strict=True)]
Flag = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)]
EARLIEST, LATEST = dt.datetime(1970, 1, 1), dt.datetime(2200, 1, 1)  # within datetime64[ns]
Text = Annotated[str, Field(min_length=1, max_length=128)]


def _history_field(name: str):
    if name.startswith(
        ("transactions_last_", "merchant_labelled_", "merchant_frauds_", "merchant_known_", "merchant_days_")
    ):
        kind = Count
    elif name.startswith("merchant_fraud_rate_"):
        kind = Rate
    elif name.startswith("is_new_"):
        kind = Flag
    elif name == "seconds_since_last_txn":
        kind = Seconds
    elif name.startswith("amount_to_avg_"):
        kind = Count
    else:  # total_amount_last_*, avg_amount_last_*
        kind = Money
    return (kind | None, Field(default=None, description=f"history feature `{name}`; computed when absent"))


class _TransactionBase(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    amount: Amount
    merchant_category: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="one of the contract's categories; any other value is an unknown category"
    )
    merchant_country: Annotated[str, Field(max_length=64)] | None = None
    hour_of_day: Annotated[int, Field(ge=0, le=23, strict=True)] | None = Field(
        default=None, description="0-23, the card's local time; derived from `timestamp` when absent"
    )
    day_of_week: Annotated[int, Field(ge=0, le=6, strict=True)] | None = Field(
        default=None, description="Monday = 0; derived from `timestamp` when absent"
    )
    is_online: bool | None = None
    is_weekend: bool | None = Field(
        default=None, description="derived from day_of_week/timestamp when absent"
    )
    is_foreign: bool | None = None
    distance_from_home: Annotated[float, Field(ge=0, le=20_100, allow_inf_nan=False, strict=True)] | None = (
        None
    )
    entry_mode: Annotated[str, Field(max_length=64)] | None = None
    transaction_id: Text | None = Field(default=None, description="generated when absent")
    card_id: Text | None = Field(
        default=None, description="with `timestamp`: history features from card state"
    )
    merchant_id: Text | None = None
    device_fingerprint: Text | None = None
    timestamp: Annotated[dt.datetime, Field(ge=EARLIEST, lt=LATEST)] | None = Field(
        default=None,
        description="ISO 8601, the card's local time (a UTC offset, if given, is dropped: wall clock kept)",
    )


Transaction = create_model(
    "Transaction",
    __base__=_TransactionBase,
    __doc__="One card transaction. Only `amount` is required; absent values are imputed as in training.",
    **{name: _history_field(name) for name in HISTORY_FEATURES if name not in _TransactionBase.model_fields},
)


def _rows_of(model: type[BaseModel]) -> type:
    """A TypedDict with the model's fields and checks (optional fields as optional keys), under
    the model's name and description (it is what the OpenAPI schema shows)."""
    fields = {}
    for name, info in model.model_fields.items():
        kind = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        fields[name] = kind if info.is_required() else NotRequired[kind]
    rows = TypedDict(model.__name__, fields)  # type: ignore[operator]
    rows.__doc__ = model.__doc__
    rows.__pydantic_config__ = model.model_config  # extra fields ignored, strings stripped
    return rows


TransactionRow = _rows_of(Transaction)


class BatchRequest(TypedDict):
    transactions: Annotated[
        list[TransactionRow], Field(min_length=1, description="at most FRAUDOPS_MAX_BATCH (413 above)")
    ]  # type: ignore[valid-type]


TRANSACTION_ROWS = TypeAdapter(TransactionRow)  # a /predict body -> dict
BATCH_ROWS = TypeAdapter(BatchRequest)  # a /predict/batch body -> {"transactions": [dict, ...]}


ReasonMethod = Literal["exact", "approx", "none"]


class ScoringOptions(BaseModel):
    """The scoring endpoints' query parameters."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # hashable: `coalescing` groups by it

    include_features: bool = Field(default=False, description="also return the model's input values")
    reasons: ReasonMethod = Field(
        default="exact",
        description="reason codes from exact TreeSHAP contributions (default), XGBoost's approximate "
        "path attribution, or none",
    )
    raw_reasons: bool = Field(
        default=False, description="also return the model's own top contributions, per model column"
    )


class ReasonCode(BaseModel):
    """A transaction field that drove the score, in the analyst's terms."""

    field: str = Field(description="the transaction's field (one-hot columns grouped back into it)")
    value: str | float | int | bool = Field(description="the transaction's own value of the field")
    direction: Literal["raises", "lowers"] = Field(description="whether it raises or lowers the fraud risk")
    contribution: float = Field(
        description="push towards fraud, in log-odds: the sum of the field's model columns' TreeSHAP "
        "values (an interaction shared equally among its fields)"
    )
    explanation: str = Field(
        description='a short sentence, e.g. "amount is 6.2x this card\'s 30-day average"'
    )


class RawReasonCode(BaseModel):
    feature: str = Field(description="the model's column")
    contribution: float = Field(description="push towards fraud, in log-odds (the model's own contribution)")
    value: float | None = Field(description="the column's value for this transaction (after imputation)")


RiskLevel = Literal["low", "medium", "high", "critical"]


class Prediction(BaseModel):
    transaction_id: str
    is_fraud: int = Field(description="1 when fraud_probability >= the model's threshold")
    fraud_probability: float
    risk_level: RiskLevel
    timestamp: str = Field(description="the transaction's timestamp if given, else when it was scored (UTC)")
    model_version: str
    reason_codes: list[ReasonCode]
    raw_reasons: list[RawReasonCode] | None = Field(
        default=None, description="the model's own top contributions (only with ?raw_reasons=true)"
    )
    features: dict[str, float | str | None] | None = Field(
        default=None, description="the model's input values (only with ?include_features=true)"
    )


class BatchResponse(BaseModel):
    predictions: list[Prediction]
    model_version: str
    count: int


class ErrorResponse(BaseModel):
    detail: str | list
    error_id: str | None = Field(default=None, description="500 only: the id of the error's log line")
