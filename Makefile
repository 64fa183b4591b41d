# The two first commands on a fresh machine:
#   make run   - the gateway in dev mode (in-memory store, embedded OpenIM sandbox)
#   make test  - lint, type-check and the test suite against a real redis-server

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint typecheck pytest fuzz system-packages node-tools node-packages js-client web-chat bench clean

# The official OpenIM JavaScript SDK the scenario tests drive: a test dependency only (GPL-3.0).
SDK_TESTS := tests/openim-sdk
# The JavaScript client (TypeScript, built with tsc into dist/).
JS_CLIENT := clients/js
# The demo web chat that dev mode serves at /demo/; it installs the OpenIM SDK (GPL-3.0) with npm.
WEB_CHAT := examples/web-chat

run: $(VENV)/.installed web-chat
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

# Node and npm alone, for `make run`'s demo (system-packages brings the test servers and Chromium too).
node-tools:
	scripts/ensure-system-packages node:nodejs npm:npm

node-packages: $(SDK_TESTS)/node_modules/.package-lock.json js-client web-chat

# npm ci again whenever the lock file changes (npm writes node_modules/.package-lock.json).
$(SDK_TESTS)/node_modules/.package-lock.json: $(SDK_TESTS)/package-lock.json | node-tools
	cd $(SDK_TESTS) && npm ci --no-audit --no-fund

js-client: $(JS_CLIENT)/dist/index.js

$(JS_CLIENT)/node_modules/.package-lock.json: $(JS_CLIENT)/package-lock.json | node-tools
	cd $(JS_CLIENT) && npm ci --no-audit --no-fund

$(JS_CLIENT)/dist/index.js: $(JS_CLIENT)/node_modules/.package-lock.json $(JS_CLIENT)/tsconfig.json $(wildcard $(JS_CLIENT)/src/*.ts)
	cd $(JS_CLIENT) && npm run --silent build

web-chat: $(WEB_CHAT)/public/build/app.js

$(WEB_CHAT)/node_modules/.package-lock.json: $(WEB_CHAT)/package-lock.json | node-tools
	cd $(WEB_CHAT) && npm ci --no-audit --no-fund

$(WEB_CHAT)/public/build/app.js: $(WEB_CHAT)/node_modules/.package-lock.json $(WEB_CHAT)/build.mjs \
		$(WEB_CHAT)/src/app.js $(JS_CLIENT)/dist/index.js
	cd $(WEB_CHAT) && node build.mjs

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
		$(JS_CLIENT)/node_modules $(JS_CLIENT)/dist $(WEB_CHAT)/node_modules $(WEB_CHAT)/public/build
