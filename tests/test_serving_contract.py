"""Schemathesis against the scoring API's own OpenAPI schema: whatever it sends, never a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from fraud_serving.app import create_app
from fraud_serving.settings import Settings
from tests.test_serving import shared_home, world  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def api_schema(world, shared_home, tmp_path_factory):  # noqa: F811
    folder = tmp_path_factory.mktemp("contract")
    app = create_app(
        Settings(
            dagster_home=str(shared_home[0]),
            storage=str(world["storage"]),
            prediction_log_dir=str(folder / "predictions"),
            capture=str(folder / "capture"),  # POST /labels keeps labels there (off: 503)
            model_poll_seconds=3600,
            max_batch=50,
        )
    )
    app.state.service.start()
    assert app.state.service.provider.current is not None
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    app.state.service.stop()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors(api_schema, mode):
    """Every operation, valid and invalid inputs (hypothesis-generated): no 5xx, ever."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/predict",
        "/predict/batch",
        "/labels",
        "/alerts",
        "/health",
        "/model",
        "/metrics",
    }
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            case.call_and_validate(checks=[not_a_server_error])

        try:
            check()
        except Unsatisfiable:  # nothing invalid to send to an operation without inputs
            assert mode == GenerationMode.NEGATIVE and operation.method.upper() == "GET"
