"""What a processor shows of itself: counters and latency (:class:`RunnerStats`), consumer lag, and its parts of the
``/health`` and ``/status`` documents (:class:`Observer`)."""

from __future__ import annotations

import contextlib
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from aiokafka import TopicPartition

from .breaker import CircuitState

if TYPE_CHECKING:
    from .task_manager import TaskManager

#: The throughput shown on /health is averaged over this many seconds of commits.
THROUGHPUT_WINDOW_S = 10.0
#: Seconds of committed records the ``/health`` latency percentiles cover.
LATENCY_WINDOW_S = 60.0
#: Bin edges (ms) of those percentiles: 0.1 ms to 1 hour, 5% apart.
LATENCY_EDGES_MS = np.geomspace(0.1, 3_600_000.0, 360)
#: How often every assigned partition's consumer lag is exported, commits or not (seconds).
LAG_REFRESH_S = 2.0


class RunnerStats:
    """Counters shown on ``/health``: processed and failed records, recent latency percentiles and throughput.

    Latency is every committed record's, from its Kafka timestamp to the commit that made its outputs visible, kept
    for the last :data:`LATENCY_WINDOW_S` seconds as counts in log-spaced bins (about 5% wide) merged per second,
    so memory is bounded whatever the rate; with no record committed in that window the percentiles are None.
    """

    def __init__(self) -> None:
        self.messages_processed = 0
        self.messages_failed = 0
        self.first_batch_at: float | None = None  # time.perf_counter() when a fetched batch was first processed
        self._commits: deque[tuple[float, int]] = deque()
        # (whole second, counts per bin of LATENCY_EDGES_MS)
        self._latency: deque[tuple[int, npt.NDArray[np.int64]]] = deque()

    def on_commit(self, count: int, latencies_ms: npt.NDArray[np.float64] | None = None) -> None:
        """Count ``count`` committed records whose latencies (ms) are ``latencies_ms``."""
        now = time.monotonic()
        self.messages_processed += count
        self._commits.append((now, count))
        while self._commits and now - self._commits[0][0] > THROUGHPUT_WINDOW_S:
            self._commits.popleft()
        if latencies_ms is not None and latencies_ms.size:
            counts = np.bincount(np.searchsorted(LATENCY_EDGES_MS, latencies_ms), minlength=len(LATENCY_EDGES_MS) + 1)
            second = int(now)
            if self._latency and self._latency[-1][0] == second:
                self._latency[-1][1][:] += counts
            else:
                self._latency.append((second, counts))

    def latency_ms(self, quantile: float) -> float | None:
        """The ``quantile`` (0..1) of the latencies committed in the last :data:`LATENCY_WINDOW_S` s, in ms (the
        upper edge of its bin); None when none was."""
        now = time.monotonic()
        while self._latency and now - self._latency[0][0] > LATENCY_WINDOW_S + 1:
            self._latency.popleft()
        recent = [counts for second, counts in self._latency if now - second <= LATENCY_WINDOW_S + 1]
        if not recent:
            return None
        cumulative = np.cumsum(np.sum(recent, axis=0))
        index = int(np.searchsorted(cumulative, quantile * cumulative[-1], side="left"))
        return float(LATENCY_EDGES_MS[min(index, len(LATENCY_EDGES_MS) - 1)])

    def throughput_per_second(self) -> float:
        now = time.monotonic()
        recent = [(t, n) for t, n in self._commits if now - t <= THROUGHPUT_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        span = max(now - recent[0][0], 1e-3)
        return sum(n for _, n in recent[1:]) / span

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages_processed": self.messages_processed,
            "messages_failed": self.messages_failed,
            "processing_latency_ms": _rounded(self.latency_ms(0.5)),
            "processing_latency_p99_ms": _rounded(self.latency_ms(0.99)),
            "throughput_per_second": round(self.throughput_per_second(), 1),
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class Observer:
    """A processor's lag, processor events and health, read from its task manager and consumer.

    ``consumer``: the input consumer, or None before the processor starts; ``metrics``: the worker's.
    """

    def __init__(self, name: str, manager: TaskManager, metrics: Any, settings: Any) -> None:
        self.name = name
        self.manager = manager
        self.metrics = metrics
        self.settings = settings
        self.consumer: Any = None
        self.lag_exported = 0.0
        self._events_seen: Counter[str] = Counter()  # processor events already exported to Prometheus
        self._exported_partitions: set[TopicPartition] = set()

    # ---- lag -------------------------------------------------------------------------------------------------------
    def end_offset(self, tp: TopicPartition) -> int | None:
        """``tp``'s last stable offset as last fetched; None while unknown, or when the consumer no longer holds tp
        (mid-rebalance)."""
        consumer = self.consumer
        return consumer.last_stable_offset(tp) if consumer is not None and tp in consumer.assignment() else None

    def committed(self, tp: TopicPartition) -> int | None:
        task = self.manager.tasks.get(tp.partition)
        return task.committed.get(tp) if task is not None else None

    def lag(self, tp: TopicPartition) -> int | None:
        """Records of ``tp`` waiting: its last stable offset (as last fetched) minus the committed offset; None
        while either is unknown."""
        end = self.end_offset(tp)
        committed = self.committed(tp)
        return max(0, end - committed) if end is not None and committed is not None else None

    def export_lag(self) -> None:
        """Export every assigned partition's consumer lag; drop the series of partitions no longer assigned (their
        new owner exports them)."""
        self.lag_exported = time.monotonic()
        gauge = self.metrics.consumer_lag
        assigned = {tp for task in self.manager.tasks.values() for tp in task.inputs}
        for tp in self._exported_partitions - assigned:
            with contextlib.suppress(KeyError):
                gauge.remove(self.name, tp.topic, str(tp.partition))
        self._exported_partitions = set()
        for tp in assigned:
            lag = self.lag(tp)
            if lag is not None:
                gauge.labels(self.name, tp.topic, str(tp.partition)).set(lag)
                self._exported_partitions.add(tp)

    def export_events(self, processor: Any) -> None:
        """Export the processor's event counts (``processor.events``) and its circuit state."""
        for event, n in processor.events.items():
            delta = n - self._events_seen[event]
            if delta > 0:
                self.metrics.processor_events.labels(self.name, event).inc(delta)
                self._events_seen[event] = n
        self.metrics.circuit_state.labels(self.name).state(str(self.manager.circuit_state))

    # ---- documents -------------------------------------------------------------------------------------------------
    def health(self, state: str, ready: bool, stats: RunnerStats, now: float | None = None) -> dict[str, Any]:
        """This processor's part of the ``/health`` document: its state, problems and per-partition view."""
        now = time.monotonic() if now is None else now
        stuck_s = self.settings.health.stuck_partition_ms / 1000
        problems: list[str] = []
        partitions: dict[str, Any] = {}
        for q, task in sorted(self.manager.tasks.items()):
            health = task.health
            waiting = sum(lag for tp in task.inputs if (lag := self.lag(tp)) is not None)
            since = now - health.last_commit
            name = task.name
            partitions[name] = {
                "open": task.is_open and q not in self.manager.to_open,
                "circuit_state": str(health.circuit),
                "consecutive_failures": health.failures,
                "last_error": health.last_error,
                "records_waiting": waiting,
                "seconds_since_commit": round(since, 1),
            }
            if health.circuit is not CircuitState.CLOSED:
                problems.append(f"partition {name}: circuit {health.circuit} after {health.failures} failures in a "
                                f"row (last: {health.last_error})")
            if waiting and since > stuck_s:
                problems.append(f"partition {name}: no commit for {since:.0f} s with {waiting} records waiting")
        return {
            "state": state,
            "ready": ready,
            "circuit_state": str(self.manager.circuit_state),
            "problems": problems,
            "partitions": partitions,
            "metrics": stats.as_dict(),
        }

    def partition_status(self, now: float | None = None) -> dict[TopicPartition, dict[str, Any]]:
        """What this worker knows of each input partition it owns, for ``/status``: committed and end (last
        stable) offsets, lag, the transaction's state, the last commit, restore progress and the circuit."""
        now = time.monotonic() if now is None else now
        wall = time.time()
        out: dict[TopicPartition, dict[str, Any]] = {}
        for q, task in sorted(self.manager.tasks.items()):
            health, cp, restoring = task.health, task.checkpoint, task.restoring
            since = now - health.last_commit
            for tp in task.inputs:
                out[tp] = {
                    "task": q,
                    "committed_offset": task.committed.get(tp),
                    "end_offset": self.end_offset(tp),
                    "lag": self.lag(tp),
                    "transaction": cp.state.value if cp is not None else ("restoring" if restoring else "not open"),
                    "transactional_id": task.transactional_id,
                    "last_commit": round(wall - since, 3),
                    "seconds_since_commit": round(since, 1),
                    "restore": dict(restoring) if restoring else None,
                    "circuit_state": str(health.circuit),
                    "consecutive_failures": health.failures,
                    "last_error": health.last_error,
                }
        return out
