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

.PHONY: demo test lint install check-java check-python clean

demo: install ## install, run the pipeline on synthetic data, then serve the API on 127.0.0.1:8000
	$(BIN)/routecast demo

test: install ## install, lint, run the whole test suite
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

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { echo "routecast needs Python 3.11 or newer (found: $(PYTHON)); install python3.11 and python3.11-venv."; exit 1; }

clean: ## remove everything runs produce (var/) — not the venv
	rm -rf var
