# Two commands for a new user: `make demo` (the main job on the shipped sample) and `make test`.
PYTHON ?= $(shell scripts/find-python.sh)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo stop test lint venv jars kafka-up kafka-down bench eos-long clean

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || { test -n "$(PYTHON)" && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

venv: $(VENV)/.installed

jars:
	scripts/kafka.sh jars

kafka-up: jars
	scripts/kafka.sh up

kafka-down:
	scripts/kafka.sh down

## demo: venv, a fresh local Kafka, topics, the worker, a replay of the shipped real sample; leaves both running
demo: venv jars
	scripts/demo.sh

## stop: stop the demo's worker and broker
stop:
	scripts/demo.sh stop

lint: venv
	$(BIN)/ruff check stream_processor tests bench examples scripts

## test: lint, then every test; the integration tests start their own broker on free loopback ports
test: venv jars lint
	$(BIN)/pytest -q

## bench: trades/s through one worker (exactly_once, at_least_once) and a pass-through transactional pipe
bench: venv jars
	$(BIN)/python bench/trades_throughput.py

## eos-long: the long form of the exactly-once chaos harness (500k records, 20 kill -9, broker restart)
eos-long: venv jars
	$(BIN)/python bench/eos_long.py

clean:
	scripts/kafka.sh clean
	rm -rf .demo
