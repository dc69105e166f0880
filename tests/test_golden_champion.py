"""The same champion on any machine: the golden dataset trains the champion whose digest is committed.

`tests/golden_champion.py` trains on a pinned dataset (seed, cardholders, days up to a fixed
last day) through the code location's own jobs with the default training config, in a process
of its own with the numeric libraries' CPU dispatch pinned, and prints the champion's content
digest (`ModelBundle.content_sha256`: preprocessor, classifier, threshold, window, metrics;
not the save time). Every run, on every machine of this kind, must print the committed digest;
each run also takes another Python hash seed.
"""

from __future__ import annotations

import json
import platform
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.golden_champion import CPU_PINS, GOLDEN, pinned_environment

ROOT = Path(__file__).resolve().parent.parent

# The training data of the golden days (`frame_fingerprint` of `training_data`) and the
# champion trained on them. Update both only on purpose (see `_update_note`).
GOLDEN_DATA_FINGERPRINT = "9395914ea74f544b6ac01765e0509f52340c4aa2b4c99efd28646bbbb1d45240"
GOLDEN_CHAMPION = "d79f6738364e3990ce640fb631fbeb8dc13a28a371421018d0bc6c8c2d0496ae"


def _update_note(facts: dict, hash_seed: str) -> str:
    return (
        "\n\nThe golden dataset no longer trains the committed champion. Two machines that train "
        "different champions from the same data, seed and config cannot be compared, and a model "
        "cannot be reproduced from its recipe.\n"
        "- If you changed the generator, the features, training, evaluation, the bundle, or a "
        "dependency (uv.lock) on purpose, a new digest is expected: check that your change explains "
        "it (the facts below), then set GOLDEN_DATA_FINGERPRINT and GOLDEN_CHAMPION in "
        "tests/test_golden_champion.py to the new values and say why in the commit message.\n"
        "- If you did not, something that varies between machines or runs now reaches the model: "
        f"the CPU's vector units (pinned by {sorted(CPU_PINS)}), the thread count, the hash seed "
        f"(this run: PYTHONHASHSEED={hash_seed}), the clock or an absolute path. Run "
        "`.venv/bin/python -m tests.golden_champion <empty folder>` (it pins its environment) in "
        "two folders and compare the facts it prints.\n"
        f"data fingerprint {facts['data_fingerprint']}, champion {facts['content_sha256']}\n"
        + json.dumps(
            {k: facts[k] for k in ("algorithm", "threshold", "params", "metrics", "runtime")}, indent=1
        )
    )


def _has_avx2_and_fma() -> bool:
    if platform.machine() not in ("x86_64", "AMD64"):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx2" in flags and " fma" in flags


@pytest.mark.timeout(1800)
@pytest.mark.skipif(
    not _has_avx2_and_fma(),
    reason="the golden digest is pinned to x86-64 AVX2/FMA kernels (OpenBLAS Haswell, NumPy X86_V3)",
)
def test_the_golden_dataset_trains_the_committed_champion(tmp_path):
    hash_seed = str(random.randrange(1, 2**32))  # any seed must give the same champion
    env = {**pinned_environment(tmp_path), "PYTHONHASHSEED": hash_seed}
    run = subprocess.run(
        [sys.executable, "-m", "tests.golden_champion", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1700,
    )
    assert run.returncode == 0, f"the golden training run failed:\n{run.stderr[-5000:]}"
    facts = json.loads(run.stdout.strip().splitlines()[-1])
    assert facts["data"]["last_day"] == GOLDEN.last_day and facts["data"]["days"] == GOLDEN.days
    # The pins took effect: no AVX-512 loop in NumPy, OpenBLAS's Haswell kernels. If a NumPy or
    # OpenBLAS upgrade renamed its targets, update CPU_PINS in tests/golden_champion.py.
    assert "X86_V4" not in facts["runtime"]["numpy_kernels"], facts["runtime"]
    assert not any("AVX512" in k for k in facts["runtime"]["numpy_kernels"]), facts["runtime"]
    assert facts["runtime"]["blas_kernels"] == ["Haswell"], facts["runtime"]
    # What the champion's materialization records is the digest of the bundle it points to.
    assert facts["content_sha256"] == facts["bundle_content_sha256"]
    note = _update_note(facts, hash_seed)
    assert facts["data_fingerprint"] == GOLDEN_DATA_FINGERPRINT, "the golden training data differ" + note
    assert facts["content_sha256"] == GOLDEN_CHAMPION, "the golden champion differs" + note
