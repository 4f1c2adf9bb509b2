"""Changelog-backed key-value state of one input partition: live objects in memory, dirty keys to Kafka.

A store holds live state objects (anything with ``to_state() -> dict``) keyed by string. The
processor marks a key dirty when it changes the object; at each checkpoint the dirty objects are
written to partition ``q`` of the store's compacted changelog topic inside the transaction of input
partition ``q``, so the changelog and the input offsets always agree. On assignment (and after an
abort) the store is rebuilt by reading its changelog partition to the end with ``read_committed``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition


class Snapshottable(Protocol):
    """A state object the changelog can hold."""

    def to_state(self) -> dict[str, Any]: ...


class ChangelogStore:
    """In-memory state of one input partition, with the set of keys changed since the last checkpoint."""

    __slots__ = ("data", "dirty", "_from_state")

    def __init__(self, from_state: Callable[[dict[str, Any]], Snapshottable]) -> None:
        self.data: dict[str, Snapshottable] = {}
        self.dirty: set[str] = set()
        self._from_state = from_state

    def get(self, key: str) -> Snapshottable | None:
        """The live object of ``key``, or None."""
        return self.data.get(key)

    def put(self, key: str, obj: Snapshottable) -> None:
        """Set ``key`` and mark it dirty."""
        self.data[key] = obj
        self.dirty.add(key)

    def mark_dirty(self, key: str) -> None:
        """Say that the live object of ``key`` was changed in place."""
        self.dirty.add(key)

    def changelog_records(self) -> Iterator[tuple[bytes, bytes]]:
        """The ``(key, value)`` changelog records of the dirty keys, JSON-encoded; the dirty set is cleared."""
        data = self.data
        for key in self.dirty:
            yield key.encode(), orjson.dumps(data[key].to_state())
        self.dirty = set()

    def load(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record (a None value deletes the key)."""
        name = key.decode()
        if value is None:
            self.data.pop(name, None)
        else:
            self.data[name] = self._from_state(orjson.loads(value))


async def restore(store: ChangelogStore, consumer: AIOKafkaConsumer, tp: TopicPartition) -> int:
    """Rebuild ``store`` from changelog partition ``tp``, read to its last stable offset.

    ``consumer`` must be a group-less consumer with ``isolation_level="read_committed"``; it is left
    unassigned. Returns the number of changelog records applied.
    """
    store.data.clear()
    store.dirty = set()
    consumer.assign([tp])
    try:
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        applied = 0
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=10_000)
            for record in batch.get(tp, ()):
                store.load(record.key, record.value)
                applied += 1
        return applied
    finally:
        consumer.assign([])
