"""Stores on disk (``store="rocksdb://"``, Faust's ``App(store="rocksdb://")``): a task's keys in RocksDB (rocksdict).

A processor whose settings say ``store: rocksdb://`` keeps each task's stores in one RocksDB database,
``<root>/<changelog topic>/<q>`` (:func:`task_files`); ``<root>`` is the URL's path (``rocksdb:///var/lib/state``) or,
with none, ``<working directory>/<app_id>-data/rocksdb`` (Faust's ``{appid}-data`` datadir). Only the objects read or
written in the open transaction are in memory (:class:`RocksData`): a table larger than memory works.

The changelog stays the source of truth (as in Kafka Streams under exactly-once): the database is written at each
commit's seal (the encoded changelog values of the dirty keys), before the transaction is known to commit, so its
contents are trusted only after a clean close. :meth:`TaskFiles.close` with the changelog offset the store reflects
(the task's ``changelog_position``, its last committed transaction's first changelog record) writes a checkpoint
record into the database; the next opening (:func:`~stream_processor.engine.restore.restore`) takes and deletes it
(synced) before anything else is written, and reads the changelog only from that offset. No checkpoint (a crash,
kill -9, an aborted transaction, a close while a commit was in flight) or one beyond the changelog's end or below its
start (a topic deleted and re-created, records deleted): the database is wiped and restored from the changelog,
exactly as the in-memory store is. A crash between a RocksDB write and its transaction's commit thus never leaves
state the changelog does not have.

Differences from the in-memory store, as with Faust's RocksDB store: keys iterate in sorted order (by code point),
not insertion order; an object read in one transaction and changed in place in a later one without being put or
marked dirty again is not the stored one (the cache holds a transaction's objects only). Versioned stores
(``StoreSpec.history_ms``) stay in memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from rocksdict import BlockBasedOptions, Cache, Options, Rdict, ReadOptions, WriteBatch, WriteOptions

from .state import ChangelogStore, StoreSpec

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger(__name__)

MEMORY = "memory://"
ROCKSDB = "rocksdb://"
CHECKPOINT_KEY = b"\x00checkpoint"
"""The database's checkpoint record: ``{"offset": n}``, the changelog offset from which reading the changelog
brings the database up to date (written by a clean close only)."""
DATA = b"d"  # data keys: DATA + store name + NUL + key
META = b"m"  # a store's metadata (a windowed table's latest time): META + store name
RESTORE_BATCH = 10_000  # changelog records written per RocksDB write batch while restoring
BLOCK_CACHE_BYTES = 64 * 2**20  # per database (task): hot blocks of values; RocksDB's default is 8 MiB

_OPEN: dict[Path, tuple[Rdict, TaskFiles]] = {}  # this process's open databases and their owners: a task reopened
# (a new TaskStores) takes over the handle its previous opening left open; only the owner closes it.


def store_root(url: str, app_id: str) -> Path | None:
    """The directory of the databases a ``store`` URL names; None for ``memory://``.

    Raises ValueError for any other URL (settings validate it first)."""
    if url == MEMORY:
        return None
    if not url.startswith(ROCKSDB):
        raise ValueError(f"store {url!r} must be 'memory://' or 'rocksdb://'")
    rest = url[len(ROCKSDB):]
    return Path(rest) if rest else Path.cwd() / f"{app_id}-data" / "rocksdb"


def task_files(url: str, app_id: str, changelog: str, q: int) -> TaskFiles | None:
    """The database of task ``q`` of the processor whose changelog topic is ``changelog`` (None: memory store)."""
    root = store_root(url, app_id)
    return None if root is None else TaskFiles(root / changelog / str(q))


def _options() -> Options:
    """Raw bytes; a Bloom filter (10 bits a key: a key never written, a table's default, is found absent without
    reading a block) and a block cache of :data:`BLOCK_CACHE_BYTES`."""
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    table = BlockBasedOptions()
    table.set_bloom_filter(10, False)
    table.set_block_cache(Cache(BLOCK_CACHE_BYTES))
    opts.set_block_based_table_factory(table)
    return opts


def _synced() -> WriteOptions:
    opts = WriteOptions()
    opts.sync = True
    return opts


class TaskFiles:
    """The RocksDB database of one task (all its stores), opened on first use; see the module docstring."""

    __slots__ = ("path", "_db")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: Rdict | None = None

    @property
    def db(self) -> Rdict:
        """The open database (opened, or taken over from this process's previous handle, on first use).

        Raises OSError when another process holds it and no private copy can be made."""
        if self._db is None:
            held = _OPEN.get(self.path)
            self._db = held[0] if held is not None else self._open()
            _OPEN[self.path] = (self._db, self)
        return self._db

    def _open(self) -> Rdict:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return Rdict(str(self.path), _options())
        except Exception as exc:  # noqa: BLE001 - rocksdict raises a bare Exception for a held LOCK
            if "lock" not in str(exc).lower():
                raise OSError(f"cannot open the store database {self.path}: {exc}") from exc
        # Another worker process on this host holds it (two workers with one state directory): a private one.
        private = self.path.with_name(f"{self.path.name}.{os.getpid()}")
        log.warning("store database %s is held by another process; this worker uses %s (restored from the "
                    "changelog)", self.path, private)
        self.path = private
        held = _OPEN.get(private)
        return held[0] if held is not None else Rdict(str(private), _options())

    def take_checkpoint(self) -> int | None:
        """The changelog offset of the clean close the database reflects, deleted (synced) so that a crash from now
        on leaves none; None when there is none."""
        db = self.db
        raw = db.get(CHECKPOINT_KEY)
        if raw is None:
            return None
        db.delete(CHECKPOINT_KEY, _synced())
        offset = orjson.loads(raw).get("offset")
        return offset if type(offset) is int and offset >= 0 else None

    def wipe(self) -> None:
        """Delete every key (a restore from the beginning follows)."""
        self.db.delete_range(b"\x00", b"\xff")  # every key: the checkpoint (\x00...), data (d...), metadata (m...)

    def close(self, checkpoint: int | None = None) -> None:
        """Close the database; ``checkpoint``: the changelog offset it reflects (a clean close: every write to it
        belongs to a committed transaction), recorded so the next opening reads the changelog only from there.
        Nothing is done by a TaskFiles whose handle a newer one of the same task took over."""
        db, self._db = self._db, None
        held = _OPEN.get(self.path)
        if db is None or held is None or held[1] is not self:
            return
        if checkpoint is not None:
            db.put(CHECKPOINT_KEY, orjson.dumps({"offset": checkpoint}), _synced())
        _OPEN.pop(self.path, None)
        db.close()


class RocksData(MutableMapping[str, Any]):
    """The ``data`` of a store on disk: key -> live object, the objects of the open transaction held in ``live``
    (read or written) and ``gone`` (deleted), the rest decoded from RocksDB on demand (the changelog values of the
    keys). :meth:`flush` writes the transaction's changes and empties the cache."""

    __slots__ = ("files", "store", "prefix", "live", "gone")

    def __init__(self, files: TaskFiles, store: ChangelogStore) -> None:
        self.files = files
        self.store = store
        self.prefix = DATA + store.spec.name.encode() + b"\x00"
        self.live: dict[str, Any] = {}
        self.gone: set[str] = set()

    def _raw(self, key: str) -> bytes | None:
        value: bytes | None = self.files.db.get(self.prefix + key.encode())
        return value

    def __getitem__(self, key: str) -> Any:
        try:
            return self.live[key]
        except KeyError:
            pass
        if key in self.gone:
            raise KeyError(key)
        raw = self._raw(key)
        if raw is None:
            raise KeyError(key)
        obj = self.live[key] = self.store.decode(raw)
        return obj

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: str, value: Any) -> None:
        self.live[key] = value
        self.gone.discard(key)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.live.pop(key, None)
        self.gone.add(key)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return key in self.live or (key not in self.gone and self._raw(key) is not None)

    def _stored(self) -> Iterator[str]:
        """The keys in the database, sorted."""
        prefix = self.prefix
        bound = ReadOptions()
        bound.set_iterate_upper_bound(prefix[:-1] + b"\x01")
        cut = len(prefix)
        raw: Any  # bytes: the database is in raw mode
        for raw in self.files.db.keys(from_key=prefix, read_opt=bound):
            yield raw[cut:].decode()

    def __iter__(self) -> Iterator[str]:
        gone, live = self.gone, self.live
        if not live:
            return (k for k in self._stored() if k not in gone)
        stored = [k for k in self._stored() if k not in gone]
        new = [k for k in live if self._raw(k) is None]
        return iter(sorted(stored + new) if new else stored)

    def __len__(self) -> int:
        gone = self.gone
        return sum(1 for k in self._stored() if k not in gone) + sum(1 for k in self.live if self._raw(k) is None)

    def clear(self) -> None:
        """Forget every key of the store and its metadata, in memory and on disk."""
        self.live.clear()
        self.gone.clear()
        db = self.files.db
        db.delete_range(self.prefix, self.prefix[:-1] + b"\x01")
        db.delete(META + self.store.spec.name.encode())

    def flush(self, encoded: dict[str, bytes | None]) -> None:
        """Write the transaction's changes (``encoded``: key -> changelog value, None deletes it) and empty the
        cache."""
        batch = WriteBatch(raw_mode=True)
        prefix = self.prefix
        for key, value in encoded.items():
            if value is None:
                batch.delete(prefix + key.encode())
            else:
                batch.put(prefix + key.encode(), value)
        if encoded:
            self.files.db.write(batch)
        self.live.clear()
        self.gone.clear()

    def write_raw(self, batch: WriteBatch, key: str, value: bytes | None) -> None:
        """Add a restored record to ``batch`` (and drop any cached object of ``key``)."""
        self.live.pop(key, None)
        self.gone.discard(key)
        if value is None:
            batch.delete(self.prefix + key.encode())
        else:
            batch.put(self.prefix + key.encode(), value)

    def save_meta(self, meta: dict[str, Any]) -> None:
        self.files.db.put(META + self.store.spec.name.encode(), orjson.dumps(meta))

    def load_meta(self) -> dict[str, Any]:
        raw = self.files.db.get(META + self.store.spec.name.encode())
        meta: dict[str, Any] = orjson.loads(raw) if raw is not None else {}
        return meta


class RocksStore(ChangelogStore):
    """A :class:`~stream_processor.engine.state.ChangelogStore` whose keys are in the task's RocksDB database (see the
    module docstring): the same API, the same changelog records; ``data`` is a :class:`RocksData`."""

    __slots__ = ("files", "_encoded", "_batch")

    def __init__(self, spec: StoreSpec | Callable[[Any], Any] | None, on_error: str, files: TaskFiles) -> None:
        super().__init__(spec, on_error)
        self.files = files
        self.data: RocksData = RocksData(files, self)
        self._encoded: dict[str, bytes | None] = {}  # the last dirty_records, for written()
        self._batch: WriteBatch | None = None  # restored records not yet written

    def dirty_records(self, limit: int | None = None) -> list[tuple[bytes, bytes | None]]:
        encoded = {key: self.encode(key, limit) for key in self.dirty}
        self._encoded = encoded
        prefix = self._prefix
        return [(prefix + key.encode(), value) for key, value in encoded.items()]

    def written(self) -> list[tuple[bytes, bytes]]:
        """Write the dirty keys' changelog values to the database (at the seal of the transaction: trusted after a
        clean close only, see :class:`TaskFiles`), empty the cache, clear the dirty set."""
        encoded, self._encoded = self._encoded, {}
        if encoded.keys() != self.dirty:
            encoded = {key: self.encode(key) for key in self.dirty}
        self.data.flush(encoded)
        records = super().written()
        if records:
            self.data.save_meta(self._meta_written)
        return records

    def load_meta(self, value: bytes) -> None:
        super().load_meta(value)
        self.data.save_meta(self._meta_written)

    def load(self, key: bytes, value: bytes | None) -> None:
        """Apply one restored changelog record: checked as the in-memory store reads it (an unreadable snapshot resets
        its key or raises StateRestoreError, per the spec), written as it is (decoded again when read); a snapshot of
        an older layout version is written migrated."""
        name = key.decode()
        if value is not None:
            try:
                obj = self.decode(value)
            except Exception as exc:  # noqa: BLE001 - a snapshot this code cannot read: reset the key or fail
                self.data.write_raw(self._restore_batch(), name, None)
                self._unreadable(name, exc)
                return
            version = self.spec.version
            if version is not None and not value.startswith(b'{"v":%d,' % version):
                value = self._encode_value(name, obj, len(key), None)  # migrated once, stored in this version
        batch = self._restore_batch()
        self.data.write_raw(batch, name, value)
        if batch.len() >= RESTORE_BATCH:
            self.loaded()

    def _restore_batch(self) -> WriteBatch:
        if self._batch is None:
            self._batch = WriteBatch(raw_mode=True)
        return self._batch

    def loaded(self) -> None:
        """Write the restored records still in the batch."""
        batch, self._batch = self._batch, None
        if batch is not None and not batch.is_empty():
            self.files.db.write(batch)

    def resume(self) -> None:
        """Take the metadata the database holds (an opening from a checkpoint)."""
        self._meta_written = self.data.load_meta()
        self.meta.update(self._meta_written)
