"""Run the Dagster UI (`dagster dev`) and the scoring API side by side; Ctrl-C stops both.

`make run` calls this after the first look. Each service runs in a process group of its own
(its own session), so that it can be stopped as a whole: `dagster dev` is a tree of processes
(webserver, daemon, a code-server proxy and its gRPC server, and the runs they launch). On
Ctrl-C (SIGINT), SIGTERM or SIGHUP every group gets SIGINT, the graceful path of both services;
whatever is still alive after ``GRACE_SECONDS`` is killed. Why not wait for `dagster dev`'s own
shutdown: it stops its children one after another, and on a busy 2-core machine its gRPC code
server stays alive 14-16 s after Ctrl-C.

`dagster dev` gets a private temporary folder (``TMPDIR``) for its sockets and workspace file,
removed on exit, so that a killed code server leaves nothing behind in the system's /tmp.
If either service exits on its own (a port in use, a crash), the other is stopped too and the
exit code says which failed.

    python -m fraud_assets.services.run_services --host 127.0.0.1 --port 3000 --api-port 8000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from fraud_assets.services.service import Service, supervise


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
    from fraud_assets.services.devservices import DEPLOY_DIR, ClusterProfile, cluster_services, read_env_file

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
