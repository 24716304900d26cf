# voxplane: `make run` serves every service on the embedded SQLite database;
# `make test` lints, type-checks (mypy, set up in pyproject.toml) and runs the
# whole suite. Both set up .venv first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test proto bench install clean

run: $(STAMP)
	$(BIN)/voxplane dev

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

proto: $(STAMP)
	$(BIN)/python protos/generate.py

bench: $(STAMP)
	$(BIN)/python bench/ingress.py

install: $(STAMP)

# Reinstalled whenever the project's dependencies change. The dev extra includes the server extra.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) data build *.egg-info
