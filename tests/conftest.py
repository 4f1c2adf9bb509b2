"""Shared fixtures: the real data folder and a real Kafka broker (started by scripts/kafka.sh, release
``KAFKA_VERSION``, default scripts/kafka.sh's); the markers (:data:`MARKERS`), given from where a test lives and what
it uses (:func:`kinds`), and the ``kafka39`` subset that `make test` also runs against Kafka 3.9.2.

Markers are strict: one that is not registered (here, in pyproject.toml or by a plugin) fails the collection.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.conn import AIOKafkaConnection

from tests.broker import broker, kafka_version

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data"))
FEEDS = SHARED_DATA / "feeds" / "binance-hftbacktest"

# The markers, given by pytest_collection_modifyitems; `make check` runs `-m unit`, `make test` everything.
MARKERS = {
    "unit": "no broker, no network, no server processes: tests/unit/**, tests/engine/**, tests/eos/** and "
            "tests/faust_programs/** unless "
            "they use the broker (`make check` runs these, in parallel)",
    "broker": "needs a real Kafka broker: tests/integration/** and any test using kafka_bootstrap (the chaos harness)",
    "slow": "over about 5 s on the 2-core CI machine (measured: @pytest.mark.slow, tests/conftest.py's SLOW)",
    "deploy": "the deployment checks (tests/deployment/**: manifests, promtool, a real Prometheus, ...)",
    "kafka39": "also run against Kafka 3.9.2 by `make test` (KAFKA_VERSION=3.9.2 pytest -m kafka39; the subset is "
               "tests/conftest.py's KAFKA39)",
}
# Where a test lives -> its kind (tests/<folder>/...); a test using kafka_bootstrap is also ``broker`` wherever it is,
# and then not ``unit``.
FOLDERS = {"unit": "unit", "engine": "unit", "integration": "broker", "eos": "unit", "faust_programs": "unit",
           "deployment": "deploy"}
# Tests over ~5 s (2-core machine, `make test`'s --durations: the call, without the session's broker start) in files
# that were being rewritten when this was measured: marked ``slow`` here, as @pytest.mark.slow does in the other test
# files. A path selects a file, a node id one test (with its parameters), as in KAFKA39.
SLOW = (
    "tests/eos/test_exactly_once.py",  # 35-45 s each
    "tests/faust_programs/test_broker.py",  # 9-15 s each: a worker killed with kill -9 and restarted
    "tests/integration/test_trades_pipeline.py::test_real_trades_enriched_exactly_once_across_a_restart",  # 13-35 s
    "tests/integration/test_examples.py::test_trades_with_book_join_each_trade_with_a_book_written_before",  # 7-11 s
    "tests/integration/test_examples.py::test_trade_counts_count_each_minute_of_trade_time",  # 6-8 s
    "tests/integration/test_market_context.py::test_volume_profiles_and_smc_context_equal_their_batch_recomputation",
)
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


def pytest_configure(config: pytest.Config) -> None:
    """Register :data:`MARKERS` (those pyproject.toml does not already)."""
    known = {line.split(":")[0].split("(")[0].strip() for line in config.getini("markers")}
    for name, help_text in MARKERS.items():
        if name not in known:
            config.addinivalue_line("markers", f"{name}: {help_text}")


def _selected(nodeid: str, entries: tuple[str, ...]) -> bool:
    """Whether ``nodeid`` is one of ``entries`` (a path selects a file, a node id a test and its parameters)."""
    nodeid = nodeid.replace(os.sep, "/")
    return any(nodeid == entry or nodeid.startswith((entry + "::", entry + "[")) for entry in entries)


def kinds(item: pytest.Item) -> set[str]:
    """The markers ``item`` gets from where it lives and the fixtures it uses (see :data:`FOLDERS`).

    Raises pytest.UsageError for a test outside those folders: every test is ``unit``, ``broker`` or ``deploy``, so
    that `make check` (``-m unit``) and `make test` (everything) say what they leave out.
    """
    try:
        folder = item.path.relative_to(ROOT / "tests").parts[0]
    except ValueError:
        folder = ""
    if folder not in FOLDERS:
        raise pytest.UsageError(f"{item.nodeid}: tests/conftest.py gives no marker to tests in tests/{folder}: "
                                f"move it under one of {sorted(FOLDERS)} or add its folder to FOLDERS")
    found = {FOLDERS[folder]}
    if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
        found = (found - {"unit"}) | {"broker"}
    return found


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test its markers (:func:`kinds`, :data:`SLOW`, :data:`KAFKA39`); fail on an unregistered marker."""
    registered = {line.split(":")[0].split("(")[0].strip() for line in config.getini("markers")}
    unknown: list[str] = []
    for item in items:
        for name in sorted(kinds(item)):
            item.add_marker(name)
        if _selected(item.nodeid, SLOW):
            item.add_marker(pytest.mark.slow)
        if _selected(item.nodeid, KAFKA39):
            item.add_marker(pytest.mark.kafka39)
        unknown += [f"{item.nodeid}: @pytest.mark.{mark.name}" for mark in item.iter_markers()
                    if mark.name not in registered]
    if unknown:  # --strict-markers for a plain `pytest` too (pyproject.toml is not this file's to set it)
        raise pytest.UsageError("markers not registered (tests/conftest.py MARKERS):\n" + "\n".join(unknown[:20]))


@pytest.fixture(autouse=True)
def _a_unit_test_reaches_no_broker(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a ``unit`` test, an aiokafka connection to a port a broker could listen on (1024 and above: the demo's
    9092, a test broker's) fails the test at once instead of finding a broker or retrying for minutes; the unit tests
    that want to see a connection fail use a port where nothing listens (127.0.0.1:1 or :9).

    pytest.fail raises a BaseException, so no ``except Exception`` retry loop swallows it.
    """
    if request.node.get_closest_marker("unit") is None:
        return
    connect = AIOKafkaConnection.connect

    async def guarded(conn: AIOKafkaConnection) -> object:
        host, port = conn._host, conn._port  # noqa: SLF001 - the address create_conn was given
        if port >= 1024:
            pytest.fail(f"{request.node.nodeid} is a unit test but tried to reach Kafka at {host}:{port}: use the "
                        f"kafka_bootstrap fixture (the test becomes a broker test) or an address where nothing "
                        f"listens (127.0.0.1:9)", pytrace=False)
        return await connect(conn)

    monkeypatch.setattr(AIOKafkaConnection, "connect", guarded)


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
