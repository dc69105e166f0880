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
# embedded: SQLite, local folders, `dagster dev`; cluster: PostgreSQL, an S3 server, Redis, the
# MLflow server, Dagster's webserver, daemon and code server, Celery workers, the API
# (docs/scale-out.md). CODE_PORT and WORKERS are the cluster's code server port and Celery workers.
PROFILE ?= embedded
CODE_PORT ?= 4000
WORKERS ?= 2

# The project root is the Dagster home, so the top-level dagster.yaml configures the instance.
export DAGSTER_HOME := $(CURDIR)

.PHONY: help env run serve test lint format bench clean

help:
	@echo "make run    - set up, materialize the last $(DAYS) days of data, start the Dagster UI on http://$(HOST):$(PORT)"
	@echo "             and the scoring API on http://$(HOST):$(API_PORT)"
	@echo "make serve  - only start the UI and the API (no first look); Ctrl-C stops both"
	@echo "             PROFILE=cluster: the same on PostgreSQL, S3, the MLflow server and Celery workers"
	@echo "             (every service as a process of its own, docs/scale-out.md)"
	@echo "make test   - set up and run the tests"
	@echo "make crosscheck - the compiled-kernel tests again without Numba's JIT, on one thread, another hash seed"
	@echo "make lint   - ruff check and format check"
	@echo "make bench  - run every benchmark in bench/ (QUICK=1: tiny sizes, checks that each runs)"
	@echo "make clean  - delete runtime state (.fraudops/, data/)"

$(STATE)/bootstrap/bin/uv:
	$(PYTHON) -m venv $(STATE)/bootstrap
	$(STATE)/bootstrap/bin/pip install --quiet --disable-pip-version-check uv

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

env: $(VENV)/.synced

# dagster dev and the scoring API (docs/serving.md) side by side, each in its own process group:
# Ctrl-C stops both within seconds (fraud_assets/services/run_services.py).
# PROFILE=cluster starts its services first (the first look needs them), then the first look.
SERVE = $(VENV)/bin/python -m fraud_assets.services.run_services --host $(HOST) --port $(PORT) --api-port $(API_PORT) \
	--profile $(PROFILE) --code-server-port $(CODE_PORT) --workers $(WORKERS)

ifeq ($(PROFILE),cluster)
run: env
	$(SERVE) --first-look-days $(DAYS)
else
run: env
	$(VENV)/bin/python -m fraud_assets.first_look --days $(DAYS)
	$(SERVE)
endif

serve: env
	$(SERVE)

# The suite runs on every core, up to four (pytest-xdist), one test file per worker: a file's
# module fixtures (a trained champion, a started cluster) are built once, and the files that start
# servers spend most of their time waiting, so the other core has work. TEST_WORKERS=0 runs it in
# one process.
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min(4, os.cpu_count() or 1))")
test: env
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile --durations 15

# The tests claim bit-identical results where two code paths do the same arithmetic, and argue
# a tolerance elsewhere. That must not rest on Numba's compiler, on the core count or on the
# hash seed: run the tests of the compiled kernels once as plain Python (NUMBA_DISABLE_JIT,
# which also checks the kernels' Python semantics), and once on one thread with another
# PYTHONHASHSEED. CI runs this after `make test`.
.PHONY: crosscheck
CROSSCHECK_TESTS := tests/test_compiled_trees.py tests/test_card_state.py tests/test_features.py tests/test_serving.py
crosscheck: env
	NUMBA_DISABLE_JIT=1 $(VENV)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile $(CROSSCHECK_TESTS)
	NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONHASHSEED=12345 \
		$(VENV)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile $(CROSSCHECK_TESTS) tests/test_training.py

lint: env
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: env
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Every bench/bench_*.py (bench/run_all.py); QUICK=1 checks that each runs, with tiny sizes.
bench: env
	$(VENV)/bin/python bench/run_all.py $(if $(QUICK),--quick)

clean:
	rm -rf $(STATE) data history schedules storage logs .logs_queue .nux .telemetry
	rm -rf deploy/cluster/logs deploy/cluster/.logs_queue deploy/cluster/.nux deploy/cluster/.telemetry
