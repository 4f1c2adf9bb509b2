"""``health_document`` / the health app over stand-in runners, and RunnerStats' counters and throughput."""

from __future__ import annotations

import time
import types
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import TestClient, TestServer

from stream_processor import runner as runner_module
from stream_processor.health import HEALTHY_STATES, health_app, health_document
from stream_processor.runner import THROUGHPUT_WINDOW_S, RunnerStats

METRIC_KEYS = {"messages_processed", "messages_failed", "processing_latency_ms", "throughput_per_second"}
ALL_STATES = ["starting", "rebalancing", "running", "stopping", "stopped", "failed"]


@dataclass
class StandInRunner:
    name: str
    state: str = "running"
    ready: bool = True
    stats: RunnerStats = field(default_factory=RunnerStats)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A settable ``time.monotonic`` for the runner module only (``clock[0]`` seconds)."""
    now = [1000.0]
    monkeypatch.setattr(runner_module, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    return now


# ---- health_document -----------------------------------------------------------------------------


def test_healthy_states_are_exactly_the_live_ones() -> None:
    assert frozenset({"starting", "rebalancing", "running"}) == HEALTHY_STATES


@pytest.mark.parametrize("state", ALL_STATES)
def test_one_runner_is_healthy_only_in_a_live_state(state: str) -> None:
    doc = health_document([StandInRunner("trades", state=state)], time.monotonic())
    assert doc["healthy"] is (state in {"starting", "rebalancing", "running"})
    assert doc["checks"]["trades"]["state"] == state


@pytest.mark.parametrize("bad", ["stopping", "stopped", "failed"])
def test_one_unhealthy_runner_makes_the_document_unhealthy(bad: str) -> None:
    runners = [StandInRunner("a", "running"), StandInRunner("b", bad), StandInRunner("c", "starting")]
    doc = health_document(runners, time.monotonic())
    assert doc["healthy"] is False
    assert {n: c["state"] for n, c in doc["checks"].items()} == {"a": "running", "b": bad, "c": "starting"}


def test_all_live_runners_are_healthy() -> None:
    runners = [
        StandInRunner("a", "running"),
        StandInRunner("b", "rebalancing", ready=False),
        StandInRunner("c", "starting"),
    ]
    doc = health_document(runners, time.monotonic())
    assert doc["healthy"] is True
    assert doc["checks"]["b"]["ready"] is False and doc["checks"]["a"]["ready"] is True


def test_no_runners_is_not_healthy() -> None:
    assert health_document([], time.monotonic())["healthy"] is False


def test_document_shape_metrics_uptime_and_timestamp() -> None:
    stats = RunnerStats()
    stats.on_commit(120, 4.56789)
    stats.on_commit(30, None)
    stats.messages_failed = 2
    started = time.monotonic() - 5.0
    before = datetime.now(UTC)
    doc = health_document([StandInRunner("trades", stats=stats)], started)
    after = datetime.now(UTC)

    assert set(doc) == {"healthy", "checks", "uptime_seconds", "timestamp"}
    check = doc["checks"]["trades"]
    assert set(check) == {"state", "ready", "metrics"}
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
    runners = [StandInRunner("trades", state="rebalancing", ready=False)]
    async with TestClient(TestServer(health_app(lambda: runners, time.monotonic()))) as client:
        resp = await client.get("/health")
        assert resp.status == 200 and (await resp.json())["healthy"] is True
        resp = await client.get("/ready")
        assert resp.status == 503 and (await resp.json()) == {"ready": False}

        runners[0].state, runners[0].ready = "running", True
        assert (await client.get("/ready")).status == 200

        runners[0].state = "failed"
        resp = await client.get("/health")
        assert resp.status == 503
        body = await resp.json()
        assert body["healthy"] is False and body["checks"]["trades"]["state"] == "failed"

        runners.clear()
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
