"""Ctrl-C on `make run` stops the Dagster UI (webserver, daemon, code server) and the scoring API
within 5 seconds and leaves no process behind.

The test starts `make serve`, the very command `make run` runs once its first look is done, in a
session of its own, waits until every service answers, then sends SIGINT to make's process group,
as a terminal does on Ctrl-C. Processes are read from /proc (Linux, like CI).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fraud_assets.services.service import Service, supervise
from tests.test_dagster_dev import ROOT, free_port

needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc")
STOP_WITHIN_SECONDS = 5.0  # the requirement for Ctrl-C
# A command-line fragment of each process that must be running before Ctrl-C.
EXPECTED = {
    "webserver": "dagster_webserver",
    "daemon": "dagster._daemon",
    "code server": "api grpc",
    "scoring API": "fraud_serving.app:app",
}


def process_table() -> dict[int, dict]:
    """Every live process: parent, process group, start time (to tell a reused pid) and command."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = (
                Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            )
        except OSError:  # ended meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
        if fields[0] == "Z":  # a zombie has exited; only its parent's wait is missing
            continue
        table[int(entry)] = {
            "ppid": int(fields[1]),
            "pgid": int(fields[2]),
            "start": fields[19],
            "cmd": cmdline,
        }
    return table


def tree(root: int, table: dict[int, dict]) -> dict[int, dict]:
    found, frontier = {}, [root]
    while frontier:
        pid = frontier.pop()
        if pid in table:
            found[pid] = table[pid]
            frontier += [child for child, info in table.items() if info["ppid"] == pid]
    return found


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def survivors(started: dict[int, dict], groups: set[int]) -> dict[int, dict]:
    """Processes that were running before Ctrl-C, or belong to one of their groups, still alive."""
    now = process_table()
    return {
        pid: info
        for pid, info in now.items()
        if info["pgid"] in groups or (pid in started and started[pid]["start"] == info["start"])
    }


@pytest.mark.slow
@needs_proc
def test_ctrl_c_stops_the_ui_the_daemon_and_the_api_within_5_seconds(tmp_path):
    ui_port, api_port = free_port(), free_port()
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "FRAUDOPS_STORAGE": str(tmp_path / "storage"),
        "FRAUDOPS_LANDING_DIR": str(tmp_path / "landing"),
        "FRAUDOPS_PREDICTION_LOG_DIR": str(tmp_path / "predictions"),
        "FRAUDOPS_CAPTURE": str(tmp_path / "capture"),
    }
    log = tmp_path / "make.log"
    with open(log, "wb") as out:
        make = subprocess.Popen(
            [
                "make",
                "--no-print-directory",
                "serve",
                f"DAGSTER_HOME={home}",
                f"PORT={ui_port}",
                f"API_PORT={api_port}",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, as a shell's foreground job
        )
    groups: set[int] = {make.pid}
    try:
        deadline, running = time.monotonic() + 240, {}
        while time.monotonic() < deadline:
            assert make.poll() is None, log.read_text()[-3000:]
            running = tree(make.pid, process_table())
            commands = " | ".join(info["cmd"] for info in running.values())
            if (
                all(fragment in commands for fragment in EXPECTED.values())
                and answers(f"http://127.0.0.1:{ui_port}/server_info")
                and answers(f"http://127.0.0.1:{api_port}/health")
            ):
                break
            time.sleep(1)
        else:
            pytest.fail(f"the UI and the API did not come up in time:\n{log.read_text()[-3000:]}")
        dagster_dev = next(pid for pid, info in running.items() if " dev " in info["cmd"])
        environ = Path(f"/proc/{dagster_dev}/environ").read_bytes().decode().split("\0")
        tmpdir = next((var.split("=", 1)[1] for var in environ if var.startswith("TMPDIR=")), None)
        groups |= {info["pgid"] for info in running.values()}

        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C
        sent = time.monotonic()
        while survivors(running, groups) and time.monotonic() - sent < STOP_WITHIN_SECONDS + 10:
            make.poll()  # reap make itself
            time.sleep(0.05)
        took = time.monotonic() - sent
        print(f"everything stopped {took:.1f} s after Ctrl-C (load {os.getloadavg()[0]:.1f})")
        left = survivors(running, groups)
        assert not left, f"still running {took:.1f} s after Ctrl-C: {[i['cmd'][:120] for i in left.values()]}"
        assert took <= STOP_WITHIN_SECONDS, f"everything stopped, but only after {took:.1f} s"
        assert tmpdir, "dagster dev runs without a private TMPDIR: a killed code server leaves its sockets"
        assert not Path(tmpdir).exists(), f"dagster dev's temporary folder {tmpdir} was left behind"
    finally:
        for pgid in groups | {info["pgid"] for info in tree(make.pid, process_table()).values()}:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        make.wait(timeout=10)


def test_a_service_that_exits_stops_the_other_and_gives_its_exit_code():
    crashing = Service("crashing", [sys.executable, "-c", "import sys, time; time.sleep(0.5); sys.exit(3)"])
    # A long-running service with a child process: the whole group must go, not just the leader.
    child = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"
    lasting = Service("lasting", [sys.executable, "-c", child])
    assert supervise([crashing, lasting]) == 3
    assert lasting.process.returncode is not None and not lasting.group_alive()
