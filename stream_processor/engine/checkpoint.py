"""The exactly-once unit: every effect of one input partition's records and its offset, in one transaction.

A :class:`Checkpoint` belongs to one task: partition number ``q`` of the processor's input topics (one input
partition, or the partition group ``q`` of co-partitioned inputs, as Kafka Streams groups them), and owns one
producer. Under ``exactly_once`` that producer is transactional with a stable ``transactional.id`` derived from
the consumer group, the input topics and ``q`` (Kafka Streams' first EOS design, the only one aiokafka can do
since it sends ``TxnOffsetCommit`` without group metadata): whoever owns ``q`` next starts a producer with the
same id, which fences this one and aborts its open transaction. Everything caused by records of the task's
input partitions (output records to any topic and partition, dead letters, the changelog writes of changelog
partition ``q``) is sent by this producer, and :meth:`Checkpoint.commit` runs this recipe:

1. send the dirty state to changelog partition ``q``, then one offset marker per input partition (its next
   offset, see :mod:`stream_processor.engine.state`), so that state and offsets can be read back together; a state
   record that cannot be encoded or is larger than the changelog allows raises
   :class:`~stream_processor.engine.exceptions.StateRecordError` before anything is sent;
2. flush: wait until every record sent in this transaction is acknowledged (fail if any is not), while
3. every input partition's next offset is added to the transaction (``send_offsets_to_transaction``);
4. commit the transaction.

Any error aborts the transaction; the owner then rewinds the task's inputs to their last committed offsets and
rebuilds the state from the changelog (see :mod:`stream_processor.engine.task_manager`).

The producer is the engine's client interface (:mod:`stream_processor.engine.clients`): aiokafka's producer with two
properties, ``fenced`` and ``in_transaction``, or the test driver's in-memory one. Acknowledgements that are already
in (the in-memory producer's always are) are read without waiting on the event loop.

Commits are pipelined: :meth:`Checkpoint.seal` takes the open transaction's content (step 1 is done there, with no
network wait) and :meth:`Checkpoint.complete` runs steps 2-4 for it, while the owner goes on processing the next
records into a new transaction held in memory. That one is handed to the producer (``begin_transaction`` and its
sends) only once the sealed one is committed, so one transaction at a time is ever at the broker, as a
transactional producer requires. If the sealed one fails, the owner aborts and reopens the task, which drops the
one held in memory too: nothing of it was sent, and the reopened state comes from the changelog.

Under ``at_least_once`` the same recipe runs without a transaction: the producer is idempotent, the
outputs are acknowledged before step 1 (so a crash repeats outputs rather than losing them), step 3 is a
plain consumer offset commit after the flush, no offset marker is written, and a crash may repeat records.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import OffsetAndMetadata, TopicPartition

from .exceptions import TransactionStateError
from .kafka_internals import BatchBuilder, Partitioner
from .state import TaskStores, offset_marker


class CheckpointState(enum.Enum):
    """Where a checkpoint is in its cycle; the valid moves are in ``_TRANSITIONS``."""

    IDLE = "idle"  # no transaction open; nothing pending
    OPEN = "open"  # a transaction is open and may hold records and offsets
    COMMITTING = "committing"
    ABORTING = "aborting"
    CLOSED = "closed"


_TRANSITIONS: dict[CheckpointState, frozenset[CheckpointState]] = {
    CheckpointState.IDLE: frozenset({CheckpointState.OPEN, CheckpointState.CLOSED}),
    CheckpointState.OPEN: frozenset({CheckpointState.COMMITTING, CheckpointState.ABORTING}),
    # COMMITTING -> OPEN: the next transaction opens (in memory) while the sealed one commits.
    CheckpointState.COMMITTING: frozenset({CheckpointState.IDLE, CheckpointState.OPEN, CheckpointState.ABORTING}),
    CheckpointState.ABORTING: frozenset({CheckpointState.IDLE, CheckpointState.CLOSED}),
    CheckpointState.CLOSED: frozenset(),
}


# Kafka's default partitioner (murmur2 of the key), so keyed outputs land where any Kafka client puts them.
_PARTITIONER = Partitioner()


class Sealed:
    """One transaction's content, taken by :meth:`Checkpoint.seal` and committed by :meth:`Checkpoint.complete`.

    ``batches`` are the record batches (outputs and dead letters, then under exactly_once the changelog) not yet
    handed to the producer, ``futures`` the acknowledgements of those already handed over, ``changelog`` (at_least_once
    only) the changelog batches, sent once every output is acknowledged; ``offsets`` the next offset per input
    partition; ``count`` the input records; ``failed`` and ``outputs`` the dead letters by reason and the output
    records by topic; ``callbacks`` what the processor asked to run once it commits (``ProcessorContext.on_commit``).
    """

    __slots__ = ("batches", "futures", "changelog", "offsets", "count", "failed", "outputs", "callbacks", "begun")

    def __init__(self, checkpoint: Checkpoint) -> None:
        cp = checkpoint
        self.batches = cp._take_batches()  # noqa: SLF001 - the checkpoint's own helper
        self.futures, cp._futures = cp._futures, []  # noqa: SLF001
        self.changelog: list[tuple[str, int, BatchBuilder]] = []
        self.offsets = cp.pending_offsets
        self.count = cp.pending_count
        self.failed = cp.pending_failed
        self.outputs = cp.pending_outputs
        self.callbacks = cp.pending_callbacks
        self.begun = cp._begun  # noqa: SLF001 - whether begin_transaction ran for it


def transactional_id(app_id: str, group: str, inputs: Sequence[TopicPartition]) -> str:
    """The stable ``transactional.id`` of the task of ``inputs`` (partition q of each input topic).

    The same on every worker and restart: ``<app_id>-<group>-<topic>-<q>`` for one input, the sorted topics joined
    by ``+`` for co-partitioned inputs.
    """
    topics = "+".join(sorted(tp.topic for tp in inputs))
    return f"{app_id}-{group}-{topics}-{inputs[0].partition}"


class Checkpoint:
    """Outputs, changelog writes and the offsets of one task's input partitions, committed together.

    Use: :meth:`prepare` the output topics; then per batch :meth:`begin` (if not open), :meth:`append`
    each output, :meth:`flush`, :meth:`store_offset`; when due :meth:`commit`; on error :meth:`abort`;
    finally :meth:`close`. Outputs are built into aiokafka record batches per output partition (one future
    per batch, not per record). ``changelog_limit`` bounds a changelog record in bytes (None: unbounded).

    Raises:
        TransactionStateError: a call that the current :class:`CheckpointState` does not allow.
    """

    def __init__(
        self,
        inputs: Sequence[TopicPartition],
        *,
        group_id: str,
        producer: Any,
        consumer: Any,
        store: TaskStores | None,
        changelog_topic: str | None,
        transactional: bool,
        changelog_limit: int | None = None,
    ) -> None:
        if not inputs or len({tp.partition for tp in inputs}) != 1:
            raise ValueError(f"a task's inputs are partition q of each input topic, got {list(inputs)}")
        self.inputs = tuple(inputs)
        self.task = inputs[0].partition  # q: also the changelog partition
        self.group_id = group_id
        self.producer = producer
        self.consumer = consumer
        self.store = store
        self.changelog_topic = changelog_topic
        self.transactional = transactional
        self.changelog_limit = changelog_limit
        self.state = CheckpointState.IDLE
        # Per input partition: the next offset to read as last committed by us, and the next one to process
        # (records below it are stale fetches).
        self.committed_offsets: dict[TopicPartition, int | None] = dict.fromkeys(self.inputs)
        self.positions: dict[TopicPartition, int] = dict.fromkeys(self.inputs, 0)
        self.pending_offsets: dict[TopicPartition, int] = {}  # next offsets to read, once this transaction commits
        self.pending_count = 0  # input records in the open transaction
        self.pending_failed: Counter[str] = Counter()  # of which went to the dead-letter topic, by reason
        self.pending_outputs: Counter[str] = Counter()  # output records per topic in the open transaction
        self.pending_callbacks: list[Any] = []  # run once the open transaction commits
        self.changelog_position: int | None = None  # changelog offset where our last commit's writes begin
        self.opened_at = 0.0  # time.monotonic() when the open transaction began
        self.sealed: Sealed | None = None  # the transaction being committed (or failed, until aborted)
        self._begun = False  # begin_transaction ran for the open transaction (deferred while one is committing)
        self._futures: list[tuple[str, asyncio.Future[Any]]] = []  # (topic, future) per batch handed over
        self._builders: dict[tuple[str, int], BatchBuilder] = {}  # open batch per output topic and partition
        self._full: list[tuple[str, int, BatchBuilder]] = []  # filled batches not yet handed over
        self._topic_partitions: dict[str, list[int]] = {}
        self._key_partitions: dict[tuple[str, bytes], int] = {}

    def _move(self, to: CheckpointState) -> None:
        if to not in _TRANSITIONS[self.state]:
            raise TransactionStateError(f"checkpoint {self}: cannot go from {self.state.value} to {to.value}")
        self.state = to

    def __str__(self) -> str:
        return "+".join(tp.topic for tp in self.inputs) + f"-{self.task}"

    @property
    def is_open(self) -> bool:
        """True while a transaction is open."""
        return self.state is CheckpointState.OPEN

    async def begin(self) -> None:
        """Open a transaction (under ``exactly_once``).

        While a sealed transaction is committing, the new one is held in memory: the producer begins it when
        :meth:`complete` hands it over.
        """
        pipelined = self.state is CheckpointState.COMMITTING
        self._move(CheckpointState.OPEN)
        self.opened_at = time.monotonic()
        self._begun = False
        if self.transactional and not pipelined:
            await self.producer.begin_transaction()
            self._begun = True

    async def prepare(self, topics: Iterable[str]) -> None:
        """Learn the partitions of every topic this checkpoint may write to; call before the first append."""
        for topic in topics:
            self._topic_partitions[topic] = sorted(await self.producer.partitions_for(topic))

    @property
    def prepared_topics(self) -> dict[str, list[int]]:
        """The topics :meth:`prepare` learned (only these may be appended to), with their partitions."""
        return self._topic_partitions

    def append(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> None:
        """Add one output record to the open transaction's batch for its topic and partition.

        The partition is ``partition`` or, as Kafka's default partitioner does, murmur2 of ``key`` (random
        for no key). ``timestamp``: the record's (ms since the epoch); None or negative: the producer's clock when
        it is sent. Nothing goes to the network until :meth:`flush`; :meth:`commit` waits for the acks.
        """
        if self.state is not CheckpointState.OPEN:
            raise TransactionStateError(f"checkpoint {self}: append while {self.state.value}")
        if partition is None:
            partition = self._partition_of(topic, key)
        builders = self._builders
        builder = builders.get((topic, partition))
        if builder is None:
            builder = builders[(topic, partition)] = self.producer.create_batch()
        if timestamp is not None and timestamp < 0:
            timestamp = None
        if builder.append(timestamp=timestamp, key=key, value=value, headers=headers or []) is None:
            self._full.append((topic, partition, builder))
            builder = builders[(topic, partition)] = self.producer.create_batch()
            builder.append(timestamp=timestamp, key=key, value=value, headers=headers or [])

    def _partition_of(self, topic: str, key: bytes | None) -> int:
        cached = self._key_partitions.get((topic, key)) if key is not None else None
        if cached is not None:
            return cached
        partitions = self._topic_partitions.get(topic)
        if not partitions:
            raise TransactionStateError(f"checkpoint {self}: topic {topic!r} was not prepared")
        partition = _PARTITIONER(key, partitions, partitions)
        if key is not None:
            self._key_partitions[(topic, key)] = partition
        return partition

    async def flush(self) -> None:
        """Hand every batch built so far to the producer; their acknowledgements are awaited by :meth:`commit`.

        Raises TransactionStateError under exactly_once while the previous transaction is still committing.
        """
        if self.transactional and not self._begun:
            raise TransactionStateError(f"checkpoint {self}: flush while the previous transaction commits")
        self._futures.extend(await self._send(self._take_batches()))

    def _take_batches(self) -> list[tuple[str, int, BatchBuilder]]:
        batches = self._full + [(topic, part, builder) for (topic, part), builder in self._builders.items()]
        self._full, self._builders = [], {}
        return batches

    async def _send(self, batches: list[tuple[str, int, BatchBuilder]]) -> list[tuple[str, asyncio.Future[Any]]]:
        send_batch = self.producer.send_batch
        return [(topic, await send_batch(builder, topic, partition=partition)) for topic, partition, builder in batches]

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> None:
        """:meth:`append` one record and :meth:`flush` at once."""
        self.append(topic, value, key=key, headers=headers, partition=partition, timestamp=timestamp)
        await self.flush()

    def store_offset(self, tp: TopicPartition, next_offset: int, count: int) -> None:
        """Record that input partition ``tp`` up to ``next_offset`` (exclusive) is processed in this transaction."""
        if self.state is not CheckpointState.OPEN:
            raise TransactionStateError(f"checkpoint {self}: store_offset while {self.state.value}")
        if tp not in self.positions:
            raise TransactionStateError(f"checkpoint {self}: {tp} is not one of its inputs")
        self.pending_offsets[tp] = next_offset
        self.pending_count += count

    def _reset_pending(self) -> None:
        self.pending_offsets = {}
        self.pending_count = 0
        self.pending_failed = Counter()
        self.pending_outputs = Counter()
        self.pending_callbacks = []

    async def commit(self) -> int:
        """:meth:`seal` and :meth:`complete`: changelog, flush, offsets, commit; returns the input records committed.

        Raises whatever the producer or broker raised; the checkpoint must then be aborted.
        """
        return await self.complete(self.seal())

    def seal(self, stream_time: int | None = None) -> Sealed:
        """End the open transaction: append the changelog and offset markers (with the task's ``stream_time``, ms),
        and take its content for :meth:`complete`. No network wait; the checkpoint is COMMITTING, and :meth:`begin`
        may open the next transaction at once.

        Raises TransactionStateError when no transaction is open or one is still committing, and StateRecordError
        (before anything is appended) for a state record that cannot be written.
        """
        if self.state is not CheckpointState.OPEN:
            raise TransactionStateError(f"checkpoint {self}: commit while {self.state.value}")
        if self.sealed is not None:
            raise TransactionStateError(f"checkpoint {self}: commit while the previous transaction commits")
        if self.transactional:
            self._append_changelog(stream_time)
            sealed = Sealed(self)
        else:
            # Without a transaction the outputs must be acknowledged before the state that produced them is
            # written: a crash in between then repeats outputs (at least once) instead of losing them.
            sealed = Sealed(self)
            self._append_changelog(stream_time)
            sealed.changelog = self._take_batches()
        self._reset_pending()
        self._move(CheckpointState.COMMITTING)
        self.sealed = sealed
        return sealed

    async def complete(self, sealed: Sealed) -> int:
        """Commit a transaction :meth:`seal` took: hand its batches to the producer, wait for every ack, add the
        offsets, commit. Returns its input records.

        Raises whatever the producer or broker raised; the checkpoint must then be aborted (which aborts this
        transaction and drops any opened after it).
        """
        if sealed is not self.sealed:
            raise TransactionStateError(f"checkpoint {self}: that transaction is not the one committing")
        if self.transactional and not sealed.begun:
            await self.producer.begin_transaction()
            sealed.begun = True
        futures = sealed.futures + await self._send(sealed.batches)
        offsets = {tp: OffsetAndMetadata(offset, "") for tp, offset in sealed.offsets.items()}
        if self.transactional:
            if offsets and not all(fut.done() for _, fut in futures):
                # The offsets join the transaction while its records are acknowledged (two round trips saved);
                # nothing commits before every ack is in.
                both: tuple[Any, Any] = await asyncio.gather(
                    self._wait(futures), self.producer.send_offsets_to_transaction(offsets, self.group_id),
                    return_exceptions=True)
                acked, added = both
                if isinstance(acked, BaseException):
                    raise acked
                if isinstance(added, BaseException):
                    raise added
                changelog_start = acked
            elif offsets:
                changelog_start = await self._wait(futures)
                await self.producer.send_offsets_to_transaction(offsets, self.group_id)
            else:
                changelog_start = await self._wait(futures)
            await self.producer.commit_transaction()
        else:
            await self._wait(futures)
            changelog_start = await self._wait(await self._send(sealed.changelog))
            if offsets:
                await self.consumer.commit(offsets)
        self.committed_offsets.update(sealed.offsets)
        if changelog_start is not None:
            self.changelog_position = changelog_start
        self.sealed = None
        if self.state is CheckpointState.COMMITTING:
            self._move(CheckpointState.IDLE)
        elif self.transactional and not self._begun:  # the next one, opened meanwhile, is the producer's now
            await self.producer.begin_transaction()
            self._begun = True
        return sealed.count

    async def _wait(self, futures: list[tuple[str, asyncio.Future[Any]]]) -> int | None:
        """Wait for every ack of ``futures``; returns where their changelog writes began (None: none).

        Raises the first failure once every batch's result is in.
        """
        if not futures:
            return None
        results: list[Any]
        if all(fut.done() for _, fut in futures):
            results = [fut.exception() or fut.result() for _, fut in futures]
        else:
            results = await asyncio.gather(*(fut for _, fut in futures), return_exceptions=True)
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is not None:  # every exception is retrieved; the first one fails the commit
            raise failed
        offsets: list[int] = [meta.offset for (topic, _), meta in zip(futures, results, strict=True)
                              if topic == self.changelog_topic]
        return min(offsets, default=None)

    def _append_changelog(self, stream_time: int | None) -> None:
        """Add the store's dirty keys and (under exactly_once) the offset markers to the changelog partition.

        Every dirty key is encoded (and checked against ``changelog_limit``) before any is appended, so a
        :class:`~stream_processor.engine.exceptions.StateRecordError` leaves the transaction's batches as they were.
        """
        if self.store is None or self.changelog_topic is None:
            return
        records = self.store.changelog_records(self.changelog_limit)
        partition, topic = self.task, self.changelog_topic
        for key, value in records:
            self.append(topic, value, key=key, partition=partition)
        if self.transactional:
            for tp, offset in self.pending_offsets.items():
                key, value = offset_marker(tp.topic, offset, self.positions[tp], stream_time)
                self.append(topic, value, key=key, partition=partition)

    async def abort(self) -> None:
        """Abort the open transaction (if the producer still can); pending outputs and offset are dropped.

        The caller rewinds the inputs to :attr:`committed_offsets` and rebuilds the store.
        """
        self._move(CheckpointState.ABORTING)
        self._builders, self._full = {}, []
        futures, self._futures = self._futures, []
        if self.sealed is not None:
            futures += self.sealed.futures
            self.sealed = None
        for _, fut in futures:
            if fut.done() and not fut.cancelled():
                fut.exception()  # retrieved: a failed batch is expected here, not an unhandled error
            fut.cancel()
        self._reset_pending()
        try:
            if self.transactional and self.producer.in_transaction:
                await self.producer.abort_transaction()
        finally:
            self._begun = False
            self._move(CheckpointState.IDLE)

    @property
    def fenced(self) -> bool:
        """True once the producer learned that its ``transactional.id`` has a newer epoch.

        That is a newer owner of the input partition, or the broker aborting a transaction that outlived
        ``transaction_timeout_ms`` (aiokafka then stops the producer's sender and later calls fail with other errors;
        the client interface looks at the sender itself).
        """
        return bool(self.producer.fenced)

    async def close(self) -> None:
        """Stop the producer; an open transaction is aborted first."""
        if self.state in (CheckpointState.OPEN, CheckpointState.COMMITTING):
            try:
                await self.abort()
            except Exception:  # noqa: BLE001 - closing anyway; the next owner's fencing aborts it
                self.state = CheckpointState.IDLE
        if self.state is not CheckpointState.CLOSED:
            self.state = CheckpointState.CLOSED
            await self.producer.stop()
