"""Dagster's SQLite event log, writing a batch of asset events in one transaction per database.

A single-run backfill of a landing file over 121 days logs 363 ``ASSET_MATERIALIZATION_PLANNED``
events when the run is created and 363 materializations when its outputs are stored (one per
day and asset: what lets the UI show each day as planned, in progress, failed or materialized).
Dagster hands such events over in batches when ``DAGSTER_EVENT_BATCH_SIZE`` is set (its
``DagsterEventBatchMetadata``), but `SqliteEventLogStorage` stores a batch one event at a time:
for each, a new engine, a connection and a commit (an fsync) in the run's database, then the
same again in the index database. On the 2-core VM that costs 9-11 s of a 26 s landing run at
load 2-3, and 60-90 s under heavy disk load.

`BatchedSqliteEventLogStorage` writes a batch with the statements Dagster's own ``store_event``
runs, in the same databases and tables, with one transaction in the run's database and one in
the index database. What is stored, and so what the UI shows, is unchanged; only the number of
commits falls (the tests compare both storages' records). Anything it does not handle the same
way (events of several runs, run status events) goes through Dagster's one-event path.

The instance's ``dagster.yaml`` names the class; constructing it turns Dagster's batching on for
the process (``DAGSTER_EVENT_BATCH_SIZE``, unless already set: 0 turns it off), so every
process that opens the instance (UI, daemon, run workers) batches without further setup.

It uses Dagster internals (``prepare_insert_event``, ``run_connection``, the index writes), so
it holds for the Dagster that pyproject.toml pins exactly; `tests/test_event_log_storage.py`
stores the same runs through it and through Dagster's own storage and compares the records, so
an upgrade that changes those internals fails there, not in a user's instance. A deployment on
PostgreSQL (deploy/cluster) does not use it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.sqlalchemy_compat import db_result
from dagster._serdes import ConfigurableClassData

BATCH_SIZE_VARIABLE = "DAGSTER_EVENT_BATCH_SIZE"
# Events per write: the planned events of a 2-year backfill of three assets (2,190) in 3 batches.
EVENT_BATCH_SIZE = 1000


class BatchedSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` whose ``store_event_batch`` commits once per database."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None):
        super().__init__(base_dir, inst_data)
        os.environ.setdefault(BATCH_SIZE_VARIABLE, str(EVENT_BATCH_SIZE))

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value
    ) -> BatchedSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        if not _batchable(events):
            super().store_event_batch(events)  # one event at a time, as Dagster does
            return
        statements = [self.prepare_insert_event(event) for event in events]
        with self.run_connection(events[0].run_id) as conn:  # one transaction (see _connect)
            for statement in statements:
                conn.execute(statement)
        assets = [i for i, event in enumerate(events) if event.dagster_event_type in ASSET_EVENTS]
        if assets:
            with self.index_transaction() as conn:
                ids = []
                for i in assets:
                    with db_result(conn, statements[i]) as result:
                        ids.append(result.inserted_primary_key[0])
                asset_events = [events[i] for i in assets]
                self._store_asset_event_tags(conn, asset_events, ids)
                for event, event_id in zip(asset_events, ids, strict=True):
                    self._store_asset_event(conn, event, event_id)
        for i, event in enumerate(events):  # planned checks: a few per run, as store_event does
            if event.dagster_event_type in ASSET_CHECK_EVENTS:
                with self.index_connection() as conn, db_result(conn, statements[i]) as result:
                    event_id = result.inserted_primary_key[0]
                self.store_asset_check_event(event, event_id)


def _batchable(events: Sequence[EventLogEntry]) -> bool:
    """One run's asset events (each with an asset key) and asset-check events: what Dagster batches."""
    return (
        len(events) > 1
        and len({event.run_id for event in events}) == 1
        and all(
            event.is_dagster_event
            and (
                event.dagster_event_type in ASSET_CHECK_EVENTS
                or (event.dagster_event_type in ASSET_EVENTS and event.dagster_event.asset_key is not None)
            )
            for event in events
        )
    )
