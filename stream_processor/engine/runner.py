"""The consume-process-produce loop of one processor: batches in, checkpoints committed every interval.

One :class:`ProcessorRunner` owns one consumer in the processor's group (``read_committed``, no auto
commit) and, for each assigned task, a :class:`~stream_processor.engine.checkpoint.Checkpoint` (its producer) and a
:class:`~stream_processor.engine.state.ChangelogStore`. A task is partition number q of the processor's input topics:
one input partition, or partition q of each co-partitioned input (the group's assignor,
:class:`~stream_processor.engine.assignor.CopartitionedAssignor`, gives them to one member). The hot path works a
fetched batch at a time: decode, process and append every output to the task's record batches, with no network
wait. Every ``commit_interval_ms`` each open checkpoint is sealed (its changelog appended, no network wait) and
committed in the background: the batches go to the task's producer, the acknowledgements are awaited, then the
offsets and the commit. The loop goes on fetching and processing meanwhile, into each task's next transaction,
held in memory until the sealed one is committed (see :mod:`stream_processor.engine.checkpoint`); a task whose
commit is still in flight when the next is due commits as soon as it lands. A commit that fails aborts and reopens
its task, dropping what was processed after it.

Opening a task is one move, used on every assignment and after every error: start a producer with the task's
``transactional.id`` (which fences any zombie and waits until its last transaction is committed or aborted),
bring the state up to date from the changelog under ``read_committed``, and seek each input partition to the
offset that state reflects (its offset marker in the changelog under exactly_once, else the group's committed
offset). A task kept across a rebalance is reopened the same way, except that its clean store is kept and only
the changelog written after its own last commit is read: another member may have owned it in between, and the
group's committed offset alone may not show that member's last commit yet.

No record may stall a task or change state when it is dead-lettered:

- a record the processor refuses (:class:`~stream_processor.engine.exceptions.RecordError`, raised before it changes
  anything), an input above ``max_input_bytes``, and an undecodable one go to the dead-letter topic in the same
  transaction; a dead-letter copy larger than the topic allows is truncated, with headers saying so;
- a record whose processing raised anything else, or whose output is larger than its topic allows, may have
  changed state half-way: its offset is remembered as poison, the transaction is aborted and the task reopened
  (state from the changelog), and the replay dead-letters that record instead of processing it, so state is
  exactly what it would be without it (a processing error is first replayed in check mode, below, since an
  earlier record may have broken the state it tripped on);
- a commit that fails on a state record (not encodable, or larger than the changelog allows) puts the task in
  *check* mode up to where the failed transaction got: each record's state changes are encoded as it is
  processed, and the record that makes one fail is dead-lettered the same way; a commit the broker refuses for a
  record (too large, corrupt) puts it in *isolate* mode: small transactions, then one per record in the one the
  broker refuses, and a record whose own transaction is refused is dead-lettered by reference;
- any other failure (broker down, timeouts) counts against the task's circuit breaker
  (:mod:`stream_processor.engine.breaker`): retried at once a few times, then paused with a doubling backoff, and shown
  on ``/health`` and in metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import Counter, defaultdict, deque
from typing import Any

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    MessageSizeTooLargeError,
    ProducerFenced,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)

from . import processor as _processor
from .assignor import CopartitionedAssignor
from .breaker import CircuitBreaker, CircuitState, TaskHealth, worst
from .checkpoint import Checkpoint, CheckpointState, Sealed, transactional_id
from .exceptions import (
    AgentTimeoutError,
    ConfigError,
    RecordError,
    StateRecordError,
    StateRestoreError,
)
from .metrics import Metrics
from .processor import PATTERN_HEADER, Processor, ProcessorContext, current_context
from .security import client_options
from .settings import ProcessorSettings, Settings
from .state import TaskStores, restore
from .topics import changelog_topic, record_limits

log = logging.getLogger(__name__)

# Output records are small JSON documents; larger producer batches cut per-request overhead.
PRODUCER_BATCH_BYTES = 512 * 1024
# The throughput shown on /health is averaged over this many seconds of commits.
THROUGHPUT_WINDOW_S = 10.0
#: Seconds of committed records the ``/health`` latency percentiles cover.
LATENCY_WINDOW_S = 60.0
#: Bin edges (ms) of those percentiles: 0.1 ms to 1 hour, 5% apart.
LATENCY_EDGES_MS = np.geomspace(0.1, 3_600_000.0, 360)
#: The input consumer's fetch wait (ms). The broker answers a connection's requests in order, so an offset lookup
#: on that consumer (opening a task) waits behind a fetch that finds nothing for up to this long.
FETCH_WAIT_MS = 100
#: A task's next transaction holds at most about this many input records while its previous one commits; past
#: it the loop waits for that commit (a slow broker slows the worker instead of growing its memory).
PIPELINE_MAX_RECORDS = 50_000
#: The restore consumer's fetch wait (ms): short, so that opening a task does not wait on an idle fetch.
RESTORE_FETCH_WAIT_MS = 10
#: A commit due while the task's previous one is in flight is retried this often (seconds).
COMMIT_RETRY_S = 0.002
#: How often every assigned partition's consumer lag is exported, commits or not (seconds).
LAG_REFRESH_S = 2.0
# Dead-letter headers: the error text is cut to this many bytes, a key to this many.
ERROR_HEADER_BYTES = 1000
KEY_BYTES = 1024
# Isolate mode commits this many records per transaction, then one per record in a chunk the broker refused.
ISOLATE_CHUNK = 64
# Errors with which the broker refuses one record (not the connection): retrying the same transaction cannot help.
RECORD_REFUSALS = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError, CorruptRecordException,
                   InvalidTimestampError, UnsupportedForMessageFormatError)


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
        self._latency: deque[tuple[int, np.ndarray]] = deque()  # (whole second, counts per bin of LATENCY_EDGES_MS)

    def on_commit(self, count: int, latencies_ms: np.ndarray | None = None) -> None:
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


class _Rollback(Exception):  # noqa: N818 - a control-flow signal, not an error of its own
    """Abort the task's transaction and replay it: a record was marked as poison (its cause is ``__cause__``)."""


class _Pause(Exception):  # noqa: N818 - a control-flow signal
    """An agent's I/O has used half the transaction timeout: commit the transaction up to ``next_offset``."""

    def __init__(self, next_offset: int) -> None:
        super().__init__(next_offset)
        self.next_offset = next_offset


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

    Tasks are opened in the background, not in the rebalance listener: the group's rebalance never waits for a
    restore, and tasks open one after another while the loop processes the ones already open.
    """

    def __init__(self, processor: Processor, settings: Settings, metrics: Metrics) -> None:
        self.processor = processor
        self.name = processor.name
        self.settings = settings
        self.psettings: ProcessorSettings = processor.settings
        self.metrics = metrics
        self.transactional = self.psettings.processing_mode == "exactly_once"
        self.changelog = changelog_topic(settings, self.name)
        self.stats = RunnerStats()
        self.state = "starting"
        self.error: str | None = None  # why the runner failed
        self.tasks: dict[int, Checkpoint] = {}  # open tasks by partition number
        self.assigned: dict[int, tuple[TopicPartition, ...]] = {}  # every assigned task's input partitions
        self.task_health: dict[int, TaskHealth] = {}
        self.committed: dict[TopicPartition, int] = {}  # next offset to read per input partition, as committed
        cb = settings.circuit_breaker
        self.breaker = CircuitBreaker(cb.failures, cb.backoff_ms / 1000, cb.max_backoff_ms / 1000)
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._restore_consumer: AIOKafkaConsumer | None = None
        self._kafka_options: dict[str, Any] = {}
        self._timestamps: dict[int, list[list[int]]] = {}  # Kafka timestamps of the records in each transaction
        self.restoring: dict[int, dict[str, int]] = {}  # task -> changelog restore progress, while it restores
        self._lag_exported = 0.0
        self._fatal: BaseException | None = None  # an error raised where it cannot stop the loop itself
        self._limits: dict[str, int] = {}  # largest record each output, dead-letter and changelog topic takes
        # Records known to be poison, by input partition and offset: (reason, error, dead-letter by reference).
        self._poison: dict[TopicPartition, dict[int, tuple[str, str, bool]]] = defaultdict(dict)
        self._check_until: dict[int, dict[TopicPartition, int]] = {}  # task -> offsets to pass in check mode
        # task -> (offsets to pass in isolate mode, records per transaction)
        self._isolate_until: dict[int, tuple[dict[TopicPartition, int], int]] = {}
        self._events_seen: Counter[str] = Counter()  # processor events already exported to Prometheus
        self._closed = False
        self._commit_now = False  # an agent's I/O used half the transaction timeout: commit after this batch
        self._commit_due = False  # a commit is due for tasks whose previous one was still in flight
        # Background commits in flight, by task: the checkpoint and the task committing its sealed transaction.
        self._committing: dict[int, tuple[Checkpoint, asyncio.Task[None]]] = {}
        self._to_open: dict[int, Checkpoint | None] = {}  # assigned tasks still to open, with our previous checkpoint
        self._opener: asyncio.Task[None] | None = None  # opens them, in the background
        self._opened_once = False  # every task of an assignment was open once

    @property
    def ready(self) -> bool:
        """Whether this worker takes its share: every task of its first assignment was opened, and no assigned task
        is failing to open (its circuit open) since.

        A rebalance does not make a ready worker unready (its tasks reopen in the background within moments), so a
        rolling update always has ready workers; a new worker is ready only once it has opened its tasks.
        """
        if self.state in ("stopping", "stopped", "failed", "starting"):
            return False
        if not self._opened_once:
            self._opened_once = self.state == "running" and all(q in self.tasks for q in self.assigned)
            return self._opened_once
        return all(q in self.tasks or q in self._to_open for q in self.assigned)

    @property
    def circuit_state(self) -> CircuitState:
        """The worst circuit state over the assigned tasks."""
        return worst([h.circuit for h in self.task_health.values()])

    # ---- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect, check the inputs are co-partitioned, learn the record limits, join the group.

        Partitions arrive through the rebalance listener. Raises the broker's error when it cannot be reached (the
        worker retries), and ConfigError when the input topics have different partition counts.
        """
        kafka = self.settings.kafka
        self._kafka_options = client_options(kafka)  # one TLS context and secret read for every client
        common = {**self._kafka_options, "client_id": self.settings.processor_id}
        self._consumer = AIOKafkaConsumer(
            group_id=self.psettings.consumer_group,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=kafka.max_poll_records,
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=kafka.heartbeat_interval_ms,
            group_instance_id=kafka.group_instance_id,
            fetch_max_wait_ms=FETCH_WAIT_MS,
            partition_assignment_strategy=(CopartitionedAssignor,),
            **common,
        )
        # The restore consumer reads a changelog to its end and stops: a fetch that finds nothing must not wait
        # (aiokafka's 500 ms default made every seek and end-offset lookup of a task's opening wait about that long).
        self._restore_consumer = AIOKafkaConsumer(
            isolation_level="read_committed", enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=RESTORE_FETCH_WAIT_MS, **common
        )
        try:
            await self._restore_consumer.start()
            await self._consumer.start()
            await self._check_copartitioned()
            topics = [*self.processor.output_topics, self.psettings.dead_letter_topic, self.changelog]
            self._limits = await record_limits(self.settings, topics)
        except BaseException:
            for consumer in (self._consumer, self._restore_consumer):
                with contextlib.suppress(Exception):
                    await consumer.stop()
            self._consumer = self._restore_consumer = None
            raise
        self._consumer.subscribe(self.psettings.input_topics, listener=_Listener(self))
        self.state = "rebalancing"

    async def _check_copartitioned(self) -> None:
        assert self._consumer is not None
        inputs = self.psettings.input_topics
        outputs = self.psettings.copartitioned_outputs()  # written to the input's partition number
        if len(inputs) + len(outputs) < 2:
            return
        await self._consumer._client.force_metadata_update()  # noqa: SLF001 - the inputs' partition counts
        counts = {t: len(self._consumer.partitions_for_topic(t) or ()) for t in [*inputs, *outputs]}
        if len(set(counts.values())) != 1:
            key = "input_topics" if len({counts[t] for t in inputs}) > 1 else "output_topics"
            raise ConfigError("broker", f"stream_processors.{self.name}.{key}",
                              f"inputs{' and co-partitioned outputs' if outputs else ''} must be co-partitioned (same "
                              f"partition count), got {counts}")

    async def run(self) -> None:
        """Consume, process and commit until :meth:`stop`."""
        assert self._consumer is not None
        consumer = self._consumer
        interval = self.settings.kafka.commit_interval_ms / 1000
        max_records = self.settings.kafka.max_poll_records
        next_commit = time.monotonic() + interval
        try:
            while not self._stopping.is_set():
                if self._fatal is not None:
                    raise self._fatal
                if any(h.retry_at is not None for h in self.task_health.values()):
                    async with self._lock:
                        await self._reopen_due()
                # A due commit waiting on one in flight is retried every few ms, not at the next interval.
                wait_s = COMMIT_RETRY_S if self._commit_due else next_commit - time.monotonic()
                batches = await consumer.getmany(timeout_ms=max(1, int(wait_s * 1000)), max_records=max_records)
                async with self._lock:
                    if batches:
                        await self._process(batches)
                    if self._committing:
                        await self._harvest()
                    if time.monotonic() >= next_commit or self._commit_now:
                        self._commit_now = False
                        next_commit = time.monotonic() + interval
                        await self._commit_all()
                    elif self._commit_due:
                        await self._commit_all(punctuate=False)
                if time.monotonic() - self._lag_exported >= LAG_REFRESH_S:
                    self._export_lag()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.state = "failed"
            self.error = repr(exc)
            log.exception("processor %s failed", self.name)
            raise

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
            await self._commit_all(reopen=False, wait=True)
            for cp in list(self.tasks.values()):
                await self._close(cp)
            self.tasks.clear()
        if self._consumer is not None:
            await self._consumer.stop()
        if self._restore_consumer is not None:
            await self._restore_consumer.stop()
        if self.state != "failed":
            self.state = "stopped"

    async def _close(self, cp: Checkpoint) -> None:
        """Close a task: let its commit in flight end, tell the processor (its context is dropped), then close the
        producer (aborting)."""
        inflight = self._committing.get(cp.task)
        if inflight is not None and inflight[0] is cp:
            del self._committing[cp.task]
            with contextlib.suppress(Exception):  # committed or not, the task is reopened from the changelog
                await inflight[1]
        ctx, cp.context = cp.context, None
        self._timestamps.pop(cp.task, None)  # a transaction closed uncommitted: its records are read again
        if ctx is not None:
            cp.last_stream_time = ctx.stream_time
            try:
                self.processor.close(ctx)
            except Exception:  # noqa: BLE001 - the task is closing either way
                log.exception("processor %s: close of partition %d failed", self.name, cp.task)
        await _close_quietly(cp)

    # ---- rebalance ---------------------------------------------------------------------------------
    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Commit everything processed so far before the group moves partitions."""
        self.state = "rebalancing"
        await self._cancel_opener()
        async with self._lock:
            await self._commit_all(reopen=False, wait=True)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Close tasks no longer ours, pause every assigned input, and start opening the assigned tasks in the
        background (:meth:`_open_assigned`): the rebalance does not wait for restores."""
        assert self._consumer is not None
        try:
            async with self._lock:
                tasks: dict[int, list[TopicPartition]] = defaultdict(list)
                for tp in assigned:
                    tasks[tp.partition].append(tp)
                for q in [q for q in self.tasks if q not in tasks]:
                    await self._close(self.tasks.pop(q))
                for q in [q for q in self.task_health if q not in tasks]:
                    del self.task_health[q]
                    self._check_until.pop(q, None)
                    self._isolate_until.pop(q, None)
                self._forget_lag({tp for tps in self.assigned.values() for tp in tps} - set(assigned))
                self.assigned = {q: tuple(sorted(tps)) for q, tps in tasks.items()}
                now = time.monotonic()
                for q in sorted(tasks):
                    if len(tasks[q]) != len(self.psettings.input_topics):
                        raise RuntimeError(f"partition {q} assigned for {sorted(tp.topic for tp in tasks[q])} only, "
                                           f"not every input {self.psettings.input_topics}: another member of the "
                                           "group does not use the copartitioned assignor")
                    self._to_open[q] = self.tasks.pop(q, None)
                    self.task_health.setdefault(q, TaskHealth(last_commit=now)).retry_at = None
                if assigned:
                    self._consumer.pause(*assigned)  # each task's inputs resume once it is open
                self.metrics.assigned_partitions.labels(self.name).set(len(assigned))
                self._opener = asyncio.create_task(self._open_assigned())
        except Exception as exc:  # noqa: BLE001 - aiokafka only logs listener errors; make the loop raise it
            self._fatal = exc
            raise
        generation = self._consumer._coordinator.generation  # noqa: SLF001 - for the log (the chaos harness counts it)
        log.info("processor %s assigned %s (generation %s)", self.name,
                 sorted((tp.topic, tp.partition) for tp in assigned), generation)

    async def _open_assigned(self) -> None:
        """Open the assigned tasks one after another, each under the lock (the loop processes between them)."""
        try:
            while self._to_open:
                async with self._lock:
                    if not self._to_open:
                        break
                    q = min(self._to_open)
                    previous = self._to_open[q]  # q stays "opening" (ready) until the attempt ends
                    if previous is not None:
                        self._to_open[q] = None
                        await self._close(previous)
                    if q in self.assigned and q not in self.tasks:
                        await self._try_open(q, previous)
                    self._to_open.pop(q, None)
            if not self._stopping.is_set() and self.state != "failed":
                self.state = "running"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a restore that can never succeed: the loop raises it
            self._fatal = exc

    async def _cancel_opener(self) -> None:
        """Stop opening tasks (a rebalance or a stop); the previous checkpoints not yet reopened are closed."""
        opener, self._opener = self._opener, None
        if opener is not None and not opener.done():
            opener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await opener
        async with self._lock:
            for previous in self._to_open.values():
                if previous is not None:
                    await self._close(previous)
            self._to_open.clear()

    async def _try_open(self, q: int, previous: Checkpoint | None = None) -> bool:
        """Open task ``q``; on failure pause its inputs and schedule the next attempt (circuit breaker)."""
        assert self._consumer is not None
        health = self.task_health[q]
        try:
            cp = await self._open_task(q, previous)
        except StateRestoreError:
            raise  # a snapshot this code cannot read, set to fail: retrying cannot help
        except Exception as exc:  # noqa: BLE001 - broker down, coordinator moving, timeouts
            inputs = [tp for tp in self.assigned.get(q, ()) if tp in self._consumer.assignment()]
            if inputs:
                self._consumer.pause(*inputs)
            delay = self.breaker.on_failure(health, f"opening: {exc!r}", time.monotonic(), opening=True)
            log.warning("processor %s: opening partition %d failed (%r); retrying in %.1f s", self.name, q, exc,
                        delay)
            return False
        self.tasks[q] = cp
        self._consumer.resume(*cp.inputs)
        return True

    async def _reopen_due(self) -> None:
        now = time.monotonic()
        for q, health in list(self.task_health.items()):
            if health.retry_at is not None and now >= health.retry_at and q not in self.tasks and q in self.assigned:
                self.breaker.on_attempt(health)
                await self._try_open(q)

    async def _open_task(self, q: int, previous: Checkpoint | None = None) -> Checkpoint:
        """Fence, bring the state up to date, seek; ``previous`` is our own clean checkpoint of ``q``, if any."""
        assert self._consumer is not None and self._restore_consumer is not None
        inputs = self.assigned[q]
        kafka = self.settings.kafka
        group = self.psettings.consumer_group
        options: dict[str, Any] = {
            **self._kafka_options,
            "client_id": f"{self.settings.processor_id}-{self.name}-{q}",
            "max_batch_size": PRODUCER_BATCH_BYTES,
            "acks": "all",
            "enable_idempotence": True,
            # A transaction's first AddPartitionsToTxn often meets CONCURRENT_TRANSACTIONS while the previous
            # commit's markers are written; the Java client retries that after 20 ms, not 100 ms.
            "retry_backoff_ms": 20,
        }
        if self.transactional:
            options["transactional_id"] = transactional_id(self.settings.app_id, group, inputs)
            options["transaction_timeout_ms"] = kafka.transaction_timeout_ms
        producer = AIOKafkaProducer(**options)
        began = time.monotonic()
        try:
            # InitProducerId: fences the previous owner of this transactional.id and completes or aborts its
            # open transaction, so the changelog and offsets read below are final.
            await producer.start()
            keep = (
                previous is not None and self.transactional and previous.store is not None
                and not previous.store.dirty and previous.changelog_position is not None
                and previous.state is not CheckpointState.OPEN
            )
            if keep:
                assert previous is not None
                store, changelog_from = previous.store, previous.changelog_position
            else:
                store, changelog_from = TaskStores(self.processor.stores(), self.psettings.state_errors), None
            assert store is not None
            resets_before = store.resets
            fenced_s = time.monotonic() - began
            self.restoring[q] = progress = {}
            try:
                restored = await restore(store, self._restore_consumer, TopicPartition(self.changelog, q),
                                         changelog_from, progress)
            finally:
                self.restoring.pop(q, None)
            self.metrics.restored_records.labels(self.name).inc(restored.applied)
            committed: dict[TopicPartition, int | None] = {}
            starts: dict[TopicPartition, int] = {}
            for tp in inputs:
                # Under exactly_once the offset marker is committed with the state it describes; the group's
                # committed offset is the fallback (at_least_once, or a changelog written before markers).
                offset = restored.offset(tp.topic, len(inputs) == 1) if self.transactional else None
                if offset is None:
                    offset = await self._consumer.committed(tp)
                committed[tp] = offset
                starts[tp] = offset if offset is not None else (await self._consumer.beginning_offsets([tp]))[tp]
            cp = Checkpoint(
                inputs,
                group_id=group,
                producer=producer,
                consumer=self._consumer,
                store=store,
                changelog_topic=self.changelog,
                transactional=self.transactional,
                changelog_limit=self._limits.get(self.changelog),
            )
            await cp.prepare([*self.processor.output_topics, self.psettings.dead_letter_topic, self.changelog])
        except BaseException:
            await producer.stop()
            raise
        for tp in inputs:
            self._consumer.seek(tp, starts[tp])
            cp.committed_offsets[tp] = committed[tp]
            cp.positions[tp] = starts[tp]
            self.committed[tp] = starts[tp]
        cp.changelog_position = restored.end  # the store reflects every changelog record before this offset
        if store.resets > resets_before:
            self.processor.events["state_reset"] += store.resets - resets_before
        cp.context = ctx = ProcessorContext(self.name, q, store)
        ctx.stream_time = restored.stream_time
        processed = dict(restored.positions)
        if keep and previous is not None:  # it read only the changelog since its own last commit: maybe no marker
            ctx.stream_time = max(ctx.stream_time, previous.last_stream_time)
            for tp, position in previous.positions.items():
                processed[tp.topic] = max(processed.get(tp.topic, -1), position)
        ctx.refused_before = {tp.topic: processed[tp.topic] for tp in inputs
                              if processed.get(tp.topic, -1) > starts[tp]}
        try:
            self.processor.init(cp.context)
        except Exception:
            await self._close(cp)
            raise
        log.debug("opened %s at %s in %.3f s (producer and fencing %.3f s): %d keys, %d changelog records read from "
                  "%s", cp, starts, time.monotonic() - began, fenced_s, store.keys(), restored.applied, changelog_from)
        return cp

    # ---- hot path ----------------------------------------------------------------------------------
    async def _process(self, batches: dict[TopicPartition, list[Any]]) -> None:
        started = time.perf_counter()
        if self.stats.first_batch_at is None:
            self.stats.first_batch_at = started
        opened = dict(self.tasks)  # a task reopened while this batch is worked on skips the rest of it
        for tp, messages in batches.items():
            q = tp.partition
            cp = self.tasks.get(q)
            if cp is None or not messages or opened.get(q) is not cp:
                continue  # fetched before a rebalance took the task away, fenced, or reopened in this batch
            try:
                if cp.pending_count >= PIPELINE_MAX_RECORDS and q in self._committing:
                    await self._harvest(wait=True)  # a slow commit: bound what the next transaction holds
                    if self.tasks.get(q) is not cp:
                        continue  # its commit failed: reopened, and these records are read again
                if not cp.is_open:
                    await cp.begin()
                if q in self._isolate_until:
                    await self._process_isolated(cp, tp, messages)
                else:
                    await self._process_partition(cp, tp, messages)
            except _Rollback as rollback:
                await self._recover(q, rollback.__cause__ or rollback, rollback=True)
            except Exception as exc:  # noqa: BLE001 - any Kafka error aborts this task's transaction
                await self._recover(q, exc)
            if self._committing:
                # Let the commits in flight take their next step (each is a few round trips): without this they
                # advance once per fetched batch, and a commit (so a record's latency) takes several batches.
                await asyncio.sleep(0)
        self.metrics.batch_seconds.labels(self.name).observe(time.perf_counter() - started)

    def _stamp(self, q: int, records: list[Any]) -> None:
        """Remember the Kafka timestamps of records task ``q``'s transaction now holds (latency at commit)."""
        self._timestamps.setdefault(q, []).append([m.timestamp for m in records])

    def _unseen(self, cp: Checkpoint, tp: TopicPartition, messages: list[Any]) -> list[Any]:
        position = cp.positions[tp]
        if messages[0].offset < position:
            # Records fetched before a seek (rebalance, recovery) may still arrive: never process twice.
            messages = [m for m in messages if m.offset >= position]
        return messages

    async def _process_partition(self, cp: Checkpoint, tp: TopicPartition, messages: list[Any]) -> None:
        """Process one input partition's fetched records in offset order, ``batch_size`` at a time.

        Under exactly_once, outputs stay in the checkpoint's record batches until the commit hands them to the
        producer: aiokafka lets one batch per partition wait in its queue, so handing over a batch per chunk made
        the loop wait a produce round trip per chunk (the bench measured 28.6k trades/s that way, 34.6k/s
        without), and nothing is visible before the commit anyway. Under at_least_once each chunk's outputs are
        handed over at once, so they are visible without waiting for the commit.
        """
        messages = self._unseen(cp, tp, messages)
        q = cp.task
        check = q in self._check_until
        step = self.psettings.batch_size
        for start in range(0, len(messages), step):
            chunk = messages[start : start + step]
            try:
                await self._process_chunk(cp, tp, chunk, check)
            except _Pause as pause:  # commit what is done; the rest of the fetch is read again
                cp.positions[tp] = pause.next_offset
                cp.store_offset(tp, pause.next_offset, pause.next_offset - chunk[0].offset)
                self._stamp(q, [m for m in chunk if m.offset < pause.next_offset])
                assert self._consumer is not None
                self._consumer.seek(tp, pause.next_offset)
                self._commit_now = True
                return
            if not self.transactional:
                await cp.flush()
            cp.positions[tp] = chunk[-1].offset + 1
            cp.store_offset(tp, cp.positions[tp], len(chunk))
            self._stamp(q, chunk)
        if check and all(cp.positions[p] >= end for p, end in self._check_until[q].items()):
            del self._check_until[q]
            log.info("processor %s: partition %d left check mode at %s", self.name, q, dict(cp.positions))

    async def _process_isolated(self, cp: Checkpoint, tp: TopicPartition, messages: list[Any]) -> None:
        """Isolate mode: a transaction per :data:`ISOLATE_CHUNK` records; in a chunk the broker refuses, one per
        record; a record whose own transaction is refused is dead-lettered by reference."""
        q = cp.task
        until, step = self._isolate_until[q]
        messages = self._unseen(cp, tp, messages)
        i = 0
        while i < len(messages):
            chunk = messages[i : i + step]
            if not cp.is_open:
                await cp.begin()
            await self._process_chunk(cp, tp, chunk, check=True)
            cp.positions[tp] = chunk[-1].offset + 1
            cp.store_offset(tp, cp.positions[tp], len(chunk))
            self._stamp(q, chunk)
            try:
                await self._commit_one(cp)
            except RECORD_REFUSALS as exc:
                if len(chunk) == 1:
                    self._mark_poison(tp, chunk[0].offset, "uncommittable", repr(exc), by_reference=True)
                else:  # replay this chunk a record at a time
                    self._isolate_until[q] = ({**until, tp: cp.positions[tp]}, 1)
                raise _Rollback from exc
            i += len(chunk)
            if all(cp.positions[p] >= end for p, end in until.items()):
                del self._isolate_until[q]
                log.info("processor %s: partition %d left isolate mode at %s", self.name, q, dict(cp.positions))
                if messages[i:]:
                    await cp.begin()
                    await self._process_partition(cp, tp, messages[i:])
                return

    async def _process_chunk(
        self, cp: Checkpoint, tp: TopicPartition, messages: list[Any], check: bool = False
    ) -> None:
        """Decode, process and append the outputs of ``messages``; ``check``: encode each record's state changes.

        Raises _Rollback after marking a record as poison (a processing error, an output too large, a state change
        that cannot be written); the caller aborts and replays the transaction.
        """
        topic = tp.topic
        processor = self.processor
        ctx = cp.context
        stores = cp.store
        assert ctx is not None and stores is not None
        run = ctx.run
        outputs = ctx.outputs
        max_input = self.psettings.max_input_bytes
        poison = self._poison.get(tp)
        refused_before = ctx.refused_before
        ctx.partition = tp.partition
        token = current_context.set(ctx)
        try:
            for msg in messages:
                offset = msg.offset
                if poison and offset in poison:
                    reason, error, by_reference = poison[offset]
                    if offset >= refused_before.get(topic, -1):
                        self._dead_letter(cp, msg, reason, error, omit_value=by_reference)
                    continue
                value = msg.value
                if value is not None and len(value) > max_input:
                    if offset >= refused_before.get(topic, -1):
                        self._dead_letter(cp, msg, "too_large", f"value of {len(value)} bytes is above "
                                                                f"max_input_bytes ({max_input})")
                    continue
                if check:
                    before = stores.take_dirty()
                try:
                    pending = run(processor, topic, offset, msg.timestamp, msg.key, msg.headers, value)
                    if pending is not None:  # an agent awaiting I/O
                        await self._await_agent(pending)
                        waited = time.monotonic() - cp.opened_at > self.settings.kafka.transaction_timeout_ms / 2000
                    if ctx.stream_time >= ctx.next_stream_due:
                        ctx.punctuate_stream_time()
                except RecordError as exc:
                    outputs.clear()
                    if check:
                        stores.merge_dirty(before)
                    if offset >= refused_before.get(topic, -1):  # else dead-lettered before a restart
                        self._dead_letter(cp, msg, exc.reason, str(exc))
                    continue
                except AgentTimeoutError:
                    outputs.clear()
                    raise
                except Exception as exc:  # noqa: BLE001 - a processor bug must not stop the partition
                    outputs.clear()
                    if not check:
                        # An earlier record of this transaction may have broken the state this one tripped on:
                        # replay in check mode up to here first, which finds such a record; this one is blamed only
                        # if it fails again there.
                        log.warning("processor %s failed on %s@%d (%r); replaying in check mode", self.name, tp,
                                    offset, exc)
                        until = self._check_until.setdefault(cp.task, {})
                        until[tp] = max(until.get(tp, 0), offset + 1)
                        raise _Rollback from exc
                    log.exception("processor %s failed on %s@%d", self.name, tp, offset)
                    self._mark_poison(tp, offset, "processing_error", repr(exc))
                    raise _Rollback from exc
                if outputs:
                    refused = self._emit(cp, outputs)
                    if refused is not None:
                        self._mark_poison(tp, offset, *refused)
                        raise _Rollback
                if check:
                    try:
                        stores.check_dirty(self._limits.get(self.changelog))
                    except StateRecordError as exc:
                        self._mark_poison(tp, offset, exc.reason, str(exc))
                        raise _Rollback from exc
                    stores.merge_dirty(before)
                if pending is not None and waited and not check:
                    raise _Pause(offset + 1)
        finally:
            current_context.reset(token)

    def _emit(self, cp: Checkpoint, outputs: list[Any]) -> tuple[str, str] | None:
        """Append ``outputs`` (clearing it) to the task's transaction as they are checked; ``(reason, error)`` if one
        is larger than its topic allows or goes to a topic the processor did not declare (the caller then rolls the
        transaction back, which drops what was appended).
        """
        limits = self._limits
        prepared = cp.prepared_topics
        append = cp.append
        counts = cp.pending_outputs
        for out_topic, key, value, headers, partition in outputs:
            size = (len(value) if value is not None else 0) + (len(key) if key else 0)
            if out_topic not in prepared:
                outputs.clear()
                return "processing_error", (f"sent to {out_topic!r}, not one of its output topics (declare it in "
                                            "output_topics, or as a topic of the app)")
            if size > limits.get(out_topic, size):
                outputs.clear()
                return "output_too_large", (f"its {out_topic} record is {size} bytes, above the topic's "
                                            f"{limits[out_topic]}")
            append(out_topic, value, key, headers, partition)
            counts[out_topic] += 1
            if headers:
                pattern = _pattern(headers)
                if pattern is not None:
                    cp.pending_patterns[pattern] += 1
        outputs.clear()
        return None

    async def _await_agent(self, pending: Any) -> None:
        """Run an agent's await of real I/O to the end, within half the transaction timeout.

        Raises AgentTimeoutError past it: the transaction would be aborted by the broker anyway.
        """
        budget = self.settings.kafka.transaction_timeout_ms / 2000
        try:
            async with asyncio.timeout(budget):
                await pending
        except TimeoutError:
            raise AgentTimeoutError(f"agent {self.name} awaited I/O for more than {budget:.1f} s on one record "
                                    "(half of kafka.transaction_timeout_ms)") from None

    async def _punctuate_wall_clock(self) -> None:
        """Fire the wall-clock punctuations due, each task's in its own transaction (opened if need be)."""
        now_ms = _processor.wall_clock_ms()
        for q, cp in list(self.tasks.items()):
            ctx = cp.context
            if ctx is None or not ctx.wall_clock_due(now_ms):
                continue
            try:
                if not cp.is_open:
                    await cp.begin()
                ctx.punctuate_wall_clock(now_ms)
                refused = self._emit(cp, ctx.outputs)
                if refused is not None:
                    raise RuntimeError(f"a wall-clock punctuation's output is refused: {refused[1]}")
            except Exception as exc:  # noqa: BLE001 - a failing punctuation aborts the task's transaction
                ctx.outputs.clear()
                log.error("processor %s: wall-clock punctuation of partition %d failed: %r", self.name, q, exc)
                await self._recover(q, exc)

    def _mark_poison(
        self, tp: TopicPartition, offset: int, reason: str, error: str, by_reference: bool = False
    ) -> None:
        log.warning("processor %s: %s@%d is poison (%s: %s); its transaction is replayed without it", self.name, tp,
                    offset, reason, error[:300])
        self._poison[tp][offset] = (reason, error, by_reference)

    def _dead_letter(self, cp: Checkpoint, msg: Any, reason: str, error: str, omit_value: bool = False) -> None:
        """Append ``msg`` to the dead-letter topic with headers naming why and where from.

        A copy that would be larger than the topic allows (or ``omit_value``) keeps only as much of the value as
        fits, with ``value_truncated`` (the original size) and ``value_sha256`` headers; the source headers are the
        reference to the whole record. A key above :data:`KEY_BYTES` is cut likewise (``key_truncated``).
        """
        headers = dead_letter_headers(reason, error, self.name, msg)
        key, value = msg.key, msg.value if msg.value is not None else b""
        if key is not None and len(key) > KEY_BYTES:
            headers.append(("key_truncated", str(len(key)).encode()))
            key = key[:KEY_BYTES]
        topic = self.psettings.dead_letter_topic
        limit = self._limits.get(topic)
        if limit is not None or omit_value:
            # Header bytes plus a varint per length; the limit already leaves the batch and record overheads.
            budget = (limit or 0) - len(key or b"") - sum(len(k) + len(v) + 10 for k, v in headers) - 200
            if omit_value or len(value) > budget:
                headers.append(("value_truncated", str(len(value)).encode()))
                headers.append(("value_sha256", hashlib.sha256(value).hexdigest().encode()))
                value = b"" if omit_value else value[: max(0, budget)]
        cp.append(topic, value, key=key, headers=headers)
        cp.pending_outputs[topic] += 1
        cp.pending_failed[reason] += 1

    # ---- commits -----------------------------------------------------------------------------------
    async def _commit_all(self, reopen: bool = True, wait: bool = False, punctuate: bool = True) -> None:
        """Seal every open checkpoint and commit it in the background; a failed commit is aborted and (if
        ``reopen``) its task reopened when it is harvested. A task whose previous commit is still in flight commits
        once that lands (``_commit_due``). ``wait``: return only when every commit has landed (a rebalance, a stop).
        """
        if punctuate and reopen and not self._stopping.is_set():
            await self._punctuate_wall_clock()
        if wait:
            await self._harvest(wait=True, reopen=reopen)
        self._commit_due = False
        for cp in list(self.tasks.values()):
            if not cp.is_open:
                continue
            if cp.task in self._committing:
                self._commit_due = True
                continue
            self._skip_unreturned(cp)
            try:
                self._launch(cp)
            except Exception as exc:  # noqa: BLE001 - a state record that cannot be written (check mode)
                await self._failed(cp, exc, reopen)
        if wait:
            await self._harvest(wait=True, reopen=reopen)
        self._export_events()
        self.metrics.circuit_state.labels(self.name).state(str(self.circuit_state))

    def _launch(self, cp: Checkpoint) -> None:
        """Seal ``cp``'s open transaction and commit it in the background (:meth:`_complete`)."""
        if cp.context is not None:
            # Records an agent still buffers (stream.take) are not committed: a restart re-reads them. A transaction
            # of punctuation only (a take() deadline) still moves the offsets a batch held before.
            held = cp.context.held
            for tp in cp.inputs:
                target = min(cp.positions[tp], held.get(tp.topic, cp.positions[tp]))
                done = cp.committed_offsets.get(tp)
                if tp in cp.pending_offsets or (done is not None and done < target):
                    cp.pending_offsets[tp] = target
        sealed = cp.seal()
        # This transaction's records: if it aborts they are replayed, and stamped again then.
        stamps = self._timestamps.pop(cp.task, None)
        self._committing[cp.task] = (cp, asyncio.create_task(self._complete(cp, sealed, stamps)))

    async def _harvest(self, wait: bool = False, reopen: bool = True) -> None:
        """Collect the background commits that have landed (``wait``: all of them); a failed one aborts its task,
        which is reopened if ``reopen``."""
        if wait and self._committing:
            await asyncio.wait([task for _, task in self._committing.values()])
        for q, (cp, task) in list(self._committing.items()):
            if not task.done():
                continue
            del self._committing[q]
            exc = None if task.cancelled() else task.exception()
            if exc is not None and self.tasks.get(q) is cp:
                await self._failed(cp, exc, reopen)

    async def _failed(self, cp: Checkpoint, exc: BaseException, reopen: bool) -> None:
        if reopen:
            await self._recover(cp.task, exc)
        else:
            self.tasks.pop(cp.task, None)
            await self._close(cp)

    async def _commit_one(self, cp: Checkpoint) -> None:
        """Commit ``cp``'s open transaction and wait for it (after any commit of it still in flight)."""
        inflight = self._committing.pop(cp.task, None)
        if inflight is not None:
            await inflight[1]
        self._launch(cp)
        await self._committing.pop(cp.task)[1]

    async def _complete(self, cp: Checkpoint, sealed: Sealed, stamps: list[list[int]] | None) -> None:
        """Commit ``sealed`` (``cp``'s transaction), then count it: metrics, latency, the task's health, offsets."""
        started = time.perf_counter()
        try:
            count = await cp.complete(sealed)
        except BaseException:
            self.metrics.commits.labels(self.name, "aborted").inc()
            raise
        self.metrics.commit_seconds.labels(self.name).observe(time.perf_counter() - started)
        q = cp.task
        now = time.time()
        latencies_ms = None
        if stamps:
            times = np.concatenate([np.asarray(s, dtype=np.float64) for s in stamps])
            latencies_ms = np.maximum(now * 1000 - times[times > 0], 0.0)
            self.metrics.processing_latency.observe_many(self.name, latencies_ms / 1000)
        self.metrics.commits.labels(self.name, "committed").inc()
        self.metrics.last_commit.labels(self.name).set(now)
        for (pattern, interval), n in sealed.patterns.items():
            self.metrics.pattern_events.labels(self.name, pattern, interval).inc(n)
        self.metrics.messages_in.labels(self.name).inc(count)
        for topic, n in sealed.outputs.items():
            self.metrics.messages_out.labels(self.name, topic).inc(n)
        for reason, n in sealed.failed.items():
            self.metrics.messages_failed.labels(self.name, reason).inc(n)
            self.stats.messages_failed += n
        self.stats.on_commit(count, latencies_ms)
        health = self.task_health.get(q)
        if health is not None and self.tasks.get(q) is cp:
            self.breaker.on_success(health, time.monotonic())
        for tp, offset in sealed.offsets.items():
            self.committed[tp] = offset
            poison = self._poison.get(tp)
            if poison:
                for done in [o for o in poison if o < offset]:
                    del poison[done]

    def _export_lag(self) -> None:
        """Export every assigned partition's consumer lag: its last stable offset (as last fetched) minus its
        committed offset."""
        self._lag_exported = time.monotonic()
        gauge = self.metrics.consumer_lag
        for inputs in self.assigned.values():
            for tp in inputs:
                lag = self._lag(tp)
                if lag is not None:
                    gauge.labels(self.name, tp.topic, str(tp.partition)).set(lag)

    def _end_offset(self, tp: TopicPartition) -> int | None:
        """``tp``'s last stable offset as last fetched; None while unknown, or when the consumer no longer holds tp
        (mid-rebalance)."""
        consumer = self._consumer
        return consumer.last_stable_offset(tp) if consumer is not None and tp in consumer.assignment() else None

    def _skip_unreturned(self, cp: Checkpoint) -> None:
        """Move ``cp``'s positions past the records the consumer skipped without returning them: transaction markers
        and aborted records of a transactional input (another processor's output). Committing only up to the last
        record processed would leave the lag at 1 per marker forever, and the partition "stuck" on /health once the
        input goes quiet. Only between batches (:meth:`_commit_all`): every record the consumer returned has then
        been processed or sought back to, which a commit in the middle of a batch (isolate mode) cannot say."""
        for tp in cp.inputs:
            consumed = self._consumed_position(tp)
            if consumed is not None and consumed > cp.positions[tp]:
                cp.positions[tp] = consumed

    def _consumed_position(self, tp: TopicPartition) -> int | None:
        """The input consumer's position in ``tp``: the offset after the last record it returned, and after the
        transaction markers and aborted records it skipped beyond that. Every record it returned has been processed
        (or the partition was sought back), so the gap from a task's position holds no record. None when unknown."""
        consumer = self._consumer
        if consumer is None:
            return None
        try:
            state = consumer._subscription.subscription.assignment.state_value(tp)  # noqa: SLF001 - no sync API
        except Exception:  # noqa: BLE001 - not assigned (mid-rebalance), no subscription yet
            return None
        return state.position if state is not None and state.has_valid_position else None

    def _lag(self, tp: TopicPartition) -> int | None:
        """Records of ``tp`` waiting: its last stable offset (as last fetched) minus the committed offset; None
        while either is unknown."""
        end = self._end_offset(tp)
        committed = self.committed.get(tp)
        return max(0, end - committed) if end is not None and committed is not None else None

    def _forget_lag(self, partitions: Any) -> None:
        """Drop the lag series of partitions this worker no longer owns (their new owner exports them)."""
        for tp in partitions:
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(self.name, tp.topic, str(tp.partition))

    def _export_events(self) -> None:
        events = self.processor.events
        for event, n in events.items():
            delta = n - self._events_seen[event]
            if delta > 0:
                self.metrics.processor_events.labels(self.name, event).inc(delta)
                self._events_seen[event] = n

    async def _recover(self, q: int, exc: BaseException, rollback: bool = False) -> None:
        """Abort task ``q``'s transaction and start it over from its last commit, with state to match.

        ``rollback``: a record was just marked as poison; the replay dead-letters it (progress, not a failure).
        """
        cp = self.tasks.pop(q, None)
        if cp is None:
            return
        assert self._consumer is not None
        if isinstance(exc, ProducerFenced) or cp.fenced:
            # A newer owner took q (the group is moving it away from us), or the broker aborted a transaction
            # that outlived transaction_timeout_ms. Reopening here could fence the rightful owner, so stop
            # fetching q and rejoin the group, as Kafka Streams does: the assignment decides who opens q.
            log.warning("processor %s: %s was fenced (%r); pausing it and rejoining the group", self.name, cp, exc)
            await self._close(cp)
            self._consumer.pause(*[tp for tp in cp.inputs if tp in self._consumer.assignment()])
            self._consumer._coordinator.request_rejoin()  # noqa: SLF001 - aiokafka has no public enforce_rebalance
            return
        reached = dict(cp.positions)  # how far the aborted transaction got
        await self._close(cp)
        health = self.task_health[q]
        if rollback:
            await self._try_open(q)
            return
        if isinstance(exc, StateRecordError):
            self._check_until[q] = reached
        elif isinstance(exc, RECORD_REFUSALS):
            self._isolate_until[q] = (reached, ISOLATE_CHUNK)
        delay = self.breaker.on_failure(health, repr(exc), time.monotonic())
        if delay is None:
            log.warning("processor %s: aborting %s after %r; rewinding to %s", self.name, cp, exc,
                        cp.committed_offsets)
            await self._try_open(q)
            return
        self._consumer.pause(*[tp for tp in cp.inputs if tp in self._consumer.assignment()])
        log.error("processor %s: %s aborted %d times in a row (last: %r); circuit open, next try in %.1f s",
                  self.name, cp, health.failures, exc, delay)

    # ---- health --------------------------------------------------------------------------------------
    def health(self, now: float | None = None) -> dict[str, Any]:
        """This processor's part of the ``/health`` document: its state, problems and per-partition view."""
        now = time.monotonic() if now is None else now
        stuck_s = self.settings.health.stuck_partition_ms / 1000
        problems: list[str] = []
        partitions: dict[str, Any] = {}
        for q, inputs in sorted(self.assigned.items()):
            health = self.task_health.get(q)
            if health is None:
                continue
            waiting = sum(lag for tp in inputs if (lag := self._lag(tp)) is not None)
            since = now - health.last_commit
            name = "+".join(tp.topic for tp in inputs) + f"-{q}"
            partitions[name] = {
                "open": q in self.tasks,
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
            "state": self.state,
            "ready": self.ready,
            "circuit_state": str(self.circuit_state),
            "problems": problems,
            "partitions": partitions,
            "metrics": self.stats.as_dict(),
        }


    def partition_status(self, now: float | None = None) -> dict[TopicPartition, dict[str, Any]]:
        """What this worker knows of each input partition it owns, for ``/status``: committed and end (last
        stable) offsets, lag, the transaction's state, the last commit, restore progress and the circuit."""
        now = time.monotonic() if now is None else now
        wall = time.time()
        out: dict[TopicPartition, dict[str, Any]] = {}
        for q, inputs in sorted(self.assigned.items()):
            health = self.task_health.get(q)
            cp = self.tasks.get(q)
            restoring = self.restoring.get(q)
            for tp in inputs:
                end = self._end_offset(tp)
                since = now - health.last_commit if health is not None else None
                out[tp] = {
                    "task": q,
                    "committed_offset": self.committed.get(tp),
                    "end_offset": end,
                    "lag": self._lag(tp),
                    "transaction": cp.state.value if cp is not None else ("restoring" if restoring else "not open"),
                    "transactional_id": transactional_id(self.settings.app_id, self.psettings.consumer_group, inputs)
                    if self.transactional else None,
                    "last_commit": round(wall - since, 3) if since is not None else None,
                    "seconds_since_commit": round(since, 1) if since is not None else None,
                    "restore": dict(restoring) if restoring else None,
                    "circuit_state": str(health.circuit) if health is not None else None,
                    "consecutive_failures": health.failures if health is not None else 0,
                    "last_error": health.last_error if health is not None else None,
                }
        return out


def _pattern(headers: Any) -> tuple[str, str] | None:
    """``(type, interval)`` of an output whose headers name a pattern (:data:`PATTERN_HEADER`), else None."""
    found = dict(headers)
    pattern = found.get(PATTERN_HEADER)
    if pattern is None:
        return None
    return pattern.decode(errors="replace"), found.get("interval", b"").decode(errors="replace")


def dead_letter_headers(reason: str, error: str, processor: str, msg: Any) -> list[tuple[str, bytes]]:
    """The headers of a dead-letter copy of ``msg`` (anything with ``topic``, ``partition``, ``offset``): why it was
    refused and where it came from (the error cut to :data:`ERROR_HEADER_BYTES`)."""
    return [
        ("reason", reason.encode()),
        ("error", error.encode(errors="replace")[:ERROR_HEADER_BYTES]),
        ("processor", processor.encode()),
        ("source_topic", msg.topic.encode()),
        ("source_partition", str(msg.partition).encode()),
        ("source_offset", str(msg.offset).encode()),
    ]


async def _close_quietly(cp: Checkpoint) -> None:
    try:
        await cp.close()
    except Exception:  # noqa: BLE001 - the producer is gone either way; its successor fences it
        log.debug("closing %s failed", cp, exc_info=True)
