# make quickstart : set up a CPU virtualenv, fetch the offline assets, run train -> save -> evaluate
# make test       : set up the same virtualenv and run the CPU test suite
# make lint       : ruff
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU torch build is pinned here (not in pyproject.toml): an unpinned torch pulls a multi-GB CUDA build.
CONSTRAINTS ?= constraints-cpu.txt
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup quickstart test lint clean

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c $(CONSTRAINTS) -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

quickstart: setup
	$(PY) -m train.assets
	PYTHON=$(PY) ./launch_trl.sh 1 --config config/quickstart.yaml

test: setup
	$(PY) -m pytest -q --doctest-modules train step3_GRPO bench tests

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf outputs/quickstart outputs/quickstart.replaced-* .pytest_cache .ruff_cache
