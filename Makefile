# Every target sets itself up: a venv in .venv with the pinned torch wheels and the project
# (editable, all extras); `make test` also installs redis-server, Prometheus and the cluster
# validators it needs (apt-get / pip, idempotent).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
COMPOSE := docker compose $(if $(CPU),-f compose.yaml -f compose.cpu.yaml)
# Where the demos keep their trained networks; e.g. `make demo CACHE=/tmp/cold` for a cold run.
CACHE ?= out/cache

.PHONY: venv redis cluster-tools cluster-images test bench load demo demo-unconditional demo-merge lint up down clean

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml requirements-torch.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-torch.txt
	$(PY) -m pip install --quiet -e '.[service,trainer,features,dev]'
	touch $@

redis: venv
	bash scripts/install_redis.sh

cluster-tools: venv
	bash scripts/install_cluster_tools.sh

# podman, a debootstrap base image, stand-ins for the registry images and the project's images
# for tests/cluster/test_cluster_live.py (root, Debian; cached, rebuilt when a source changes).
cluster-images: venv
	bash scripts/cluster_setup.sh

# `python -m pytest` (not .venv/bin/pytest): the examples are imported from the repository root.
test: venv redis cluster-tools cluster-images
	$(PY) -m pytest -q

# bench_rolling: credits with commits (commit_fraction 0.25) against the same credits on a frozen
# pool, 8 trainers on 2 processes + Redis (d = 2048, pool 50,000, 60 s a phase, in both orders);
# results in benchmarks/results/rolling.json. Other sizes:
# make bench ROLLING_ARGS="--d 512 --pool 10000 --duration 20" (see --help)
ROLLING_ARGS ?= --orders 2
bench: venv redis
	$(PY) -m benchmarks.bench_engine
	$(PY) -m benchmarks.bench_service
	$(PY) -m benchmarks.bench_memory
	$(PY) -m benchmarks.bench_rolling $(ROLLING_ARGS)

# Two service processes on one Redis: 8 trainers (16 groups of 64, d = 2048, pool 50,000) and
# 2 committers for 60 s, then the stored statistics against a recompute from the stored pool;
# results in benchmarks/results/load.json. Other sizes: make load LOAD_ARGS="--d 512 --pool 10000"
load: venv redis
	$(PY) -m benchmarks.load $(LOAD_ARGS)

# Trains the feature CNN and a class-conditional flow model (cached in $(CACHE) by config hash),
# starts the reward service on a free loopback port (or uses DISTREWARD_URL +
# DISTREWARD_ADMIN_TOKEN), runs GRPO with per-class advantage normalisation and four rewards
# (per-sample credits, group rewards, credits with a stalled pool, classifier confidence) over
# 3 seeds, writes out/demo/.
demo: venv
	$(PY) -m examples.digits --out out/demo --cache $(CACHE)

# The same comparison on the unconditional digits flow; writes out/demo-unconditional/.
demo-unconditional: venv
	$(PY) -m examples.digits --unconditional --out out/demo-unconditional --cache $(CACHE)

# Learns merge coefficients of the digits flow's snapshots (pretrained or loaded from out/cache)
# over 3 seeds and compares them with last / best single / uniform / EMA; writes out/demo-merge/.
demo-merge: venv
	$(PY) -m examples.digits.merge_demo --out out/demo-merge --cache $(CACHE)

# The standards CI holds (.ci/run runs this before the suite): lint, layout, strict types of the
# packages' public code and of the launch support the demo, tests and benchmarks share.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy services/reward_service client/reward_client support

# The cluster (needs a Docker engine): `make up` on a GPU host, `make up CPU=1` elsewhere.
up:
	$(COMPOSE) up --build --detach

down:
	$(COMPOSE) down

clean:
	bash scripts/cluster_setup.sh clean
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
