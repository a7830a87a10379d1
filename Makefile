# Two commands for a fresh machine: `make quickstart` (set up + run the quickstart search) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch, installed before the project so that pip does not pull a CUDA build.
TORCH ?= torch==2.13.0

.PHONY: setup quickstart test lint bench-overhead

setup: $(BIN)/emule

$(BIN)/emule: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test,deploy]"
	touch $@

quickstart: setup
	$(BIN)/emule search spaces/quickstart.yaml

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check search emule_models tests bench cluster
	$(BIN)/lint-imports --no-cache
