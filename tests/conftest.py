"""Shared fixtures: the real data folder and a real Kafka broker (started by scripts/kafka.sh, release
``KAFKA_VERSION``, default scripts/kafka.sh's); the ``kafka39`` marker of the subset that `make test` also runs
against Kafka 3.9.2."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import broker, kafka_version

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
FEEDS = SHARED_DATA / "feeds" / "binance-hftbacktest"

# The tests `make test` runs a second time against Kafka 3.9.2 (KAFKA_VERSION=3.9.2 pytest -m kafka39), paths or
# node ids relative to the repository: the broker version check, the exactly-once chaos test (kill -9, rebalances,
# transactions) and the core pipelines (trades across a restart, poison records): ~1.5-2 minutes on the 2-core CI
# machine, which is about all its budget allows. test_market_pipeline.py (~55 s), test_faults.py (~110 s) and the
# harness's own at-least-once check (~40 s) run against the default broker only.
KAFKA39 = (
    "tests/integration/test_broker_version.py",
    "tests/eos/test_exactly_once.py::test_exactly_once_survives_kill_9_and_rebalances",
    "tests/integration/test_trades_pipeline.py",
    "tests/integration/test_poison.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the :data:`KAFKA39` subset ``kafka39`` (a path selects a file, a node id one test)."""
    for item in items:
        nodeid = item.nodeid.replace(os.sep, "/")
        if any(nodeid == entry or nodeid.startswith(entry + "::") for entry in KAFKA39):
            item.add_marker(pytest.mark.kafka39)


def pytest_report_header(config: pytest.Config) -> str:
    given = os.environ.get("TEST_KAFKA_BOOTSTRAP")
    where = f"the broker at TEST_KAFKA_BOOTSTRAP={given}" if given else "brokers started by scripts/kafka.sh"
    return f"kafka: Apache Kafka {kafka_version()} (KAFKA_VERSION), {where}"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; its absence fails the test (CI always has it)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real data folder {SHARED_DATA} is missing (set SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real broker (see :func:`tests.broker.broker`).

    A broker that cannot be reached or started fails the tests that need it; they never skip.
    """
    with contextlib.ExitStack() as stack:
        try:
            address = stack.enter_context(broker())
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield address
