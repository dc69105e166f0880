"""Daily partitions shared by every transaction-level asset."""

from __future__ import annotations

import os

import dagster as dg

# The first day a deployment may hold data for; a user with older files sets it earlier.
START_DATE = os.getenv("FRAUDOPS_START_DATE", "2025-01-01")

# end_offset=1: today is a partition too, so a landing file with today's rows is ingested today.
daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE, end_offset=1)

# One run for a whole backfill: on SQLite, one run per day is far too slow.
single_run = dg.BackfillPolicy.single_run()
