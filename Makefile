# Two commands for a fresh machine: `make quickstart` (set up + run the quickstart search) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch, installed before the project so that pip does not pull a CUDA build.
TORCH ?= torch==2.13.0
comma := ,
# Exact versions of everything else, the test and deploy extras included: what CI tested is what a user installs.
# pyproject.toml keeps ranges for installing EMuLe into an environment of one's own; `make lock` refreshes this file.
LOCK := requirements.lock
EXTRAS := test,deploy

.PHONY: setup quickstart test lint lock test-latest

setup: $(BIN)/emule

$(BIN)/emule: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -r $(LOCK)
	$(BIN)/pip install -q --no-deps -e ".[$(EXTRAS)]"
	$(BIN)/pip check
	touch $@

quickstart: setup
	$(BIN)/emule search spaces/quickstart.yaml

# Two test processes, each test file whole in one of them (its module fixtures - a local cluster, a server - start
# once); each process has its own local Ray instance. The 15 slowest tests are listed at the end, to keep the suite
# within its 15 minutes.
test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=15

lint: setup
	$(BIN)/ruff check search emule_models tests bench cluster
	$(BIN)/lint-imports --no-cache

# The lock again, from pyproject's ranges at their newest versions (pip-tools, in a venv of its own; torch pinned to
# $(TORCH) and left out of the file, so that its own dependencies are those of the CPU build). Then `make test`.
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q "pip-tools>=7.6,<8"
	echo "$(TORCH)" > .venv-lock/torch.txt
	CUSTOM_COMPILE_COMMAND="make lock" .venv-lock/bin/pip-compile -q --upgrade --strip-extras --extra $(subst $(comma), --extra ,$(EXTRAS)) \
		--unsafe-package torch -c .venv-lock/torch.txt --no-emit-index-url --no-emit-find-links -o $(LOCK) pyproject.toml
	@! grep -q '^nvidia-' $(LOCK) || { echo "$(LOCK) names CUDA packages: pip found the CUDA build of $(TORCH), not the \
	CPU one; make the CPU build reachable to pip (PyTorch's CPU wheel index as an extra index) and run make lock again"; \
	exit 1; }

# The fast suite against the newest versions pyproject's ranges allow (torch held at $(TORCH)), in a venv of its
# own: the next drift of a dependency shows here before a user meets it.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/pip install -q --upgrade pip
	echo "$(TORCH)" > .venv-latest/torch.txt
	.venv-latest/bin/pip install -q -c .venv-latest/torch.txt "$(TORCH)"
	.venv-latest/bin/pip install -q --upgrade --upgrade-strategy eager -c .venv-latest/torch.txt -e ".[$(EXTRAS)]"
	.venv-latest/bin/pip list --format freeze | grep -i -E '^(optuna|ray|mlflow|pyarrow|torch|numpy)=='
	.venv-latest/bin/python -m pytest -q -n 2 --dist loadfile -m "not slow"
