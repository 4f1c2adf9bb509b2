"""A task (Kafka Streams' StreamTask): partition q of a processor's input topics, and everything it owns.

A task owns its processor context (record metadata, stream time, punctuation), its stores, the buffered records of
its input partitions in timestamp order (:mod:`~stream_processor.engine.partition_group`), the records known to be
poison and its check and isolate modes (how it processes them: :mod:`~stream_processor.engine.task_processing`), and
its checkpoint: the open Kafka transaction that holds every effect of its records and their offsets
(:mod:`~stream_processor.engine.checkpoint`). The worker's loop and the test driver run the same tasks; only their
clients differ (Kafka's, or in-memory ones).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from .breaker import TaskHealth
from .checkpoint import Checkpoint, CheckpointState, Sealed, transactional_id
from .collector import RecordCollector, Refused
from .local_tables import attach, detach
from .partition_group import PROGRESS_HEADER, PartitionGroup
from .processor import Processor, ProcessorContext
from .rocksdb_store import task_files
from .settings import ProcessorSettings, Settings
from .state import TaskStores, restore
from .task_processing import (
    ISOLATE_CHUNK,
    MAX_BUFFERED,
    PIPELINE_MAX_RECORDS,
    RECORD_REFUSALS,
    AgentAwaitsIO,
    Processing,
    Rollback,
)

__all__ = ["ISOLATE_CHUNK", "MAX_BUFFERED", "PIPELINE_MAX_RECORDS", "RECORD_REFUSALS", "AgentAwaitsIO", "Rollback",
           "Task", "TaskEnv"]

log = logging.getLogger(__name__)


@dataclass
class TaskEnv:
    """What the tasks of one processor share: the processor, its settings, its clients and its limits.

    ``consumer``: the processor's input consumer (seek, pause, lag); ``restore_consumer``: a group-less
    ``read_committed`` consumer for changelogs; ``new_producer(inputs)``: a producer for the task of ``inputs``
    (transactional under exactly_once); ``clock_ms``: the clock of idle deadlines (ms); ``progress_topics``: the
    outputs written to the input's partition number, which get a progress record per commit.
    """

    processor: Processor
    settings: Settings
    consumer: Any
    restore_consumer: Any
    new_producer: Callable[[tuple[TopicPartition, ...]], Any]
    limits: dict[str, int] = field(default_factory=dict)
    clock_ms: Callable[[], float] = lambda: time.monotonic() * 1000
    #: Called with the changelog records a task's opening read.
    on_restored: Callable[[int], None] = lambda n: None
    #: Called after each commit: the task, what it committed, its records' Kafka timestamps, the commit's seconds.
    on_committed: Callable[[Task, Sealed, list[list[int]], float], None] = lambda task, sealed, stamps, s: None
    #: Called when a commit fails (before the task is aborted).
    on_commit_failed: Callable[[Task], None] = lambda task: None
    #: False: the tasks run without an event loop (stepped by the test driver); an agent awaiting real I/O raises
    #: AgentAwaitsIO instead.
    allow_io: bool = True
    #: True: an input with nothing buffered is waited for until the owner forces the task on (the test driver, once
    #: nothing else can happen), whatever max_task_idle_ms says (see PartitionGroup).
    idle_until_forced: bool = False

    def __post_init__(self) -> None:
        self.psettings: ProcessorSettings = self.processor.settings
        self.name = self.processor.name
        self.transactional = self.psettings.processing_mode == "exactly_once"
        from .topics import changelog_topic

        self.changelog = changelog_topic(self.settings, self.name)
        self.collector = RecordCollector(self.name, self.psettings.dead_letter_topic, self.limits)
        self.progress_topics = tuple(self.psettings.copartitioned_outputs())
        self.agent_budget_s = self.settings.kafka.transaction_timeout_ms / 2000

    @property
    def written_topics(self) -> list[str]:
        """Every topic a task may write to: outputs, dead letters, the changelog."""
        return [*self.processor.output_topics, self.psettings.dead_letter_topic, self.changelog]


class Task(Processing):
    """Partition ``q`` of the processor's input topics (``inputs``: partition q of each); see the module docstring.

    Open it with :meth:`open`; :meth:`add` fetched records, :meth:`process` them, :meth:`seal` its transaction for
    the commit pipeline; :meth:`close` it. It outlives its openings: a task reopened after an abort keeps its poison
    records, modes and health.
    """

    def __init__(self, q: int, inputs: tuple[TopicPartition, ...], env: TaskEnv) -> None:
        self.q = q
        self.inputs = inputs
        self.env = env
        self.name = "+".join(tp.topic for tp in inputs) + f"-{q}"
        self.checkpoint: Checkpoint | None = None
        self.context: ProcessorContext | None = None
        self.stores: TaskStores | None = None
        self.group = PartitionGroup(inputs, env.psettings.max_task_idle_ms, self._lag, env.idle_until_forced)
        self.health = TaskHealth(last_commit=time.monotonic())
        self.poison: dict[TopicPartition, dict[int, tuple[str, str, bool]]] = {}
        self.check_until: dict[TopicPartition, int] | None = None
        self.isolate_until: tuple[dict[TopicPartition, int], int] | None = None
        self.committed: dict[TopicPartition, int] = {}  # next offset to read per input, as last committed
        self.restoring: dict[str, int] | None = None  # changelog restore progress while opening
        self.open_error: Exception | None = None  # why the last attempt to open it failed
        self.inflight: asyncio.Task[Any] | None = None  # this task's commit in flight (the commit pipeline's)
        self.commit_now = False  # an agent's I/O used half the transaction timeout: commit after this batch
        self.paused: set[TopicPartition] = set()  # paused because their buffer is full
        self._stamps: list[list[int]] = []  # Kafka timestamps of the records in the open transaction
        self._fetched: dict[TopicPartition, int] = {}  # the next offset expected from the consumer
        self._last_stream_time = -1
        self._previous: Checkpoint | None = None  # the last checkpoint, if it closed with everything committed
        self._progress_time = -1  # the largest input timestamp processed (progress records)
        self._progress_written = -1

    def __str__(self) -> str:
        return self.name

    @property
    def is_open(self) -> bool:
        return self.checkpoint is not None

    @property
    def pending_count(self) -> int:
        """Input records in the open transaction."""
        return self.checkpoint.pending_count if self.checkpoint is not None else 0

    @property
    def transactional_id(self) -> str | None:
        env = self.env
        return transactional_id(env.settings.app_id, env.psettings.consumer_group, self.inputs) \
            if env.transactional else None

    # ---- opening and closing ---------------------------------------------------------------------------------------
    async def open(self, keep_store: bool = False) -> None:
        """Fence, bring the state up to date, seek the inputs, init the processor.

        ``keep_store``: this worker's own clean store of the task (kept across a rebalance) is brought up to date by
        reading only the changelog written since its last commit. Raises what the producer, the broker or the
        restore raised (the task stays closed).
        """
        env = self.env
        producer = env.new_producer(self.inputs)
        began = time.monotonic()
        previous, self._previous = self._previous, None
        try:
            # InitProducerId: fences the previous owner of this transactional.id and completes or aborts its open
            # transaction, so the changelog and offsets read below are final.
            await producer.start()
            keep = (keep_store and previous is not None and env.transactional and self.stores is not None
                    and not self.stores.dirty and previous.changelog_position is not None)
            if keep:
                assert previous is not None and self.stores is not None
                stores, changelog_from = self.stores, previous.changelog_position
            else:
                files = task_files(env.psettings.store, env.settings.app_id, env.changelog, self.q)
                stores, changelog_from = TaskStores(env.processor.stores(), env.psettings.state_errors, files), None
            resets_before = stores.resets
            progress: dict[str, int] = {}
            self.restoring = progress
            try:
                restored = await restore(stores, env.restore_consumer, TopicPartition(env.changelog, self.q),
                                         changelog_from, progress)
            finally:
                self.restoring = None
            env.on_restored(restored.applied)
            starts: dict[TopicPartition, int] = {}
            committed: dict[TopicPartition, int | None] = {}
            for tp in self.inputs:
                # Under exactly_once the offset marker is committed with the state it describes; the group's
                # committed offset is the fallback (at_least_once, or a changelog written before markers).
                offset = restored.offset(tp.topic, len(self.inputs) == 1) if env.transactional else None
                if offset is None:
                    offset = await env.consumer.committed(tp)
                committed[tp] = offset
                starts[tp] = offset if offset is not None else (await env.consumer.beginning_offsets([tp]))[tp]
            cp = Checkpoint(self.inputs, group_id=env.psettings.consumer_group, producer=producer,
                            consumer=env.consumer, store=stores, changelog_topic=env.changelog,
                            transactional=env.transactional, changelog_limit=env.limits.get(env.changelog))
            await cp.prepare(env.written_topics)
        except BaseException:
            await producer.stop()
            raise
        self.group.clear()
        for tp in self.inputs:
            env.consumer.seek(tp, starts[tp])
            cp.committed_offsets[tp] = committed[tp]
            cp.positions[tp] = self._fetched[tp] = self.committed[tp] = starts[tp]
        cp.changelog_position = restored.end  # the store reflects every changelog record before this offset
        if stores.resets > resets_before:
            env.processor.events["state_reset"] += stores.resets - resets_before
        ctx = ProcessorContext(env.name, self.q, stores)
        ctx.stream_time = restored.stream_time
        processed = dict(restored.positions)
        if keep and previous is not None:  # it read only the changelog since its own last commit: maybe no marker
            ctx.stream_time = max(ctx.stream_time, self._last_stream_time)
            for tp, position in previous.positions.items():
                processed[tp.topic] = max(processed.get(tp.topic, -1), position)
        ctx.refused_before = {tp.topic: processed[tp.topic] for tp in self.inputs
                              if processed.get(tp.topic, -1) > starts[tp]}
        self.checkpoint, self.context, self.stores = cp, ctx, stores
        attach(env.name, self.q, stores)  # what its tables read outside a record (a timer)
        self._stamps = []
        self._progress_time = self._progress_written = -1
        try:
            env.processor.init(ctx)
        except Exception:
            await self.close()
            raise
        if log.isEnabledFor(logging.DEBUG):  # counting keys scans a store on disk
            log.debug("opened %s at %s in %.3f s: %d keys, %d changelog records read from %s", self, starts,
                      time.monotonic() - began, stores.keys(), restored.applied, changelog_from)

    async def close(self) -> None:
        """Close the task: tell the processor (its context is dropped), abort the open transaction, stop the
        producer. The task can be opened again; what it had not committed is read again then."""
        cp, ctx = self.checkpoint, self.context
        self.checkpoint = self.context = None
        if self.stores is not None:
            detach(self.env.name, self.q, self.stores)
        self._stamps = []
        self.group.clear()
        self.commit_now = False
        if ctx is not None:
            self._last_stream_time = ctx.stream_time
            try:
                self.env.processor.close(ctx)
            except Exception:  # noqa: BLE001 - the task is closing either way
                log.exception("processor %s: close of %s failed", self.env.name, self)
        if cp is not None:
            # Nothing open, nothing committing: the store is exactly what the changelog holds up to our last commit.
            self._previous = cp if cp.state is CheckpointState.IDLE and cp.sealed is None else None
            if self.stores is not None:  # stores on disk: a checkpoint only when everything they hold is committed
                self.stores.close(cp.changelog_position if self._previous is cp else None)
            try:
                await cp.close()
            except Exception:  # noqa: BLE001 - the producer is gone either way; its successor fences it
                log.debug("closing %s failed", self, exc_info=True)

    @property
    def fenced(self) -> bool:
        """True once the task's producer learned that a newer owner fenced it."""
        return self.checkpoint is not None and self.checkpoint.fenced

    # ---- input -----------------------------------------------------------------------------------------------------
    def add(self, tp: TopicPartition, records: list[Any]) -> None:
        """Buffer records fetched for input ``tp`` (records fetched before a seek, below the task's position,
        are dropped: never processed twice)."""
        if self.checkpoint is None or not records:
            return
        expected = self._fetched[tp]
        if records[0].offset < expected:
            records = [m for m in records if m.offset >= expected]
            if not records:
                return
        self._fetched[tp] = records[-1].offset + 1
        self.group.add(tp, records)

    def _lag(self, tp: TopicPartition) -> int | None:
        """Records of ``tp`` on the broker not yet fetched: its last stable offset minus the consumer's position."""
        consumer = self.env.consumer
        end = consumer.last_stable_offset(tp)
        position = consumer.consumed_position(tp)
        return None if end is None or position is None else max(0, end - position)

    # ---- processing ------------------------------------------------------------------------------------------------
    def _stamp(self, records: list[Any]) -> None:
        """Remember the Kafka timestamps of records the open transaction now holds (latency at commit), and the
        largest one (progress records)."""
        stamps = [m.timestamp for m in records]
        self._stamps.append(stamps)
        if self.env.progress_topics:
            latest = max(stamps)
            if latest > self._progress_time:
                self._progress_time = latest

    async def punctuate_wall_clock(self, now_ms: int) -> None:
        """Fire the wall-clock punctuations due at ``now_ms`` in the task's open transaction (opened if need be).

        Raises what the punctuation raised, or RuntimeError for an output refused (the owner aborts the task).
        """
        ctx, cp = self.context, self.checkpoint
        if ctx is None or cp is None or not ctx.wall_clock_due(now_ms):
            return
        try:
            if not cp.is_open:
                await cp.begin()
            ctx.punctuate_wall_clock(now_ms)
            self.env.collector.emit(cp, ctx.outputs)
        except Refused as refused:
            raise RuntimeError(f"a wall-clock punctuation's output is refused: {refused.error}") from None
        finally:
            ctx.outputs.clear()
        if ctx.committed_callbacks:
            cp.pending_callbacks.extend(ctx.committed_callbacks)
            ctx.committed_callbacks.clear()

    # ---- committing ------------------------------------------------------------------------------------------------
    def seal(self, between_batches: bool = True) -> tuple[Sealed, list[list[int]]]:
        """End the open transaction (:meth:`Checkpoint.seal`): its offsets (past the records an agent still buffers,
        and past the transaction markers the consumer skipped, ``between_batches``), its progress records and its
        changelog. Returns it with the Kafka timestamps of its records. Raises StateRecordError (a state change that
        cannot be written) or TransactionStateError.
        """
        cp, ctx = self.checkpoint, self.context
        assert cp is not None and ctx is not None
        if between_batches:
            self._skip_unreturned()
        # Records an agent still buffers (stream.take) are not committed: a restart re-reads them. A transaction
        # of punctuation only (a take() deadline) still moves the offsets a batch held before.
        held = ctx.held
        for tp in self.inputs:
            target = min(cp.positions[tp], held.get(tp.topic, cp.positions[tp]))
            done = cp.committed_offsets.get(tp)
            if tp in cp.pending_offsets or (done is not None and done < target):
                cp.pending_offsets[tp] = target
        if self._progress_time > self._progress_written:
            for topic in self.env.progress_topics:
                cp.append(topic, b"", None, [(PROGRESS_HEADER, b"")], self.q, self._progress_time)
            self._progress_written = self._progress_time
        sealed = cp.seal(ctx.stream_time)
        stamps, self._stamps = self._stamps, []
        return sealed, stamps

    def _skip_unreturned(self) -> None:
        """Move the positions past the records the consumer skipped without returning them: transaction markers and
        aborted records of a transactional input (another processor's output). Committing only up to the last record
        processed would leave the lag at 1 per marker forever, and the partition "stuck" on /health once the input
        goes quiet. Only for a partition with nothing buffered, between batches: every record the consumer returned
        has then been processed, which a commit in the middle of a batch (isolate mode) cannot say."""
        cp = self.checkpoint
        assert cp is not None
        for tp in self.inputs:
            if self.group.buffered(tp) or self._fetched[tp] != cp.positions[tp]:
                continue
            consumed = self.env.consumer.consumed_position(tp)
            if consumed is not None and consumed > cp.positions[tp]:
                cp.positions[tp] = self._fetched[tp] = consumed

    async def wait_inflight(self) -> None:
        """Wait for the commit in flight, if any; raise what it raised (the task must then be aborted)."""
        inflight = self.inflight
        if inflight is None:
            return
        if not inflight.done():
            await asyncio.wait([inflight])
        if not inflight.cancelled() and inflight.exception() is not None:
            raise inflight.exception()  # type: ignore[misc]

    async def commit_inline(self, between_batches: bool = False) -> int:
        """Seal and commit the open transaction and wait for it (isolate mode, the test driver); returns its input
        records. Raises what the commit raised (the task must then be aborted)."""
        await self.wait_inflight()
        sealed, stamps = self.seal(between_batches)
        return await self.complete(sealed, stamps)

    async def complete(self, sealed: Sealed, stamps: list[list[int]]) -> int:
        """Commit ``sealed`` (:meth:`Checkpoint.complete`); returns its input records. On success the committed
        offsets move, the poison records below them are forgotten, the transaction's ``on_commit`` callbacks run and
        ``env.on_committed`` is told. Raises what the commit raised (the task must then be aborted)."""
        cp = self.checkpoint
        assert cp is not None
        started = time.perf_counter()
        try:
            count = await cp.complete(sealed)
        except BaseException:
            self.env.on_commit_failed(self)
            raise
        for tp, offset in sealed.offsets.items():
            self.committed[tp] = offset
            poison = self.poison.get(tp)
            if poison:
                for done in [o for o in poison if o < offset]:
                    del poison[done]
        for callback in sealed.callbacks:
            callback()
        self.env.on_committed(self, sealed, stamps, time.perf_counter() - started)
        return count
