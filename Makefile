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

# Two test processes, each test file whole in one of them (its module fixtures - a local cluster, a server - start
# once); each process has its own local Ray instance.
test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: setup
	$(BIN)/ruff check search emule_models tests bench cluster
	$(BIN)/lint-imports --no-cache
