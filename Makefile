# routecast — the two commands a new machine needs: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export MLFLOW_DISABLE_TELEMETRY := true
export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(BIN)/python)
export PYSPARK_DRIVER_PYTHON := $(abspath $(BIN)/python)

.PHONY: demo test lint install check-java check-python clean web-vendor check-browser

demo: install ## install, run the pipeline on synthetic data, then serve the API on 127.0.0.1:8000
	$(BIN)/routecast demo

test: install check-browser ## install, lint, run the whole test suite
	$(BIN)/ruff check .
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .

install: check-java check-python $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

check-java:
	@{ [ -n "$${JAVA_HOME:-}" ] && [ -x "$${JAVA_HOME}/bin/java" ]; } || command -v java >/dev/null 2>&1 || { echo "routecast needs Java 17 for Spark: install it with 'sudo apt-get install -y openjdk-17-jre-headless' (or set JAVA_HOME) and run make again."; exit 1; }

# The map page's browser tests drive Debian's Chromium (Playwright cannot download its own browser here). As root, a
# missing chromium is installed with apt-get; otherwise the tests skip, saying why (and fail under CI=true).
check-browser:
	@command -v chromium >/dev/null 2>&1 || [ -n "$${ROUTECAST_CHROMIUM:-}" ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the map page's browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; \
	  else \
	    echo "note: no chromium: the browser tests will skip (sudo apt-get install chromium fonts-dejavu-core)"; \
	  fi; }

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { echo "routecast needs Python 3.11 or newer (found: $(PYTHON)); install python3.11 and python3.11-venv."; exit 1; }

clean: ## remove everything runs produce (var/) — not the venv
	rm -rf var

VENDOR := serving/static/vendor
web-vendor: ## refresh the map page's and the API docs' vendored assets from the npm packages pinned in $(VENDOR)/package-lock.json
	cd $(VENDOR) && npm ci --no-audit --no-fund --ignore-scripts
	cp $(VENDOR)/node_modules/leaflet/dist/leaflet.js $(VENDOR)/node_modules/leaflet/dist/leaflet.css \
	   $(VENDOR)/node_modules/chart.js/dist/chart.umd.min.js \
	   $(VENDOR)/node_modules/topojson-client/dist/topojson-client.min.js \
	   $(VENDOR)/node_modules/world-atlas/countries-50m.json \
	   $(VENDOR)/node_modules/swagger-ui-dist/swagger-ui-bundle.js $(VENDOR)/node_modules/swagger-ui-dist/swagger-ui.css \
	   $(VENDOR)/node_modules/swagger-ui-dist/favicon-32x32.png $(VENDOR)/
	for p in leaflet chart.js topojson-client world-atlas swagger-ui-dist; do cp $(VENDOR)/node_modules/$$p/LICENSE* $(VENDOR)/LICENSE.$$p; done
	rm -rf $(VENDOR)/node_modules
