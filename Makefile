# Two commands matter: `make run` (the hub with a live demo) and `make test` (the whole suite).
# Both create .venv and install what they need on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(PY) -m clients.demo --config config.toml

test: $(VENV)/.installed
	$(PY) -m pytest -q

bench: $(VENV)/.installed
	bench/run

clean:
	rm -rf $(VENV) var .pytest_cache
