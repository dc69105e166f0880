"""How to read a user's landing files: the column mapping onto fraudops' names, value rules,
timestamps, text encoding, CSV separator and the label delay assumed for files that carry labels.

Parsed once from the settings (`FRAUDOPS_LANDING_*`, `FRAUDOPS_LABELS_*`) and handed to the
readers in `landing_files`, `ingest` and `label_files`; a mapping that names an unknown column,
one file column twice, or a value rule that is not text, a number or a flag, is refused here.

A mapping entry is either the file's column name (``"amount": "amt"``) or an object naming the
column and its value rules (``"is_online": {"column": "channel", "values": {"CP": false, "CNP":
true}}``): users' files speak their own codes, and each code maps onto one of our values. A rule
value is kept as the text our readers parse (``true``, ``1``, ``chip``), so a mapped column goes
through the same checks as one that needed no rule.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fraud_assets.core import columns as c

KNOWN_COLUMNS = frozenset(c.ALL_COLUMNS)


def rule_text(value: object) -> str:
    """A rule's value as the text our readers parse: JSON true/false -> ``true``/``false``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise ValueError(f"a value rule maps onto text, a number or true/false, not {value!r}")


def split_mapping(mapping: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """A JSON mapping (ours: theirs, or ours: {"column": theirs, "values": {code: ours}}) as the
    column mapping and the value rules (ours -> {their code: our value as text})."""
    columns: dict[str, str] = {}
    rules: dict[str, dict[str, str]] = {}
    for ours, entry in mapping.items():
        if not isinstance(ours, str):
            raise ValueError(f"column mapping keys are our column names (text), not {ours!r}")
        if isinstance(entry, str):
            columns[ours] = entry
            continue
        if not isinstance(entry, Mapping) or not isinstance(entry.get("values"), Mapping):
            raise ValueError(
                f"column mapping of {ours!r}: give the file's column name, or "
                '{"column": "<their column>", "values": {"<their code>": <our value>, ...}}'
            )
        if unknown := sorted(set(entry) - {"column", "values"}):
            raise ValueError(f"column mapping of {ours!r}: unknown key(s) {unknown}; use column and values")
        column = entry.get("column", ours)
        if not isinstance(column, str):
            raise ValueError(f"column mapping of {ours!r}: column must be text, not {column!r}")
        if not entry["values"]:
            raise ValueError(f"column mapping of {ours!r}: values is empty; give at least one rule")
        columns[ours] = column
        rules[ours] = {str(code): rule_text(value) for code, value in entry["values"].items()}
    return columns, rules


def parse_mapping_json(mapping_json: str | None) -> dict[str, Any]:
    """The JSON text of a mapping (as kept in an environment variable) as a dict."""
    if not mapping_json or not mapping_json.strip():
        return {}
    try:
        mapping = json.loads(mapping_json)
    except json.JSONDecodeError as err:
        raise ValueError(f"column mapping is not valid JSON ({err}): {mapping_json!r}") from err
    if not isinstance(mapping, dict):
        raise ValueError('column mapping must be a JSON object, e.g. {"amount": "amt"}')
    split_mapping(mapping)  # judged now, so a bad rule is named where it is configured
    return mapping


@dataclass(frozen=True)
class LandingSettings:
    """How to read a user's files.

    ``column_mapping`` maps our column name to the name in the file, e.g.
    ``{"transaction_id": "txn_ref", "timestamp": "created", "is_fraud": "chargeback"}``;
    columns already named like ours need no entry. ``value_rules`` maps, per our column, each of
    the file's codes onto our value as text (``{"is_online": {"CP": "false", "CNP": "true"}}``):
    a value of that column that no rule maps rejects its row. ``known_columns`` are the names a
    mapping may target (transactions' by default; label files have their own).
    """

    column_mapping: Mapping[str, str] = field(default_factory=dict)
    timestamp_format: str | None = None
    label_delay_days: float = 7.0
    encoding: str = "utf-8"
    csv_separator: str = ","
    value_rules: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    known_columns: frozenset[str] = field(default=KNOWN_COLUMNS, repr=False)

    def __post_init__(self) -> None:
        unknown = sorted((set(self.column_mapping) | set(self.value_rules)) - self.known_columns)
        if unknown:
            raise ValueError(
                f"column_mapping has unknown target column(s) {unknown}; "
                f"map onto these names: {sorted(self.known_columns)}"
            )
        targets = list(self.column_mapping.values())
        twice = sorted({name for name in targets if targets.count(name) > 1})
        if twice:
            raise ValueError(f"column_mapping uses file column(s) {twice} for several targets")
        for ours, rules in self.value_rules.items():
            if not rules or not all(isinstance(k, str) and isinstance(v, str) for k, v in rules.items()):
                raise ValueError(f"value rules of {ours!r} must map text onto text, not {rules!r}")
        if self.label_delay_days < 0:
            raise ValueError(f"label_delay_days must be >= 0, not {self.label_delay_days}")
        if len(self.csv_separator) != 1:
            raise ValueError(f"csv_separator must be one character, not {self.csv_separator!r}")
        try:
            codecs.lookup(self.encoding)
        except LookupError as err:
            raise ValueError(f"unknown text encoding {self.encoding!r} (e.g. utf-8, latin-1)") from err

    @classmethod
    def from_json(cls, mapping_json: str | None, **kwargs: Any) -> LandingSettings:
        """Build settings from a JSON mapping (as kept in an environment variable)."""
        return cls.from_mapping(parse_mapping_json(mapping_json), **kwargs)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], **kwargs: Any) -> LandingSettings:
        """Build settings from a mapping whose entries may carry value rules (module docstring)."""
        columns, rules = split_mapping(mapping)
        return cls(column_mapping=columns, value_rules=rules, **kwargs)

    def file_column(self, ours: str) -> str:
        """The name our column has in the file."""
        return self.column_mapping.get(ours, ours)
