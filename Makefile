# Two commands matter: `make run` (the hub with a live demo) and `make test` (the whole suite).
# Both create .venv on first use and install exactly requirements/dev.txt (the lock, with
# hashes); a changed lock rebuilds the venv from scratch, so nothing outside it stays behind.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCK := requirements/dev.txt
# The resolver that writes the locks; installing from them needs only pip.
UV_VERSION := 0.13.9

.PHONY: run test lint bench lock test-latest station clean

# Python the locks were resolved for; `make` refuses any other so a lock is never half-fitting.
define check_python
	@$(1) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "jaga: Python 3.11 required (the locks are for it), found " + sys.version.split()[0])'
endef

$(VENV)/.installed: $(LOCK) pyproject.toml
	$(call check_python,$(PYTHON))
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $@

run: $(VENV)/.installed
	$(PY) -m clients.demo --config config.toml

test: $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(VENV)/.installed
	bench/run

# An office PC's install (docs/station.md): the agent's lock only, the project without deps.
station: .venv-station/.installed
.venv-station/.installed: requirements/station.txt pyproject.toml
	$(call check_python,$(PYTHON))
	rm -rf .venv-station
	$(PYTHON) -m venv .venv-station
	.venv-station/bin/python -m pip install -q --disable-pip-version-check --require-hashes --no-deps -r requirements/station.txt
	.venv-station/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation .
	.venv-station/bin/python -m pip check
	touch $@

# Re-resolve every lock from pyproject.toml's ranges with today's releases. The dev and hub
# locks are for the server (Linux x86_64, CPython 3.11); the station lock is universal
# (Windows office PCs) but held to the dev lock's versions, so agent and hub run what was tested.
LOCK_FLAGS := --generate-hashes --custom-compile-command 'make lock' --quiet
SERVER := --python-version 3.11 --python-platform x86_64-manylinux_2_28
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	.venv-lock/bin/uv pip compile pyproject.toml requirements/build.in --extra hub --extra test --extra bench --extra lint \
		$(SERVER) $(LOCK_FLAGS) --upgrade -o requirements/dev.txt
	.venv-lock/bin/uv pip compile pyproject.toml requirements/build.in --extra hub -c requirements/dev.txt \
		$(SERVER) $(LOCK_FLAGS) --upgrade -o requirements/hub.txt
	.venv-lock/bin/uv pip compile pyproject.toml requirements/build.in -c requirements/dev.txt \
		--universal --python-version 3.11 $(LOCK_FLAGS) --upgrade -o requirements/station.txt
	rm -rf .venv-lock

# Today's newest releases within pyproject.toml's ranges, in a scratch venv, against the
# whole suite: run before `make lock`, so an upgrade is a deliberate, tested step.
test-latest:
	$(call check_python,$(PYTHON))
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install -q --disable-pip-version-check --upgrade pip setuptools
	.venv-latest/bin/python -m pip install -q --disable-pip-version-check --upgrade -e '.[hub,test,bench,lint]'
	.venv-latest/bin/python -m pip list --format=freeze > .venv-latest/versions.txt
	JAGA_LATEST=1 .venv-latest/bin/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) .venv-station .venv-latest .venv-lock var .pytest_cache .mypy_cache .ruff_cache
