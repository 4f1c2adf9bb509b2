# Two commands for a new user: `make demo` (the main job on the shipped sample) and `make test`.
PYTHON ?= $(shell scripts/find-python.sh)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo stop check test test-kafka39 lint venv jars kafka-up kafka-down bench eos-long clean
# The broker is Apache Kafka $KAFKA_VERSION (scripts/kafka.sh's default, 4.1.1, when unset), its jars in
# .cache/kafka/<version>/libs. `make test` runs the whole suite against it, then the kafka39 subset (tests/conftest.py's
# KAFKA39: the exactly-once chaos test and the core integration tests) against KAFKA_COMPAT_VERSION, on a broker of
# its own (TEST_KAFKA_BOOTSTRAP is not used there).
KAFKA_COMPAT_VERSION ?= 3.9.2
KAFKA39 := env -u TEST_KAFKA_BOOTSTRAP KAFKA_VERSION=$(KAFKA_COMPAT_VERSION)
# Markers (tests/conftest.py gives them from where a test lives and what it uses): unit (no broker, no network, no
# server processes), broker, deploy, slow (over ~5 s), kafka39. An unregistered marker is an error.
PYTEST := $(BIN)/pytest --strict-markers
# pytest-xdist workers for the unit tests (`make check JOBS=4`); auto: one per core. --dist loadscope keeps a module's
# tests on one worker, so its module fixtures (a whole real feed through a processor, say) are built once: 2.0-2.3 min
# against 2.7-2.8 for the default on 2 idle cores. Unit tests live in tests/unit and tests/engine only (conftest's
# FOLDERS): collecting just those is quicker and keeps a broken integration module out of the inner loop. Broker and
# deployment tests run one at a time: each pytest worker would start its own broker (slower: 89 s against 72 s for
# the quick integration tests), and their timings assume the machine to themselves.
JOBS ?= auto
UNIT := -n $(JOBS) --dist loadscope -m unit tests/unit tests/engine tests/eos tests/faust_programs

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

## lint: ruff on all the code, mypy (strict, mypy.ini) on the engine
lint: venv
	$(BIN)/ruff check stream_processor tests bench examples scripts
	$(BIN)/mypy stream_processor/engine

## check: the inner loop, no broker: lint, then every unit test in parallel, the 10 slowest listed (under 3 minutes on
## 2 cores)
check: venv lint
	$(PYTEST) -q $(UNIT) --durations=10

## test: what CI runs: `make check`, then every other test (Kafka $KAFKA_VERSION, default 4.1.1; the deployment
## checks), one at a time, with the 25 slowest listed; then the kafka39 subset against Kafka 3.9.2. The broker tests
## start their own broker on free loopback ports
test: venv jars check
	$(PYTEST) -q -m "not unit" --durations=25
	$(KAFKA39) scripts/kafka.sh jars
	$(KAFKA39) $(PYTEST) -q -m kafka39 tests/integration tests/eos

## test-kafka39: only the kafka39 subset against Kafka $(KAFKA_COMPAT_VERSION)
test-kafka39: venv
	$(KAFKA39) scripts/kafka.sh jars
	$(KAFKA39) $(PYTEST) -q -m kafka39 tests/integration tests/eos

## bench: trades/s through one worker (exactly_once, at_least_once) and a pass-through transactional pipe
bench: venv jars
	$(BIN)/python bench/trades_throughput.py

## eos-long: the long form of the exactly-once chaos harness (500k records, 20 kill -9, broker restart)
eos-long: venv jars
	$(BIN)/python bench/eos_long.py

clean:
	scripts/kafka.sh clean
	rm -rf .demo
