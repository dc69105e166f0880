"""A Celery worker of the cluster profile: ``python -m fraud_assets.services.celery_worker``.

dagster-celery's own worker, started through its public command line (``dagster-celery worker
start -A dagster_celery.app -y <config>``), with the config the runs' executor is configured with
(:func:`fraud_assets.defs.execution.celery_config`: the broker, the result backend, one step at a
time), so the runs and the workers cannot disagree on the broker. The config is written as the
YAML the command reads (the executor's config block, ``execution: config: ...``) under the state
folder, then the command replaces this process. A worker executes the steps that runs with
``FRAUDOPS_EXECUTOR=celery`` put on the broker: it loads the code location and writes each step's
events to the Dagster instance named in the task, so it needs the code server's environment (the
instance's variables, the storage, the AWS credentials).

    python -m fraud_assets.services.celery_worker --name worker1
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from fraud_assets.core.settings import FraudopsSettings, SettingsError, load_settings
from fraud_assets.defs.execution import celery_config
from fraud_assets.services.service import program

APP = "dagster_celery.app"  # dagster-celery's worker app: its tasks, configured from the YAML
QUEUE = "dagster"  # dagster-celery's default queue, where celery_executor sends the steps


def write_config(settings: FraudopsSettings, name: str) -> Path:
    """The executor's config as the YAML ``dagster-celery worker start -y`` reads; its path."""
    if not settings.celery_broker_url:
        raise SettingsError(
            "a Celery worker needs FRAUDOPS_CELERY_BROKER_URL, the broker the runs put their steps on "
            "(e.g. redis://127.0.0.1:6379/0)"
        )
    path = Path(settings.state_dir).resolve() / "celery" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"execution": {"config": celery_config(settings)}}))
    return path


def command(config: Path, name: str | None, concurrency: int) -> list[str]:
    """``dagster-celery worker start`` on the profile's queue, ``concurrency`` steps at a time
    (it reserves one task at a time itself: ``--prefetch-multiplier=1``)."""
    named = ["-n", name] if name else []
    return [program("dagster-celery"), "worker", "start", "-A", APP, "-y", str(config), "-q", QUEUE, *named,
            "--", "--concurrency", str(concurrency)]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", help="the worker's name (@ and the host name follow); default: dagster's")
    parser.add_argument("--concurrency", type=int, default=1, help="steps executed at once (default 1)")
    args = parser.parse_args(argv)
    config = write_config(load_settings(), args.name or "worker")
    argv = command(config, args.name, args.concurrency)
    # dagster-celery starts `celery` from PATH: this environment's first
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    main()
