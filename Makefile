# proxy-cache-lab: two commands do all the set-up on a fresh machine with Python 3.11+:
#   make repro SCENARIO=proxy-cache [FIX=nonce]
#   make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SCENARIO ?= proxy-cache
FIX ?= none
CLIENT ?= python
# Empty: the scenario's own broker (sqlite for most, redis for redis-oom).
BROKER ?=
BROKER_ARG = $(if $(BROKER),--broker $(BROKER))

.DEFAULT_GOAL := help
.PHONY: help bytecode repro matrix up list test test-fast lint format bench clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_.-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.venv: $(STAMP) ## Create the virtual environment and install the project (only that)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "proxy-cache-lab needs Python 3.11 or newer; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	@# uv installs in a third of pip's time; pip stays the way in where uv cannot be had
	@# (a mirror only pip is configured for, no PyPI).
	@# --compile-bytecode: uv, unlike pip, writes no .pyc by default, and where
	@# PYTHONDONTWRITEBYTECODE is set (this project's CI machines) none is ever written: every
	@# proxy, app and worker the lab starts then compiles mitmproxy, Celery and Flask from source,
	@# about 60% of its start-up CPU.
	$(BIN)/pip install --quiet uv && $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e '.[dev]' \
	  || { echo "uv did not install the project; installing with pip"; $(BIN)/pip install --quiet -e '.[dev]'; }
	@touch $(STAMP)

# The project's own modules, compiled for the same reason (an editable install compiles none);
# only files changed since the last time are compiled again, in a fraction of a second.
SOURCES := lab proxies sample_app cache_probe examples
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q $(SOURCES) >/dev/null

repro: bytecode ## Reproduce a scenario: make repro SCENARIO=proxy-cache [FIX=nonce] [CLIENT=browser] [BROKER=redis]
	$(BIN)/lab repro $(SCENARIO) --fix $(FIX) --client $(CLIENT) $(BROKER_ARG)

matrix: bytecode ## Every scenario against every fix: make matrix [REPEAT=5] [CLIENT=browser] [BROKERS=sqlite,redis,rabbitmq]
	$(BIN)/lab matrix --repeat $(or $(REPEAT),1) --client $(CLIENT) $(BROKER_ARG) $(if $(BROKERS),--brokers $(BROKERS))

up: bytecode ## Workshop mode: make up SCENARIO=proxy-cache [FIX=none] [BROKER=redis]; Ctrl-C stops it
	$(BIN)/lab up $(SCENARIO) --fix $(FIX) $(BROKER_ARG)

list: $(STAMP) ## List the scenarios
	$(BIN)/lab list

# pytest-xdist workers: as many as the cores. On 2 cores (0.85 s for 10 million additions),
# CI=true pytest took 9:25 with 2 workers (the CPU 78% busy), 8:38 with 3 (84%) and 8:27 with
# 4 (97%). But on a slower machine (1.25-1.45 s for the additions) a third worker made cells too
# slow to judge: a fresh-clone CI run failed with ten matrix cells whose first answer came at
# 3.0-3.8 s, after their retries, where the task had already finished (CI 15:40 with 3).
# Earlier machines: 8:46 with 2 and 10:23 with none; 12:46-13:20 with 2 and 12:10 with 3; with
# 0.35-0.45 s for the additions, 10:55 with 2. The fast tier: 36-62 s with 4. Tests that share
# a costly fixture (a whole matrix, two agents, a real product) run on one worker
# (tests/conftest.py). TEST_WORKERS=0 runs them in this process, one after another.
TEST_WORKERS ?= $(shell nproc 2>/dev/null || echo auto)
FAST_WORKERS ?= 4

test: bytecode ## Lint, then the whole test suite (unit, app, and the real stack): what CI runs
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n $(TEST_WORKERS) --durations=20

test-fast: bytecode ## The edit loop, under a minute: lint and every test that starts no real process
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n $(FAST_WORKERS) -m "not stack"

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## ruff format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: bytecode ## Timing goals: repro speed, matrix time and stability, requests/s per profile, brokers, audit, probe, dispatch
	$(BIN)/python bench/repro_speed.py
	$(BIN)/python bench/matrix_time.py
	$(BIN)/python bench/stability.py
	$(BIN)/python bench/proxy_rps.py
	$(BIN)/python bench/proxy_cpu.py
	$(BIN)/python bench/browser_vs_python.py
	$(BIN)/python bench/cache_memory.py
	$(BIN)/python bench/brokers.py
	$(BIN)/python bench/audit_time.py
	$(BIN)/python bench/probe_time.py
	$(BIN)/python bench/dispatch.py

clean: ## Remove run folders and caches (keeps .venv)
	rm -rf runs .pytest_cache .ruff_cache
