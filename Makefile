# Two entry points (see README): `make repro` runs the pipeline, `make test` runs the tests.
# Both create .venv and install the project on first use, and reuse it afterwards.
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
# Keep Prefect's local state inside the project.
export PREFECT_HOME ?= $(abspath .prefect)

.PHONY: setup repro test bench ui clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

repro: $(STAMP)
	dvc repro

test: $(STAMP)
	python -m pytest

bench: $(STAMP)
	python -m bench

ui: $(STAMP)
	samsar ui
