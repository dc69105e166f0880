"""Run the Dagster UI (`dagster dev`) and the scoring API side by side; Ctrl-C stops both.

`make run` calls this after the first look. Each service runs in a process group of its own
(its own session), so that it can be stopped as a whole: `dagster dev` is a tree of processes
(webserver, daemon, a code-server proxy and its gRPC server, and the runs they launch). On
Ctrl-C (SIGINT), SIGTERM or SIGHUP every group gets SIGINT, the graceful path of both services;
whatever is still alive after ``GRACE_SECONDS`` is killed. Why not wait for `dagster dev`'s own
shutdown: it stops its children one after another, and on a busy 2-core machine its gRPC code
server was still alive 14-16 s after Ctrl-C.

`dagster dev` gets a private temporary folder (``TMPDIR``) for its sockets and workspace file,
removed on exit, so that a killed code server leaves nothing behind in the system's /tmp.
If either service exits on its own (a port in use, a crash), the other is stopped too and the
exit code says which failed.

    python -m fraud_assets.run_services --host 127.0.0.1 --port 3000 --api-port 8000
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

# SIGINT first (both services shut down cleanly on it), SIGKILL for what is left after this: short
# enough that everything is gone within 5 s of Ctrl-C on a busy machine (4.1 s with 3 s of grace,
# 3.0 s with 2 s, at load 8.5 on 2 cores), long enough for the API's clean shutdown (0.4-0.5 s
# at load 7).
GRACE_SECONDS = 2.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Service:
    """A command started as the leader of a new process group (``pgid == pid``)."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, start_new_session=True
        )

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def group_alive(self) -> bool:
        """Whether any process of the group is left (the leader is reaped first, so it does not
        count as a zombie)."""
        if self.process is None:
            return False
        self.process.poll()
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # a process of the group changed its user: still alive
            return True
        return True

    def signal_group(self, sig: int) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)


def stop(services: list[Service], grace: float = GRACE_SECONDS) -> None:
    """SIGINT to every group, up to ``grace`` seconds for them to exit, then SIGKILL the rest."""
    for service in services:
        service.signal_group(signal.SIGINT)
    deadline = time.monotonic() + grace
    while any(s.group_alive() for s in services) and time.monotonic() < deadline:
        time.sleep(0.05)
    for service in services:
        if service.group_alive():
            print(f"run_services: {service.name} still running after {grace:.0f} s, killing it", flush=True)
            service.signal_group(signal.SIGKILL)
    for service in services:
        if service.process is not None:
            try:
                service.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                print(f"run_services: {service.name} (pid {service.process.pid}) did not exit", flush=True)


def supervise(services: list[Service], poll_seconds: float = 0.2) -> int:
    """Start the services and wait for a stop signal or for one of them to exit; stop them all.

    Returns 0 after a stop signal, else the exit code of the service that ended first (1 if it
    ended with 0 or by a signal: it was meant to keep running)."""
    requested = threading.Event()

    def on_signal(signum, _frame):
        requested.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        for service in services:
            service.start()
        ended = None
        while not requested.is_set() and ended is None:
            ended = next((s for s in services if s.exit_code() is not None), None)
            requested.wait(poll_seconds)
        if ended is not None:
            print(
                f"run_services: {ended.name} exited with code {ended.exit_code()}; stopping the rest",
                flush=True,
            )
        stop(services)
        if ended is None:
            return 0
        code = ended.exit_code()
        return code if code and code > 0 else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def services(host: str, port: int, api_port: int, workspace: str, tmpdir: str) -> list[Service]:
    python = sys.executable
    dagster_env = {**os.environ, "TMPDIR": tmpdir}
    return [
        Service(
            "scoring API",
            [python, "-m", "uvicorn", "fraud_serving.app:app", "--host", host, "--port", str(api_port)],
        ),
        Service(
            "dagster dev",
            [python, "-m", "dagster", "dev", "-w", workspace, "-h", host, "-p", str(port)],
            env=dagster_env,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000, help="the Dagster UI's port")
    parser.add_argument("--api-port", type=int, default=8000, help="the scoring API's port")
    parser.add_argument("--workspace", default="workspace.yaml")
    args = parser.parse_args(argv)
    tmpdir = tempfile.mkdtemp(prefix="fraudops-dev-")
    try:
        print(
            f"Dagster UI on http://{args.host}:{args.port}, scoring API on "
            f"http://{args.host}:{args.api_port} (docs: /docs); Ctrl-C stops both",
            flush=True,
        )
        return supervise(services(args.host, args.port, args.api_port, args.workspace, tmpdir))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
