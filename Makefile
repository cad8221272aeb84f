# The repo's contract: `make test` and `make demo` work on a fresh machine with Python 3.11 + pip.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-test

.PHONY: install test lint demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# (re)install when pyproject.toml changes
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# two pytest processes, a test file each at a time (most tests wait on subprocesses and I/O);
# `$(BIN)/python -m pytest tests/test_x.py` runs one file on its own
test: install lint
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=15

# the job as it is scheduled: the Prefect flow (a temporary local Prefect server unless
# PREFECT_API_URL names one); `kmeans-dask demo` alone runs the plain pipeline
demo: install
	$(BIN)/kmeans-dask demo --prefect

bench: install
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/bench_kmeans.py
	$(BIN)/python benchmarks/bench_io.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
