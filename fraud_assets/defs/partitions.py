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

The first day is read when the code location loads, with the other settings, never at import.
The assets are declared on :data:`daily_partitions`, the daily partitions from the fixed default
day; ``fraud_assets/definitions.py`` moves each of them onto the configured first day
(:func:`starting_on`) and hands the same day to the sensors as the ``partition_start`` resource.
A new start date takes effect when the code location reloads (Deployment -> Reload, or a restart
of ``dagster dev``).
"""

from __future__ import annotations

import datetime as dt
import warnings
from typing import Self

import dagster as dg

from fraud_assets.core.settings import DEFAULT_START_DATE, FraudopsSettings


def daily_partitions_from(first_day: dt.date) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=first_day.isoformat(), end_offset=1)


# What the assets are declared on; the loaded code location replaces it (see the docstring).
daily_partitions = daily_partitions_from(DEFAULT_START_DATE)

# One run for a whole backfill: on SQLite, one run per day is far too slow.
single_run = dg.BackfillPolicy.single_run()


class PartitionStartResource(dg.ConfigurableResource):
    """The first daily partition as the code location loaded it, and where it comes from."""

    day: str  # YYYY-MM-DD
    source: str

    @classmethod
    def from_settings(cls, settings: FraudopsSettings) -> Self:
        start = settings.partition_start()
        return cls(day=start.day.isoformat(), source=start.source)

    def partitions_def(self) -> dg.DailyPartitionsDefinition:
        return daily_partitions_from(dt.date.fromisoformat(self.day))


def starting_on(defs: dg.Definitions, partitions: dg.DailyPartitionsDefinition) -> dg.Definitions:
    """``defs`` with every asset declared on :data:`daily_partitions` on ``partitions`` instead."""

    def moved(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.partitions_def != daily_partitions:
            return spec
        return spec.replace_attributes(partitions_def=partitions)

    # Definitions.map_asset_specs is public and documented, and marked as a preview: a release
    # that changed it would fail the code location's tests (tests/test_partitions.py).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return defs.map_asset_specs(func=moved)
