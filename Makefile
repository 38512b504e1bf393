# trio-redisha developer commands. `make test` sets up everything on a fresh
# Debian machine: the virtualenv, the package with its dev extra, and
# redis-server from Debian's packages when it is missing.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: test lint typecheck pytest venv redis-server browser demo example bench docs clean

test: venv redis-server browser lint typecheck pytest docs

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,hiredis,cli,docs]'
	@touch $(STAMP)

venv: $(STAMP)

# Tests run real redis-server processes. Install Debian's package when it is
# missing and we are root; otherwise say exactly what to install.
redis-server:
	@if ! command -v redis-server >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing redis-server from Debian's packages"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server; \
	  else \
	    echo "redis-server is missing: run 'sudo apt-get install redis-server'" >&2; exit 1; \
	  fi; \
	fi

# The browser test drives Debian's headless Chromium (never a downloaded build).
# Install it when missing and we are root; otherwise the test skips and says why.
browser:
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium and chromium-driver from Debian's packages"; \
	    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; } \
	      || echo "could not install chromium: the browser test will skip" >&2; \
	  else \
	    echo "chromium is missing: the browser test will skip ('sudo apt-get install chromium chromium-driver')" >&2; \
	  fi; \
	fi

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

pytest: venv redis-server
	$(BIN)/pytest -q

demo: venv redis-server
	$(BIN)/trio-redisha demo

# The notes app on http://127.0.0.1:8000, over three throwaway redis-servers.
example: venv redis-server
	$(BIN)/python -m examples.notes

bench: venv redis-server
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/bench_parser.py
	$(BIN)/python benchmarks/bench_clients.py
	$(BIN)/python benchmarks/bench_web.py

docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $${TMPDIR:-/tmp}/trio-redisha-site

clean:
	rm -rf $(VENV) site .mypy_cache .ruff_cache .pytest_cache
