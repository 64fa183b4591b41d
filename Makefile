# The two first commands on a fresh machine:
#   make run   - the gateway in dev mode (in-memory store, embedded OpenIM sandbox)
#   make test  - lint, type-check and the test suite against a real redis-server

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck pytest fuzz system-packages node-packages js-client bench clean

# The official OpenIM JavaScript SDK the scenario tests drive: a test dependency only (GPL-3.0).
SDK_TESTS := tests/openim-sdk
# The JavaScript client (TypeScript, built with tsc into dist/).
JS_CLIENT := clients/js

run: $(VENV)/.installed
	$(BIN)/messenger-gw dev

test: $(VENV)/.installed-dev system-packages node-packages lint typecheck pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check messenger_gw tests bench
	$(BIN)/ruff format --check messenger_gw tests bench
	$(BIN)/lint-imports --config setup.cfg  # the rooms' layering (docs/architecture.md)

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

pytest: $(VENV)/.installed-dev system-packages node-packages
	$(BIN)/pytest

# The property tests (tests/properties) with many more examples than `make test` runs; what they
# find is kept under .hypothesis/ and tried first the next time.
fuzz: $(VENV)/.installed-dev system-packages
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest tests/properties

system-packages:
	scripts/ensure-system-packages redis-server:redis-server nginx:nginx node:nodejs npm:npm chromium:chromium

node-packages: $(SDK_TESTS)/node_modules/.package-lock.json js-client

# npm ci again whenever the lock file changes (npm writes node_modules/.package-lock.json).
$(SDK_TESTS)/node_modules/.package-lock.json: $(SDK_TESTS)/package-lock.json | system-packages
	cd $(SDK_TESTS) && npm ci --no-audit --no-fund

js-client: $(JS_CLIENT)/dist/index.js

$(JS_CLIENT)/node_modules/.package-lock.json: $(JS_CLIENT)/package-lock.json | system-packages
	cd $(JS_CLIENT) && npm ci --no-audit --no-fund

$(JS_CLIENT)/dist/index.js: $(JS_CLIENT)/node_modules/.package-lock.json $(JS_CLIENT)/tsconfig.json $(wildcard $(JS_CLIENT)/src/*.ts)
	cd $(JS_CLIENT) && npm run --silent build

# Throughput and latency of the /im chain against a bare proxy, on loopback (see docs/performance.md).
bench: $(VENV)/.installed-dev
	scripts/ensure-system-packages redis-server:redis-server nginx:nginx wrk:wrk
	$(BIN)/python bench/run.py $(BENCH_ARGS)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[fast]'
	touch $@

$(VENV)/.installed-dev: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,fast]'
	touch $@ $(VENV)/.installed

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis $(SDK_TESTS)/node_modules \
		$(JS_CLIENT)/node_modules $(JS_CLIENT)/dist
