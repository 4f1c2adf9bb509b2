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

A store's values are :class:`~stream_processor.engine.snapshot.Snapshot` objects (``StoreSpec.value_type``; the
changelog record is ``{"v": STATE_VERSION, "state": obj.to_state()}``, see :class:`StoreSpec` for versions and
migration) or JSON values (records of :class:`~stream_processor.engine.records.Record` keep their class). A
processor reads and writes a store only through its methods (:class:`ChangelogStore`). A store with
``StoreSpec.history_ms`` keeps versions by Kafka timestamp (:class:`VersionedStore`, Kafka Streams' KIP-889).
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from .exceptions import StateRecordError, StateRestoreError
from .records import decode_state, encode_state

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

    ``value_type``: the class of the store's values, a :class:`~stream_processor.engine.snapshot.Snapshot` (or any
    class with ``to_state()``, ``from_state(state)`` and optionally ``STATE_VERSION`` and ``migrate(state,
    version)``); it gives the defaults of ``from_state``, ``version`` (its ``STATE_VERSION``) and ``migrate``.
    ``from_state``/``to_state``: JSON document <-> live object (None: the values are JSON values themselves, a
    :class:`~stream_processor.engine.records.Record` among them kept as one; ``to_state`` None with a ``from_state``
    means ``obj.to_state()``). ``version``: the layout version written in the envelope of every record,
    ``{"v": version, "state": ...}`` (None: states are written bare, as before versions existed). On restore a
    state of an older version is passed through ``migrate(state, its_version)`` first (a bare state is version 0);
    a state of a NEWER version than ``version`` (written by newer code) is not read.
    ``on_error``: what a state that cannot be read (newer, no migration, ``migrate`` or ``from_state`` raised)
    does: ``"reset"`` drops that key (it starts from empty state; logged and counted by
    :attr:`ChangelogStore.resets`), ``"fail"`` raises :class:`~stream_processor.engine.exceptions.StateRestoreError`
    (the processor fails at once, with the reason on ``/health``); None: the processor's ``state_errors``.
    ``history_ms``: a store versioned by Kafka timestamp that keeps this much history (ms), see
    :class:`VersionedStore`; None: a key-value store.
    """

    name: str = ""
    from_state: Callable[[Any], Any] | None = None
    to_state: Callable[[Any], Any] | None = None
    version: int | None = None
    migrate: Callable[[Any, int], Any] | None = None
    on_error: str | None = None
    expire: Callable[[ChangelogStore], None] | None = None  # run before each commit (windowed tables' expiry)
    keep_meta: tuple[str, ...] = ()  # entries of ChangelogStore.meta written to the changelog with the store
    value_type: type | None = None
    history_ms: int | None = None

    def __post_init__(self) -> None:
        kind = self.value_type
        if kind is not None:
            if self.from_state is None:
                object.__setattr__(self, "from_state", kind.from_state)  # type: ignore[attr-defined]
            if self.version is None:
                object.__setattr__(self, "version", getattr(kind, "STATE_VERSION", None))
            if self.migrate is None:
                object.__setattr__(self, "migrate", getattr(kind, "migrate", None))
        if self.history_ms is not None and (type(self.history_ms) is not int or self.history_ms < 0):
            raise ValueError(f"store {self.name!r}: history_ms must be an int >= 0, got {self.history_ms!r}")


class ChangelogStore:
    """In-memory state of one input partition, with the set of keys changed since the last checkpoint.

    What a processor uses: :meth:`get`, :meth:`put`, :meth:`delete`, :meth:`mark_dirty` (an object changed in
    place), :meth:`take`, ``key in store``, ``len(store)``, :meth:`keys`, :meth:`items`. A key changed with
    :meth:`put` or :meth:`mark_dirty` is written to the changelog at the next commit; a key removed with
    :meth:`delete` is written as a tombstone (value None), which compaction then removes. ``data`` (key -> live
    object) and ``dirty`` are the runtime's and the test driver's, not a processor's.
    """

    __slots__ = ("data", "dirty", "spec", "resets", "meta", "on_error", "_from_state", "_to_state", "_prefix",
                 "_meta_written", "_keep_meta", "_json")

    def __init__(self, from_state: Callable[[Any], Any] | StoreSpec | None = None, on_error: str = "reset") -> None:
        spec = from_state if isinstance(from_state, StoreSpec) else StoreSpec(from_state=from_state)
        self.spec = spec
        self.data: dict[str, Any] = {}
        self.dirty: set[Any] = set()
        self.resets = 0  # snapshots dropped because they could not be read (on_error "reset")
        self.meta: dict[str, Any] = {}  # a windowed table's latest time; spec.keep_meta entries are in the changelog
        self._meta_written: dict[str, Any] = {}
        self._keep_meta = spec.keep_meta
        self.on_error = on_error  # when the spec says None: the processor's state_errors
        self._json = spec.from_state is None and spec.to_state is None  # JSON values: records keep their class
        self._from_state = spec.from_state or _identity
        self._to_state = spec.to_state or (_to_state if spec.from_state is not None else _identity)
        self._prefix = STORE_PREFIX + spec.name.encode() + b"\x00" if spec.name else b""

    # ---- the processor's API ----------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        """The live object of ``key``, or ``default``."""
        return self.data.get(key, default)

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

    def take(self, key: str) -> Any:
        """Remove ``key``'s live object from memory and return it (None if absent), writing nothing: its changelog
        record stays as last written until the key is put or deleted again.

        For a restored object that another one absorbs (an order book takes its restored log) and whose key the
        processor writes again later; a key taken and never written again comes back at the next restore.
        """
        return self.data.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.data))

    def keys(self) -> list[str]:
        """Every key, in insertion order (a new list: the store may change while the caller goes through it)."""
        return list(self.data)

    def items(self) -> list[tuple[str, Any]]:
        """Every ``(key, live object)``, in insertion order (a new list, see :meth:`keys`)."""
        return list(self.data.items())

    # ---- the runtime's ------------------------------------------------------------------------------------
    def encode(self, key: str, limit: int | None = None) -> bytes | None:
        """The changelog value of ``key``: its state as JSON (in the ``{"v", "state"}`` envelope if the spec has a
        version); None (a tombstone) for a deleted key.

        Raises:
            StateRecordError: the state cannot be encoded (``state_unserializable``), or its record (key and value)
                is larger than ``limit`` bytes (``state_too_large``).
        """
        obj = self.data.get(key, _MISSING)
        if obj is _MISSING:
            return None
        return self._encode_value(key, obj, len(key), limit)

    def _encode_value(self, what: Any, obj: Any, key_bytes: int, limit: int | None) -> bytes:
        try:
            state = self._to_state(obj)
            version = self.spec.version
            doc = state if version is None else {"v": version, "state": state}
            value = encode_state(doc) if self._json else orjson.dumps(doc)
        except (TypeError, ValueError, OverflowError, AttributeError) as exc:  # JSONEncodeError is a TypeError
            raise StateRecordError(str(what), "state_unserializable",
                                   f"state of {what!r} cannot be written: {exc}") from None
        if limit is not None and len(value) + key_bytes > limit:
            raise StateRecordError(str(what), "state_too_large",
                                   f"state of {what!r} is {len(value)} bytes, above the changelog's {limit}")
        return value

    def dirty_records(self, limit: int | None = None) -> list[tuple[bytes, bytes | None]]:
        """The ``(key, value)`` changelog records of the dirty keys (see :meth:`encode`), prefixed with the store's
        name; changes nothing (a StateRecordError leaves the store as it was)."""
        prefix = self._prefix
        return [(prefix + key.encode(), self.encode(key, limit)) for key in self.dirty]

    def expire(self) -> None:
        """Drop what has expired before a commit (the spec's ``expire``: a windowed table's old windows)."""
        if self.spec.expire is not None:
            self.spec.expire(self)

    def written(self) -> list[tuple[bytes, bytes]]:
        """Say that the dirty records are written: clear the dirty set; the store's metadata record (its
        ``spec.keep_meta`` entries) if they changed since last written."""
        self.dirty = set()
        keep = self._keep_meta
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
            self.data[name] = self.decode(value)
        except Exception as exc:  # noqa: BLE001 - a snapshot this code cannot read: reset the key or fail, per spec
            self.data.pop(name, None)
            self._unreadable(name, exc)

    def decode(self, value: bytes) -> Any:
        """The live object of a changelog value: its envelope's version checked, older layouts migrated (see
        :class:`StoreSpec`). Raises ValueError (or what ``migrate`` / ``from_state`` raise) when it cannot be
        read."""
        state = decode_state(value) if self._json else orjson.loads(value)
        version = self.spec.version
        if version is not None:
            found = 0
            if type(state) is dict and len(state) == 2 and "v" in state and "state" in state:
                found, state = state["v"], state["state"]
            if found != version:
                if type(found) is not int or found > version:
                    raise ValueError(f"snapshot layout version {found!r}, newer than this code's {version}")
                if self.spec.migrate is None:
                    raise ValueError(f"snapshot layout version {found}, this code reads {version} and has no "
                                     "migration")
                state = self.spec.migrate(state, found)
        return self._from_state(state)

    def _unreadable(self, name: str, exc: BaseException) -> None:
        """Reset (count, log) or fail for the snapshot of ``name`` that cannot be read, per the spec's
        ``on_error``."""
        store = self.spec.name or "state"
        if (self.spec.on_error or self.on_error) == "fail":
            raise StateRestoreError(f"store {store!r}: the snapshot of {name!r} cannot be read: {exc!r}") from exc
        self.resets += 1
        log.error("store %r: the snapshot of %r cannot be read (%r); the key starts from empty state", store,
                  name, exc)


class VersionedRecord(NamedTuple):
    """One version of a key in a :class:`VersionedStore`: its value and its timestamp (ms since the epoch)."""

    value: Any
    timestamp: int


_record = tuple.__new__  # VersionedRecord(value, t) without NamedTuple's Python-level __new__ (the lookup's hot path)


class _History:
    """The versions of one key, oldest first: timestamps (ascending, distinct) and values side by side."""

    __slots__ = ("times", "values")

    def __init__(self) -> None:
        self.times: list[int] = []
        self.values: list[Any] = []

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _History) and self.times == other.times and self.values == other.values

    def __repr__(self) -> str:
        return f"<versions {list(zip(self.times, self.values, strict=True))!r}>"


class VersionedStore(ChangelogStore):
    """A store whose keys keep versions by timestamp (Kafka Streams' versioned key-value store, KIP-889).

    :meth:`put` ``(key, value, timestamp)`` adds the version of ``key`` valid from ``timestamp`` (the Kafka
    timestamp of the record that brought it, ms since the epoch; a put at an existing timestamp replaces that
    version); :meth:`get` ``(key, as_of)`` returns the version valid at ``as_of``, i.e. the newest one with a
    timestamp <= ``as_of``, as a :class:`VersionedRecord`, or None; :meth:`versions` lists a key's versions.

    History is kept by time span, like KIP-889's history retention: with ``observed`` the newest timestamp put in
    the store and ``cutoff = observed - history_ms``, the versions older than the newest one at or before the cutoff
    are expired (so a lookup at or after the cutoff still finds the version valid then): :meth:`get` and
    :meth:`versions` never return them, they are dropped from memory when their key is put and at each commit, and
    their changelog records are tombstoned. A put of a version that would be expired at once is not stored.

    Each version is its own changelog record (key ``<key>\\x00<timestamp>``, the value's state in the spec's
    envelope), so a put writes one record, not the key's whole history; ``observed`` is the store's metadata record.
    A lookup is a binary search: O(log n) in the key's versions; a put at the end (the usual case) is O(1)
    amortized. Deleting a key (:meth:`delete`) removes every version of it.
    """

    __slots__ = ("history_ms", "observed", "_swept", "_index", "_scans")

    def __init__(self, spec: StoreSpec, on_error: str = "reset") -> None:
        super().__init__(spec, on_error)
        if spec.history_ms is None:
            raise ValueError(f"store {spec.name!r}: a versioned store needs history_ms")
        self.history_ms: int = spec.history_ms
        self.observed = -1  # the newest timestamp put (ms), -1 before the first
        self._swept = -1  # ``observed`` at the last sweep of every key
        self._index: list[str] | None = None  # the keys sorted (for scan), None when a key came or went since
        self._scans: dict[str, list[str]] = {}  # scan's answers since a key last came or went
        self._keep_meta = ("observed", *spec.keep_meta)

    # ---- the processor's API ----------------------------------------------------------------------------
    def put(self, key: str, value: Any, timestamp: int) -> bool:  # type: ignore[override]
        """Add (or replace) the version of ``key`` valid from ``timestamp`` (ms) and mark it dirty.

        Returns False, storing nothing, when the version is already expired (older than the newest version at or
        before the cutoff). Raises ValueError for a timestamp that is not an int >= 0, a None value, or a key
        holding NUL.
        """
        if type(timestamp) is not int or timestamp < 0:
            raise ValueError(f"a version's timestamp must be an int >= 0 (ms), got {timestamp!r}")
        if value is None:
            raise ValueError("a version's value cannot be None (delete the key instead)")
        history = self.data.get(key)
        if history is None:
            if "\x00" in key:
                raise ValueError(f"a versioned store's key cannot hold NUL: {key!r}")
            history = self.data[key] = _History()
            self._index = None
        if timestamp > self.observed:
            self.observed = timestamp
        times = history.times
        floor = self._floor(times)
        if floor >= 0 and timestamp < times[floor]:
            return False
        i = bisect_left(times, timestamp)
        if i < len(times) and times[i] == timestamp:
            history.values[i] = value
        else:
            times.insert(i, timestamp)
            history.values.insert(i, value)
        self.dirty.add((key, timestamp))
        self._drop_expired(key, history)
        return True

    def get(self, key: str, as_of: int | None = None) -> VersionedRecord | None:  # type: ignore[override]
        """The version of ``key`` valid at ``as_of`` (ms): the newest with timestamp <= ``as_of`` (None: the newest
        of all), or None when there is none or it has expired."""
        history = self.data.get(key)
        if history is None:
            return None
        times = history.times
        i = len(times) - 1 if as_of is None else bisect_right(times, as_of) - 1
        if i < 0 or (times[i] < self.observed - self.history_ms and i < self._floor(times)):  # (expired, rarely)
            return None
        return _record(VersionedRecord, (history.values[i], times[i]))  # type: ignore[no-any-return]

    def versions(self, key: str) -> list[VersionedRecord]:
        """Every version of ``key`` not expired, oldest first."""
        history = self.data.get(key)
        if history is None:
            return []
        start = max(self._floor(history.times), 0)
        return [VersionedRecord(v, t) for t, v in zip(history.times[start:], history.values[start:], strict=True)]

    def delete(self, key: str) -> None:
        """Remove every version of ``key`` (each one's changelog record becomes a tombstone)."""
        history = self.data.pop(key, None)
        if history is not None:
            self.dirty.update((key, t) for t in history.times)
            self._index = None

    def mark_dirty(self, key: str) -> None:
        """Versions are values: change one with :meth:`put`."""
        raise TypeError("a versioned store's versions are not changed in place: put a new version")

    def items(self) -> list[tuple[str, Any]]:
        """Every ``(key, newest version)``: see :meth:`get`."""
        return [(key, self.get(key)) for key in self.data]

    def scan(self, prefix: str) -> list[str]:
        """The keys that start with ``prefix``, sorted (Kafka Streams' ``prefixScan``; a list the caller must not
        change): a binary search in the sorted keys, O(log n + keys found), remembered until a key comes or goes
        (the sorted keys are then rebuilt, O(n log n), at the next scan)."""
        found = self._scans.get(prefix)
        if found is not None and self._index is not None:
            return found
        index = self._index
        if index is None:
            index = self._index = sorted(self.data)
            self._scans.clear()
        i = bisect_left(index, prefix)
        found = []
        while i < len(index) and index[i].startswith(prefix):
            found.append(index[i])
            i += 1
        self._scans[prefix] = found
        return found

    # ---- expiry ---------------------------------------------------------------------------------------------
    def _floor(self, times: list[int]) -> int:
        """The index of the newest version at or before the cutoff (the versions before it are expired); -1 when
        there is none (nothing is expired)."""
        if self.observed < 0:
            return -1
        return bisect_right(times, self.observed - self.history_ms) - 1

    def _drop_expired(self, key: str, history: _History) -> None:
        floor = self._floor(history.times)
        if floor > 0:
            self.dirty.update((key, t) for t in history.times[:floor])
            del history.times[:floor]
            del history.values[:floor]

    def expire(self) -> None:
        """Drop every key's expired versions (tombstoned at this commit); run before each commit."""
        super().expire()
        if self._swept == self.observed:
            return
        self._swept = self.observed
        for key, history in self.data.items():
            self._drop_expired(key, history)

    # ---- the runtime's ------------------------------------------------------------------------------------
    def encode(self, key: Any, limit: int | None = None) -> bytes | None:
        """The changelog value of version ``key`` = ``(key, timestamp)``: its value's state (see
        :meth:`ChangelogStore.encode`), or None (a tombstone) when that version is gone. Raises StateRecordError."""
        name, timestamp = key
        history = self.data.get(name)
        if history is None:
            return None
        i = bisect_left(history.times, timestamp)
        if i == len(history.times) or history.times[i] != timestamp:
            return None
        key_bytes = len(name.encode()) + 1 + len(str(timestamp))
        return self._encode_value(f"{name}@{timestamp}", history.values[i], key_bytes, limit)

    def dirty_records(self, limit: int | None = None) -> list[tuple[bytes, bytes | None]]:
        prefix = self._prefix
        return [(prefix + f"{name}\x00{timestamp}".encode(), self.encode((name, timestamp), limit))
                for name, timestamp in self.dirty]

    def written(self) -> list[tuple[bytes, bytes]]:
        if self.observed >= 0:
            self.meta["observed"] = self.observed
        return super().written()

    def load_meta(self, value: bytes) -> None:
        super().load_meta(value)
        observed = self.meta.get("observed", -1)
        self.observed = observed if type(observed) is int else -1

    def clear(self) -> None:
        super().clear()
        self.observed = self._swept = -1
        self._index = None

    def load(self, key: bytes, value: bytes | None) -> None:
        """Apply one changelog record: a version (``<key>\\x00<timestamp>``) or its tombstone.

        Raises StateRestoreError: the version cannot be read and the spec's ``on_error`` is ``"fail"``.
        """
        name_bytes, sep, stamp = key.rpartition(b"\x00")
        name = name_bytes.decode()
        if not sep or not stamp.isdigit():
            self._unreadable(key.decode(errors="replace"), ValueError("not a version's key (<key>\\x00<timestamp>)"))
            return
        timestamp = int(stamp)
        history = self.data.get(name)
        if value is not None:
            try:
                obj = self.decode(value)
            except Exception as exc:  # noqa: BLE001 - reset the version or fail, per spec
                value = None
                self._unreadable(f"{name}@{timestamp}", exc)
        if history is None:
            if value is None:
                return
            history = self.data[name] = _History()
            self._index = None
        times = history.times
        i = bisect_left(times, timestamp)
        found = i < len(times) and times[i] == timestamp
        if value is None:
            if found:
                del times[i]
                del history.values[i]
                if not times:
                    del self.data[name]
                    self._index = None
        elif found:
            history.values[i] = obj
        else:
            times.insert(i, timestamp)
            history.values.insert(i, obj)


_MISSING = object()


class TaskStores:
    """The stores of one task, by name (``""`` is the default store), sharing one changelog partition; a spec with
    ``history_ms`` gives a :class:`VersionedStore`.

    ``on_error``: what a snapshot that cannot be read does in stores whose spec does not say (the processor's
    ``state_errors``).
    """

    __slots__ = ("stores", "_by_prefix")

    def __init__(self, specs: list[StoreSpec], on_error: str = "reset") -> None:
        self.stores: dict[str, ChangelogStore] = {
            spec.name: (ChangelogStore if spec.history_ms is None else VersionedStore)(spec, on_error)
            for spec in specs
        }
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
            store.expire()
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

