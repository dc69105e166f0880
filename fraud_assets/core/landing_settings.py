"""How to read a user's landing files: the column mapping onto fraudops' names, timestamps,
text encoding, CSV separator and the label delay assumed for files that carry labels.

Parsed once from the settings (`FRAUDOPS_LANDING_*`) and handed to the readers in `landing_files`
and `ingest`; a mapping that names an unknown column, or one file column twice, is refused here.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from fraud_assets.core import columns as c

KNOWN_COLUMNS = frozenset(c.ALL_COLUMNS)


@dataclass(frozen=True)
class LandingSettings:
    """How to read a user's files.

    ``column_mapping`` maps our column name to the name in the file, e.g.
    ``{"transaction_id": "txn_ref", "timestamp": "created", "is_fraud": "chargeback"}``;
    columns already named like ours need no entry.
    """

    column_mapping: Mapping[str, str] = field(default_factory=dict)
    timestamp_format: str | None = None
    label_delay_days: float = 7.0
    encoding: str = "utf-8"
    csv_separator: str = ","

    def __post_init__(self) -> None:
        unknown = sorted(set(self.column_mapping) - KNOWN_COLUMNS)
        if unknown:
            raise ValueError(
                f"column_mapping has unknown target column(s) {unknown}; "
                f"map onto these names: {sorted(KNOWN_COLUMNS)}"
            )
        targets = list(self.column_mapping.values())
        twice = sorted({name for name in targets if targets.count(name) > 1})
        if twice:
            raise ValueError(f"column_mapping uses file column(s) {twice} for several targets")
        if self.label_delay_days < 0:
            raise ValueError(f"label_delay_days must be >= 0, not {self.label_delay_days}")
        if len(self.csv_separator) != 1:
            raise ValueError(f"csv_separator must be one character, not {self.csv_separator!r}")
        try:
            codecs.lookup(self.encoding)
        except LookupError as err:
            raise ValueError(f"unknown text encoding {self.encoding!r} (e.g. utf-8, latin-1)") from err

    @classmethod
    def from_json(cls, mapping_json: str | None, **kwargs: object) -> LandingSettings:
        """Build settings from a JSON column mapping (as kept in an environment variable)."""
        mapping: dict[str, str] = {}
        if mapping_json and mapping_json.strip():
            try:
                mapping = json.loads(mapping_json)
            except json.JSONDecodeError as err:
                raise ValueError(f"column mapping is not valid JSON ({err}): {mapping_json!r}") from err
            if not isinstance(mapping, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
            ):
                raise ValueError('column mapping must be a JSON object of strings, e.g. {"amount": "amt"}')
        return cls(column_mapping=mapping, **kwargs)  # type: ignore[arg-type]

    def file_column(self, ours: str) -> str:
        """The name our column has in the file."""
        return self.column_mapping.get(ours, ours)
