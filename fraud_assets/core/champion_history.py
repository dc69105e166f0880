"""Which model is champion: the latest `champion_model` materialization in the Dagster instance.

That materialization is the one truth. Every reader asks it here, through :func:`latest_champion`
(or :func:`champion_history`, newest first): the champion gate, the monitoring assets, the first
look, the rollback, the mirror that keeps MLflow's `champion` alias equal to it, and the scoring
API. They cannot disagree, whatever happens to the alias. A promotion and a rollback are both a
new materialization whose metadata are a `ChampionRecord` (`fraud_assets.core.contract`); the
history is how a rollback finds the champion before.

The instance is used as it is, through two public methods of `dagster.DagsterInstance`
(`get_asset_keys`, `fetch_materializations`), and the asset key object comes from the instance
itself, so this module imports no Dagster and serving can read it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fraud_assets.core.contract import CHAMPION_MODEL, ROLLBACK, ChampionRecord, ContractError, plain_metadata

HISTORY_PAGE = 50  # materializations read per query while walking back through the history


@dataclass(frozen=True)
class ChampionMaterialization:
    """One `champion_model` materialization as the instance stores it: its event and metadata.

    The metadata are read as a `ChampionRecord` when asked (:meth:`champion`), so a malformed
    one is refused by whoever reads it, with the reason."""

    storage_id: int
    run_id: str
    metadata: dict[str, Any]
    materialized_at: float | None = None

    def champion(self) -> ChampionRecord:
        """The record; `ContractError` naming what is wrong when the metadata are malformed."""
        return ChampionRecord.from_metadata(self.metadata)

    @classmethod
    def of(cls, event_record: Any) -> ChampionMaterialization:
        """From one of the instance's event records (`dagster.EventLogRecord`)."""
        materialization = event_record.asset_materialization
        return cls(
            storage_id=int(event_record.storage_id),
            run_id=event_record.run_id or "",
            metadata=plain_metadata(materialization.metadata or {}),
            materialized_at=event_record.timestamp,
        )


def champion_history(instance: Any, page: int = HISTORY_PAGE) -> Iterator[ChampionMaterialization]:
    """Every `champion_model` materialization of ``instance``, newest first, read a page at a time
    as the caller walks back (one indexed query per page)."""
    key = _asset_key(instance, CHAMPION_MODEL)
    if key is None:  # nothing has ever been champion
        return
    cursor = None
    while True:
        result = instance.fetch_materializations(key, limit=page, cursor=cursor)
        yield from (ChampionMaterialization.of(record) for record in result.records)
        if not result.has_more or not result.records:
            return
        cursor = result.cursor


def latest_champion(instance: Any) -> ChampionMaterialization | None:
    """The newest `champion_model` materialization: the champion, or None before the first."""
    return next(champion_history(instance, page=1), None)


def current_champion(instance: Any) -> ChampionRecord | None:
    """The champion's record, or None before the first; `ContractError` when its metadata are
    malformed."""
    latest = latest_champion(instance)
    return None if latest is None else latest.champion()


def latest_materialization(instance: Any, name: str) -> ChampionMaterialization | None:
    """The newest materialization of the asset ``name`` (its event and metadata), or None."""
    key = _asset_key(instance, name)
    if key is None:
        return None
    records = instance.fetch_materializations(key, limit=1).records
    return ChampionMaterialization.of(records[0]) if records else None


def _asset_key(instance: Any, name: str) -> Any:
    """The instance's own key object for the asset ``name`` (None before its first event)."""
    for key in instance.get_asset_keys(prefix=[name]):
        if list(key.path) == [name]:
            return key
    return None


# --- rollback -------------------------------------------------------------------------------------


class RollbackError(ValueError):
    """No champion to roll back to; the message says why and what there is."""


def rollback_target(
    history: Iterable[ChampionMaterialization], version: str | None = None
) -> tuple[ChampionRecord | None, ChampionRecord]:
    """``(current champion, the champion to put back)`` from the history, newest first.

    ``version`` names the target by its bundle version or its MLflow version. Without it, the
    target is the newest earlier champion that no rollback has retired: the champion before the
    current one, and after a rollback the one before that (a second rollback goes further back,
    it does not undo the first; name a version to bring a retired champion back). The current
    record is None when its metadata are malformed (a reason to roll back, not to refuse).
    Malformed earlier records are passed over.
    """
    entries = iter(history)
    latest = next(entries, None)
    if latest is None:
        raise RollbackError("there is no champion yet: nothing to roll back")
    try:
        current: ChampionRecord | None = latest.champion()
    except ContractError:
        current = None
    retired = {current.replaced_version} if current is not None and current.promotion == ROLLBACK else set()
    seen: list[str] = []
    for entry in entries:
        try:
            record = entry.champion()
        except ContractError:
            continue
        if record.name not in seen:
            seen.append(record.name)
        is_current = current is not None and record.version == current.version
        if version is not None:
            if version in (record.version, record.mlflow_model_version):
                if is_current:
                    raise RollbackError(f"{record.name} is already the champion")
                return current, record
        elif not is_current and record.version not in retired:
            return current, record
        if record.promotion == ROLLBACK:
            retired.add(record.replaced_version)
    if current is not None and version in (current.version, current.mlflow_model_version):
        raise RollbackError(f"{current.name} is already the champion")
    earlier = ", ".join(seen) or "none"
    if version is not None:
        raise RollbackError(f"{version} was never champion before; the earlier champions: {earlier}")
    raise RollbackError(
        f"no earlier champion to roll back to that a rollback has not retired (the earlier champions: "
        f"{earlier}); name one with `version`"
    )
