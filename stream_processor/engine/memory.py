"""In-memory Kafka for the test driver: topics, transactions with fencing, ``read_committed`` consumers.

The test driver runs the worker's own tasks (:mod:`stream_processor.engine.task`) over these clients, as Kafka
Streams' TopologyTestDriver runs the real StreamTask over mock clients: the clients, not the rules, differ. They have
the methods of the engine's Kafka clients (:mod:`stream_processor.engine.clients`) that the tasks and the changelog
restore use, and every one of them completes without waiting, so the driver can step them without an event loop.

Semantics kept from Kafka: offsets per partition; a transaction's records take offsets when sent but are visible to
``read_committed`` consumers only once it commits (never if it aborts); each commit or abort writes a control
marker, which takes an offset and is never returned; the last stable offset is the first offset of the earliest open
transaction (else the end); a producer started with a transactional id fences the previous one (its open
transaction is aborted, its later calls raise ``ProducerFenced``); offsets sent to a transaction become the group's
committed offsets when it commits. Partitioning is the caller's (the checkpoint's murmur2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, ProducerFenced


@dataclass(slots=True)
class MemoryRecord:
    """One record of an in-memory partition, shaped like aiokafka's ConsumerRecord."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    txn: _Txn | None = None  # the transaction that wrote it (None: written outside one)
    control: bool = False  # a commit or abort marker (or a gap left by an append at a later offset)
    seq: int = 0  # the broker's write order, across partitions
    timestamp_type: int = 0

    @property
    def visible(self) -> bool:
        return not self.control and (self.txn is None or self.txn.state == "committed")


@dataclass(eq=False)
class _Txn:
    state: str = "open"
    partitions: set[TopicPartition] = field(default_factory=set)
    offsets: dict[str, dict[TopicPartition, int]] = field(default_factory=dict)


class MemoryBroker:
    """Topics and groups in memory. ``partitions(topic)``: how many partitions a topic has when first used;
    ``clock()``: the time (ms) given to records sent without a timestamp.

    Faults, for tests: ``refuse(topic, key, value, headers)`` returning an exception makes the send of that record
    fail with it (as a produce error: the batch's acknowledgement fails); ``fail_next[method]`` (a producer method's
    name: ``commit_transaction``, ``send_offsets_to_transaction``, ``begin_transaction``, ``start``) raises that
    exception from the next call of it, once.
    """

    def __init__(self, partitions: Callable[[str], int], clock: Callable[[], int]) -> None:
        self._partitions = partitions
        self.clock = clock
        self.logs: dict[str, list[list[MemoryRecord]]] = {}
        self.group_offsets: dict[tuple[str, TopicPartition], int] = {}
        self._epochs: dict[str, int] = {}
        self._open: dict[str, _Txn] = {}
        self._open_first: dict[TopicPartition, dict[_Txn, int]] = {}  # open transactions' first offset, per partition
        self._seq = 0
        self.refuse: Callable[[str, bytes | None, bytes | None, Any], BaseException | None] | None = None
        self.fail_next: dict[str, BaseException] = {}

    def fault(self, method: str) -> None:
        """Raise the fault set for the next call of ``method``, once (see the class docstring)."""
        exc = self.fail_next.pop(method, None)
        if exc is not None:
            raise exc

    def partitions_for(self, topic: str) -> list[int]:
        return list(range(len(self._log_of(topic))))

    def _log_of(self, topic: str) -> list[list[MemoryRecord]]:
        logs = self.logs.get(topic)
        if logs is None:
            logs = self.logs[topic] = [[] for _ in range(self._partitions(topic))]
        return logs

    def log(self, tp: TopicPartition) -> list[MemoryRecord]:
        return self._log_of(tp.topic)[tp.partition]

    def append(self, tp: TopicPartition, key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes]],
               timestamp: int | None, txn: _Txn | None = None, control: bool = False,
               offset: int | None = None, seq: int | None = None) -> MemoryRecord:
        """Append a record (in ``txn``, if given); returns it with its offset. ``offset``: where it goes, at or after
        the end (the offsets between are a gap no consumer sees). Raises ValueError for an offset below the end."""
        log = self.log(tp)
        if offset is not None:
            if offset < len(log):
                raise ValueError(f"{tp.topic}-{tp.partition}: offset {offset} is below the next one ({len(log)})")
            while len(log) < offset:
                log.append(MemoryRecord(tp.topic, tp.partition, len(log), 0, None, None, (), None, True))
        record = MemoryRecord(tp.topic, tp.partition, len(log), self.clock() if timestamp is None else timestamp,
                              key, value, tuple(headers), txn, control, self.next_seq() if seq is None else seq)
        log.append(record)
        if txn is not None and tp not in txn.partitions:
            txn.partitions.add(tp)
            self._open_first.setdefault(tp, {})[txn] = record.offset
        return record

    def next_seq(self) -> int:
        """The next number of the broker's write order (a record built into a batch takes it then)."""
        self._seq += 1
        return self._seq

    def stable_end(self, tp: TopicPartition) -> int:
        """The last stable offset: the first offset of the earliest open transaction, else the end."""
        first = self._open_first.get(tp)
        return min(first.values()) if first else len(self.log(tp))

    def read(self, tp: TopicPartition, position: int, max_records: int | None) -> tuple[list[MemoryRecord], int]:
        """The visible records from ``position`` up to the last stable offset (at most ``max_records``), and the
        position after them (past markers and aborted records)."""
        log, end = self.log(tp), self.stable_end(tp)
        out: list[MemoryRecord] = []
        while position < end and (max_records is None or len(out) < max_records):
            record = log[position]
            if record.visible:
                out.append(record)
            position += 1
        return out, position

    # ---- transactions ----------------------------------------------------------------------------------------------
    def init_producer(self, transactional_id: str) -> int:
        """A new epoch for ``transactional_id``: the previous producer is fenced and its open transaction aborted."""
        epoch = self._epochs.get(transactional_id, -1) + 1
        self._epochs[transactional_id] = epoch
        txn = self._open.pop(transactional_id, None)
        if txn is not None:
            self.end(txn, commit=False)
        return epoch

    def current_epoch(self, transactional_id: str) -> int:
        return self._epochs.get(transactional_id, -1)

    def begin(self, transactional_id: str) -> _Txn:
        txn = self._open[transactional_id] = _Txn()
        return txn

    def end(self, txn: _Txn, commit: bool, transactional_id: str | None = None) -> None:
        """Commit or abort ``txn``: its records become visible (or never will), a marker is written to each of its
        partitions, and (on commit) its offsets become the groups' committed offsets."""
        txn.state = "committed" if commit else "aborted"
        for tp in sorted(txn.partitions):
            self._open_first[tp].pop(txn, None)
            self.append(tp, None, None, (), None, control=True)
        if commit:
            for group, offsets in txn.offsets.items():
                for tp, offset in offsets.items():
                    self.group_offsets[(group, tp)] = offset
        if transactional_id is not None and self._open.get(transactional_id) is txn:
            del self._open[transactional_id]


class _Done:
    """An acknowledgement that is already in (the in-memory producer's sends complete at once): a result, or the
    error the send failed with."""

    __slots__ = ("_result", "_error")

    def __init__(self, result: Any, error: BaseException | None = None) -> None:
        self._result = result
        self._error = error

    def done(self) -> bool:
        return True

    def cancelled(self) -> bool:
        return False

    def cancel(self) -> bool:
        return False

    def result(self) -> Any:
        if self._error is not None:
            raise self._error
        return self._result

    def exception(self) -> BaseException | None:
        return self._error

    def __await__(self) -> Any:
        return self.result()
        yield  # noqa: B901 - a generator: awaitable, completing at once


@dataclass(slots=True)
class _Metadata:
    topic: str
    partition: int
    offset: int


class MemoryBatch:
    """A record batch being built (aiokafka's BatchBuilder's ``append``); never full. A record takes its place in
    the broker's write order when it is appended here (the order the task produced it)."""

    __slots__ = ("records", "_broker")

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker
        self.records: list[tuple[int | None, bytes | None, bytes | None, list[tuple[str, bytes]], int]] = []

    def append(self, *, timestamp: int | None, key: bytes | None, value: bytes | None,
               headers: list[tuple[str, bytes]]) -> bool:
        self.records.append((timestamp, key, value, headers, self._broker.next_seq()))
        return True


class MemoryProducer:
    """A producer of the in-memory broker: transactional with ``transactional_id``, else each record is written
    (and visible) at once."""

    def __init__(self, broker: MemoryBroker, transactional_id: str | None = None) -> None:
        self.broker = broker
        self.transactional_id = transactional_id
        self._epoch = -1
        self._txn: _Txn | None = None

    async def start(self) -> None:
        self.broker.fault("start")
        if self.transactional_id is not None:
            self._epoch = self.broker.init_producer(self.transactional_id)

    async def stop(self) -> None:
        self._txn = None

    @property
    def fenced(self) -> bool:
        tid = self.transactional_id
        return tid is not None and self.broker.current_epoch(tid) != self._epoch

    @property
    def in_transaction(self) -> bool:
        return self._txn is not None and self._txn.state == "open"

    def _check(self) -> None:
        if self.fenced:
            raise ProducerFenced()

    async def partitions_for(self, topic: str) -> set[int]:
        return set(self.broker.partitions_for(topic))

    def create_batch(self) -> MemoryBatch:
        return MemoryBatch(self.broker)

    async def begin_transaction(self) -> None:
        self._check()
        self.broker.fault("begin_transaction")
        if self.in_transaction:
            raise IllegalStateError("a transaction is already open")
        assert self.transactional_id is not None
        self._txn = self.broker.begin(self.transactional_id)

    async def send_batch(self, batch: MemoryBatch, topic: str, partition: int) -> _Done:
        self._check()
        if self.transactional_id is not None and not self.in_transaction:
            raise IllegalStateError("send outside a transaction")
        tp = TopicPartition(topic, partition)
        refuse = self.broker.refuse
        if refuse is not None:
            for _, key, value, headers, _ in batch.records:
                error = refuse(topic, key, value, headers)
                if error is not None:  # the broker refuses the batch: none of it is written
                    return _Done(None, error)
        first = None
        for timestamp, key, value, headers, seq in batch.records:
            record = self.broker.append(tp, key, value, headers, timestamp, self._txn, seq=seq)
            first = record.offset if first is None else first
        return _Done(_Metadata(topic, partition, -1 if first is None else first))

    async def send_offsets_to_transaction(self, offsets: dict[TopicPartition, Any], group_id: str) -> None:
        self._check()
        self.broker.fault("send_offsets_to_transaction")
        assert self._txn is not None
        self._txn.offsets.setdefault(group_id, {}).update(
            {tp: getattr(meta, "offset", meta) for tp, meta in offsets.items()})

    async def commit_transaction(self) -> None:
        self._check()
        self.broker.fault("commit_transaction")
        txn, self._txn = self._txn, None
        assert txn is not None
        self.broker.end(txn, commit=True, transactional_id=self.transactional_id)

    async def abort_transaction(self) -> None:
        self._check()
        txn, self._txn = self._txn, None
        if txn is not None:
            self.broker.end(txn, commit=False, transactional_id=self.transactional_id)


class MemoryConsumer:
    """A ``read_committed`` consumer of the in-memory broker: a group member that owns what it is given
    (:meth:`assign`), or a group-less reader (the changelog restore)."""

    def __init__(self, broker: MemoryBroker, group_id: str | None = None) -> None:
        self.broker = broker
        self.group_id = group_id
        self._assigned: list[TopicPartition] = []
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()

    # ---- assignment and positions ----------------------------------------------------------------------------------
    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        self._assigned = list(partitions)
        self._positions = {tp: p for tp, p in self._positions.items() if tp in self._assigned}
        self._paused &= set(self._assigned)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._positions[tp] = offset

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._positions[tp] = 0

    async def position(self, tp: TopicPartition) -> int:
        return self._positions.setdefault(tp, 0)

    def consumed_position(self, tp: TopicPartition) -> int | None:
        return self._positions.get(tp) if tp in self._assigned else None

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return self.broker.stable_end(tp) if tp in self._assigned else None

    async def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.broker.stable_end(tp) for tp in partitions}

    async def beginning_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, 0)

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.broker.group_offsets.get((self.group_id or "", tp))

    async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        for tp, meta in offsets.items():
            self.broker.group_offsets[(self.group_id or "", tp)] = getattr(meta, "offset", meta)

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused.difference_update(partitions)

    def request_rejoin(self) -> None:
        """The driver's consumer is the only member: it keeps its assignment."""

    generation = 1

    # ---- fetching --------------------------------------------------------------------------------------------------
    def poll(self, max_records: int | None = None) -> dict[TopicPartition, list[MemoryRecord]]:
        """The visible records after each assigned, unpaused partition's position; positions move past them."""
        out: dict[TopicPartition, list[MemoryRecord]] = {}
        for tp in self._assigned:
            if tp in self._paused:
                continue
            records, self._positions[tp] = self.broker.read(tp, self._positions.setdefault(tp, 0), max_records)
            if records:
                out[tp] = records
        return out

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[MemoryRecord]]:
        if not partitions:
            return self.poll(max_records)
        out = {}
        for tp in partitions:
            records, self._positions[tp] = self.broker.read(tp, self._positions.setdefault(tp, 0), max_records)
            if records:
                out[tp] = records
        return out
