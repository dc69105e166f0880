"""The Dagster code location: everything under ``fraud_assets/defs``, configured by the settings.

The settings are read here, once each time the code location loads (``dagster dev``, the code
server, the process of each run and of each step, a Celery worker's task): the resources and the
executor are built from them, and the daily-partitioned assets start on the configured first day
(``fraud_assets/defs/partitions.py``). Nothing else in the code location reads them: assets and
sensors take their values from the resources. After a change: Deployment -> Reload in the UI.
"""

from pathlib import Path

import dagster as dg

from fraud_assets.core.settings import load_settings
from fraud_assets.defs.execution import executor_for
from fraud_assets.defs.partitions import starting_on
from fraud_assets.defs.resources import PARTITION_START, resources_for


@dg.definitions
def defs() -> dg.Definitions:
    settings = load_settings()
    resources = resources_for(settings)
    folder = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
    return dg.Definitions.merge(
        starting_on(folder, resources[PARTITION_START].partitions_def()),
        dg.Definitions(resources=resources, executor=executor_for(settings)),
    )
