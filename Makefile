# Two entry points that work on a fresh machine with Python >= 3.10 and pip:
#   make run    creates .venv, installs kerasvision, runs the main recipe
#   make test   creates .venv, installs kerasvision[test], runs the test suite
VENV ?= .venv
PYTHON := $(VENV)/bin/python

.PHONY: run test test-slow

$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e ".[test]"
	touch $@

run: $(VENV)/.installed
	$(PYTHON) recipes/fcn_transfer.py

# Two workers, one per core; whole files per worker so module fixtures run once.
test: $(VENV)/.installed
	$(PYTHON) -m pytest -n 2 --dist loadfile

# The tests marked slow only (CI runs them after `make test`).
test-slow: $(VENV)/.installed
	$(PYTHON) -m pytest -n 2 --dist loadfile -m slow
