"""One place for configuration: typed settings, clear errors, read when the code location loads
or the API starts, documented in full."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.secrets.env_file import get_env_var_dict

from fraud_assets.core import settings
from fraud_assets.core.landing_settings import LandingSettings
from fraud_assets.core.settings import FraudopsSettings, SettingsError, load_settings
from fraud_assets.definitions import defs
from fraud_assets.defs.automation import drift_retraining_sensor
from fraud_assets.defs.resources import LabelFeedResource, LandingZoneResource, TransactionSimulatorResource
from fraud_serving.settings import Settings as ServiceSettings

ROOT = Path(__file__).resolve().parents[1]
FIELDS = FraudopsSettings.model_fields


def test_defaults_live_in_the_state_dir_and_follow_it(env, tmp_path):
    default = load_settings()
    assert (default.storage, default.models, default.reports) == (
        ".fraudops/storage",
        ".fraudops/models",
        ".fraudops/reports",
    )
    # MLflow's store is absolute: every process (runs, API) must reach the same one.
    assert default.mlflow_tracking_uri == f"sqlite:///{tmp_path}/.fraudops/mlflow/mlflow.db"

    env.setenv("FRAUDOPS_STATE_DIR", "/srv/fraudops")
    env.setenv("FRAUDOPS_MODELS", "s3://bucket/models")
    moved = load_settings()
    assert moved.storage == "/srv/fraudops/storage"
    assert moved.prediction_log_dir == "/srv/fraudops/predictions"
    assert moved.mlflow_artifacts == "/srv/fraudops/mlflow/artifacts"
    assert moved.models == "s3://bucket/models"  # set explicitly: the state dir does not move it


def test_values_are_parsed_into_their_types(env):
    env.setenv("FRAUDOPS_SEED", "7")
    env.setenv("FRAUDOPS_FRAUD_RATE", "0.02")
    env.setenv("FRAUDOPS_DRIFT_START", "2026-05-01")
    env.setenv("FRAUDOPS_DRIFT_NEW_PATTERN", "yes")
    env.setenv("FRAUDOPS_LANDING_MAPPING", '{"amount": "value", "timestamp": "created_at"}')
    env.setenv("FRAUDOPS_API_KEY", "s3cret")
    env.setenv("FRAUDOPS_TIMESTAMP_FORMAT", "")  # empty: unset
    loaded = load_settings()
    assert (loaded.seed, loaded.fraud_rate, loaded.drift_new_pattern) == (7, 0.02, True)
    assert loaded.drift_start == dt.date(2026, 5, 1)
    assert loaded.landing_mapping == {"amount": "value", "timestamp": "created_at"}
    assert loaded.timestamp_format is None
    assert loaded.api_key_value() == "s3cret" and "s3cret" not in repr(loaded)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("FRAUDOPS_SEED", "abc", "a whole number"),
        ("FRAUDOPS_SEED", "-1", "seed must be a non-negative integer"),
        ("FRAUDOPS_FRAUD_RATE", "0.5", "fraud_rate must be within [0.001, 0.05]"),
        ("FRAUDOPS_CARDHOLDERS", "5", "n_cardholders must be at least 10"),
        ("FRAUDOPS_DRIFT_MERCHANT_MIX", "2", "must be within [0, 1]"),
        ("FRAUDOPS_DRIFT_START", "2026-02-30", "a date, YYYY-MM-DD"),
        ("FRAUDOPS_DRIFT_NEW_PATTERN", "maybe", "true or false"),
        ("FRAUDOPS_LANDING_MAPPING", "{amount: value}", "not valid JSON"),
        ("FRAUDOPS_LANDING_MAPPING", '{"amout": "value"}', "unknown target column(s) ['amout']"),
        ("FRAUDOPS_LANDING_ENCODING", "latin-9x", "unknown text encoding"),
        ("FRAUDOPS_LABEL_DELAY_DAYS", "-1", "label_delay_days must be >= 0"),
        ("FRAUDOPS_START_DATE", "yesterday", "a date, YYYY-MM-DD"),
        ("FRAUDOPS_RETRAIN_COOLDOWN_HOURS", "-3", "greater than or equal to 0"),
        ("FRAUDOPS_MODEL_POLL_SECONDS", "0.01", "greater than or equal to 0.05"),
        ("FRAUDOPS_MAX_BATCH", "0", "greater than or equal to 1"),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_what_is_expected(env, name, value, says):
    env.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert f"{name}={value!r} (in the environment)" in message
    assert says in message
    assert FIELDS[settings.variables()[name]].description in message  # what the variable is for
    assert message.count("\n  - ") == 1  # one problem, not a cascade of derived ones


def test_every_problem_is_reported_at_once(env):
    env.setenv("FRAUDOPS_SEED", "x")
    env.setenv("FRAUDOPS_MAX_BATCH", "many")
    env.setenv("FRAUDOPS_SEEDS", "3")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "FRAUDOPS_SEED='x'" in message and "FRAUDOPS_MAX_BATCH='many'" in message
    assert (
        "FRAUDOPS_SEEDS (in the environment) is not a fraudops variable; did you mean FRAUDOPS_SEED?"
        in message
    )


def test_drift_knobs_need_a_start_day(env):
    env.setenv("FRAUDOPS_DRIFT_AMOUNT_MULTIPLIER", "3")
    with pytest.raises(SettingsError, match="FRAUDOPS_DRIFT_START is not set"):
        load_settings()
    env.setenv("FRAUDOPS_DRIFT_START", "2026-05-01")
    assert load_settings().drift_knobs().amount_multiplier == 3


def test_dotenv_is_read_as_dagster_dev_reads_it(env, tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# comments and quotes as in the README\n"
        'FRAUDOPS_LANDING_MAPPING=\'{"transaction_id": "id", "amount": "value"}\'\n'
        "FRAUDOPS_TIMESTAMP_FORMAT='%d/%m/%Y %H:%M'   # when timestamps are not ISO-like\n"
        "FRAUDOPS_SEED=11\n"
        "OTHER_TOOL_SETTING=1\n"
    )
    env.setattr(settings, "DOTENV", ".env")
    env.setenv("FRAUDOPS_SEED", "5")
    loaded = load_settings()
    # dagster dev copies .env over its environment: the same values, .env winning over the shell.
    dagster_sees = get_env_var_dict(str(tmp_path))
    assert loaded.landing_mapping == json.loads(dagster_sees["FRAUDOPS_LANDING_MAPPING"])
    assert loaded.timestamp_format == dagster_sees["FRAUDOPS_TIMESTAMP_FORMAT"] == "%d/%m/%Y %H:%M"
    assert loaded.seed == int(dagster_sees["FRAUDOPS_SEED"]) == 11

    dotenv.write_text("FRAUDOPS_CARDHOLDERS=lots\n")
    with pytest.raises(SettingsError, match=r"FRAUDOPS_CARDHOLDERS='lots' \(in \.env\)"):
        load_settings()


def test_resources_take_the_settings_when_the_definitions_are_built(env):
    env.setenv("FRAUDOPS_SEED", "7")
    env.setenv("FRAUDOPS_STORAGE", "s3://bucket/fraudops")
    env.setenv("FRAUDOPS_LANDING_DIR", "/incoming")
    env.setenv("FRAUDOPS_LANDING_ENCODING", "latin-1")
    built = defs().resources
    assert built["simulator"].seed == 7
    assert built["io_manager"].base_path == "s3://bucket/fraudops"
    assert built["model_io_manager"].base_path == "s3://bucket/fraudops/objects"
    assert (built["landing_zone"].path, built["landing_zone"].encoding) == ("/incoming", "latin-1")
    env.setenv("FRAUDOPS_SEED", "8")  # no module reload: the next build sees the new value
    assert defs().resources["simulator"].seed == 8


def _critical_report(instance: dg.DagsterInstance) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization("drift_report", partition="2026-03-01", metadata={"drift_level": "critical"})
    )


def _tick(instance: dg.DagsterInstance, cursor: str) -> dg.SensorResult:
    """One evaluation, with the retraining resource of the code location loaded now."""
    retraining = defs().resources["retraining"]
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"retraining": retraining})
    return drift_retraining_sensor.evaluate_tick(context)


def test_the_retraining_sensor_takes_the_cooldown_from_the_settings(env):
    an_hour_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    cursor = json.dumps({"after": {}, "last_trigger": an_hour_ago})
    with dg.instance_for_test() as instance:
        _critical_report(instance)
        waits = _tick(instance, cursor)
        assert waits.run_requests == [] and "cooldown" in waits.skip_message  # 72 h by default

        env.setenv("FRAUDOPS_RETRAIN_COOLDOWN_HOURS", "0.5")  # read when the code location reloads
        retrains = _tick(instance, cursor)
        assert len(retrains.run_requests) == 1


def test_the_api_reads_its_settings_when_it_starts(env, tmp_path):
    env.setenv("FRAUDOPS_MAX_BATCH", "5")
    env.setenv("FRAUDOPS_API_KEY", "k")
    env.setenv("DAGSTER_HOME", str(tmp_path))
    service = ServiceSettings.from_env()
    assert (service.max_batch, service.api_key_value(), service.dagster_home) == (5, "k", str(tmp_path))
    assert service.storage == ".fraudops/storage"
    env.setenv("FRAUDOPS_MODEL_POLL_SECONDS", "0")
    with pytest.raises(SettingsError, match="FRAUDOPS_MODEL_POLL_SECONDS='0'"):
        ServiceSettings.from_env()


def test_the_api_reads_the_same_settings_as_the_pipeline(env):
    env.setenv("FRAUDOPS_PREDICTION_LOG_QUEUE", "7")
    env.setenv("FRAUDOPS_PREDICTION_LOG_FLUSH_SECONDS", "2")
    env.setenv("FRAUDOPS_STORAGE", "s3://bucket/fraudops")
    service, pipeline = ServiceSettings.from_env(), load_settings()
    assert isinstance(service, FraudopsSettings)  # the groups themselves, by the same names
    assert {name: getattr(service, name) for name in FIELDS} == {
        name: getattr(pipeline, name) for name in FIELDS
    }
    assert (service.prediction_log_queue, service.prediction_log_flush_seconds) == (7, 2.0)
    # Built in code (the tests' way), the settings read neither the environment nor .env.
    assert ServiceSettings(max_batch=5).storage == FraudopsSettings().storage == ".fraudops/storage"


def test_every_resource_is_built_from_its_settings_group(env, tmp_path):
    configured = {
        "FRAUDOPS_CARDHOLDERS": "500",
        "FRAUDOPS_TRANSACTIONS_PER_CARD_PER_DAY": "4",
        "FRAUDOPS_LEGIT_LABEL_DELAY_DAYS": "3",
        "FRAUDOPS_DRIFT_START": "2026-05-01",
        "FRAUDOPS_DRIFT_AMOUNT_MULTIPLIER": "3",
        "FRAUDOPS_LANDING_MAPPING": '{"amount": "value"}',
        "FRAUDOPS_LABELS_MAPPING": '{"is_fraud": {"column": "status", "values": {"chargeback": 1, "reversed": 0}}}',
        "FRAUDOPS_TIMESTAMP_FORMAT": "%d/%m/%Y %H:%M",
        "FRAUDOPS_MLFLOW_MODEL_NAME": "card-fraud",
        "FRAUDOPS_RETRAIN_COOLDOWN_HOURS": "6",
        "FRAUDOPS_REPORTS": str(tmp_path / "html"),
    }
    for name, value in configured.items():
        env.setenv(name, value)
    built, loaded = defs().resources, load_settings()
    # Field for field (a resource takes unknown fields without a word: a new setting must not be lost).
    assert set(TransactionSimulatorResource.model_fields) == {
        *settings.GeneratorSettings.model_fields,
        *settings.DriftSettings.model_fields,
    }
    # the columns a mapping may target are the reader's own, not configuration
    reading = {f.name for f in dataclasses.fields(LandingSettings)} - {"known_columns"}
    assert set(LandingZoneResource.model_fields) == {"path", *reading}
    assert set(LabelFeedResource.model_fields) == {"path", *reading}
    simulation = built["simulator"].simulation_config()
    assert (simulation.n_cardholders, simulation.transactions_per_card_per_day) == (500, 4.0)
    assert simulation.legit_label_delay_days == 3.0
    assert (simulation.drift.start, simulation.drift.amount_multiplier) == (dt.date(2026, 5, 1), 3.0)
    assert built["landing_zone"].landing == loaded.landing
    assert loaded.landing.column_mapping == {"amount": "value"}
    assert loaded.landing.timestamp_format == "%d/%m/%Y %H:%M"
    assert built["label_feed"].reading == loaded.label_files
    assert loaded.label_files.value_rules == {"is_fraud": {"chargeback": "1", "reversed": "0"}}
    assert loaded.label_files.timestamp_format == "%d/%m/%Y %H:%M"
    assert built["model_registry"].model_name == "card-fraud"
    assert built["retraining"].cooldown == dt.timedelta(hours=6)
    assert built["report_store"].location().url == Path(tmp_path / "html").as_posix()


ENV_READ = re.compile(r"os\.(?:getenv\(|environ\.get\(|environ\[)\s*(\S+?)[,)\]]")


OTHER_TOOLS_VARIABLES = (
    "DAGSTER_HOME", "PATH", "PYTHONPATH", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "NUMBA_NUM_THREADS",
)  # fmt: skip


def test_only_the_settings_module_reads_fraudops_variables():
    """Every FRAUDOPS_ variable is read through fraud_assets/core/settings.py; other tools' own
    variables (DAGSTER_HOME, PATH, PYTHONPATH, botocore's endpoint, Numba's threads) may be read where they are needed."""
    readers = []
    for folder in ("fraud_assets", "fraud_serving", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "fraud_assets/core/settings.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                for name in ENV_READ.findall(line):
                    if name.strip("\"'") not in OTHER_TOOLS_VARIABLES:
                        readers.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert readers == []


# --- the README's tables and the settings agree --------------------------------------------------

VARIABLE = re.compile(r"FRAUDOPS_[A-Z0-9_]*[A-Z0-9](?![A-Z0-9_]*\*)")  # not a pattern like FRAUDOPS_DRIFT_*


def _cell(value: object) -> str:
    """A default as the README writes it: relative to the project root, or `unset`."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, dict):
        text = json.dumps(value)
    else:
        text = str(value).replace(f"{Path.cwd()}/", "")
    return f"`{text}`"


def _documented(markdown: str) -> dict[str, tuple[str, list[str]]]:
    """Variable -> (the ### heading above its row, the row's cells), for every table row whose
    first cell is a variable."""
    rows, heading = {}, ""
    for line in markdown.splitlines():
        if line.startswith("### "):
            heading = line[4:].strip()
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if cells and re.fullmatch(r"`FRAUDOPS_\w+`", cells[0]):
            rows[cells[0].strip("`")] = (heading, cells[1:])
    return rows


def _expected_rows() -> str:
    defaults = settings.defaults()
    return "\n".join(
        f"### {settings.group_of(name).TITLE}: | `{field.validation_alias}` | {_cell(getattr(defaults, name))} "
        f"| {field.description} |"
        for name, field in FIELDS.items()
    )


def test_the_readme_configuration_tables_and_the_settings_agree(env):
    env.chdir(ROOT)  # the defaults as the README shows them: relative to the project root
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    documented = _documented(section)
    declared = settings.variables()
    hint = f"the README's rows should read:\n{_expected_rows()}"
    assert set(documented) - set(declared) == set(), f"documented, not in the settings; {hint}"
    assert set(declared) - set(documented) == set(), f"in the settings, not documented; {hint}"
    defaults = settings.defaults()
    for name, field_name in declared.items():
        field = FIELDS[field_name]
        heading, (default, what) = documented[name]
        assert heading == settings.group_of(field_name).TITLE, f"{name} under {heading!r}; {hint}"
        assert default == _cell(getattr(defaults, field_name)), f"{name} default {default}; {hint}"
        assert what == field.description, f"{name}: {what!r}; {hint}"


def test_every_variable_named_anywhere_exists_and_every_documented_default_is_true(env):
    env.chdir(ROOT)
    declared, defaults = settings.variables(), settings.defaults()
    texts = [ROOT / "README.md", ROOT / "Makefile", *sorted((ROOT / "docs").glob("*.md"))]
    for folder in ("fraud_assets", "fraud_serving", "bench", "tests"):
        texts += sorted((ROOT / folder).rglob("*.py"))
    unknown = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in texts
        for name in VARIABLE.findall(path.read_text())
        if name not in declared and path.name != "test_settings.py"
    }
    assert unknown == set()
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name, (_, cells) in _documented(path.read_text()).items():
            field_name = declared[name]
            assert cells[0] == _cell(getattr(defaults, field_name)), f"{path.name}: {name} default {cells[0]}"
