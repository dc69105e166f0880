"""The fraudops scoring API: ``uvicorn fraud_serving.app:app``.

Serves the latest materialized `champion_model` of the Dagster instance (``DAGSTER_HOME``),
swaps to a newer one without dropping a request, explains each decision with the model's own
per-feature contributions, and logs every scored transaction for monitoring. See docs/serving.md.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
from typing import Any

from fastapi import FastAPI

from fraud_serving import errors
from fraud_serving.routers import alerts, labels, model, operations, scoring
from fraud_serving.service import Service
from fraud_serving.settings import Settings


def create_app(settings: Settings | None = None, *, source=None, shadow_source=None) -> FastAPI:
    """The FastAPI app. ``settings`` default to the environment; ``source`` (tests) replaces the
    Dagster instance as the place champion records come from, ``shadow_source`` the place of the
    challenger in shadow (none, when only ``source`` is given)."""
    service = Service(settings or Settings.from_env(), source, shadow_source)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        service.start()
        # What is loaded so far (Dagster, the card state, the first model) lives about as long as
        # the process: out of the collector's reach, a full collection does not walk it in the
        # middle of a request (walking it cost 250-350 ms on the second big batch). Frozen objects
        # are still freed by reference counting: a swapped-out first model goes (tested); only
        # garbage in reference cycles among them would stay.
        gc.freeze()
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title=operations.SERVICE,
        version=operations.API_VERSION,
        description=(
            "Scores card transactions with the latest materialized `champion_model` of the fraudops "
            "Dagster instance and explains each decision. See docs/serving.md."
        ),
        lifespan=lifespan,
    )
    app.state.service = service
    errors.install(app, service.metrics, service.log)
    for router in (scoring.router, labels.router, alerts.router, model.router, operations.router):
        app.include_router(router)
    return app


@functools.cache
def _default_app() -> FastAPI:
    logger = logging.getLogger("fraud_serving")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    return create_app()


def __getattr__(name: str) -> Any:
    """``fraud_serving.app:app`` is created when uvicorn asks for it, at the API's startup: the
    settings are read then, not when a test or a script imports this module."""
    if name == "app":
        return _default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
