"""``POST /labels``: analysts' decisions (and any other label) into the label feed.

A label says that a transaction was fraud or genuine; it is checked with the label feed's own
rules (`fraud_assets.core.labels`: the id formats, the source's, the reason's length) and
appended to the capture feed's ``labels`` stream before the answer is sent, from where the
pipeline files it into `fraud_labels` under the day it was reported. Idempotent by label id:
the feed keeps a label id once (its first record), so a retried request adds nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)

from fraud_assets.core import columns as c
from fraud_assets.core.labels import (
    API_SOURCE,
    FEED,
    FEED_API,
    LABEL_ID,
    LABEL_ID_PATTERN,
    MAX_REASON,
    REASON,
    REPORTED_AT,
    SOURCE,
    SOURCE_PATTERN,
)
from fraud_assets.core.schemas import ID_PATTERN
from fraud_serving.schemas import EARLIEST, LATEST


def _flag(value: Any) -> bool:
    """true/false, or 1/0 as JSON numbers; nothing else (a "yes" is no label)."""
    if isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    raise ValueError("is_fraud must be true or false (or 1 or 0)")


Flag = Annotated[
    bool, PlainValidator(_flag), WithJsonSchema({"type": ["boolean", "integer"], "enum": [True, False, 0, 1]})
]


class Label(BaseModel):
    """One label: the transaction, fraud or not, when it became known, who says so and why."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    label_id: Annotated[str, Field(pattern=LABEL_ID_PATTERN)] = Field(
        description="your id of this label (1-128 characters): a label id received before adds nothing"
    )
    transaction_id: Annotated[str, Field(pattern=ID_PATTERN)] = Field(
        description="the labelled transaction (it may arrive later: the label waits for it)"
    )
    is_fraud: Flag = Field(description="true (or 1): fraud; false (or 0): genuine")
    reported_at: Annotated[dt.datetime, Field(ge=EARLIEST, lt=LATEST)] | None = Field(
        default=None,
        description="when the label became known, ISO 8601 (an offset is dropped, the clock time kept); "
        "default: now (UTC)",
    )
    source: Annotated[str, Field(pattern=SOURCE_PATTERN)] = Field(
        default=API_SOURCE, description="who says so: analyst (default), chargeback, reversal, ..."
    )
    reason: Annotated[str, Field(max_length=MAX_REASON)] | None = Field(default=None, description="free text")


class LabelBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: Annotated[list[Label], Field(min_length=1, description="at most FRAUDOPS_MAX_BATCH (413 above)")]


class LabelsAccepted(BaseModel):
    received: int = Field(description="labels in the request")
    label_ids: list[str] = Field(description="their ids, in the request's order")
    reported_days: list[str] = Field(description="the day each is filed under (its fraud_labels partition)")


LABEL = TypeAdapter(Label)
BATCH = TypeAdapter(LabelBatch)
_LABEL_SCHEMA = Label.model_json_schema()  # flat: no nested model, so no $defs to resolve
BODY_SCHEMA = {
    "oneOf": [
        _LABEL_SCHEMA,
        {
            "title": "LabelBatch",
            "type": "object",
            "required": ["labels"],
            "additionalProperties": False,
            "properties": {"labels": {"type": "array", "minItems": 1, "items": _LABEL_SCHEMA}},
        },
    ]
}


def parse_labels(body: Any) -> list[Label]:
    """A parsed JSON body (one label, or ``{"labels": [...]}``) as labels; `ValidationError`
    names each bad field (and item: ``labels.3.is_fraud``)."""
    if isinstance(body, dict) and "labels" in body:
        return BATCH.validate_python(body).labels
    return [LABEL.validate_python(body)]


def label_rows(labels: list[Label], now: dt.datetime) -> list[dict[str, Any]]:
    """The feed's records of ``labels`` (plain values; naive timestamps, the transactions' clock)."""
    default = now.astimezone(dt.UTC).replace(tzinfo=None)
    return [
        {
            LABEL_ID: label.label_id,
            c.TRANSACTION_ID: label.transaction_id,
            c.IS_FRAUD: int(label.is_fraud),
            REPORTED_AT: (
                label.reported_at.replace(tzinfo=None) if label.reported_at else default
            ).isoformat(),
            SOURCE: label.source,
            REASON: label.reason,
            FEED: FEED_API,
        }
        for label in labels
    ]


__all__ = [
    "BODY_SCHEMA",
    "Label",
    "LabelBatch",
    "LabelsAccepted",
    "ValidationError",
    "label_rows",
    "parse_labels",
]
