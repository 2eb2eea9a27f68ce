# Two entry points for a fresh machine: `make run` and `make test`.
# Each creates .venv and installs quadflow (editable) with its dependencies.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# A CPU build of torch is enough for everything but the GPU benchmarks;
# override with e.g. `make TORCH_SPEC=torch run` to take what pip resolves.
TORCH_SPEC ?= torch==2.13.0

.PHONY: run test test-all venv bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

run: venv
	WANDB_MODE=$${WANDB_MODE:-offline} $(PY) scripts/run.py $(ARGS)

test: venv
	WANDB_MODE=disabled $(PY) -m pytest -q $(PYTEST_ARGS)

test-all: venv
	WANDB_MODE=disabled $(PY) -m pytest -q -m "" $(PYTEST_ARGS)

bench: venv
	$(PY) scripts/bench.py $(ARGS)

clean:
	rm -rf outputs multirun wandb .pytest_cache
