"""The poll loop of one processor (Kafka Streams' StreamThread): fetch, process, commit every interval.

One :class:`ProcessorRunner` owns the processor's input consumer (its consumer group, ``read_committed``, no auto
commit, the co-partitioned assignor), a restore consumer and, through its
:class:`~stream_processor.engine.task_manager.TaskManager`, one :class:`~stream_processor.engine.task.Task` per
assigned partition number. Each turn of the loop fetches a batch, hands it to the tasks, lets each open task process
what its inputs allow (no network wait: outputs go into the task's record batches), and every ``commit_interval_ms``
seals every open transaction and commits it in the background (:mod:`~stream_processor.engine.commits`) while the
loop goes on. Rebalances arrive through the consumer's listener: tasks are opened in the background, one after
another, so the group's rebalance never waits for a restore. What the processor shows of itself (``/health``,
``/status``, lag, metrics) is read by :mod:`~stream_processor.engine.observe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition

from .breaker import CircuitBreaker, CircuitState
from .clients import KafkaClients
from .commits import CommitPipeline
from .exceptions import ConfigError
from .metrics import Metrics
from .observe import LAG_REFRESH_S, THROUGHPUT_WINDOW_S, Observer, RunnerStats
from .processor import Processor
from .settings import ProcessorSettings, Settings
from .task import Task, TaskEnv
from .task_manager import TaskManager
from .topics import record_limits

__all__ = ["THROUGHPUT_WINDOW_S", "ProcessorRunner", "RunnerStats"]

log = logging.getLogger(__name__)

#: A due commit waiting on one in flight is retried this often (seconds).
COMMIT_RETRY_S = 0.002


class _Listener(ConsumerRebalanceListener):
    def __init__(self, runner: ProcessorRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.runner.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.runner.on_assigned(assigned)


class ProcessorRunner:
    """Runs one processor exactly once (or at least once) over its input topics.

    ``state`` is one of ``starting``, ``rebalancing``, ``running``, ``stopping``, ``stopped``, ``failed``;
    ``ready`` is True once every task of its first assignment is open (state restored), and stays True through
    later rebalances while every assigned task is open or opening (see :attr:`ready`).
    """

    def __init__(self, processor: Processor, settings: Settings, metrics: Metrics) -> None:
        self.name = processor.name
        self.settings = settings
        self.psettings: ProcessorSettings = processor.settings
        self.metrics = metrics
        self.transactional = self.psettings.processing_mode == "exactly_once"
        self.stats = RunnerStats()
        self.state = "starting"
        self.error: str | None = None  # why the runner failed
        cb = settings.circuit_breaker
        self.breaker = CircuitBreaker(cb.failures, cb.backoff_ms / 1000, cb.max_backoff_ms / 1000)
        self.clients = KafkaClients(settings, self.psettings)
        self.env = TaskEnv(processor, settings, consumer=None, restore_consumer=None,
                           new_producer=lambda inputs: self.clients.producer(self.name, inputs),
                           on_restored=metrics.restored_records.labels(self.name).inc)
        self.changelog = self.env.changelog
        self.manager = TaskManager(self.env, self.breaker)
        self.pipeline = CommitPipeline(self.manager, metrics, self.stats)
        self.observer = Observer(self.name, self.manager, metrics, settings)
        processor.register_metrics(metrics.registry)
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._consumer: Any = None
        self._restore_consumer: Any = None
        self._fatal: BaseException | None = None  # an error raised where it cannot stop the loop itself
        self._closed = False
        self._opener: asyncio.Task[None] | None = None  # opens the assigned tasks, in the background
        self._opened_once = False  # every task of an assignment was open once

    @property
    def processor(self) -> Processor:
        return self.env.processor

    @processor.setter
    def processor(self, processor: Processor) -> None:
        self.env.processor = processor

    @property
    def tasks(self) -> dict[int, Task]:
        """The open tasks, by partition number."""
        return self.manager.open_tasks

    @property
    def ready(self) -> bool:
        """Whether this worker takes its share: every task of its first assignment was opened, and no assigned task
        is failing to open (its circuit open) since.

        A rebalance does not make a ready worker unready (its tasks reopen in the background within moments), so a
        rolling update always has ready workers; a new worker is ready only once it has opened its tasks.
        """
        if self.state in ("stopping", "stopped", "failed", "starting"):
            return False
        tasks = self.manager.tasks
        if not self._opened_once:
            open_now = self.manager.open_tasks
            self._opened_once = self.state == "running" and all(q in open_now for q in tasks)
            return self._opened_once
        opening = self.manager.to_open
        return all(t.is_open or q in opening for q, t in tasks.items())

    @property
    def circuit_state(self) -> CircuitState:
        """The worst circuit state over the assigned tasks."""
        return self.manager.circuit_state

    # ---- lifecycle -------------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect, check the inputs are co-partitioned, learn the record limits, join the group.

        Partitions arrive through the rebalance listener. Raises the broker's error when it cannot be reached (the
        worker retries), and ConfigError when the input topics have different partition counts.
        """
        self._consumer = consumer = self.clients.input_consumer()
        self._restore_consumer = restorer = self.clients.restore_consumer()
        try:
            await restorer.start()
            await consumer.start()
            await self._check_copartitioned()
            limits = await record_limits(self.settings, self.env.written_topics)
        except BaseException:
            for client in (consumer, restorer):
                with contextlib.suppress(Exception):
                    await client.stop()
            self._consumer = self._restore_consumer = None
            raise
        self.env.consumer, self.env.restore_consumer, self.observer.consumer = consumer, restorer, consumer
        self.env.limits.update(limits)
        consumer.subscribe(self.psettings.input_topics, listener=_Listener(self))
        self.state = "rebalancing"

    async def _check_copartitioned(self) -> None:
        inputs = self.psettings.input_topics
        outputs = self.psettings.copartitioned_outputs()  # written to the input's partition number
        if len(inputs) + len(outputs) < 2:
            return
        consumer = self._consumer
        await consumer.refresh_metadata()
        counts = {t: len(consumer.partitions_for_topic(t) or ()) for t in [*inputs, *outputs]}
        if len(set(counts.values())) != 1:
            key = "input_topics" if len({counts[t] for t in inputs}) > 1 else "output_topics"
            raise ConfigError("broker", f"stream_processors.{self.name}.{key}",
                              f"inputs{' and co-partitioned outputs' if outputs else ''} must be co-partitioned (same "
                              f"partition count), got {counts}")

    async def run(self) -> None:
        """Consume, process and commit until :meth:`stop`."""
        consumer = self._consumer
        assert consumer is not None
        interval = self.settings.kafka.commit_interval_ms / 1000
        max_records = self.settings.kafka.max_poll_records
        pipeline, manager = self.pipeline, self.manager
        next_commit = time.monotonic() + interval
        try:
            while not self._stopping.is_set():
                if self._fatal is not None:
                    raise self._fatal
                if manager.retry_due:
                    async with self._lock:
                        await manager.reopen_due()
                # A due commit waiting on one in flight is retried every few ms, not at the next interval.
                wait_s = COMMIT_RETRY_S if pipeline.due else next_commit - time.monotonic()
                deadline = manager.next_deadline()
                if deadline is not None:
                    wait_s = min(wait_s, (deadline - self.env.clock_ms()) / 1000)
                batches = await consumer.getmany(timeout_ms=max(1, int(wait_s * 1000)), max_records=max_records)
                async with self._lock:
                    if batches:
                        manager.add(batches)
                    await self._process()
                    if pipeline.in_flight:
                        await pipeline.harvest()
                    if time.monotonic() >= next_commit or pipeline.commit_now:
                        next_commit = time.monotonic() + interval
                        await pipeline.commit_all(punctuate=not self._stopping.is_set())
                        self.observer.export_events(self.processor)
                    elif pipeline.due:
                        await pipeline.commit_all(punctuate=False)
                if time.monotonic() - self.observer.lag_exported >= LAG_REFRESH_S:
                    self.observer.export_lag()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.state = "failed"
            self.error = repr(exc)
            log.exception("processor %s failed", self.name)
            raise

    async def _process(self) -> None:
        """Let every open task process what its inputs allow."""
        tasks = [t for t in self.manager.open_tasks.values() if len(t.group)]
        if not tasks:
            return
        started = time.perf_counter()
        if self.stats.first_batch_at is None:
            self.stats.first_batch_at = started
        for task in tasks:
            await self.manager.process(task)
            if self.pipeline.in_flight:
                # Let the commits in flight take their next step (each is a few round trips): without this they
                # advance once per fetched batch, and a commit (so a record's latency) takes several batches.
                await asyncio.sleep(0)
        self.metrics.batch_seconds.labels(self.name).observe(time.perf_counter() - started)

    def request_stop(self) -> None:
        """Make :meth:`run` return after its current batch (within one commit interval)."""
        self._stopping.set()
        if self.state != "failed":
            self.state = "stopping"

    async def stop(self) -> None:
        """Commit what is processed, close every producer and leave the group (after :meth:`run` ended)."""
        self.request_stop()
        if self._closed:
            return
        self._closed = True
        await self._cancel_opener()
        async with self._lock:
            await self.pipeline.commit_all(reopen=False, wait=True)
            for task in self.manager.revoke_all():
                await self.manager.close(task)
        for client in (self._consumer, self._restore_consumer):
            if client is not None:
                await client.stop()
        if self.pipeline.purger is not None:
            await self.pipeline.purger.close()
        if self.state != "failed":
            self.state = "stopped"

    # ---- rebalance -------------------------------------------------------------------------------------------------
    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Commit everything processed so far before the group moves partitions."""
        self.state = "rebalancing"
        await self._cancel_opener()
        async with self._lock:
            await self.pipeline.commit_all(reopen=False, wait=True)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Close the tasks no longer ours, pause every assigned input, and start opening the assigned tasks in the
        background: the rebalance does not wait for restores."""
        try:
            async with self._lock:
                await self.manager.assign(assigned)
                self.observer.export_lag()
                self.metrics.assigned_partitions.labels(self.name).set(len(assigned))
                self._opener = asyncio.create_task(self._open_assigned())
        except Exception as exc:  # noqa: BLE001 - aiokafka only logs listener errors; make the loop raise it
            self._fatal = exc
            raise
        log.info("processor %s assigned %s (generation %s)", self.name,
                 sorted((tp.topic, tp.partition) for tp in assigned), self._consumer.generation)

    async def _open_assigned(self) -> None:
        """Open the assigned tasks one after another, each under the lock (the loop processes between them)."""
        try:
            while True:
                async with self._lock:
                    if not await self.manager.open_next():
                        break
            if not self._stopping.is_set() and self.state != "failed":
                self.state = "running"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a restore that can never succeed: the loop raises it
            self._fatal = exc

    async def _cancel_opener(self) -> None:
        """Stop opening tasks (a rebalance or a stop)."""
        opener, self._opener = self._opener, None
        if opener is not None and not opener.done():
            opener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await opener

    # ---- documents -------------------------------------------------------------------------------------------------
    def health(self, now: float | None = None) -> dict[str, Any]:
        """This processor's part of the ``/health`` document: its state, problems and per-partition view."""
        return self.observer.health(self.state, self.ready, self.stats, now)

    def partition_status(self, now: float | None = None) -> dict[TopicPartition, dict[str, Any]]:
        """What this worker knows of each input partition it owns, for ``/status``."""
        return self.observer.partition_status(now)
