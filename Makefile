# Set-up and entry points. `make demo` and `make test` work on a fresh machine with
# Python >= 3.10 and pip: they create .venv, install privfl with every extra (torch
# pinned to the CPU build through constraints.txt), then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.privfl-installed

.PHONY: demo test test-slow test-all lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/privfl demo

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
