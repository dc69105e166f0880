"""`make run PROFILE=cluster` as a new user runs it: as root (like CI), from a copy of the checkout
in a folder only its owner can enter (what `mktemp -d` makes). Every service starts; the first
look goes through them (75 days of data, a champion, the drift and performance reports of its
last 7 days); the API, started before that data existed, serves the champion with the card
history loaded from it, shared by its two workers in Redis; Ctrl-C stops everything and leaves
nothing behind, PostgreSQL's private folder included.

A whole first look, on a small population (`conftest.SMALL_POPULATION`: fraud every day, so the
tuning folds have some): a file of its own, which pytest-xdist runs beside test_cluster.py's
cluster (`make test` distributes by file). The cluster's runs, backfills and faults are tested
there; this is the user's command, end to end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import redis

from fraud_assets.core import columns as c
from fraud_assets.core.contract import VALIDATED_TRANSACTIONS, daily_partitions
from fraud_assets.core.settings import PREFIX
from fraud_assets.core.storage import Location, options_for
from fraud_assets.first_look import REPORT_DAYS, REPORTS
from fraud_assets.services import devservices
from tests.conftest import SMALL_POPULATION, free_port

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(2700)]

ROOT = Path(__file__).resolve().parents[1]
FIRST_LOOK_TIMEOUT = 2400  # a safety cap: the first look takes minutes on a loaded 2-core VM
DONE = "run_services: first look done"


@contextlib.contextmanager
def private_copy() -> Iterator[Path]:
    """The checkout's files (tracked and new, not ignored: what a clone holds, with the changes
    under test) in a new folder of a folder only its owner can enter; removed at the end."""
    parent = Path(tempfile.mkdtemp(prefix="fraudops-make-run-"))
    try:
        listed = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
        )
        copy = parent / "fraudops"
        for name in filter(None, listed.stdout.decode().split("\0")):
            source = ROOT / name
            if source.is_file():
                (copy / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, copy / name)
        yield copy
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def uv_program() -> str | None:
    """The uv this checkout's `make env` used (the copy's then syncs from uv's cache)."""
    bootstrap = ROOT / ".fraudops" / "bootstrap" / "bin" / "uv"
    return str(bootstrap) if bootstrap.exists() else shutil.which("uv")


def make_environment(ports: dict[str, int]) -> dict[str, str]:
    """A user's shell: no FRAUDOPS_ variable, no Dagster home, no outer make; the servers on free
    ports (profile.env's variables, overridable as docs/scale-out.md says), a small population."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(PREFIX) and name not in ("DAGSTER_HOME", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    }
    return {
        **env,
        **devservices.server_addresses(ports),
        "FRAUDOPS_CARDHOLDERS": str(SMALL_POPULATION),
        "FRAUDOPS_MODEL_POLL_SECONDS": "1",
    }


def test_make_run_on_the_cluster_profile_from_a_private_folder(monkeypatch):
    ports = {name: free_port() for name in devservices.LOCAL_PORTS}
    uv = uv_program()
    command = ["make", "run", "PROFILE=cluster", f"PORT={ports['ui']}", f"API_PORT={ports['api']}",
               f"CODE_PORT={ports['code']}", *([f"UV={uv}"] if uv else [])]  # fmt: skip
    with private_copy() as copy:
        assert os.stat(copy.parent).st_mode & 0o077 == 0  # only its owner can enter
        log = copy.parent / "make-run.log"
        with open(log, "wb") as output:
            make = subprocess.Popen(
                command, cwd=copy, env=make_environment(ports), stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        postgres, started, named = None, {}, [str(copy)]
        try:
            wait_for_log(make, log, DONE, FIRST_LOOK_TIMEOUT)
            postgres = server_folder(ports["postgres"])
            named = [str(copy), *([str(postgres)] if postgres else [])]
            started = processes_naming(named)
            assert len(started) >= 10, started  # the servers, the workers, the API's processes
            check_first_look(copy, ports, monkeypatch)
            check_api(ports)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(make.pid, signal.SIGINT)  # Ctrl-C in its terminal
            with contextlib.suppress(subprocess.TimeoutExpired):
                make.wait(timeout=120)
            left = survivors(started, named)
            for pid in [make.pid, *left]:  # nothing outlives the test, whatever happened
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        assert make.returncode is not None, "`make run` did not stop on Ctrl-C"
        assert not left, f"processes of `make run` outlived Ctrl-C: {left}"
        assert "first look failed" not in log.read_text()
        if postgres is not None:
            assert not postgres.exists(), f"{postgres} left behind"


def survivors(started: dict[int, tuple[str, str]], named: list[str]) -> dict[int, str]:
    """The processes of ``started`` still alive (the same pid and start time)."""
    now = processes_naming(named)
    return {pid: cmd for pid, (start, cmd) in now.items() if started.get(pid, (None,))[0] == start}


def check_first_look(copy: Path, ports: dict[str, int], monkeypatch) -> None:
    """Every day's data, a champion, the drift and performance reports of the last days, in the
    profile's instance (PostgreSQL) and object store."""
    for name, value in {**devservices.read_env_file(copy / "deploy/cluster/profile.env"),
                        **devservices.server_addresses(ports)}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    instance = dg.DagsterInstance.from_config(str(copy / "deploy" / "cluster"))
    try:
        days = sorted(instance.get_materialized_partitions(dg.AssetKey(VALIDATED_TRANSACTIONS)))
        assert len(days) == 75, days  # make run's DAYS
        assert instance.get_latest_materialization_event(dg.AssetKey("champion_model")) is not None
        for report in REPORTS:
            assert set(days[-REPORT_DAYS:]) <= instance.get_materialized_partitions(dg.AssetKey(report)), (
                report
            )
        drift = instance.get_latest_materialization_event(dg.AssetKey("drift_report"))
        assert str(drift.asset_materialization.metadata["html_report"].value).startswith("s3://fraudops/")
    finally:
        instance.dispose()


def check_api(ports: dict[str, int]) -> None:
    """The API serves the champion, with the card history it loaded once the first look stored
    it (it started before), held in Redis: a card's stored transactions count in its features,
    and its next transactions, each taken by whichever worker, see every earlier one."""
    api = f"http://127.0.0.1:{ports['api']}"
    health = get_json(f"{api}/health")
    cards = health["card_state"]
    assert health["status"] == "ok" and health["model_version"], health
    assert cards["bootstrap"] == "loaded" and cards["store"].startswith("redis://"), cards
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    storage = Location.of("s3://fraudops/storage", options_for("s3://fraudops/storage", endpoint))
    latest = daily_partitions(storage, VALIDATED_TRANSACTIONS)[-2:]
    assert cards["days"][-1] == latest[-1][0]
    rows = pd.concat([path.read_parquet() for _, path in latest])
    card = rows.loc[rows[c.TIMESTAMP].dt.date.astype(str) == latest[-1][0], c.CARD_ID].value_counts().index[0]
    stored = rows.loc[rows[c.CARD_ID] == card, c.TIMESTAMP]
    at = stored.max() + pd.Timedelta(minutes=1)
    expected = int((stored >= at - pd.Timedelta(hours=24)).sum())  # the window: [at - 24 h, at)
    assert expected > 1
    counts = []
    for k in range(8):  # a new connection each: either worker
        when = (at + pd.Timedelta(seconds=k)).isoformat()
        body = {"transaction_id": f"make-run-{k}", "card_id": card, "merchant_id": "MER-MAKE-RUN",
                "timestamp": when, "amount": 12.5, "merchant_category": "grocery"}  # fmt: skip
        counts.append(
            post_json(f"{api}/predict?include_features=true", body)["features"]["transactions_last_24h"]
        )
    assert counts == [expected + k for k in range(8)]
    online = redis.Redis.from_url(cards["store"])
    assert online.sismember("fraudops:cards", card) and online.exists("fraudops:seen:" + card + ":make-run-7")


def server_folder(port: int) -> Path | None:
    """PostgreSQL's private folder (as root: its programs and data, see devservices.postgres)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            if Path(argv[0]).name == "postgres" and "-p" in argv and argv[argv.index("-p") + 1] == str(port):
                data = Path(argv[argv.index("-D") + 1])
                return data.parent if os.geteuid() == 0 else None
    pytest.fail(f"no PostgreSQL on port {port}")


def wait_for_log(process: subprocess.Popen, log: Path, line: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while line not in (text := log.read_text(errors="replace")):
        if process.poll() is not None:
            pytest.fail(f"`make run` exited with {process.returncode}:\n{text[-8000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {line!r} within {timeout:.0f} s:\n{text[-8000:]}")
        time.sleep(2)


def processes_naming(paths: list[str]) -> dict[int, tuple[str, str]]:
    """Live processes whose command line names one of ``paths``: pid -> (start time, command)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and any(path in command for path in paths):
                found[int(pid)] = (fields[19], command)
    return found


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())
