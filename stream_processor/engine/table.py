"""Tables: dict-like, changelog-backed state of an agent, partitioned like its input (Faust's ``app.Table``).

A table is one store per task (partition q of its agent's input): ``table[key]`` inside the agent reads and writes
the store of the partition whose record is being processed, and every change is written to partition q of the
agent's changelog topic in that record's transaction (under the key ``\\x01<table>\\x00<key>``); a delete is a
tombstone. On assignment the store is restored from the changelog. A table is only usable while an agent
processes a record (:class:`RuntimeError` elsewhere, e.g. in an ``app.timer``).

Keys are ``str`` (stored as they are) or any JSON value (stored as ``\\x02`` + its JSON). Values are JSON values
(a :class:`~stream_processor.engine.records.Record` among them stays that Record after a restore: its class is
written with it, as Faust does), or objects of ``value_type`` when it has ``to_state()``/``from_state(state)``
(a :class:`~stream_processor.engine.snapshot.Snapshot`; its ``STATE_VERSION`` and ``migrate(state, version)``
version and migrate the state, see :class:`~stream_processor.engine.state.StoreSpec`). A mutable value read
from the table (a dict, a list, an object) is written back at the next commit even when changed in place.

Windowed tables (:meth:`Table.tumbling`, :meth:`Table.hopping`) keep one value per key and window; a window older
than ``expires`` (past its end, relative to the latest time the table has seen in that partition) reads as the
default and is deleted (tombstoned) at the next commit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import orjson

from . import processor as _processor
from .processor import current_context
from .state import ChangelogStore, StoreSpec

_IMMUTABLE = (int, float, str, bool, type(None), tuple, bytes, frozenset)
_MISSING = object()
WINDOW_SEP = "\x1e"


def _skey(key: Any) -> str:
    return key if type(key) is str else "\x02" + orjson.dumps(key).decode()


def _ukey(skey: str) -> Any:
    if skey[:1] != "\x02":
        return skey
    key = orjson.loads(skey[1:])
    return _tuples(key) if isinstance(key, list) else key


def _tuples(value: Any) -> Any:
    """JSON arrays back to tuples (a key given as a tuple comes back as one; a list is not hashable anyway)."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


class Table(MutableMapping[Any, Any]):
    """A changelog-backed table (see the module docstring); create it with :meth:`App.Table`.

    ``default``: called for a missing key (like ``collections.defaultdict``; None: KeyError).
    """

    def __init__(self, name: str, default: Callable[[], Any] | None = None, value_type: type | None = None,
                 help: str | None = None, on_error: str | None = None) -> None:  # noqa: A002 - Faust's name
        if not name or "\x00" in name:
            raise ValueError(f"table name {name!r} must be non-empty, without NUL")
        self.name = name
        self.default = default
        self.value_type = value_type
        self.help = help
        snapshots = value_type is not None and callable(getattr(value_type, "from_state", None))
        self.spec = StoreSpec(name=name, value_type=value_type if snapshots else None, on_error=on_error)

    def __repr__(self) -> str:
        return f"<Table {self.name}>"

    def _store(self) -> ChangelogStore:
        ctx = current_context.get()
        if ctx is None:
            raise RuntimeError(f"table {self.name!r} used outside an agent's record (tables are partitioned like "
                               "their agent's input: only the agent can read and write them, while it processes)")
        try:
            return ctx.stores.stores[self.name]
        except KeyError:
            raise RuntimeError(f"table {self.name!r} is not a table of agent {ctx.processor!r}: name it in "
                               f"@app.agent(..., tables=[...])") from None

    def __getitem__(self, key: Any) -> Any:
        store = self._store()
        skey = _skey(key)
        value = store.get(skey, _MISSING)
        if value is _MISSING:
            if self.default is None:
                raise KeyError(key)
            value = self.default()
            if not isinstance(value, _IMMUTABLE):
                store.put(skey, value)  # a mutable default (list, dict) may be changed in place: keep it
            return value
        if not isinstance(value, _IMMUTABLE):
            store.mark_dirty(skey)  # may be changed in place
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self._store().put(_skey(key), value)

    def __delitem__(self, key: Any) -> None:
        store = self._store()
        skey = _skey(key)
        if skey not in store:
            raise KeyError(key)
        store.delete(skey)

    def __contains__(self, key: object) -> bool:
        return _skey(key) in self._store()

    def __iter__(self) -> Iterator[Any]:
        return (_ukey(k) for k in self._store().keys())

    def __len__(self) -> int:
        return len(self._store())

    def tumbling(self, size: float, expires: float | None = None) -> WindowedTable:
        """This table as tumbling windows of ``size`` seconds, kept ``expires`` seconds past their end (default:
        ``size``)."""
        return WindowedTable(self, size, size, expires)

    def hopping(self, size: float, step: float, expires: float | None = None) -> WindowedTable:
        """This table as hopping windows of ``size`` seconds every ``step`` seconds, kept ``expires`` seconds past
        their end (default: ``size``)."""
        return WindowedTable(self, size, step, expires)


class WindowedTable:
    """Windowed values per key (Faust's WindowWrapper): ``table[key]`` is a :class:`WindowSet`.

    ``table[key] += n`` adds to every window containing the current time (one for tumbling windows, ``size /
    step`` for hopping ones); ``table[key].current()`` reads the latest-starting window containing it,
    ``.now()`` the one containing the wall clock, ``.delta(s)`` the one containing the current time minus ``s``
    seconds, ``.value()`` = ``.current()``. The current time is the record's Kafka timestamp (default, also
    :meth:`relative_to_stream`), a field of the record's value (:meth:`relative_to_field`: an attribute name, or a
    function of the value, giving ms since the epoch), or the wall clock (:meth:`relative_to_now`). Windows are
    ``[start, start + size)`` in ms, aligned to the epoch.
    """

    def __init__(self, table: Table, size: float, step: float, expires: float | None,
                 relative: Callable[[], int] | None = None) -> None:
        if size <= 0 or step <= 0 or step > size:
            raise ValueError(f"windows need 0 < step <= size, got size {size}, step {step}")
        self.table = table
        self.name = table.name
        self.size_ms = int(size * 1000)
        self.step_ms = int(step * 1000)
        self.expires_ms = int((expires if expires is not None else size) * 1000)
        self._relative = relative or _stream_time
        self.spec = StoreSpec(name=table.name, value_type=table.spec.value_type, on_error=table.spec.on_error,
                              expire=self._expire, keep_meta=("latest",))

    def __repr__(self) -> str:
        return f"<WindowedTable {self.name} size={self.size_ms}ms step={self.step_ms}ms>"

    def _copy(self, relative: Callable[[], int]) -> WindowedTable:
        return WindowedTable(self.table, self.size_ms / 1000, self.step_ms / 1000, self.expires_ms / 1000, relative)

    def relative_to_stream(self) -> WindowedTable:
        """Windows by the record's Kafka timestamp (the default)."""
        return self._copy(_stream_time)

    def relative_to_now(self) -> WindowedTable:
        """Windows by the wall clock."""
        return self._copy(_wall_clock)

    def relative_to_field(self, field: str | Callable[[Any], int]) -> WindowedTable:
        """Windows by a time in the record's value (ms since the epoch): an attribute or key name, or a function."""
        get = field if callable(field) else _field_getter(field)

        def relative() -> int:
            return int(get(_current_value()))

        return self._copy(relative)

    def ranges(self, t: int) -> list[int]:
        """Start times (ms) of the windows containing ``t``, ascending."""
        step = self.step_ms
        last = t - t % step
        return list(range(last, t - self.size_ms, -step))[::-1]

    def _horizon(self, store: ChangelogStore) -> int:
        """Windows starting at or before this are past ``expires`` (relative to the latest time seen)."""
        return int(store.meta.get("latest", -1)) - self.size_ms - self.expires_ms

    def _stale(self, store: ChangelogStore, start: int) -> bool:
        return start <= self._horizon(store)

    def _see(self, store: ChangelogStore, t: int) -> None:
        if t > store.meta.get("latest", -1):
            store.meta["latest"] = t

    def _get(self, store: ChangelogStore, key: Any, start: int) -> Any:
        if self._stale(store, start):
            return self._default()
        value = store.get(f"{_skey(key)}{WINDOW_SEP}{start}", _MISSING)
        return self._default() if value is _MISSING else value

    def _default(self) -> Any:
        if self.table.default is None:
            return None
        return self.table.default()

    def _set(self, store: ChangelogStore, key: Any, start: int, value: Any) -> None:
        if self._stale(store, start):
            return  # a late write to an expired window is dropped (it reads as the default)
        store.put(f"{_skey(key)}{WINDOW_SEP}{start}", value)

    def __getitem__(self, key: Any) -> WindowSet:
        store = self.table._store()  # noqa: SLF001
        t = self._relative()
        self._see(store, t)
        return WindowSet(self, store, key, t)

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(value, WindowSet):
            return  # ``table[k] += n``: the WindowSet already applied it
        store = self.table._store()  # noqa: SLF001
        t = self._relative()
        self._see(store, t)
        for start in self.ranges(t):
            self._set(store, key, start, value)

    def __delitem__(self, key: Any) -> None:
        store = self.table._store()  # noqa: SLF001
        prefix = _skey(key) + WINDOW_SEP
        for skey in [k for k in store.keys() if k.startswith(prefix)]:
            store.delete(skey)

    def _expire(self, store: ChangelogStore) -> None:
        """Delete (tombstone) every window past ``expires``; run before each commit."""
        latest = store.meta.get("latest", -1)
        if latest < 0 or store.meta.get("swept") == latest:
            return
        store.meta["swept"] = latest
        horizon = self._horizon(store)
        for skey in [k for k in store.keys() if int(k.rpartition(WINDOW_SEP)[2]) <= horizon]:
            store.delete(skey)


class WindowSet:
    """The windows of one key at one time (see :class:`WindowedTable`)."""

    __slots__ = ("wtable", "store", "key", "t")

    def __init__(self, wtable: WindowedTable, store: ChangelogStore, key: Any, t: int) -> None:
        self.wtable, self.store, self.key, self.t = wtable, store, key, t

    def _at(self, t: int) -> Any:
        return self.wtable._get(self.store, self.key, self.wtable.ranges(t)[-1])  # noqa: SLF001

    def current(self) -> Any:
        """The value of the latest-starting window containing the current time."""
        return self._at(self.t)

    def value(self) -> Any:
        """Same as :meth:`current`."""
        return self._at(self.t)

    def now(self) -> Any:
        """The value of the latest-starting window containing the wall clock."""
        return self._at(_processor.wall_clock_ms())

    def delta(self, seconds: float) -> Any:
        """The value of the latest-starting window containing the current time minus ``seconds``."""
        return self._at(self.t - int(seconds * 1000))

    def _apply(self, op: Callable[[Any, Any], Any], other: Any) -> WindowSet:
        w = self.wtable
        for start in w.ranges(self.t):
            w._set(self.store, self.key, start, op(w._get(self.store, self.key, start), other))  # noqa: SLF001
        return self

    def __iadd__(self, other: Any) -> WindowSet:
        return self._apply(lambda a, b: a + b, other)

    def __isub__(self, other: Any) -> WindowSet:
        return self._apply(lambda a, b: a - b, other)

    def __imul__(self, other: Any) -> WindowSet:
        return self._apply(lambda a, b: a * b, other)

    def __repr__(self) -> str:
        return f"<WindowSet {self.wtable.name}[{self.key!r}] at {self.t}: {self.current()!r}>"


def _stream_time() -> int:
    ctx = current_context.get()
    if ctx is None or ctx.timestamp is None:
        raise RuntimeError("a windowed table is only usable while an agent processes a record")
    return ctx.timestamp


def _wall_clock() -> int:
    return _processor.wall_clock_ms()


def _current_value() -> Any:
    ctx = current_context.get()
    driver = ctx.agent_state if ctx is not None else None
    if driver is None or driver.current is None:
        raise RuntimeError("relative_to_field: no record is being processed")
    return driver.current


def _field_getter(name: str) -> Callable[[Any], Any]:
    def get(value: Any) -> Any:
        return value[name] if isinstance(value, dict) else getattr(value, name)

    return get
