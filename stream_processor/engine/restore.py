"""Restoring a task's stores from its changelog partition: read to the last stable offset, each key's last record
applied (see :func:`restore`), the offset markers collected."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from .state import META_KEY, _marker_topic

if TYPE_CHECKING:
    from .state import TaskStores

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Restored:
    """What :func:`restore` read: records applied, the last offset marker seen per input topic, the end reached.

    ``offsets`` maps an input topic to its next offset; the key None holds a legacy marker without a topic.
    """

    applied: int
    offsets: dict[str | None, int]
    end: int
    positions: dict[str, int] = field(default_factory=dict)  # input topic -> next offset processed (if beyond)
    stream_time: int = -1

    def offset(self, topic: str, only_input: bool) -> int | None:
        """The next offset of ``topic``'s partition, or None; a legacy marker counts when it is the only input."""
        found = self.offsets.get(topic)
        if found is None and only_input:
            found = self.offsets.get(None)
        return found


@dataclass
class Markers:
    """The offset markers of a changelog partition as it is read: per input topic the last next offset and
    position, and the largest stream time (ms) they carry."""

    offsets: dict[str | None, int] = field(default_factory=dict)
    positions: dict[str, int] = field(default_factory=dict)
    stream_time: int = -1

    def read(self, key: bytes, value: bytes | None) -> bool:
        """Take the record ``key``/``value`` if it is an offset marker (True), else leave it (False)."""
        topic = _marker_topic(key)
        if topic is False:
            return False
        marker = orjson.loads(value)  # type: ignore[arg-type]
        self.offsets[topic] = marker["offset"]
        if topic is not None:
            self.positions[topic] = marker.get("position", marker["offset"])
        self.stream_time = max(self.stream_time, marker.get("stream_time", -1))
        return True

    def restored(self, applied: int, end: int) -> Restored:
        """The :class:`Restored` of a read that applied ``applied`` records up to ``end``."""
        return Restored(applied, self.offsets, end, self.positions, self.stream_time)


#: Records asked of each ``getmany`` while restoring.
RESTORE_MAX_RECORDS = 10_000
#: Keys whose last record :func:`restore` holds undecoded before it applies them (a bound on that buffer: about as
#: many encoded snapshots as the store will hold decoded anyway).
RESTORE_MAX_PENDING = 200_000


class _LastPerKey:
    """The changelog records :func:`restore` has read and not yet applied: the last value of each key, in the
    order that applying every record one by one would leave the store's keys in.

    Applying only each key's last record leaves the store as applying all of them would (each record is the whole
    snapshot of its key, a None value deletes it), with the same key order: a key keeps its place when updated, and
    goes last when it is re-created after a tombstone (``dropped``: it is deleted before its new value is applied).
    What a superseded snapshot would have done is not done: one that cannot be read neither resets its key nor
    fails the restore, as when compaction has already removed it.
    """

    __slots__ = ("store", "values", "dropped")

    def __init__(self, store: TaskStores) -> None:
        self.store = store
        self.values: dict[bytes, bytes | None] = {}
        self.dropped: set[bytes] = set()

    def apply(self) -> None:
        load, dropped = self.store.load, self.dropped
        try:
            for key, value in self.values.items():
                if value is not None and key in dropped:
                    load(key, None)
                load(key, value)
        finally:
            self.values.clear()
            dropped.clear()


async def restore(
    store: TaskStores, consumer: AIOKafkaConsumer, tp: TopicPartition, start: int | None = None,
    progress: dict[str, int] | None = None,
) -> Restored:
    """Bring ``store`` up to date from changelog partition ``tp``, read to its last stable offset.

    With ``start`` None the store is cleared and rebuilt from the beginning; otherwise the records from
    changelog offset ``start`` on are applied on top of it (each record is a whole snapshot of its key, so
    re-applying one the store already reflects changes nothing). ``consumer`` must be a group-less consumer
    with ``isolation_level="read_committed"``; it is left unassigned. ``progress``, if given, is kept up to date
    with the changelog offsets ``start``, ``position`` and ``end`` (for ``/status``).

    Only the last record of each key is decoded (see :class:`_LastPerKey`): what is not yet compacted costs a read,
    not a decode, and the store ends as a compacted changelog would leave it.

    Stores on disk (``store: rocksdb://``) with ``start`` None start from their clean close's checkpoint
    (:meth:`TaskStores.resume`) when it lies within the changelog partition (log start <= it <= end); otherwise
    they are wiped and rebuilt from the beginning, as memory stores always are.
    """
    consumer.assign([tp])
    try:
        end = (await consumer.end_offsets([tp]))[tp]
        start = await _start(store, consumer, tp, start, end)
        if start is None:
            store.clear()
            await consumer.seek_to_beginning(tp)
        else:
            store.take_dirty()
            consumer.seek(tp, start)
        if progress is not None:
            progress.update(start=await consumer.position(tp), position=await consumer.position(tp), end=end)
        applied = 0
        markers = Markers()
        last = _LastPerKey(store)
        pending, dropped = last.values, last.dropped
        while (position := await consumer.position(tp)) < end:
            if progress is not None:
                progress["position"] = position
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=RESTORE_MAX_RECORDS)
            for record in batch.get(tp, ()):
                key = record.key
                if key is None:  # every changelog record has a key
                    continue
                if key[:1] == b"\x00":
                    if markers.read(key, record.value):
                        continue
                    if key.startswith(META_KEY):  # small, and merged into the store's meta: applied in order
                        store.load(key, record.value)
                        applied += 1
                        continue
                value = record.value
                if value is None:
                    pending[key] = None
                    dropped.add(key)
                elif pending.get(key, b"") is None:
                    del pending[key]  # re-created after a tombstone: it goes last, as a load would put it
                    pending[key] = value
                else:
                    pending[key] = value
                applied += 1
            if len(pending) >= RESTORE_MAX_PENDING:
                last.apply()
        last.apply()
        store.loaded()
        return markers.restored(applied, end)
    finally:
        consumer.assign([])


async def _start(store: TaskStores, consumer: AIOKafkaConsumer, tp: TopicPartition, start: int | None,
                 end: int) -> int | None:
    """Where :func:`restore` reads from: ``start`` if given, else the checkpoint of the stores' files if it is within
    the changelog partition, else None (from the beginning, the stores cleared)."""
    checkpoint = store.resume()  # taken even when unused: the files are about to change
    if start is not None or checkpoint is None:
        return start
    begin = (await consumer.beginning_offsets([tp]))[tp]
    if begin <= checkpoint <= end:
        return checkpoint
    log.warning("%s: the stores' files say they reflect the changelog up to offset %d, outside its offsets %d..%d "
                "(topic re-created or records deleted?): wiped and restored from the beginning", tp, checkpoint, begin,
                end)
    return None
