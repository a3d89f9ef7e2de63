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

# The demo fine-tunes a small base pretrained here on CPython's own text (cached in
# ~/.cache/fedaso/pretrain: a minute or two once, then instant) on the `facts` corpus, and
# sets FedASO's best deployable variant (docs/RESULTS.md, part A) against FedAvg.
DEMO_BASE ?= models/demo-base
DEMO_STRATEGIES ?= fedaso+aso-probe+no-projection,fedavg
demo: setup
	$(VENV)/bin/fedaso pretrain --out $(DEMO_BASE) --width 64 --layers 2 --heads 4 \
		--vocab-size 2048 --steps 600 --warmup 60 --eval-every 100
	$(VENV)/bin/fedaso compare --strategies $(DEMO_STRATEGIES) --num-clients 8 \
		--fraction-train 1.0 --rounds 8 --dataset facts --out runs/demo \
		--set model=hf:$(DEMO_BASE) --set facts-entities=8 --set test-fraction=0 \
		--set anchor-seed=knowledge --set lr=0.004 --set batch-size=8 --set local-epochs=3 \
		--set tracking=tensorboard

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
