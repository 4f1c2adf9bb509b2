"""A store versioned by Kafka timestamp (Kafka Streams' KIP-889 and KIP-914): each key keeps its values by the
timestamp they were put with, a lookup finds the one valid at a time, and history is kept by time span.

One changelog record per version (key ``<key>\x00<timestamp>``), expired ones tombstoned; the newest timestamp put
is the store's metadata record. A processor gets one through ``StoreSpec(history_ms=...)`` (see
:mod:`stream_processor.engine.state`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any, NamedTuple

from .state import ChangelogStore, StoreSpec


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

    def get(self, key: str, as_of: int | None = None) -> VersionedRecord | None:
        """The version of ``key`` valid at ``as_of`` (ms): the newest with timestamp <= ``as_of`` (None: the newest
        of all), or None when there is none or it has expired."""
        history = self.data.get(key)
        if history is None:
            return None
        times = history.times
        i = len(times) - 1 if as_of is None else bisect_right(times, as_of) - 1
        if i < 0 or (times[i] < self.observed - self.history_ms and i < self._floor(times)):  # (expired, rarely)
            return None
        return _record(VersionedRecord, (history.values[i], times[i]))

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
