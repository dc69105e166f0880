"""The Celery app of the cluster profile's workers: ``celery -A fraud_assets.services.celery_worker worker``.

A worker takes the steps that runs with ``FRAUDOPS_EXECUTOR=celery`` put on the broker and
executes each with dagster-celery's own task (it loads the code location and writes the step's
events to the Dagster instance named in the task, so it needs the same environment as the code
server: the instance's variables, the storage, the AWS credentials). The broker, backend and
options come from :func:`fraud_assets.defs.execution.celery_config`, the very config the runs use.

This is a process entry point: the settings are read when the worker starts.
"""

from __future__ import annotations

from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from fraud_assets.core.settings import SettingsError, load_settings
from fraud_assets.defs.execution import celery_config

settings = load_settings()
if not settings.celery_broker_url:
    raise SettingsError(
        "a Celery worker needs FRAUDOPS_CELERY_BROKER_URL, the broker the runs put their steps on "
        "(e.g. redis://127.0.0.1:6379/0)"
    )
app = make_app(CeleryExecutor.for_cli(**celery_config(settings)).app_args())
execute_plan = create_task(app)
