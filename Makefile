# Every target that runs code depends on `setup`, so on a fresh machine `make test` and
# `make run` are single commands that install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_WORKERS ?= 2

.PHONY: setup redis run test sdk-js e2e bench chaos lint format clean

setup: $(STAMP) redis

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# Redis comes from Debian packages; tests start their own redis-server (and build a Redis
# Cluster with redis-cli, from redis-tools).
redis:
	@{ command -v redis-server && command -v redis-cli; } >/dev/null || { \
		echo "installing redis-server and redis-tools from Debian packages"; \
		apt-get update -qq >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null; }

# A local cluster in the foreground (6 nodes, 2 replica groups, RF=2, 16 shards); Ctrl-C stops it.
DEV_MASTER_KEY ?= miroir-dev-master-key
run: setup
	@$(BIN)/miroir dev up --nodes 6 --replica-groups 2 --replication-factor 2 --shards 16 \
		--port 7700 --master-key $(DEV_MASTER_KEY) --data-dir .miroir-dev

test: setup
	@$(BIN)/pytest -q -n $(PYTEST_WORKERS) --dist loadfile
	@if command -v node >/dev/null && command -v npm >/dev/null; then \
		$(MAKE) --no-print-directory sdk-js; fi

# The official JavaScript client (`meilisearch` on npm, pinned in tests/sdk_js/package-lock.json)
# drives the core scenario on one node and through Miroir. Needs node and npm.
sdk-js: setup
	@cd tests/sdk_js && npm ci --no-audit --no-fund --loglevel=error
	@MIROIR_SDK_JS=1 $(BIN)/pytest -q -n 0 tests/proxy/e2e/test_sdk_js.py

# The opt-in kind suite (e2e/): the chart, the Dockerfile's image and real Meilisearch nodes in
# a kind cluster. Needs a Docker daemon, kind and kubectl; skips with the reason without them.
e2e: setup
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,e2e]'
	@$(BIN)/pytest -q -n 0 -rs e2e

# What the proxy costs and how groups scale (bench/README.md); prints a table and writes
# bench/results/latest.json. BENCH_ARGS="--runs 5" or "--profile DIR" pass through.
bench: setup
	@$(BIN)/python -m bench.run $(BENCH_ARGS)

# Kills, pauses, restarts and a Redis outage under a steady writer (bench/chaos.py); prints
# the table of README.md's "Reliability" section, writes bench/results/chaos-latest.json and
# fails when an acknowledged write was lost or duplicated. CHAOS_ARGS="--minutes 5" etc.
chaos: setup
	@$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

lint: setup
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy
	@$(BIN)/lint-imports

format: setup
	@$(BIN)/ruff check --fix .
	@$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
