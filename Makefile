# Two commands do all the set-up: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
# As in the Dockerfile: Arrow on the system allocator (see dropbox_team_log/tasks/worker_memory.py).
export ARROW_DEFAULT_MEMORY_POOL ?= system

.PHONY: help venv test test-fast lint demo emulator lock clean bench bench-airflow

help:
	@echo "make demo   - emulator + Airflow (SQLite): connect, backfill, incremental runs, summary"
	@echo "make test   - create the venv, install the pinned set, run the whole pytest suite"
	@echo "              on $(TEST_WORKERS) pytest-xdist workers (TEST_WORKERS=0: one process)"
	@echo "make lint   - ruff (incl. Airflow AIR rules)"
	@echo "make emulator - start the local Dropbox API emulator on 127.0.0.1:8765"
	@echo "make lock   - re-resolve requirements.in -> requirements.txt (runtime) and"
	@echo "              requirements-test.in -> requirements-test.txt (tests, lint, bench)"

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

# The venv is rebuilt from the locks whenever a lock or the package metadata changes: the runtime
# lock (what the production image installs) plus the test lock (tests, lint, bench; its shared
# pins equal the runtime ones, so the second install changes nothing the first one pinned).
# Bytecode is compiled at install: under PYTHONDONTWRITEBYTECODE (or a read-only venv) every
# process would otherwise compile Airflow and the dropbox SDK from source on each import, which
# costs ~2 s and ~140 MB of peak RSS per process (the SDK's team_log.py alone is 4 MB of source).
$(VENV)/.installed: requirements.txt requirements-test.txt pyproject.toml emulator/pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python \
		-r requirements.txt -r requirements-test.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e . -e ./emulator
	touch $@

venv: $(VENV)/.installed

# The suite on pytest-xdist workers, a module (or tests/web) at a time, the long ones first
# (tests/helpers/parallel.py); TEST_WORKERS=0 runs it in one process. Figures:
# docs/performance.md, "Test suite".
TEST_WORKERS ?= 3
test: venv
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check . || true

# Figures against the emulator (table + last line JSON); BENCH_ARGS="--scale 0.25" for a quick run.
bench: venv
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Airflow's fixed CPU cost per incremental run on the production-shaped stack (~12 min).
bench-airflow: venv
	$(BIN)/python -m bench.airflow_run_cost $(BENCH_ARGS)

demo: venv
	$(BIN)/python demo/run.py

emulator: venv
	$(BIN)/dropbox-emulator --port 8765

# The runtime lock first: the test lock is constrained by it (`-c requirements.txt`). uv keeps
# the versions already in an output file unless an input asks for another one.
lock: venv
	$(BIN)/uv pip compile requirements.in --python-version 3.11 --no-header -o requirements.txt
	$(BIN)/uv pip compile requirements-test.in --python-version 3.11 --no-header \
		-o requirements-test.txt

clean:
	rm -rf $(VENV) .airflow data/demo .pytest_cache .ruff_cache
