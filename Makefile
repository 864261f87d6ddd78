# chatsvc — developer entry points. Quick start: `make run`, `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# Browsers on these origins may connect to the dev server (Hoppscotch's web app; the
# server's own page is always allowed). Production sets CHATSVC_CORS_ORIGINS itself.
DEV_CORS_ORIGINS ?= https://hoppscotch.io

.PHONY: run run-cluster test lint typecheck protos protos-check services-up services-down bench bench-quick clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

## run: start the server on :8080 with the embedded defaults (in-process bus, SQLite in ./data)
run: $(STAMP)
	CHATSVC_CORS_ORIGINS="$${CHATSVC_CORS_ORIGINS:-$(DEV_CORS_ORIGINS)}" $(BIN)/chatsvc serve

## run-cluster: the local Kafka broker and two replicas sharing ./data, on this checkout's ports
##   (printed; RUN_CLUSTER_HTTP_PORT_1/2, RUN_CLUSTER_GRPC_PORT_1/2); any failure stops it all
run-cluster: $(STAMP)
	scripts/run-cluster

## test: install everything the suite needs, start Kafka and Cassandra, run lint + the whole suite
test: $(STAMP)
	scripts/test

lint: $(STAMP)
	$(BIN)/ruff check chatsvc tests scripts bench
	$(BIN)/ruff format --check chatsvc tests scripts bench

typecheck: $(STAMP)
	$(BIN)/mypy chatsvc

## protos: regenerate chatsvc/admin/v1 from protos/ (never edit the generated files)
protos: $(STAMP)
	scripts/gen-protos

protos-check: $(STAMP)
	scripts/gen-protos --check

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) bench/requirements.txt bench/package-lock.json bench/peers/node-socketio/package-lock.json bench/peers/centrifugo/install
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	cd bench && npm ci --no-audit --no-fund --loglevel=error
	cd bench/peers/node-socketio && npm ci --no-audit --no-fund --loglevel=error
	bench/peers/centrifugo/install >/dev/null
	touch $(BENCH_STAMP)

## bench: every scenario against the Node socket.io and Centrifugo peers (< 15 min on 2 cores) -> bench/results/
bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py

## bench-quick: the smaller run (< 3 min) -> bench/results/results-quick.*
bench-quick: $(BENCH_STAMP)
	$(BIN)/python bench/run.py --quick

## services-up/services-down: this checkout's Kafka and Cassandra (run dir .run/, own ports)
services-up:
	scripts/kafka start
	scripts/cassandra start

services-down:
	-scripts/kafka stop
	-scripts/cassandra stop

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache tests/js/node_modules
