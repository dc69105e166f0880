"""Daily partitions shared by every transaction-level asset; the first is the first day of data.

The first partition is the first day the deployment holds data for, so the UI does not show
hundreds of empty days before it. It is, in this order:

1. ``FRAUDOPS_START_DATE``, when set (environment or ``.env``): a deployment that ingests older
   landing files sets it; the landing sensor names the day to set when a file starts earlier.
2. The day recorded in ``<FRAUDOPS_STATE_DIR>/start_date`` (``.fraudops/start_date``):
   ``python -m fraud_assets.first_look`` (what ``make run`` calls) writes the first day it builds
   there before it loads the definitions, and only ever moves it earlier (to an earlier window,
   or to the earliest day already materialized), so no partition that holds data disappears.
3. Otherwise 2025-01-01 (``DEFAULT_START_DATE`` in ``fraud_assets.core.settings``): fixed, never
   relative to today, so the partitions do not shift from one day to the next.

The last partition is today (``end_offset=1``), so a landing file with today's rows is ingested
today.

This is the one setting read when the code location loads, not when used: Dagster needs the
partitions definition when the assets are defined, at the import of the ``defs`` modules. A new
start date takes effect when the code location reloads (Deployment -> Reload, or a restart of
``dagster dev``); a test that sets the variable sees it in a new process.
"""

from __future__ import annotations

import dagster as dg

from fraud_assets.core.settings import load_settings

START = load_settings().partition_start()

daily_partitions = dg.DailyPartitionsDefinition(start_date=START.day.isoformat(), end_offset=1)

# One run for a whole backfill: on SQLite, one run per day is far too slow.
single_run = dg.BackfillPolicy.single_run()
