"""A task (Kafka Streams' StreamTask): partition q of a processor's input topics, and everything it owns.

A task owns its processor context (record metadata, stream time, punctuation), its stores, the buffered records of
its input partitions in timestamp order (:mod:`~stream_processor.engine.partition_group`), the records known to be
poison, its check and isolate modes, and its checkpoint: the open Kafka transaction that holds every effect of its
records and their offsets (:mod:`~stream_processor.engine.checkpoint`). The worker's loop and the test driver run
the same tasks; only their clients differ (Kafka's, or in-memory ones).

No record may stall a task or change state when it is dead-lettered:

- a record the processor refuses (:class:`~stream_processor.engine.exceptions.RecordError`, raised before it changes
  anything), an input above ``max_input_bytes``, and an undecodable one go to the dead-letter topic in the same
  transaction (:mod:`~stream_processor.engine.collector`);
- a record whose processing raised anything else, or whose output is refused, may have changed state half-way: it
  is marked as poison and :class:`Rollback` is raised; the task's owner aborts and reopens the task (state from the
  changelog) and the replay dead-letters that record instead of processing it, so state is exactly what it would be
  without it (a processing error is first replayed in *check* mode, since an earlier record of the transaction may
  have broken the state it tripped on);
- in check mode each record's state changes are encoded as it is processed, and a record whose state cannot be
  written is the poison; in *isolate* mode (a commit the broker refused for a record) the task commits small
  transactions, then one per record, and a record whose own transaction is refused is dead-lettered by reference.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)

from .breaker import TaskHealth
from .checkpoint import Checkpoint, CheckpointState, Sealed, transactional_id
from .collector import RecordCollector, Refused
from .exceptions import AgentTimeoutError, RecordError, StateRecordError
from .partition_group import PROGRESS_HEADER, PartitionGroup, Run
from .processor import Processor, ProcessorContext, current_context
from .settings import ProcessorSettings, Settings
from .state import TaskStores, restore

log = logging.getLogger(__name__)

#: Isolate mode commits this many records per transaction, then one per record in a chunk the broker refused.
ISOLATE_CHUNK = 64
#: Errors with which the broker refuses one record (not the connection): retrying the same transaction cannot help.
RECORD_REFUSALS = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError, CorruptRecordException,
                   InvalidTimestampError, UnsupportedForMessageFormatError)
#: A task's next transaction holds at most about this many input records while its previous one commits; past it
#: the task waits for that commit (a slow broker slows the worker instead of growing its memory).
PIPELINE_MAX_RECORDS = 50_000
#: A partition with more records buffered than this is paused until its task has taken them (a task waiting for
#: another input keeps fetching only up to here).
MAX_BUFFERED = 10_000


class Rollback(Exception):  # noqa: N818 - a control-flow signal, not an error of its own
    """Abort the task's transaction and replay it: a record was marked as poison (its cause is ``__cause__``)."""


class AgentAwaitsIO(BaseException):  # noqa: N818 - a signal through the task's error handling, not an error
    """An agent awaited real I/O while the task was run without an event loop (``TaskEnv.allow_io`` False: the test
    driver's synchronous calls)."""


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


class Task:
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
        self.group = PartitionGroup(inputs, env.psettings.max_task_idle_ms, self._lag)
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
                stores, changelog_from = TaskStores(env.processor.stores(), env.psettings.state_errors), None
            resets_before = stores.resets
            self.restoring = progress = {}
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
        self._stamps = []
        self._progress_time = self._progress_written = -1
        try:
            env.processor.init(ctx)
        except Exception:
            await self.close()
            raise
        log.debug("opened %s at %s in %.3f s: %d keys, %d changelog records read from %s", self, starts,
                  time.monotonic() - began, stores.keys(), restored.applied, changelog_from)

    async def close(self) -> None:
        """Close the task: tell the processor (its context is dropped), abort the open transaction, stop the
        producer. The task can be opened again; what it had not committed is read again then."""
        cp, ctx = self.checkpoint, self.context
        self.checkpoint = self.context = None
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
    async def process(self, limit: int | None = None, force: bool = False) -> int:
        """Process the buffered records, in timestamp order, as far as the inputs allow (at most ``limit``).

        Returns the records taken. Raises Rollback (a record was marked as poison), AgentTimeoutError, or what the
        producer raised; the owner then aborts and reopens the task (:class:`TaskManager`). ``force``: go on without
        empty partitions at once (the test driver, once nothing else can happen).
        """
        taken = 0
        cp = self.checkpoint
        while cp is not None and not self.commit_now and (limit is None or taken < limit):
            if cp.pending_count >= PIPELINE_MAX_RECORDS and self.inflight is not None:
                await self.wait_inflight()  # a slow commit: bound what the next transaction holds
            run = self.group.next_run(self.env.clock_ms(), None if limit is None else limit - taken, force)
            if run is None:
                break
            taken += len(run.records)
            if not cp.is_open:
                await cp.begin()
            if self.isolate_until is not None:
                await self._process_isolated(run)
            else:
                await self._process_run(run)
        return taken

    async def _process_run(self, run: Run) -> None:
        """Process one run of an input partition's records in offset order, ``batch_size`` at a time.

        Under exactly_once, outputs stay in the checkpoint's record batches until the commit hands them to the
        producer: aiokafka lets one batch per partition wait in its queue, so handing over a batch per chunk made
        the loop wait a produce round trip per chunk, and nothing is visible before the commit anyway. Under
        at_least_once each chunk's outputs are handed over at once, so they are visible without waiting for the
        commit.
        """
        cp = self.checkpoint
        assert cp is not None
        tp, messages = run.tp, run.records
        check = self.check_until is not None
        step = self.env.psettings.batch_size
        for start in range(0, len(messages), step):
            chunk = messages[start : start + step]
            done = await self._process_chunk(tp, chunk, run.enforced, check)
            if done < len(chunk):  # an agent's I/O used half the transaction timeout: commit what is done
                self.group.unread(tp, [*chunk[done:], *messages[start + step :]])
                chunk = chunk[:done]
                self.commit_now = True
            if chunk:
                if not self.env.transactional:
                    await cp.flush()
                cp.positions[tp] = chunk[-1].offset + 1
                cp.store_offset(tp, cp.positions[tp], len(chunk))
                self._stamp(chunk)
            if self.commit_now:
                return
        if check and self.check_until is not None and all(
                cp.positions[p] >= end for p, end in self.check_until.items()):
            self.check_until = None
            log.info("processor %s: %s left check mode at %s", self.env.name, self, dict(cp.positions))

    async def _process_isolated(self, run: Run) -> None:
        """Isolate mode: a transaction per :data:`ISOLATE_CHUNK` records; in a chunk the broker refuses, one per
        record; a record whose own transaction is refused is dead-lettered by reference."""
        cp = self.checkpoint
        assert cp is not None and self.isolate_until is not None
        until, step = self.isolate_until
        tp, messages = run.tp, run.records
        i = 0
        while i < len(messages):
            chunk = messages[i : i + step]
            if not cp.is_open:
                await cp.begin()
            await self._process_chunk(tp, chunk, run.enforced, check=True)
            cp.positions[tp] = chunk[-1].offset + 1
            cp.store_offset(tp, cp.positions[tp], len(chunk))
            self._stamp(chunk)
            try:
                await self.commit_inline()
            except RECORD_REFUSALS as exc:
                if len(chunk) == 1:
                    self.mark_poison(tp, chunk[0].offset, "uncommittable", repr(exc), by_reference=True)
                else:  # replay this chunk a record at a time
                    self.isolate_until = ({**until, tp: cp.positions[tp]}, 1)
                raise Rollback from exc
            i += len(chunk)
            if all(cp.positions[p] >= end for p, end in until.items()):
                self.isolate_until = None
                log.info("processor %s: %s left isolate mode at %s", self.env.name, self, dict(cp.positions))
                if messages[i:]:
                    await cp.begin()
                    await self._process_run(Run(tp, messages[i:], run.enforced))
                return

    def _stamp(self, records: list[Any]) -> None:
        """Remember the Kafka timestamps of records the open transaction now holds (latency at commit), and the
        largest one (progress records)."""
        stamps = [m.timestamp for m in records]
        self._stamps.append(stamps)
        if self.env.progress_topics:
            latest = max(stamps)
            if latest > self._progress_time:
                self._progress_time = latest

    async def _process_chunk(self, tp: TopicPartition, messages: list[Any], enforced: frozenset[str],
                             check: bool = False) -> int:
        """Decode, process and append the outputs of ``messages``; ``check``: encode each record's state changes.

        Returns how many were processed: all, or fewer when an agent's I/O used half the transaction timeout (the
        rest is to be committed first). Raises Rollback after marking a record as poison (a processing error, an
        output refused, a state change that cannot be written); the caller aborts and replays the transaction.
        """
        topic = tp.topic
        env = self.env
        processor = env.processor
        ctx, stores, cp = self.context, self.stores, self.checkpoint
        assert ctx is not None and stores is not None and cp is not None
        collector = env.collector
        run = ctx.run
        outputs = ctx.outputs
        max_input = env.psettings.max_input_bytes
        poison = self.poison.get(tp)
        refused_before = ctx.refused_before.get(topic, -1)
        ctx.partition = tp.partition
        ctx.enforced = enforced
        token = current_context.set(ctx)
        try:
            for i, msg in enumerate(messages):
                offset = msg.offset
                if poison and offset in poison:
                    reason, error, by_reference = poison[offset]
                    if offset >= refused_before:
                        collector.dead_letter(cp, msg, reason, error, omit_value=by_reference)
                    continue
                headers = msg.headers
                if headers and any(name == PROGRESS_HEADER for name, _ in headers):
                    continue  # another task's progress: time passing on this partition, not a record
                value = msg.value
                if value is not None and len(value) > max_input:
                    if offset >= refused_before:
                        collector.dead_letter(cp, msg, "too_large", f"value of {len(value)} bytes is above "
                                                                    f"max_input_bytes ({max_input})")
                    continue
                if check:
                    before = stores.take_dirty()
                waited = False
                try:
                    pending = run(processor, topic, offset, msg.timestamp, msg.key, headers, value)
                    if pending is not None:  # an agent awaiting I/O
                        if not env.allow_io:
                            pending.close()
                            raise AgentAwaitsIO
                        await self._await_agent(pending)
                        waited = time.monotonic() - cp.opened_at > env.agent_budget_s
                    if ctx.stream_time >= ctx.next_stream_due:
                        ctx.punctuate_stream_time()
                except RecordError as exc:
                    outputs.clear()
                    if check:
                        stores.merge_dirty(before)
                    if offset >= refused_before:  # else dead-lettered before a restart
                        collector.dead_letter(cp, msg, exc.reason, str(exc))
                    continue
                except AgentTimeoutError:
                    outputs.clear()
                    raise
                except Exception as exc:  # noqa: BLE001 - a processor bug must not stop the partition
                    outputs.clear()
                    if not env.allow_io and isinstance(exc, RuntimeError) and "no running event loop" in str(exc):
                        raise AgentAwaitsIO from exc  # the agent awaited I/O outside a loop
                    self._processing_failed(tp, offset, exc, check)
                if outputs:
                    try:
                        collector.emit(cp, outputs)
                    except Refused as refused:
                        self.mark_poison(tp, offset, refused.reason, refused.error)
                        raise Rollback from refused
                if ctx.committed_callbacks:
                    cp.pending_callbacks.extend(ctx.committed_callbacks)
                    ctx.committed_callbacks.clear()
                if check:
                    try:
                        stores.check_dirty(env.limits.get(env.changelog))
                    except StateRecordError as exc:
                        self.mark_poison(tp, offset, exc.reason, str(exc))
                        raise Rollback from exc
                    stores.merge_dirty(before)
                if waited and not check:
                    return i + 1
        finally:
            current_context.reset(token)
        return len(messages)

    def _processing_failed(self, tp: TopicPartition, offset: int, exc: Exception, check: bool) -> None:
        """A processor raised something other than a RecordError on ``tp``@``offset``: raise Rollback.

        Out of check mode, an earlier record of this transaction may have broken the state this one tripped on: the
        replay runs in check mode up to here first, which finds such a record; this one is blamed only if it fails
        again there.
        """
        if not check:
            log.warning("processor %s failed on %s@%d (%r); replaying in check mode", self.env.name, tp, offset, exc)
            until = self.check_until if self.check_until is not None else {}
            until[tp] = max(until.get(tp, 0), offset + 1)
            self.check_until = until
            raise Rollback from exc
        log.exception("processor %s failed on %s@%d", self.env.name, tp, offset)
        self.mark_poison(tp, offset, "processing_error", repr(exc))
        raise Rollback from exc

    async def _await_agent(self, pending: Any) -> None:
        """Run an agent's await of real I/O to the end, within half the transaction timeout.

        Raises AgentTimeoutError past it: the transaction would be aborted by the broker anyway.
        """
        budget = self.env.agent_budget_s
        try:
            async with asyncio.timeout(budget):
                await pending
        except TimeoutError:
            raise AgentTimeoutError(f"agent {self.env.name} awaited I/O for more than {budget:.1f} s on one record "
                                    "(half of kafka.transaction_timeout_ms)") from None

    def mark_poison(self, tp: TopicPartition, offset: int, reason: str, error: str, by_reference: bool = False) -> None:
        """Remember ``tp``@``offset`` as poison: the replay dead-letters it instead of processing it."""
        log.warning("processor %s: %s@%d is poison (%s: %s); its transaction is replayed without it", self.env.name,
                    tp, offset, reason, error[:300])
        self.poison.setdefault(tp, {})[offset] = (reason, error, by_reference)

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
