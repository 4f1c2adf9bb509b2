"""``health_document`` / the health app over real runners and probe (their state set by hand), and RunnerStats."""

from __future__ import annotations

import asyncio
import time
import types
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from stream_processor.engine import observe as observe_module
from stream_processor.engine.breaker import CircuitState, TaskHealth
from stream_processor.engine.health import HEALTHY_STATES, health_app, health_document
from stream_processor.engine.metrics import Metrics
from stream_processor.engine.registry import build_processor
from stream_processor.engine.runner import THROUGHPUT_WINDOW_S, ProcessorRunner, RunnerStats
from stream_processor.engine.settings import Settings, load_settings
from stream_processor.engine.task import Task
from stream_processor.engine.worker import BrokerProbe
from stream_processor.market.settings import DEFAULT_CONFIG

METRIC_KEYS = {"messages_processed", "messages_failed", "processing_latency_ms", "processing_latency_p99_ms",
               "throughput_per_second"}
ALL_STATES = ["starting", "rebalancing", "running", "stopping", "stopped", "failed"]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A settable ``time.monotonic`` for the observe module (the runner's stats) only (``clock[0]`` seconds)."""
    now = [1000.0]
    monkeypatch.setattr(observe_module, "time", types.SimpleNamespace(monotonic=lambda: now[0], time=time.time))
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
    return types.SimpleNamespace(runners=runners, probe=probe, started=time.monotonic() - 5.0, starting=None,
                                 settings=settings)


def _assign(runner: ProcessorRunner, q: int, *, committed: int, end: int | None, since_commit: float,
            circuit: CircuitState = CircuitState.CLOSED, failures: int = 0) -> None:
    """Task q of ``runner``, open, with its committed offset, its input's end (as last fetched; None: unknown) and its
    health; the runner's consumer is a stand-in with the two methods the health document reads."""
    tp = TopicPartition("raw_trades", q)
    task = runner.manager.tasks[q] = Task(q, (tp,), runner.env)
    task.checkpoint = object()  # type: ignore[assignment]  # open
    task.committed[tp] = committed
    task.health = TaskHealth(last_commit=time.monotonic() - since_commit, failures=failures, circuit=circuit,
                             last_error="KafkaTimeoutError()" if failures else None)
    if runner.observer.consumer is None:
        ends: dict[TopicPartition, int] = {}
        runner.observer.consumer = types.SimpleNamespace(last_stable_offset=ends.get, assignment=lambda: set(ends),
                                                         ends=ends)
    runner.observer.consumer.ends[tp] = end


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
    assert doc["checks"]["processor_trades"]["details"]["state"] == state
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
    assert doc["healthy"] is False and doc["checks"]["broker"]["details"]["reachable"] is False
    assert doc["checks"]["broker"]["healthy"] is False
    assert doc["problems"][0].startswith("broker: no answer for 16 s")
    never = health_document(_worker([runner], settings, contact_ago=None))  # never reached, probing for 100 s
    assert never["healthy"] is False and never["checks"]["broker"]["details"]["seconds_since_contact"] >= 100


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
    part = doc["checks"]["processor_trades"]["details"]["partitions"]["raw_trades-3"]
    assert part["records_waiting"] == 50 and part["seconds_since_commit"] == pytest.approx(61.0, abs=0.5)


@pytest.mark.parametrize("circuit", [CircuitState.OPEN, CircuitState.HALF_OPEN])
def test_an_open_circuit_is_unhealthy_and_named(circuit: CircuitState) -> None:
    settings = _settings()
    runner = _runner(settings)
    _assign(runner, 1, committed=0, end=0, since_commit=1.0, failures=2)  # below the threshold: still healthy
    doc = health_document(_worker([runner], settings))
    part = doc["checks"]["processor_trades"]["details"]["partitions"]["raw_trades-1"]
    assert doc["healthy"] is True and part["consecutive_failures"] == 2
    _assign(runner, 1, committed=0, end=0, since_commit=1.0, failures=3, circuit=circuit)
    doc = health_document(_worker([runner], settings))
    assert doc["healthy"] is False and doc["checks"]["processor_trades"]["details"]["circuit_state"] == str(circuit)
    assert doc["problems"] == [f"trades: partition raw_trades-1: circuit {circuit} after 3 failures in a row "
                               "(last: KafkaTimeoutError())"]


def test_document_shape_is_the_seeds_metrics_uptime_and_a_float_timestamp() -> None:
    settings = _settings()
    runner = _runner(settings)
    runner.stats.on_commit(120, np.full(120, 4.5))
    runner.stats.on_commit(30, None)
    runner.stats.messages_failed = 2
    before = time.time()
    doc = health_document(_worker([runner], settings))
    after = time.time()

    # The seed's shape: {"healthy", "checks": {"processor_<name>": {"healthy", "details": {"state", "metrics"}}},
    # "uptime_seconds", "timestamp"}; the rest is extra.
    assert {"healthy", "checks", "uptime_seconds", "timestamp"} <= set(doc)
    assert set(doc) - {"healthy", "checks", "uptime_seconds", "timestamp"} == {"problems", "starting", "version",
                                                                              "processor_id"}
    assert set(doc["checks"]) == {"processor_trades", "broker"}
    assert set(doc["checks"]["broker"]) == {"healthy", "details"}
    assert {"reachable", "seconds_since_contact", "last_error"} <= set(doc["checks"]["broker"]["details"])
    check = doc["checks"]["processor_trades"]
    assert set(check) == {"healthy", "details"} and check["healthy"] is True
    details = check["details"]
    assert set(details) == {"state", "ready", "circuit_state", "problems", "partitions", "metrics"}
    metrics = details["metrics"]
    assert set(metrics) == METRIC_KEYS
    assert metrics["messages_processed"] == 150
    assert metrics["messages_failed"] == 2
    assert metrics["processing_latency_ms"] == pytest.approx(4.5, rel=0.06)  # within the bin width
    assert metrics["throughput_per_second"] > 0
    assert 5.0 <= doc["uptime_seconds"] < 6.0
    assert type(doc["timestamp"]) is float and before <= doc["timestamp"] <= after


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
        assert body["healthy"] is False and body["checks"]["processor_trades"]["details"]["state"] == "failed"

        worker.runners.clear()
        assert (await client.get("/ready")).status == 503


# ---- RunnerStats -----------------------------------------------------------------------------------


def test_on_commit_accumulates_messages_processed(clock: list[float]) -> None:
    stats = RunnerStats()
    assert stats.as_dict() == {
        "messages_processed": 0,
        "messages_failed": 0,
        "processing_latency_ms": None,
        "processing_latency_p99_ms": None,
        "throughput_per_second": 0.0,
    }
    for n in (5, 0, 37):
        stats.on_commit(n, None)
        clock[0] += 0.1
    assert stats.messages_processed == 42
    assert stats.as_dict()["messages_processed"] == 42


def test_latency_is_a_percentile_of_every_record_in_the_last_minute(clock: list[float]) -> None:
    stats = RunnerStats()
    stats.on_commit(100, np.arange(1.0, 101.0))  # 1..100 ms
    stats.on_commit(1, None)
    assert stats.latency_ms(0.5) == pytest.approx(50.0, rel=0.06)
    assert stats.latency_ms(0.99) == pytest.approx(99.0, rel=0.06)
    clock[0] += 30.0
    stats.on_commit(100, np.full(100, 1000.0))  # a slow second batch weighs as much as its records
    assert stats.latency_ms(0.25) == pytest.approx(50.0, rel=0.06)
    assert stats.latency_ms(0.75) == pytest.approx(1000.0, rel=0.06)
    clock[0] += 40.0  # the first batch left the window
    assert stats.latency_ms(0.5) == pytest.approx(1000.0, rel=0.06)


def test_latency_is_none_once_traffic_stops_not_frozen(clock: list[float]) -> None:
    stats = RunnerStats()
    stats.on_commit(10, np.full(10, 250.0))
    assert stats.as_dict()["processing_latency_ms"] == pytest.approx(250.0, rel=0.06)
    clock[0] += 62.0
    assert stats.as_dict()["processing_latency_ms"] is None
    assert stats.as_dict()["processing_latency_p99_ms"] is None


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


def test_a_partition_the_consumer_no_longer_holds_has_no_lag_mid_rebalance() -> None:
    settings = _settings(stuck_partition_ms=60_000)
    runner = _runner(settings)
    _assign(runner, 3, committed=100, end=400, since_commit=500.0)
    runner.observer.consumer.ends.clear()  # revoked, not yet reassigned
    doc = health_document(_worker([runner], settings))
    assert doc["healthy"] is True  # not stuck: nothing known to be waiting
    assert doc["checks"]["processor_trades"]["details"]["partitions"]["raw_trades-3"]["records_waiting"] == 0
    runner.manager.tasks[3].checkpoint = None  # partition_status reads an open task's transaction: none here
    assert runner.partition_status()[TopicPartition("raw_trades", 3)]["lag"] is None


async def test_a_stopped_global_table_replica_reader_is_unhealthy_and_named() -> None:
    settings = _settings()

    async def fails() -> None:
        raise ConnectionError("changelog unreadable")

    worker = _worker([_runner(settings)], settings)
    worker.replicas = asyncio.create_task(fails())
    await asyncio.gather(worker.replicas, return_exceptions=True)
    doc = health_document(worker)
    assert doc["healthy"] is False and doc["checks"]["global_tables"]["healthy"] is False
    assert doc["problems"] == ["global tables: their replica reader stopped: ConnectionError('changelog unreadable')"]
    reading = asyncio.create_task(asyncio.sleep(10))
    worker.replicas = reading
    doc = health_document(worker)
    assert doc["healthy"] is True and doc["checks"]["global_tables"] == {"healthy": True, "details": {"reading": True}}
    reading.cancel()
