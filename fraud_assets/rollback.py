"""Put an earlier champion back from a shell: the `rollback_champion` job (UI: Jobs), run here.

    python -m fraud_assets.rollback                  # the champion before the current one
    python -m fraud_assets.rollback --version 3 --reason "v4 flags every online purchase"
    python -m fraud_assets.rollback --history        # the champions so far, newest first

Runs in the Dagster instance of ``DAGSTER_HOME`` (the UI shows the run), through the same job as
the UI: a new `champion_model` materialization holding the earlier champion's record, verified
against its SHA-256 first, marked as a rollback with the reason. The scoring API switches to it
within its poll interval, MLflow's `champion` alias follows, and `drift_reference` is rebuilt.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

import dagster as dg

from fraud_assets.core.champion_history import champion_history, current_champion
from fraud_assets.core.contract import CHAMPION_MODEL, ContractError

JOB = "rollback_champion"
TAGS = {"fraudops/trigger": "rollback_cli"}


def run_rollback(
    instance: dg.DagsterInstance, defs: dg.Definitions, version: str | None, reason: str
) -> tuple[bool, str]:
    """Run the rollback job; ``(whether the champion was rolled back, what happened)``."""
    config = {"rollback": True, "version": version, "reason": reason}
    result = defs.resolve_job_def(JOB).execute_in_process(
        instance=instance,
        run_config={"ops": {CHAMPION_MODEL: {"config": config}}},
        tags=TAGS,
        raise_on_error=False,
    )
    refused = result.failure_data_for_node(CHAMPION_MODEL)
    if refused is not None:
        return False, f"rollback refused: {_root_message(refused.error)}"
    champion = current_champion(instance)
    done = f"rolled back: the champion is {champion.name} ({champion.reason}); run {result.run_id}"
    if not result.success:
        failed = [
            f"{event.step_key}: {_root_message(event.step_failure_data.error)}"
            for event in result.get_step_failure_events()
        ]
        done += "; but " + "; ".join(failed)
    return True, done


def history_lines(instance: dg.DagsterInstance, limit: int) -> list[str]:
    """The champions, newest first: when, which, how and why."""
    lines = []
    for entry, _ in zip(champion_history(instance), range(limit), strict=False):
        when = dt.datetime.fromtimestamp(entry.materialized_at or 0, dt.UTC).strftime("%Y-%m-%d %H:%M")
        try:
            record = entry.champion()
        except ContractError as err:
            lines.append(f"{when}  materialization {entry.storage_id}: unreadable ({err})")
            continue
        how = f"{record.promotion or 'promotion'}: {record.reason or 'no reason recorded'}"
        lines.append(f"{when}  {record.name}  {how}")
    return lines or ["no champion yet"]


def _root_message(error: Any) -> str:
    """What the asset raised (the first error of the chain that is not Dagster's own wrapper): its
    message, without the exception's class name (Dagster writes ``module.Class: message``)."""
    while error.cls_name.startswith("Dagster") and getattr(error, "cause", None) is not None:
        error = error.cause
    message = error.message.strip()
    return message.partition(f"{error.cls_name}: ")[2] or message


def main(argv: list[str] | None = None, instance: dg.DagsterInstance | None = None, defs=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version", help="the champion to put back, by bundle or MLflow version "
                        "(default: the newest earlier champion no rollback retired)")  # fmt: skip
    parser.add_argument("--reason", default="", help="why; kept in the materialization's metadata")
    parser.add_argument("--history", nargs="?", const=20, type=int, metavar="N",
                        help="list the last N champions (default 20) and change nothing")  # fmt: skip
    args = parser.parse_args(argv)
    instance = instance or dg.DagsterInstance.get()
    if args.history is not None:
        print("\n".join(history_lines(instance, args.history)))
        return 0
    if defs is None:
        from fraud_assets.definitions import defs as load_defs

        defs = load_defs()
    rolled_back, message = run_rollback(instance, defs, args.version, args.reason)
    print(message, file=sys.stdout if rolled_back else sys.stderr)
    return 0 if rolled_back else 1


if __name__ == "__main__":
    sys.exit(main())
