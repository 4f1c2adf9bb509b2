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

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from .exceptions import StateRecordError, StateRestoreError

log = logging.getLogger(__name__)

OFFSET_KEY = b"\x00offset"
"""Prefix of the offset markers' changelog keys (``OFFSET_KEY + b":" + topic``; a bare ``OFFSET_KEY`` is the one
input's marker of changelogs written before co-partitioned inputs): ``{"offset": n}``, the next input offset the
state reflects."""


def offset_marker(topic: str, next_offset: int, position: int | None = None,
                  stream_time: int | None = None) -> tuple[bytes, bytes]:
    """The changelog record ``(key, value)`` saying the state reflects ``topic``'s input up to ``next_offset``
    (exclusive) on this changelog partition's input partition.

    ``position``: the next offset processed, when records below it and from ``next_offset`` on are still buffered by
    an agent (``stream.take``): a record of that range the processor refused is already dead-lettered, so a re-read
    does not dead-letter it again. ``stream_time``: the task's stream time (ms), so punctuation resumes on the same
    grid after a restart."""
    doc: dict[str, int] = {"offset": next_offset}
    if position is not None and position > next_offset:
        doc["position"] = position
    if stream_time is not None and stream_time >= 0:
        doc["stream_time"] = stream_time
    return OFFSET_KEY + b":" + topic.encode(), orjson.dumps(doc)


def _marker_topic(key: bytes | None) -> str | None | bool:
    """The input topic an offset-marker key names (None: the legacy single-input marker); False if not a marker."""
    if key is None or not key.startswith(OFFSET_KEY):
        return False
    if key == OFFSET_KEY:
        return None
    return key[len(OFFSET_KEY) + 1 :].decode()


META_KEY = b"\x00meta:"
"""Prefix of a store's metadata record (``META_KEY + name``): what a store keeps besides its keys, e.g. a windowed
table's latest time (``{"latest": ms}``)."""

STORE_PREFIX = b"\x01"
"""Changelog keys of a named store (a Table) are ``STORE_PREFIX + name + b"\\x00" + key``; the default store's
(name ``""``) are the bare key."""


def _to_state(obj: Any) -> Any:
    return obj.to_state()


def _identity(obj: Any) -> Any:
    return obj


@dataclass(frozen=True)
class StoreSpec:
    """How one named store of a processor turns its values into changelog records and back.

    ``from_state``/``to_state``: JSON document <-> live object (None: the values are JSON documents themselves;
    ``to_state`` None with a ``from_state`` means ``obj.to_state()``). ``version``: the layout version written with
    every snapshot (None: snapshots are written bare, as before versions existed); a snapshot of another version
    is passed through ``migrate(state, its_version)`` first (a snapshot without a version is version 0).
    ``on_error``: what a snapshot that cannot be read (no migration, ``migrate`` or ``from_state`` raised) does:
    ``"reset"`` drops that key (it starts from empty state; logged and counted by :attr:`ChangelogStore.resets`),
    ``"fail"`` raises :class:`~stream_processor.engine.exceptions.StateRestoreError` (the processor fails at once,
    with the reason on ``/health``).
    """

    name: str = ""
    from_state: Callable[[Any], Any] | None = None
    to_state: Callable[[Any], Any] | None = None
    version: int | None = None
    migrate: Callable[[Any, int], Any] | None = None
    on_error: str | None = None
    expire: Callable[[ChangelogStore], None] | None = None  # run before each commit (windowed tables' expiry)
    keep_meta: tuple[str, ...] = ()  # entries of ChangelogStore.meta written to the changelog with the store


class ChangelogStore:
    """In-memory state of one input partition, with the set of keys changed since the last checkpoint.

    A key changed with :meth:`put` or :meth:`mark_dirty` is written to the changelog at the next commit; a key
    removed with :meth:`delete` is written as a tombstone (value None), which compaction then removes.
    """

    __slots__ = ("data", "dirty", "spec", "resets", "meta", "on_error", "_from_state", "_to_state", "_prefix",
                 "_meta_written")

    def __init__(self, from_state: Callable[[Any], Any] | StoreSpec | None = None, on_error: str = "reset") -> None:
        spec = from_state if isinstance(from_state, StoreSpec) else StoreSpec(from_state=from_state)
        self.spec = spec
        self.data: dict[str, Any] = {}
        self.dirty: set[str] = set()
        self.resets = 0  # snapshots dropped because they could not be read (on_error "reset")
        self.meta: dict[str, Any] = {}  # a windowed table's latest time; spec.keep_meta entries are in the changelog
        self._meta_written: dict[str, Any] = {}
        self.on_error = on_error  # when the spec says None: the processor's state_errors
        self._from_state = spec.from_state or _identity
        self._to_state = spec.to_state or (_to_state if spec.from_state is not None else _identity)
        self._prefix = STORE_PREFIX + spec.name.encode() + b"\x00" if spec.name else b""

    def get(self, key: str) -> Any:
        """The live object of ``key``, or None."""
        return self.data.get(key)

    def put(self, key: str, obj: Any) -> None:
        """Set ``key`` and mark it dirty."""
        self.data[key] = obj
        self.dirty.add(key)

    def delete(self, key: str) -> None:
        """Remove ``key``; its changelog record becomes a tombstone at the next commit."""
        self.data.pop(key, None)
        self.dirty.add(key)

    def mark_dirty(self, key: str) -> None:
        """Say that the live object of ``key`` was changed in place."""
        self.dirty.add(key)

    def encode(self, key: str, limit: int | None = None) -> bytes | None:
        """The changelog value of ``key``: its state as JSON (versioned if the spec has a version); None (a
        tombstone) for a deleted key.

        Raises:
            StateRecordError: the state cannot be encoded (``state_unserializable``), or its record (key and value)
                is larger than ``limit`` bytes (``state_too_large``).
        """
        obj = self.data.get(key, _MISSING)
        if obj is _MISSING:
            return None
        try:
            state = self._to_state(obj)
            version = self.spec.version
            value = orjson.dumps(state if version is None else {"v": version, "state": state})
        except (TypeError, ValueError, OverflowError, AttributeError) as exc:  # JSONEncodeError is a TypeError
            raise StateRecordError(key, "state_unserializable", f"state of {key!r} cannot be written: {exc}") from None
        if limit is not None and len(value) + len(key) > limit:
            raise StateRecordError(key, "state_too_large",
                                   f"state of {key!r} is {len(value)} bytes, above the changelog's {limit}")
        return value

    def dirty_records(self, limit: int | None = None) -> list[tuple[bytes, bytes | None]]:
        """The ``(key, value)`` changelog records of the dirty keys (see :meth:`encode`), prefixed with the store's
        name; changes nothing (a StateRecordError leaves the store as it was)."""
        prefix = self._prefix
        return [(prefix + key.encode(), self.encode(key, limit)) for key in self.dirty]

    def written(self) -> list[tuple[bytes, bytes]]:
        """Say that the dirty records are written: clear the dirty set; the store's metadata record (its
        ``spec.keep_meta`` entries) if they changed since last written."""
        self.dirty = set()
        keep = self.spec.keep_meta
        if not keep:
            return []
        meta = {k: self.meta[k] for k in keep if k in self.meta}
        if meta == self._meta_written:
            return []
        self._meta_written = meta
        return [(META_KEY + self.spec.name.encode(), orjson.dumps(meta))]

    def changelog_records(self, limit: int | None = None) -> list[tuple[bytes, bytes | None]]:
        """:meth:`dirty_records`, then :meth:`written` (the dirty set cleared once every one is encoded)."""
        return [*self.dirty_records(limit), *self.written()]

    def load_meta(self, value: bytes) -> None:
        """Apply the store's metadata record (see :meth:`written`)."""
        self._meta_written = orjson.loads(value)
        self.meta.update(self._meta_written)

    def clear(self) -> None:
        """Forget every key and the metadata (before a restore from the beginning)."""
        self.data.clear()
        self.dirty = set()
        self.meta.clear()
        self._meta_written = {}

    def load(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record of this store (``key`` without the store prefix; a None value deletes it).

        Raises:
            StateRestoreError: the snapshot cannot be read and the spec's ``on_error`` is ``"fail"``.
        """
        name = key.decode()
        if value is None:
            self.data.pop(name, None)
            return
        try:
            state = orjson.loads(value)
            version = self.spec.version
            if version is not None:
                found = 0
                if type(state) is dict and len(state) == 2 and "v" in state and "state" in state:
                    found, state = state["v"], state["state"]
                if found != version:
                    if self.spec.migrate is None:
                        raise ValueError(f"snapshot layout version {found}, this code reads {version} and has no "
                                         "migration")
                    state = self.spec.migrate(state, found)
            self.data[name] = self._from_state(state)
        except Exception as exc:  # noqa: BLE001 - a snapshot this code cannot read: reset the key or fail, per spec
            store = self.spec.name or "state"
            if (self.spec.on_error or self.on_error) == "fail":
                raise StateRestoreError(f"store {store!r}: the snapshot of {name!r} cannot be read: {exc!r}") from exc
            self.data.pop(name, None)
            self.resets += 1
            log.error("store %r: the snapshot of %r cannot be read (%r); the key starts from empty state", store,
                      name, exc)


_MISSING = object()


class TaskStores:
    """The stores of one task, by name (``""`` is the default store), sharing one changelog partition.

    ``on_error``: what a snapshot that cannot be read does in stores whose spec does not say (the processor's
    ``state_errors``).
    """

    __slots__ = ("stores", "_by_prefix")

    def __init__(self, specs: list[StoreSpec], on_error: str = "reset") -> None:
        self.stores: dict[str, ChangelogStore] = {spec.name: ChangelogStore(spec, on_error) for spec in specs}
        self._by_prefix = {spec.name.encode(): store for spec, store in zip(specs, self.stores.values(),
                                                                            strict=True)}

    def __getitem__(self, name: str) -> ChangelogStore:
        return self.stores[name]

    @property
    def dirty(self) -> bool:
        """True if any store has a key changed since the last commit."""
        return any(store.dirty for store in self.stores.values())

    @property
    def resets(self) -> int:
        """Snapshots dropped by every store so far (see :class:`StoreSpec`)."""
        return sum(store.resets for store in self.stores.values())

    def keys(self) -> int:
        """How many keys the stores hold."""
        return sum(len(store.data) for store in self.stores.values())

    def clear(self) -> None:
        for store in self.stores.values():
            store.clear()

    def changelog_records(self, limit: int | None = None) -> list[tuple[bytes, bytes | None]]:
        """Every store's changelog records (see :meth:`ChangelogStore.changelog_records`), all encoded before any
        dirty set is cleared; windowed stores expire their old windows first."""
        stores = self.stores.values()
        for store in stores:
            if store.spec.expire is not None:
                store.spec.expire(store)
        records = [record for store in stores for record in store.dirty_records(limit)]
        for store in stores:
            records.extend(store.written())
        return records

    def take_dirty(self) -> list[set[str]]:
        """Set every dirty set aside (check mode); :meth:`merge_dirty` puts them back."""
        before = []
        for store in self.stores.values():
            before.append(store.dirty)
            store.dirty = set()
        return before

    def merge_dirty(self, before: list[set[str]]) -> None:
        for store, keys in zip(self.stores.values(), before, strict=True):
            store.dirty |= keys

    def check_dirty(self, limit: int | None) -> None:
        """Encode every dirty key (check mode). Raises StateRecordError for the first that cannot be written."""
        for store in self.stores.values():
            store.dirty_records(limit)

    def load(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record to its store; a record of a store this code no longer has is skipped."""
        if key.startswith(META_KEY):
            store = self._by_prefix.get(key[len(META_KEY):])
            if store is not None and value is not None:
                store.load_meta(value)
            return
        if key[:1] == STORE_PREFIX:
            name, sep, rest = key[1:].partition(b"\x00")
            store = self._by_prefix.get(name) if sep else None
            if store is not None:
                store.load(rest, value)
            return
        store = self._by_prefix.get(b"")
        if store is not None:
            store.load(key, value)


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
    """
    if start is None:
        store.clear()
    else:
        store.take_dirty()
    consumer.assign([tp])
    try:
        if start is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, start)
        end = (await consumer.end_offsets([tp]))[tp]
        if progress is not None:
            progress.update(start=await consumer.position(tp), position=await consumer.position(tp), end=end)
        applied = 0
        offsets: dict[str | None, int] = {}
        positions: dict[str, int] = {}
        stream_time = -1
        last = _LastPerKey(store)
        pending, dropped = last.values, last.dropped
        while (position := await consumer.position(tp)) < end:
            if progress is not None:
                progress["position"] = position
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=RESTORE_MAX_RECORDS)
            for record in batch.get(tp, ()):
                key = record.key
                if key is not None and key[:1] == b"\x00":
                    topic = _marker_topic(key)
                    if topic is not False:
                        marker = orjson.loads(record.value)  # type: ignore[arg-type]
                        offsets[topic] = marker["offset"]
                        if topic is not None:
                            positions[topic] = marker.get("position", marker["offset"])
                        stream_time = max(stream_time, marker.get("stream_time", -1))
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
        return Restored(applied, offsets, end, positions, stream_time)
    finally:
        consumer.assign([])

