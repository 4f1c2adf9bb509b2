"""``health_document`` / the health app over real runners and probe (their state set by hand), and RunnerStats."""

from __future__ import annotations

import time
import types
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from stream_processor.engine import runner as runner_module
from stream_processor.engine.breaker import CircuitState, TaskHealth
from stream_processor.engine.health import HEALTHY_STATES, health_app, health_document
from stream_processor.engine.metrics import Metrics
from stream_processor.engine.registry import build_processor
from stream_processor.engine.runner import THROUGHPUT_WINDOW_S, ProcessorRunner, RunnerStats
from stream_processor.engine.settings import DEFAULT_CONFIG, Settings, load_settings
from stream_processor.engine.worker import BrokerProbe

METRIC_KEYS = {"messages_processed", "messages_failed", "processing_latency_ms", "throughput_per_second"}
ALL_STATES = ["starting", "rebalancing", "running", "stopping", "stopped", "failed"]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A settable ``time.monotonic`` for the runner module only (``clock[0]`` seconds)."""
    now = [1000.0]
    monkeypatch.setattr(runner_module, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    return now


def _settings(**health: int) -> Settings:
    base = load_settings(DEFAULT_CONFIG, environ={})
    return base.model_copy(update={"health": base.health.model_copy(update=health)})


def _runner(settings: Settings, name: str = "trades") -> ProcessorRunner:
    """A real runner (no broker needed until it starts), its state set by the tests."""
    runner = ProcessorRunner(build_processor(name, settings), settings,
                             Metrics(CollectorRegistry()))
    runner.state = "running"
    return runner


def _worker(runners: list[ProcessorRunner], settings: Settings, contact_ago: float | None = 0.0) -> Any:
    probe = BrokerProbe(settings, Metrics(CollectorRegistry()), ["raw_trades"])
    probe.started = time.monotonic() - 100
    probe.last_contact = None if contact_ago is None else time.monotonic() - contact_ago
    return types.SimpleNamespace(runners=runners, probe=probe, started=time.monotonic() - 5.0, starting=None)


def _assign(runner: ProcessorRunner, q: int, *, committed: int, end: int | None, since_commit: float,
            circuit: CircuitState = CircuitState.CLOSED, failures: int = 0) -> None:
    tp = TopicPartition("raw_trades", q)
    runner.assigned[q] = (tp,)
    runner.tasks[q] = object()  # type: ignore[assignment]
    runner.committed[tp] = committed
    runner.task_health[q] = TaskHealth(last_commit=time.monotonic() - since_commit, failures=failures,
                                       circuit=circuit, last_error="KafkaTimeoutError()" if failures else None)
    runner._consumer = types.SimpleNamespace(  # type: ignore[assignment]  # noqa: SLF001
        last_stable_offset=lambda p, _ends={}: _ends.get(p))
    runner._consumer.last_stable_offset.__defaults__[0][tp] = end  # type: ignore[index]  # noqa: SLF001


# ---- health_document -----------------------------------------------------------------------------


def test_healthy_states_are_exactly_the_live_ones() -> None:
    assert frozenset({"starting", "rebalancing", "running"}) == HEALTHY_STATES


@pytest.mark.parametrize("state", ALL_STATES)
def test_one_runner_is_healthy_only_in_a_live_state(state: str) -> None:
    settings = _settings()
    runner = _runner(settings)
    runner.state = state
    doc = health_document(_worker([runner], settings))
    assert doc["healthy"] is (state in {"starting", "rebalancing", "running"})
    assert doc["checks"]["trades"]["state"] == state
    assert (doc["problems"] == []) is doc["healthy"]


def test_a_failed_processor_says_why() -> None:
    settings = _settings()
    ok, failed = _runner(settings), _runner(settings, "klines")
    failed.state, failed.error = "failed", "ConfigError('inputs must be co-partitioned')"
    doc = health_document(_worker([ok, failed], settings))
    assert doc["healthy"] is False
    assert doc["problems"] == ["klines: failed (ConfigError('inputs must be co-partitioned'))"]


def test_no_runners_is_not_healthy() -> None:
    assert health_document(_worker([], _settings()))["healthy"] is False


def test_an_unreachable_broker_is_unhealthy_after_the_timeout() -> None:
    settings = _settings(broker_timeout_ms=15_000)
    runner = _runner(settings)
    assert health_document(_worker([runner], settings, contact_ago=14.0))["healthy"] is True
    doc = health_document(_worker([runner], settings, contact_ago=16.0))
    assert doc["healthy"] is False and doc["broker"]["reachable"] is False
    assert doc["problems"][0].startswith("broker: no answer for 16 s")
    never = health_document(_worker([runner], settings, contact_ago=None))  # never reached, probing for 100 s
    assert never["healthy"] is False and never["broker"]["seconds_since_contact"] >= 100


def test_a_partition_that_stopped_committing_with_input_waiting_is_unhealthy() -> None:
    settings = _settings(stuck_partition_ms=60_000)
    runner = _runner(settings)
    _assign(runner, 3, committed=100, end=100, since_commit=500.0)  # idle: nothing waiting
    assert health_document(_worker([runner], settings))["healthy"] is True
    _assign(runner, 3, committed=100, end=150, since_commit=30.0)  # waiting, but committed recently
    assert health_document(_worker([runner], settings))["healthy"] is True
    _assign(runner, 3, committed=100, end=150, since_commit=61.0)
    doc = health_document(_worker([runner], settings))
    assert doc["healthy"] is False
    assert doc["problems"] == ["trades: partition raw_trades-3: no commit for 61 s with 50 records waiting"]
    part = doc["checks"]["trades"]["partitions"]["raw_trades-3"]
    assert part["records_waiting"] == 50 and part["seconds_since_commit"] == pytest.approx(61.0, abs=0.5)


@pytest.mark.parametrize("circuit", [CircuitState.OPEN, CircuitState.HALF_OPEN])
def test_an_open_circuit_is_unhealthy_and_named(circuit: CircuitState) -> None:
    settings = _settings()
    runner = _runner(settings)
    _assign(runner, 1, committed=0, end=0, since_commit=1.0, failures=2)  # below the threshold: still healthy
    doc = health_document(_worker([runner], settings))
    assert doc["healthy"] is True and doc["checks"]["trades"]["partitions"]["raw_trades-1"]["consecutive_failures"] == 2
    _assign(runner, 1, committed=0, end=0, since_commit=1.0, failures=3, circuit=circuit)
    doc = health_document(_worker([runner], settings))
    assert doc["healthy"] is False and doc["checks"]["trades"]["circuit_state"] == str(circuit)
    assert doc["problems"] == [f"trades: partition raw_trades-1: circuit {circuit} after 3 failures in a row "
                               "(last: KafkaTimeoutError())"]


def test_document_shape_metrics_uptime_and_timestamp() -> None:
    settings = _settings()
    runner = _runner(settings)
    runner.stats.on_commit(120, 4.56789)
    runner.stats.on_commit(30, None)
    runner.stats.messages_failed = 2
    before = datetime.now(UTC)
    doc = health_document(_worker([runner], settings))
    after = datetime.now(UTC)

    assert set(doc) == {"healthy", "problems", "broker", "starting", "checks", "uptime_seconds", "timestamp"}
    assert set(doc["broker"]) == {"reachable", "seconds_since_contact", "last_error"}
    check = doc["checks"]["trades"]
    assert set(check) == {"state", "ready", "circuit_state", "problems", "partitions", "metrics"}
    metrics = check["metrics"]
    assert set(metrics) == METRIC_KEYS
    assert metrics["messages_processed"] == 150
    assert metrics["messages_failed"] == 2
    assert metrics["processing_latency_ms"] == 4.568  # the last measured latency, rounded
    assert metrics["throughput_per_second"] > 0
    assert 5.0 <= doc["uptime_seconds"] < 6.0
    stamp = datetime.fromisoformat(doc["timestamp"])
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0
    assert before <= stamp <= after


# ---- the HTTP app ----------------------------------------------------------------------------------


async def test_health_and_ready_endpoints() -> None:
    settings = _settings()
    runner = _runner(settings)
    runner.state = "rebalancing"
    worker = _worker([runner], settings)
    async with TestClient(TestServer(health_app(worker))) as client:
        resp = await client.get("/health")
        assert resp.status == 200 and (await resp.json())["healthy"] is True
        resp = await client.get("/ready")
        assert resp.status == 503 and (await resp.json()) == {"ready": False, "problems": []}

        runner.state = "running"
        assert (await client.get("/ready")).status == 200

        worker.probe.last_contact = time.monotonic() - 60  # the broker is gone: neither healthy nor ready
        assert (await client.get("/ready")).status == 503
        worker.probe.last_contact = time.monotonic()

        runner.state = "failed"
        resp = await client.get("/health")
        assert resp.status == 503
        body = await resp.json()
        assert body["healthy"] is False and body["checks"]["trades"]["state"] == "failed"

        worker.runners.clear()
        assert (await client.get("/ready")).status == 503


# ---- RunnerStats -----------------------------------------------------------------------------------


def test_on_commit_accumulates_messages_processed(clock: list[float]) -> None:
    stats = RunnerStats()
    assert stats.as_dict() == {
        "messages_processed": 0,
        "messages_failed": 0,
        "processing_latency_ms": 0.0,
        "throughput_per_second": 0.0,
    }
    for n in (5, 0, 37):
        stats.on_commit(n, None)
        clock[0] += 0.1
    assert stats.messages_processed == 42
    assert stats.as_dict()["messages_processed"] == 42


def test_latency_is_the_last_measured_one(clock: list[float]) -> None:
    stats = RunnerStats()
    stats.on_commit(1, 12.0)
    stats.on_commit(1, None)
    assert stats.processing_latency_ms == 12.0
    stats.on_commit(1, 3.25)
    assert stats.processing_latency_ms == 3.25


def test_throughput_is_zero_with_fewer_than_two_commits(clock: list[float]) -> None:
    stats = RunnerStats()
    assert stats.throughput_per_second() == 0.0
    stats.on_commit(1000, None)
    clock[0] += 1.0
    assert stats.throughput_per_second() == 0.0


def test_throughput_over_the_window(clock: list[float]) -> None:
    stats = RunnerStats()
    for _ in range(5):  # 100 records every 0.5 s
        stats.on_commit(100, None)
        clock[0] += 0.5
    clock[0] -= 0.5  # "now" is the last commit
    # Records after the first commit of the window, over the time since it: 400 / 2 s.
    assert stats.throughput_per_second() == pytest.approx(200.0)
    assert stats.as_dict()["throughput_per_second"] == 200.0


def test_throughput_forgets_commits_older_than_the_window(clock: list[float]) -> None:
    stats = RunnerStats()
    stats.on_commit(100, None)
    clock[0] += 1.0
    stats.on_commit(100, None)
    assert stats.throughput_per_second() > 0
    clock[0] += THROUGHPUT_WINDOW_S + 0.5
    assert stats.throughput_per_second() == 0.0  # both commits left the window
    stats.on_commit(50, None)
    assert stats.throughput_per_second() == 0.0  # only one commit in the window
    assert stats.messages_processed == 250  # the total is not windowed


def test_throughput_is_positive_after_several_real_commits() -> None:
    stats = RunnerStats()
    for _ in range(4):
        stats.on_commit(10, None)
        time.sleep(0.01)
    assert stats.throughput_per_second() > 0
    assert stats.as_dict()["throughput_per_second"] > 0
