"""The deployment files nothing here can run (deploy/compose.yaml, the Helm values, Prometheus,
Grafana) parse, and agree with the tested cluster profile and with the code: the compose stack
gives its services the very variables deploy/cluster/profile.env gives the tested processes, every
FRAUDOPS_ variable they set exists, and the dashboard's queries name metrics (and labels) the
scoring API really exports, read from its Prometheus registry."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dagster as dg
import yaml

from fraud_assets.core import settings
from fraud_assets.services import devservices
from fraud_serving.metrics import ServiceMetrics

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "fraudops.json"
METRIC = re.compile(r"\bfraudops_[a-z0-9_]+\b")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
# The series prometheus_client exposes per metric type (the exposition format's suffixes).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
}


def yaml_documents(path: Path) -> list:
    return list(yaml.safe_load_all(path.read_text()))


def compose() -> dict:
    return yaml_documents(DEPLOY / "compose.yaml")[0]


def exported_series() -> dict[str, set[str]]:
    """Each series name the API's registry exposes, with the labels it carries."""
    metrics = ServiceMetrics()
    labels = {
        metric._name: set(metric._labelnames)  # prometheus_client keeps them there
        for metric in vars(metrics).values()
        if hasattr(metric, "_labelnames")
    }
    series = {}
    for family in metrics.registry.collect():
        for suffix in SUFFIXES[family.type]:
            extra = {"le"} if suffix == "_bucket" else set()
            series[family.name + suffix] = labels.get(family.name, set()) | extra
    return series


def test_every_yaml_and_json_file_under_deploy_parses():
    files = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))
    assert len(files) >= 8, files
    for path in files:
        assert all(doc is not None for doc in yaml_documents(path)), f"{path}: an empty document"
    for path in DEPLOY.rglob("*.json"):
        json.loads(path.read_text())


def test_the_compose_stack_mirrors_the_seed_and_the_tested_profile():
    services = compose()["services"]
    assert {"postgres", "minio", "mlflow", "webserver", "daemon", "code-server", "api", "prometheus", "grafana"} <= set(services)  # fmt: skip
    assert {"redis", "worker"} <= set(services), "the distributed executor's broker and workers"
    profile = devservices.read_env_file(devservices.DEPLOY_DIR / "profile.env")
    for name in ("code-server", "webserver", "daemon", "worker", "api", "mlflow"):
        env = services[name]["environment"]
        assert set(profile) <= set(env), f"{name} misses {set(profile) - set(env)}"
    # The same values as the tested profile wherever no address is involved.
    env = services["api"]["environment"]
    for key, value in profile.items():
        if not re.search(r"127\.0\.0\.1|_HOST$|_PORT$|STATE_DIR", key + "=" + value):
            assert str(env[key]) == value, key
    # The same commands the cluster profile starts (fraud_assets.services.devservices).
    commands = {name: " ".join(str(services[name]["command"]).split()) for name in ("code-server", "worker")}
    assert (
        f"-m {devservices.CODE_MODULE} --location-name {devservices.CODE_LOCATION}" in commands["code-server"]
    )
    assert f"python -m {devservices.CELERY_WORKER} --concurrency 1" in commands["worker"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "COPY deploy/cluster/dagster.yaml" in dockerfile, "the image uses the tested instance config"


def test_every_fraudops_variable_the_deploy_files_set_exists():
    declared = set(settings.variables())
    for path in [*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.env")]:
        named = set(re.findall(r"\bFRAUDOPS_[A-Z0-9_]+\b", path.read_text()))
        assert named <= declared, f"{path.relative_to(ROOT)}: unknown {named - declared}"


def test_prometheus_scrapes_the_api_where_compose_serves_it():
    scrape = yaml_documents(DEPLOY / "prometheus" / "prometheus.yml")[0]["scrape_configs"]
    job = next(j for j in scrape if j["job_name"] == "fraudops-api")
    assert job["metrics_path"] == "/metrics"
    target = job["dns_sd_configs"][0]
    api = compose()["services"]["api"]
    assert target["names"] == ["api"] and f"--port {target['port']}" in api["command"]


def test_the_dashboard_queries_name_metrics_and_labels_the_api_exports():
    series = exported_series()
    assert "fraudops_http_requests_total" in series and "fraudops_fraud_probability_bucket" in series
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    used = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            names = set(METRIC.findall(expr))
            assert names, f"{panel['title']}: no fraudops metric in {expr}"
            unknown = names - set(series)
            assert not unknown, f"{panel['title']}: {sorted(unknown)} are not exported"
            labels = set().union(*(series[n] for n in names))
            for group in GROUPING.findall(expr):
                grouped = {label.strip() for label in group.split(",") if label.strip()}
                assert grouped <= labels, f"{panel['title']}: no label {grouped - labels} on {names}"
            used |= names
    # the model's decisions and the served model are on the dashboard, not only HTTP traffic
    assert {"fraudops_decisions_total", "fraudops_model_info"} <= used


def test_every_instance_runs_one_run_of_a_day_at_a_time(tmp_path, monkeypatch):
    """Two runs writing the same day (a landing file's and the captured traffic's ingestion) are
    queued one after the other on every instance: Dagster's run queue, as configured, embedded,
    cluster and Helm alike."""
    per_partition = {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    for config in (ROOT / "dagster.yaml", DEPLOY / "cluster" / "dagster.yaml"):
        assert per_partition in yaml_documents(config)[0]["run_queue"]["tag_concurrency_limits"], config
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    monkeypatch.chdir(home)  # the embedded config's folders are relative to where Dagster runs
    with dg.DagsterInstance.from_config(str(home)) as instance:  # Dagster reads it as written
        queue = instance.get_concurrency_config().run_queue_config
        assert per_partition in queue.tag_concurrency_limits
    helm = yaml_documents(DEPLOY / "helm" / "values.yaml")[0]
    coordinator = helm["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert per_partition in coordinator["tagConcurrencyLimits"]
