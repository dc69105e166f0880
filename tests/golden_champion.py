"""Train the golden champion the way `make run` does, in a folder of its own, and print its digest.

    .venv/bin/python -m tests.golden_champion WORKDIR   # an empty folder; run from the checkout

A small pinned dataset (``GOLDEN``: generator seed, cardholders, days up to a fixed last day)
goes through the code location's own jobs, as `fraud_assets.first_look` runs them:
``ingest_transactions`` and ``build_features`` over the days, then ``train_models`` with its
default config (four candidates, each tuned with the default budget, evaluated, refit, gated).
The champion's content digest (`ModelBundle.content_sha256`: the model without its save time)
is printed as JSON on the last line of stdout, with what explains a difference.

Runs in a process of its own (``tests/test_golden_champion.py`` starts it): the settings, the
daily partitions and the numeric libraries' CPU dispatch are fixed when they are imported, so
the environment (``pinned_environment``) must be in place before Python starts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class GoldenData:
    """The pinned dataset: the same rows on every machine and every day."""

    seed: int = 11
    cardholders: int = 800
    days: int = 70
    last_day: str = "2025-03-31"  # fixed, never relative to today

    @property
    def first_day(self) -> str:
        return (dt.date.fromisoformat(self.last_day) - dt.timedelta(days=self.days - 1)).isoformat()


GOLDEN = GoldenData()

# The numeric libraries choose kernels by the CPU they find, and a kernel for wider registers
# may round or sum differently. Measured: NumPy's AVX-512 `sin`/`cos` move `distance_from_home`
# by one ulp in about 1% of rows, which changes the training data's fingerprint and so the
# champion's digest. These pin the choice to kernels every x86-64 machine of this kind has
# (AVX2, FMA): NumPy's X86_V3 loops (its AVX-512 ones switched off) and OpenBLAS's Haswell
# kernels (NumPy's and SciPy's copies both read the variable; SkylakeX and Sandybridge kernels
# gave the same champion here, pinned all the same). One thread for BLAS and OpenMP, as
# training itself asks (`fixed_threads`; one core or two gave the same champion without these).
CPU_PINS = {
    "OPENBLAS_CORETYPE": "Haswell",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def pinned_environment(workdir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a golden run: the pinned dataset as fraudops settings, every state
    folder and Dagster's home inside ``workdir``, nothing from a developer's FRAUDOPS_ variables."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("FRAUDOPS_")}
    state = workdir / "state"
    env.update(CPU_PINS)
    env.update(
        {
            "DAGSTER_HOME": str(workdir / "dagster"),
            "FRAUDOPS_STATE_DIR": str(state),
            "FRAUDOPS_START_DATE": GOLDEN.first_day,
            "FRAUDOPS_SEED": str(GOLDEN.seed),
            "FRAUDOPS_CARDHOLDERS": str(GOLDEN.cardholders),
        }
    )
    return env


def train(workdir: Path) -> dict:
    """Run the three jobs of a first look on the pinned days; the champion's facts."""
    import dagster as dg

    from fraud_assets.core.bundle import ModelBundle
    from fraud_assets.core.contract import CHAMPION_MODEL, ChampionRecord
    from fraud_assets.first_look import DAILY_JOBS, TRAINING_JOB, run_job

    (workdir / "dagster").mkdir(parents=True, exist_ok=True)
    from fraud_assets.defs.sensors import RANGE_END, RANGE_START

    with dg.DagsterInstance.get() as instance:
        days = {RANGE_START: GOLDEN.first_day, RANGE_END: GOLDEN.last_day}
        for job, _ in DAILY_JOBS:
            if not run_job(instance, job, days):
                raise RuntimeError(f"{job} failed on the golden days")
        if not run_job(instance, TRAINING_JOB, {}):
            raise RuntimeError(f"{TRAINING_JOB} failed on the golden days")
        event = instance.get_latest_materialization_event(dg.AssetKey(CHAMPION_MODEL))
        if event is None:
            raise RuntimeError("train_models ran but materialized no champion")
        metadata = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    record = ChampionRecord.from_metadata(metadata)
    bundle = ModelBundle.load(record.bundle_uri, record.bundle_sha256)
    return {
        "content_sha256": record.content_sha256,
        "bundle_uri": record.bundle_uri,
        "bundle_content_sha256": bundle.content_sha256(),
        "algorithm": record.algorithm,
        "threshold": record.threshold,
        "training_window": list(record.training_window),
        "data_fingerprint": bundle.data_fingerprint,
        "params": {k: repr(v) for k, v in bundle.classifier.get_params().items()},
        "metrics": record.metrics,
        "data": asdict(GOLDEN),
        "runtime": numeric_runtime(),
    }


def numeric_runtime() -> dict:
    """What the numeric libraries chose on this machine: the proof that the pins took effect."""
    from numpy.lib.introspect import opt_func_info
    from threadpoolctl import threadpool_info

    numpy_targets = {d["current"] for sigs in opt_func_info().values() for d in sigs.values()}
    return {
        "numpy_kernels": sorted(numpy_targets),
        "blas_kernels": sorted(
            {str(i.get("architecture")) for i in threadpool_info() if i["user_api"] == "blas"}
        ),
    }


def main(argv: list[str]) -> int:
    workdir = Path(argv[0]).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    pinned = pinned_environment(workdir)
    if dict(os.environ) != pinned:
        # Started by hand: start again in the pinned environment (it must be in place before
        # NumPy and the settings load), keeping the hash seed the caller chose, if any.
        os.execve(sys.executable, [sys.executable, "-m", "tests.golden_champion", str(workdir)], pinned)
    os.chdir(workdir)  # no .env of a checkout, and relative paths land here
    facts = train(workdir)
    print(json.dumps(facts, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
