# fraudops: `make run` (environment, first data, Dagster UI) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
STATE  := .fraudops
VENV   := .venv
# uv from PATH, else a private copy installed with pip on first use.
UV     ?= $(shell command -v uv || echo $(STATE)/bootstrap/bin/uv)
DAYS   ?= 75
HOST   ?= 127.0.0.1
PORT   ?= 3000
API_PORT ?= 8000

# The project root is the Dagster home, so the top-level dagster.yaml configures the instance.
export DAGSTER_HOME := $(CURDIR)

.PHONY: help env run test lint format bench clean

help:
	@echo "make run    - set up, materialize the last $(DAYS) days of data, start the Dagster UI on http://$(HOST):$(PORT)"
	@echo "             and the scoring API on http://$(HOST):$(API_PORT)"
	@echo "make test   - set up and run the tests"
	@echo "make lint   - ruff check and format check"
	@echo "make bench  - run the benchmarks in bench/"
	@echo "make clean  - delete runtime state (.fraudops/, data/)"

$(STATE)/bootstrap/bin/uv:
	$(PYTHON) -m venv $(STATE)/bootstrap
	$(STATE)/bootstrap/bin/pip install --quiet --disable-pip-version-check uv

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

env: $(VENV)/.synced

run: env
	$(VENV)/bin/python -m fraud_assets.first_look --days $(DAYS)
	@# The scoring API (docs/serving.md) runs in the background beside dagster dev and stops with it.
	$(VENV)/bin/uvicorn fraud_serving.app:app --host $(HOST) --port $(API_PORT) & api=$$!; \
	trap 'kill $$api 2>/dev/null; wait $$api 2>/dev/null' EXIT; \
	trap 'exit 130' INT TERM; \
	echo "scoring API on http://$(HOST):$(API_PORT) (docs: /docs)"; \
	$(VENV)/bin/dagster dev -w workspace.yaml -h $(HOST) -p $(PORT)

test: env
	$(VENV)/bin/pytest

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: env
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: env
	$(VENV)/bin/python bench/bench_generator.py
	$(VENV)/bin/python bench/bench_landing.py --repeat 1

clean:
	rm -rf $(STATE) data history schedules storage logs .logs_queue .nux .telemetry
