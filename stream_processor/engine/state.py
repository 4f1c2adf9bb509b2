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
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson

from .exceptions import StateRecordError, StateRestoreError
from .records import decode_state, encode_state

if TYPE_CHECKING:
    from .rocksdb_store import TaskFiles

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


def _marker_topic(key: bytes | None) -> str | None | Literal[False]:
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
        self.data: MutableMapping[str, Any] = {}  # a dict; on disk a RocksData (engine/rocksdb_store.py)
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


_MISSING = object()


class TaskStores:
    """The stores of one task, by name (``""`` is the default store), sharing one changelog partition; a spec with
    ``history_ms`` gives a :class:`VersionedStore`.

    ``on_error``: what a snapshot that cannot be read does in stores whose spec does not say (the processor's
    ``state_errors``). ``files``: the task's RocksDB database (the processor's ``store: rocksdb://``, see
    :mod:`stream_processor.engine.rocksdb_store`), which then holds the key-value stores (versioned ones stay in
    memory); None: every store in memory.
    """

    __slots__ = ("stores", "files", "_by_prefix", "__weakref__")  # weakly held by local_tables

    def __init__(self, specs: list[StoreSpec], on_error: str = "reset", files: TaskFiles | None = None) -> None:
        self.files = files
        self.stores: dict[str, ChangelogStore] = {spec.name: self._new(spec, on_error) for spec in specs}
        self._by_prefix = {spec.name.encode(): store for spec, store in zip(specs, self.stores.values(),
                                                                            strict=True)}

    def _new(self, spec: StoreSpec, on_error: str) -> ChangelogStore:
        if spec.history_ms is not None:
            return _versioned()(spec, on_error)
        if self.files is None:
            return ChangelogStore(spec, on_error)
        from .rocksdb_store import RocksStore

        return RocksStore(spec, on_error, self.files)

    def __getitem__(self, name: str) -> ChangelogStore:
        return self.stores[name]

    def resume(self) -> int | None:
        """The changelog offset from which the stores on disk are brought up to date (their clean close's
        checkpoint, taken: a crash from now on leaves none), their metadata loaded; None: read the changelog from
        the beginning (memory stores, or no checkpoint)."""
        if self.files is None:
            return None
        offset = self.files.take_checkpoint()
        if offset is not None:
            for store in self.stores.values():
                getattr(store, "resume", _nothing)()
        return offset

    def loaded(self) -> None:
        """The restore is over: write what the stores on disk still hold in their restore batches."""
        for store in self.stores.values():
            getattr(store, "loaded", _nothing)()

    def close(self, checkpoint: int | None = None) -> None:
        """Close the stores' files (nothing for memory stores); ``checkpoint``: the changelog offset from which they
        are up to date, given only when every write to them belongs to a committed transaction (the task closed
        with nothing open or in flight), see :class:`~stream_processor.engine.rocksdb_store.TaskFiles`."""
        if self.files is not None:
            self.files.close(checkpoint)

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
        """Forget every key of every store (and wipe the stores' files)."""
        if self.files is not None:
            self.files.wipe()
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


def _nothing() -> None:
    return None


def _versioned() -> type[ChangelogStore]:
    from .versioned import VersionedStore

    return VersionedStore


# The versioned store and the restore, in their own modules (re-exported: where they always were).
from .restore import RESTORE_MAX_PENDING, RESTORE_MAX_RECORDS, Restored, restore  # noqa: E402
from .versioned import VersionedRecord, VersionedStore  # noqa: E402

__all__ = ["META_KEY", "OFFSET_KEY", "RESTORE_MAX_PENDING", "RESTORE_MAX_RECORDS", "STORE_PREFIX", "ChangelogStore",
           "Restored", "StoreSpec", "TaskStores", "VersionedRecord", "VersionedStore", "offset_marker", "restore"]
