PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint bench bench-all clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/meterql demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/python -m pytest -q

# meterql vs DuckDB SQL, Polars, chdb, a per-customer loop, ingest, peak memory (one table;
# flock: never two benchmark runs at once).  Every benchmark: `make bench-all`.
bench: $(STAMP)
	flock /tmp/meterql-bench.lock $(BIN)/python -m benchmarks --only compare

bench-all: $(STAMP)
	flock /tmp/meterql-bench.lock $(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info
