# The two commands of the README, and the gate they share.
#   make serve   set up (.venv, database, certificate) and run web + XMPP on the embedded defaults
#   make check   set up and run the whole gate: ruff, mypy, the full test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup serve check lint types test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: setup
	$(PY) manage.py serve

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: setup
	$(VENV)/bin/mypy .

test: setup
	$(VENV)/bin/pytest

check: lint types test

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
