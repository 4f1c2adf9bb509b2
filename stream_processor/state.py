"""Changelog-backed key-value state of one input partition: live objects in memory, dirty keys to Kafka.

A store holds live state objects (anything with ``to_state() -> dict``) keyed by string. The
processor marks a key dirty when it changes the object; at each checkpoint the dirty objects are
written to partition ``q`` of the store's compacted changelog topic inside the transaction of input
partition ``q``, so the changelog and the input offsets always agree. Under exactly_once each such
transaction also writes an offset marker per input topic (key :data:`OFFSET_KEY` + ``b":" + topic``): the
next input offset of partition ``q`` of that topic that the state reflects, committed atomically with it
(a processor with co-partitioned inputs writes one marker per input topic to the same changelog partition).
On assignment (and after an abort) the store is rebuilt by reading its changelog partition to the end with
``read_committed``; a store kept across a rebalance is brought up to date by reading only what was written after
its own last commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from .exceptions import StateRecordError

OFFSET_KEY = b"\x00offset"
"""Prefix of the offset markers' changelog keys (``OFFSET_KEY + b":" + topic``; a bare ``OFFSET_KEY`` is the one
input's marker of changelogs written before co-partitioned inputs): ``{"offset": n}``, the next input offset the
state reflects."""


def offset_marker(topic: str, next_offset: int) -> tuple[bytes, bytes]:
    """The changelog record ``(key, value)`` saying the state reflects ``topic``'s input up to ``next_offset``
    (exclusive) on this changelog partition's input partition."""
    return OFFSET_KEY + b":" + topic.encode(), orjson.dumps({"offset": next_offset})


def _marker_topic(key: bytes | None) -> str | None | bool:
    """The input topic an offset-marker key names (None: the legacy single-input marker); False if not a marker."""
    if key is None or not key.startswith(OFFSET_KEY):
        return False
    if key == OFFSET_KEY:
        return None
    return key[len(OFFSET_KEY) + 1 :].decode()


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

    def encode(self, key: str, limit: int | None = None) -> bytes:
        """The changelog value of ``key``: its state as JSON.

        Raises:
            StateRecordError: the state cannot be encoded (``state_unserializable``), or its record (key and value)
                is larger than ``limit`` bytes (``state_too_large``).
        """
        try:
            value = orjson.dumps(self.data[key].to_state())
        except (TypeError, ValueError, OverflowError) as exc:  # orjson.JSONEncodeError is a TypeError
            raise StateRecordError(key, "state_unserializable", f"state of {key!r} cannot be written: {exc}") from None
        if limit is not None and len(value) + len(key) > limit:
            raise StateRecordError(key, "state_too_large",
                                   f"state of {key!r} is {len(value)} bytes, above the changelog's {limit}")
        return value

    def changelog_records(self, limit: int | None = None) -> Iterator[tuple[bytes, bytes]]:
        """The ``(key, value)`` changelog records of the dirty keys (see :meth:`encode`); the dirty set is cleared
        once every one is encoded (a StateRecordError leaves it as it was)."""
        for key in self.dirty:
            yield key.encode(), self.encode(key, limit)
        self.dirty = set()

    def load(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record (a None value deletes the key)."""
        name = key.decode()
        if value is None:
            self.data.pop(name, None)
        else:
            self.data[name] = self._from_state(orjson.loads(value))


@dataclass(frozen=True)
class Restored:
    """What :func:`restore` read: records applied, the last offset marker seen per input topic, the end reached.

    ``offsets`` maps an input topic to its next offset; the key None holds a legacy marker without a topic.
    """

    applied: int
    offsets: dict[str | None, int]
    end: int

    def offset(self, topic: str, only_input: bool) -> int | None:
        """The next offset of ``topic``'s partition, or None; a legacy marker counts when it is the only input."""
        found = self.offsets.get(topic)
        if found is None and only_input:
            found = self.offsets.get(None)
        return found


async def restore(
    store: ChangelogStore, consumer: AIOKafkaConsumer, tp: TopicPartition, start: int | None = None
) -> Restored:
    """Bring ``store`` up to date from changelog partition ``tp``, read to its last stable offset.

    With ``start`` None the store is cleared and rebuilt from the beginning; otherwise the records from
    changelog offset ``start`` on are applied on top of it (each record is a whole snapshot of its key, so
    re-applying one the store already reflects changes nothing). ``consumer`` must be a group-less consumer
    with ``isolation_level="read_committed"``; it is left unassigned.
    """
    if start is None:
        store.data.clear()
    store.dirty = set()
    consumer.assign([tp])
    try:
        if start is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, start)
        end = (await consumer.end_offsets([tp]))[tp]
        applied = 0
        offsets: dict[str | None, int] = {}
        load = store.load
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=10_000)
            for record in batch.get(tp, ()):
                key = record.key
                if key is not None and key[:1] == b"\x00":
                    topic = _marker_topic(key)
                    if topic is not False:
                        offsets[topic] = orjson.loads(record.value)["offset"]  # type: ignore[index]
                        continue
                load(key, record.value)
                applied += 1
        return Restored(applied, offsets, end)
    finally:
        consumer.assign([])
