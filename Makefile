# Two commands, from a fresh clone on a machine with or without a GPU:
#   make demo   set up .venv and run every shipped example, checked against its float64 reference
#   make test   set up .venv and run the whole test suite
# torch is installed first and pinned: an unpinned torch would pull several GB of CUDA wheels on a CPU machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0

.PHONY: setup demo test lint

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(PY) -m pip install --quiet -e ".[test,dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/tilec demo

test: setup
	$(PY) -m pytest -q -n 2 tests

lint: setup
	$(PY) -m ruff check tilec tests
	$(PY) -m mypy
