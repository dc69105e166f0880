"""Run every benchmark in bench/ (each `bench_*.py`) one after another; `make bench` calls this.

Each runs in its own process with its default sizes, which produce the figures of
docs/benchmarks.md. With ``--quick`` each gets ``--quick`` instead: tiny sizes and one repeat, a
check that the benchmarks still run (the figures mean nothing). Benchmarks that measure what
`make run` built (the scoring API on its champion, tree depth on its training data) exit with
``SKIPPED`` and say what is missing when it is not there. Exit code 0 when none failed.

    .venv/bin/python bench/run_all.py [--quick] [bench_generator bench_drift ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SKIPPED = 77  # the exit code of a benchmark whose input is missing (the automake convention)


def skip(reason: str) -> None:
    """End a benchmark that cannot run here, saying why (the runner reports it as skipped)."""
    print(f"skipped: {reason}", flush=True)
    sys.exit(SKIPPED)


def parse_args(parser: argparse.ArgumentParser, **quick) -> argparse.Namespace:
    """The benchmark's arguments, plus ``--quick``: the given options set to tiny values."""
    shown = ", ".join(f"{name.replace('_', '-')} {value}" for name, value in quick.items())
    parser.add_argument("--quick", action="store_true", help=f"check that it runs, figures aside: {shown}")
    args = parser.parse_args()
    if args.quick:
        for name, value in quick.items():
            setattr(args, name, value)
    return args


def benchmarks(names: list[str] | None = None) -> list[Path]:
    found = sorted(BENCH.glob("bench_*.py"))
    if not names:
        return found
    by_name = {path.stem: path for path in found}
    unknown = [name for name in names if name.removesuffix(".py") not in by_name]
    if unknown:
        raise SystemExit(f"no such benchmark: {', '.join(unknown)} (have: {', '.join(by_name)})")
    return [by_name[name.removesuffix(".py")] for name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check that each runs")
    parser.add_argument("names", nargs="*", help="only these benchmarks (default: every bench_*.py)")
    args = parser.parse_args(argv)
    outcomes = {}
    for path in benchmarks(args.names):
        print(f"== {path.name}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, str(path), *(["--quick"] if args.quick else [])])
        outcome = {0: "ok", SKIPPED: "skipped"}.get(code, f"failed (exit code {code})")
        outcomes[path.name] = f"{outcome}, {time.perf_counter() - started:.0f} s"
    print("== summary")
    for name, outcome in outcomes.items():
        print(f"{name}: {outcome}")
    return 1 if any("failed" in outcome for outcome in outcomes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
