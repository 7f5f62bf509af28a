# `make demo` and `make test` work on a fresh machine: they build .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,notebooks]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m symsgd.demo

test: $(STAMP)
	$(BIN)/ruff check symsgd tests benchmarks docs
	$(BIN)/ruff format --check symsgd tests benchmarks docs
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

lint: $(STAMP)
	$(BIN)/ruff check symsgd tests benchmarks docs
	$(BIN)/ruff format --check symsgd tests benchmarks docs

bench: $(STAMP)
	$(BIN)/python benchmarks/derive.py

clean:
	rm -rf $(VENV)
