"""The exactly-once unit: every effect of one input partition's records and its offset, in one transaction.

A :class:`Checkpoint` belongs to one input partition ``q`` and owns one producer. Under
``exactly_once`` that producer is transactional with a stable ``transactional.id`` derived from the
consumer group and ``q`` (Kafka Streams' first EOS design, the only one aiokafka can do since it
sends ``TxnOffsetCommit`` without group metadata): whoever owns ``q`` next starts a producer with the
same id, which fences this one and aborts its open transaction. Everything caused by records of
``q`` (output records to any topic and partition, dead letters, ``q``'s changelog writes) is sent
by this producer, and :meth:`Checkpoint.commit` runs this recipe:

1. send the dirty state of ``q`` to its changelog partition;
2. flush: wait until every record sent in this transaction is acknowledged (fail if any is not);
3. add ``q``'s next offset to the transaction (``send_offsets_to_transaction``);
4. commit the transaction.

Any error aborts the transaction; the owner then rewinds ``q`` to its last committed offset and
rebuilds ``q``'s state from the changelog (see :mod:`stream_processor.worker`).

Under ``at_least_once`` the same recipe runs without a transaction: the producer is idempotent,
step 3 is a plain consumer offset commit after the flush, and a crash may repeat records.
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from .exceptions import TransactionStateError
from .state import ChangelogStore


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
    CheckpointState.COMMITTING: frozenset({CheckpointState.IDLE, CheckpointState.ABORTING}),
    CheckpointState.ABORTING: frozenset({CheckpointState.IDLE, CheckpointState.CLOSED}),
    CheckpointState.CLOSED: frozenset(),
}


def transactional_id(app_id: str, group: str, tp: TopicPartition) -> str:
    """The stable ``transactional.id`` of input partition ``tp``: the same on every worker and restart."""
    return f"{app_id}-{group}-{tp.topic}-{tp.partition}"


class Checkpoint:
    """Outputs, changelog writes and the offset of one input partition, committed together.

    Use: :meth:`start`; then per batch :meth:`begin` (if not open), :meth:`send` for each output,
    :meth:`store_offset`; when due :meth:`commit`; on error :meth:`abort`; finally :meth:`close`.

    Raises:
        TransactionStateError: a call that the current :class:`CheckpointState` does not allow.
    """

    def __init__(
        self,
        tp: TopicPartition,
        *,
        group_id: str,
        producer: AIOKafkaProducer,
        consumer: AIOKafkaConsumer,
        store: ChangelogStore | None,
        changelog_topic: str | None,
        transactional: bool,
    ) -> None:
        self.tp = tp
        self.group_id = group_id
        self.producer = producer
        self.consumer = consumer
        self.store = store
        self.changelog_topic = changelog_topic
        self.transactional = transactional
        self.state = CheckpointState.IDLE
        self.committed_offset: int | None = None  # next offset to read, as last committed by us
        self.position = 0  # next input offset to process; records below it are stale fetches
        self.pending_offset: int | None = None  # next offset to read, once this transaction commits
        self.pending_count = 0  # input records in the open transaction
        self.pending_failed = 0  # of which went to the dead-letter topic
        self.pending_outputs: Counter[str] = Counter()  # output records per topic in the open transaction
        self._futures: list[asyncio.Future[Any]] = []

    def _move(self, to: CheckpointState) -> None:
        if to not in _TRANSITIONS[self.state]:
            raise TransactionStateError(f"checkpoint {self.tp}: cannot go from {self.state.value} to {to.value}")
        self.state = to

    @property
    def is_open(self) -> bool:
        """True while a transaction is open."""
        return self.state is CheckpointState.OPEN

    async def begin(self) -> None:
        """Open a transaction (under ``exactly_once``)."""
        self._move(CheckpointState.OPEN)
        if self.transactional:
            await self.producer.begin_transaction()

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        """Send one output record inside the open transaction (it is acknowledged by :meth:`commit`)."""
        if self.state is not CheckpointState.OPEN:
            raise TransactionStateError(f"checkpoint {self.tp}: send while {self.state.value}")
        self._futures.append(
            await self.producer.send(topic, value, key=key, headers=headers, partition=partition)
        )

    async def send_many(self, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> None:
        """Send ``(key, value)`` records to ``topic`` inside the open transaction."""
        send = self.producer.send
        futures = self._futures
        for key, value in records:
            futures.append(await send(topic, value, key=key))

    def store_offset(self, next_offset: int, count: int) -> None:
        """Record that input up to ``next_offset`` (exclusive) is processed in this transaction."""
        if self.state is not CheckpointState.OPEN:
            raise TransactionStateError(f"checkpoint {self.tp}: store_offset while {self.state.value}")
        self.pending_offset = next_offset
        self.pending_count += count

    def _reset_pending(self) -> None:
        self.pending_offset = None
        self.pending_count = 0
        self.pending_failed = 0
        self.pending_outputs = Counter()

    async def commit(self) -> int:
        """Changelog, flush, offsets, commit; returns the number of input records committed.

        Raises whatever the producer or broker raised; the checkpoint is then still open and the caller
        must :meth:`abort` it.
        """
        self._move(CheckpointState.COMMITTING)
        if self.store is not None and self.store.dirty:
            await self.send_many_changelog()
        futures, self._futures = self._futures, []
        if futures:
            await asyncio.gather(*futures)
        offsets = {}
        if self.pending_offset is not None:
            offsets = {self.tp: OffsetAndMetadata(self.pending_offset, "")}
        if self.transactional:
            if offsets:
                await self.producer.send_offsets_to_transaction(offsets, self.group_id)
            await self.producer.commit_transaction()
        elif offsets:
            await self.consumer.commit(offsets)
        count = self.pending_count
        if self.pending_offset is not None:
            self.committed_offset = self.pending_offset
        self._reset_pending()
        self._move(CheckpointState.IDLE)
        return count

    async def send_many_changelog(self) -> None:
        """Write the store's dirty keys to this partition's changelog partition."""
        assert self.store is not None and self.changelog_topic is not None
        send = self.producer.send
        futures = self._futures
        partition = self.tp.partition
        for key, value in self.store.changelog_records():
            futures.append(await send(self.changelog_topic, value, key=key, partition=partition))

    async def abort(self) -> None:
        """Abort the open transaction (if the producer still can); pending outputs and offset are dropped.

        The caller rewinds the consumer to :attr:`committed_offset` and rebuilds the store.
        """
        self._move(CheckpointState.ABORTING)
        futures, self._futures = self._futures, []
        for fut in futures:
            fut.cancel()
        self._reset_pending()
        try:
            if self.transactional and self.producer._txn_manager.is_in_transaction():  # noqa: SLF001
                await self.producer.abort_transaction()
        finally:
            self._move(CheckpointState.IDLE)

    async def close(self) -> None:
        """Stop the producer; an open transaction is aborted first."""
        if self.state is CheckpointState.OPEN:
            try:
                await self.abort()
            except Exception:  # noqa: BLE001 - closing anyway; the next owner's fencing aborts it
                self.state = CheckpointState.IDLE
        if self.state is not CheckpointState.CLOSED:
            self.state = CheckpointState.CLOSED
            await self.producer.stop()
