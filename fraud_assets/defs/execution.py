"""How launched runs execute their steps: configuration (``FRAUDOPS_EXECUTOR``), not code.

- ``multiprocess`` (default): Dagster's own default executor, a process per step on the machine
  of the run (the launchpad can still pick ``in_process`` for one run);
- ``in_process``: every step in the run's own process;
- ``celery``: dagster-celery; each step becomes a task on the broker
  (``FRAUDOPS_CELERY_BROKER_URL``, Redis in the cluster profile) and whichever Celery worker is
  free executes it, so the steps of one run spread over the workers (docs/scale-out.md). The
  workers run ``celery -A fraud_assets.services.celery_worker worker``, built from :func:`celery_config`
  too, so the runs and the workers cannot disagree on the broker.

The code location takes its executor from :func:`executor_for` when it loads
(``fraud_assets/definitions.py``, with the settings it reads then); the Celery workers build their
app from :func:`celery_config` when they start. `first_look` and the tests' ``execute_in_process``
always run in process, whatever is set here.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from fraud_assets.core.settings import FraudopsSettings


def celery_config(settings: FraudopsSettings) -> dict[str, Any]:
    """The Celery executor's config: the broker, and the same Redis as result backend (the run
    reads each step's outcome from it). A worker holds one step at a time: it acknowledges a
    task when the step ends (``task_acks_late``) and reserves no other meanwhile
    (``worker_prefetch_multiplier: 1``), so the steps of a run that can go side by side go to
    different free workers instead of queueing behind a busy one (Celery's advice for long
    tasks)."""
    return {
        "broker": settings.celery_broker_url,
        "backend": settings.celery_broker_url,
        "config_source": {"worker_prefetch_multiplier": 1, "task_acks_late": True},
    }


def executor_for(settings: FraudopsSettings) -> dg.ExecutorDefinition | None:
    """The executor ``FRAUDOPS_EXECUTOR`` names; None keeps Dagster's default."""
    if settings.executor == "in_process":
        return dg.in_process_executor
    if settings.executor == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(celery_config(settings), name="celery")
    return None
