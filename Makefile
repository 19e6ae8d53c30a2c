# Every target sets itself up: a venv in .venv, the pinned torch wheels, the project (editable)
# with all extras, and redis-server for the Redis tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed

.PHONY: venv test bench lint demo clean

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml requirements-torch.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-torch.txt
	$(PY) -m pip install --quiet -e '.[service,trainer,dev]'
	touch $@

redis: venv
	bash scripts/install_redis.sh

test: venv redis
	$(PY) -m pytest -q

bench: venv
	$(PY) -m benchmarks.bench_engine

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy services/reward_service/engine client/reward_client

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
