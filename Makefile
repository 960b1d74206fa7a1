# Quick start (README): `make reproduce` and `make test`. Both create .venv when absent.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.nbkit-installed
PROFILE ?= quick
PYTEST_ARGS ?=
ARGS ?=

.PHONY: setup reproduce test test-fast lab clean-runs

# torch is installed first, pinned: any other torch requirement pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

## the main job: every notebook executed by papermill into runs/<timestamp>/ (runs/latest);
## ARGS passes any other option, e.g. make reproduce ARGS="--only 10 --data-dir ~/oulad"
reproduce: setup
	$(VENV)/bin/nbkit reproduce --profile $(PROFILE) $(ARGS)

## the whole test suite (unit tests, every notebook executed, the browser and Ray tests),
## two workers (pytest-xdist): every notebook runs on one thread, so both cores are used
test: setup
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

## unit tests only (no notebook execution, no browser)
test-fast: setup
	$(PY) -m pytest -m "not notebooks and not browser" $(PYTEST_ARGS)

## JupyterLab on the notebooks
lab: setup
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

clean-runs:
	rm -rf runs
