# Two commands do everything on a fresh machine: `make demo` and `make test`.
# Both create .venv and install FedASO into it first (once; again when pyproject.toml changes).
# `make test` runs both test tiers; `make test-unit` only tests/unit/ (about two minutes),
# `make test-integration` only tests/integration/ (real federations: Flower, Ray, SuperLinks).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# flwr reads these when `flwr run` starts its local SuperLink: never reinstall per run.
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION := 1
export FLWR_TELEMETRY_ENABLED := 0

.PHONY: setup demo test test-unit test-integration lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --quiet --upgrade pip
	# torch first, pinned: pip takes the CPU build from this machine's disk.
	$(PY) -m pip install --quiet --quiet torch==2.13.0
	$(PY) -m pip install --quiet --quiet -e ".[dev,hf,tracking]"
	touch $@

demo: setup
	$(VENV)/bin/fedaso compare --strategies fedaso,fedavg --num-clients 20 --rounds 20 \
		--fraction-train 0.5 --dataset facts --out runs/demo --set tracking=tensorboard

test: setup
	$(PY) -m pytest

test-unit: setup
	$(PY) -m pytest tests/unit

test-integration: setup
	$(PY) -m pytest tests/integration

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
