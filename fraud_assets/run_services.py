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
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

# SIGINT first (both services shut down cleanly on it), SIGKILL for what is left after this: short
# enough that everything is gone within 5 s of Ctrl-C on a busy machine (4.1 s with 3 s of grace,
# 3.0 s with 2 s, at load 8.5 on 2 cores), long enough for the API's clean shutdown (0.4-0.5 s
# at load 7).
GRACE_SECONDS = 2.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Service:
    """A command started as the leader of a new process group (``pgid == pid``).

    Optional, for services others depend on (the cluster profile, `fraud_assets.devservices`):
    ``prepare`` runs before the start (e.g. ``initdb``), ``ready`` is polled after it until the
    service answers, ``setup`` runs once it does (e.g. create a database or a bucket); ``stage``:
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
    parser.add_argument(
        "--profile",
        choices=("embedded", "cluster"),
        default="embedded",
        help="embedded: `dagster dev` and the API; cluster: every service of docs/scale-out.md",
    )
    parser.add_argument("--code-server-port", type=int, default=4000, help="cluster: the code server's port")
    parser.add_argument("--workers", type=int, default=2, help="cluster: Celery worker processes")
    parser.add_argument("--api-workers", type=int, default=2, help="cluster: the API's uvicorn workers")
    parser.add_argument(
        "--first-look-days",
        type=int,
        default=0,
        help="cluster: once every service is ready, run the first look with this many days (0: none)",
    )
    args = parser.parse_args(argv)
    if args.profile == "cluster":
        return run_cluster(args)
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


def run_cluster(args: argparse.Namespace) -> int:
    """The cluster profile (docs/scale-out.md): its environment file under the process
    environment (a variable already set wins), then every service in order, then the first look."""
    from fraud_assets.devservices import DEPLOY_DIR, ClusterProfile, cluster_services, read_env_file

    for name, value in read_env_file(DEPLOY_DIR / "profile.env").items():
        os.environ.setdefault(name, value)
    profile = ClusterProfile.from_environment(
        ui_port=args.port,
        api_port=args.api_port,
        code_server_port=args.code_server_port,
        workers=args.workers,
        api_workers=args.api_workers,
        host=args.host,
    )
    # The local S3 server keeps objects in memory only: each start begins with an empty store,
    # so PostgreSQL (runs, materializations, MLflow's registry) starts empty too, else it would
    # record assets and models the store no longer holds.
    pg_data = profile.postgres_dir
    if os.path.exists(pg_data):
        print(
            f"cluster profile: a fresh start (the object store is in memory): removing {pg_data}", flush=True
        )
        shutil.rmtree(pg_data)
    first_look = None
    if args.first_look_days > 0:
        first_look = Service(
            "first look",
            [sys.executable, "-m", "fraud_assets.first_look", "--days", str(args.first_look_days)],
            env=profile.process_env,
        )
    settings = profile.settings
    print(
        f"cluster profile: Dagster UI on http://{args.host}:{args.port}, scoring API on "
        f"http://{args.host}:{args.api_port}, MLflow on {settings.mlflow_tracking_uri}, object store "
        f"on {settings.s3_endpoint_url}; logs in {profile.state('logs')}; Ctrl-C stops everything",
        flush=True,
    )
    return supervise(cluster_services(profile), then=first_look)


if __name__ == "__main__":
    sys.exit(main())
