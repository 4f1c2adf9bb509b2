"""Faust's ``WindowWrapper`` (:class:`WindowedTable`) and ``WindowSet`` over a table's store (see
:mod:`~stream_processor.engine.windows` for the semantics and their Faust sources)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .durations import Duration
from .local_tables import LocalView
from .processor import current_context
from .state import ChangelogStore
from .windows import (
    OPERATORS,
    Event,
    HoppingWindow,
    Relative,
    WindowRange,
    current_event,
    no_keys,
    relative_event,
    relative_field,
    relative_handler,
    relative_now,
    run_callback,
    scan_expired,
    to_timestamp,
)

if TYPE_CHECKING:
    from .table import Table

_MISSING = object()


class WindowedTable:
    """A windowed table (Faust's ``WindowWrapper``): ``table[key]`` is a :class:`WindowSet`; create it with
    :meth:`Table.tumbling <stream_processor.engine.table.Table.tumbling>` or ``.hopping``. The ``relative_to*``
    methods return a copy over the same table and store (as Faust's ``clone``)."""

    def __init__(self, table: Table, window: HoppingWindow, relative_to: Relative | None = None) -> None:
        self.table = table
        self.window = window
        self.get_relative_timestamp = relative_to

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def spec(self) -> Any:
        return self.table.spec

    def __repr__(self) -> str:
        return f"<WindowedTable {self.name} {self.window!r}>"

    # ---- time-relativity (Faust's WindowWrapper.relative_to*) -----------------------------------------------
    def relative_to(self, ts: Any) -> WindowedTable:
        """Windows by ``ts``: a datetime or float (fixed), a field reference, or a function of the event
        (:class:`~stream_processor.engine.windows.Event`) giving seconds, a datetime or an ISO-8601 string."""
        return WindowedTable(self.table, self.window, relative_handler(ts) or self.get_relative_timestamp)

    def relative_to_now(self) -> WindowedTable:
        """Windows by Faust's ``_relative_now`` (see :mod:`~stream_processor.engine.windows`: in a record, the
        latest window end written in the partition, not the wall clock)."""
        return WindowedTable(self.table, self.window, relative_now)

    def relative_to_field(self, field: Any) -> WindowedTable:
        """Windows by a time in the record's value: ``Model.field``, a field name, or a function of the value.
        The time is seconds since the epoch (float or int), a datetime, or an ISO-8601 string, as Faust reads it;
        a number of 1e11 or more raises ValueError (milliseconds by mistake)."""
        return WindowedTable(self.table, self.window, relative_field(field))

    def relative_to_stream(self) -> WindowedTable:
        """Windows by the record's Kafka timestamp (the default)."""
        return WindowedTable(self.table, self.window, relative_event)

    def get_timestamp(self, event: Event | None = None) -> float:
        """The relative time of ``event`` (default: the record being processed; outside one, a relative-time
        handler gets None, as Faust's: ``relative_to_now`` reads the wall clock), in seconds."""
        handler = self.get_relative_timestamp
        if event is None and (handler is None or current_context.get() is not None):
            event = current_event(self.table)
        if handler is not None:
            return to_timestamp(handler(event))
        assert event is not None
        return event.message.timestamp

    # ---- the store ---------------------------------------------------------------------------------------------
    def _skey(self, key: Any, window: WindowRange) -> str:
        from .table import _skey

        return _skey((key, window))

    def _stale(self, store: ChangelogStore | LocalView, window: WindowRange) -> bool:
        expires = self.window.expires if self.window.expire_by == "stream_time" else 0.0
        latest = getattr(store, "meta", {}).get("latest_s", -math.inf)  # a LocalView (outside a record): none
        return bool(expires) and window[0] + self.window.size + expires <= latest

    def _get(self, store: ChangelogStore | LocalView, key: Any, window: WindowRange) -> Any:
        value = _MISSING if self._stale(store, window) else store.get(self._skey(key, window), _MISSING)
        if value is _MISSING:
            default = self.table.default
            if default is None:
                raise KeyError((key, window))
            return default()
        return value

    def _put(self, store: ChangelogStore, key: Any, window: WindowRange, value: Any) -> None:
        if self._stale(store, window):
            return  # a late write to an expired window is dropped
        index = self.table.key_index_table
        if index is not None and key not in index:  # Faust's on_set_key
            index[key] = 1
        store.put(self._skey(key, window), value)
        if window[1] > store.meta.get("latest_end", 0):
            store.meta["latest_end"] = window[1]

    def _see(self, event: Event, t: float) -> None:
        """Move the partition's latest relative time to ``t``; close the windows that expire with it (stream-time
        expiry only: see :meth:`_event`)."""
        store = event.store
        if t <= store.meta.get("latest_s", -math.inf):
            return
        store.meta["latest_s"] = t
        w = self.window
        horizon = t - w.size - w.expires  # windows starting at or before it have expired
        offset = (w.step - w.size) % w.step  # window starts lie on this grid
        horizon = math.floor((horizon - offset) / w.step) * w.step + offset
        if horizon <= store.meta.get("closed", -math.inf):
            return
        store.meta["closed"] = horizon
        from .table import _ukey

        callback = self.table.on_window_close
        for _, skey in scan_expired(store, horizon):
            value = store.get(skey)
            store.delete(skey)
            if callback is not None:
                run_callback(callback, _ukey(skey), value)

    def _event(self) -> Event:
        event = current_event(self.table)
        w = self.window
        if w.expires and w.expire_by == "stream_time":  # only this expiry reads the table's latest relative time
            self._see(event, self.get_timestamp(event))
        return event

    # ---- the mapping -----------------------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> WindowSet:
        return WindowSet(key, self, self._event())

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(value, WindowSet):
            return  # ``table[k] += n``: the WindowSet already applied it
        event = self._event()
        for window in self.window.ranges(self.get_timestamp(event)):
            self._put(event.store, key, window, value)

    def __delitem__(self, key: Any) -> None:
        event = self._event()
        index = self.table.key_index_table
        if index is not None:  # Faust's on_del_key
            index.pop(key, None)
        for window in self.window.ranges(self.get_timestamp(event)):
            skey = self._skey(key, window)
            if skey not in event.store:
                raise KeyError((key, window))
            event.store.delete(skey)

    def __contains__(self, key: Any) -> bool:
        event = self._event()
        window = self.window.current(self.get_timestamp(event))
        return not self._stale(event.store, window) and self._skey(key, window) in event.store

    # ---- key_index=True: the keys, and their values in a window (Faust's WindowWrapper._items*) -----------------
    def _index(self) -> Any:
        index = self.table.key_index_table
        if index is None:
            no_keys(self.name)
        return index

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._index()))

    def __len__(self) -> int:
        return len(self._index())

    def keys(self) -> WindowedView:
        """The keys ever set (and not deleted) in this partition (outside a record: the partitions this process
        holds), as Faust's key index keeps them. Raises NotImplementedError without ``key_index=True``."""
        return WindowedView(self, None, "keys")

    def items(self, event: Event | None = None) -> WindowedView:
        """``(key, value)`` of each indexed key in the window of the relative time (``.now()``, ``.current()``,
        ``.delta(d)`` on the view choose another), keys without that window (and no default) left out."""
        return WindowedView(self, event, "items")

    def values(self, event: Event | None = None) -> WindowedView:
        """The values of :meth:`items`."""
        return WindowedView(self, event, "values")

    def _items(self, pick: Callable[[Event | None, Any], WindowRange], event: Event | None) -> Iterator[Any]:
        index = self._index()
        if event is None and current_context.get() is not None:
            event = current_event(self.table)
        store = event.store if event is not None else LocalView(self.name)
        for key in list(index):
            try:
                yield key, self._get(store, key, pick(event, key))
            except KeyError:
                continue

    def as_ansitable(self, title: str = "{table.name}", **kwargs: Any) -> str:
        """The items of the relative time drawn as :meth:`Table.as_ansitable` draws a table."""
        from .table import _title, ascii_table

        rows = [(k, v) for k, v in self.items()]
        return ascii_table([("Key", "Value"), *rows], _title(title.format(table=self.table)))


class WindowedView:
    """``windowed_table.keys()``/``items()``/``values()`` (Faust's ``Windowed*View``): iterating uses the table's
    relative time; ``now()``, ``current(event)`` and ``delta(d, event)`` another window."""

    def __init__(self, wrapper: WindowedTable, event: Event | None, kind: str) -> None:
        self.wrapper, self.event, self.kind = wrapper, event, kind

    def _shape(self, pairs: Iterator[Any]) -> Iterator[Any]:
        for key, value in pairs:
            yield key if self.kind == "keys" else value if self.kind == "values" else (key, value)

    def __iter__(self) -> Iterator[Any]:
        w = self.wrapper
        if self.kind == "keys":
            return iter(list(w._index()))  # noqa: SLF001
        return self._shape(w._items(lambda e, k: w.window.current(w.get_timestamp(e)), self.event))  # noqa: SLF001

    def __len__(self) -> int:
        return len(self.wrapper)

    def now(self) -> Iterator[Any]:
        w = self.wrapper
        return self._shape(w._items(lambda e, k: w.window.earliest(relative_now(e)), self.event))  # noqa: SLF001

    def current(self, event: Event | None = None) -> Iterator[Any]:
        w = self.wrapper
        return self._shape(w._items(lambda e, k: w.window.current(relative_event(e)), event or self.event))  # noqa: SLF001

    def delta(self, d: Duration, event: Event | None = None) -> Iterator[Any]:
        w = self.wrapper
        return self._shape(w._items(lambda e, k: w.window.delta(relative_event(e), d), event or self.event))  # noqa: SLF001


def wall_clock_expiring(table: Any) -> Table | None:
    """The table of ``table`` (a Table or a WindowedTable) if it is windowed and expires by the wall clock."""
    table = getattr(table, "table", table)
    window = getattr(table, "window", None)
    return table if window is not None and window.expires and window.expire_by == "wall_clock" else None


def close_stale(table: Table, store: ChangelogStore, now_s: float) -> int:
    """Faust's table cleanup (``Table._del_old_keys``) of one partition's ``store`` at ``now_s`` (the wall clock,
    s): close every window ending at or before ``window.stale_before(now_s)``, oldest first, calling
    ``on_window_close(key, value)`` for those starting after the last window closed before; returns how many were
    deleted. See :mod:`~stream_processor.engine.windows`."""
    from .table import _ukey

    window = table.window
    assert window is not None
    stale_before = window.stale_before(now_s)
    last = store.meta.get("last_closed", 0.0)  # Faust's last_closed_window starts at 0.0
    callback = table.on_window_close
    latest = last
    closed = 0
    for start, skey in scan_expired(store, stale_before - window.size + 0.1):
        if start + window.size - 0.1 > stale_before:  # a float's last digit past the horizon: not stale yet
            continue
        value = store.get(skey)
        store.delete(skey)
        closed += 1
        latest = max(latest, start)
        if callback is not None and start > last:  # oldest first: every earlier start closed was <= this one
            run_callback(callback, _ukey(skey), value)
    if closed:
        store.meta["last_closed"] = latest
    return closed


class WindowSet:
    """The windows of one key (Faust's ``WindowSet``), for the event it was taken in (see
    :mod:`~stream_processor.engine.windows`)."""

    __slots__ = ("key", "wrapper", "event")

    def __init__(self, key: Any, wrapper: WindowedTable, event: Event) -> None:
        self.key, self.wrapper, self.event = key, wrapper, event

    def _read(self, window: WindowRange) -> Any:
        return self.wrapper._get(self.event.store, self.key, window)  # noqa: SLF001

    def apply(self, op: Callable[[Any, Any], Any], value: Any, event: Event | None = None) -> WindowSet:
        """``op(window value, value)`` into every window of the relative time."""
        w, event = self.wrapper, event or self.event
        for window in w.window.ranges(w.get_timestamp(event)):
            w._put(event.store, self.key, window, op(w._get(event.store, self.key, window), value))  # noqa: SLF001
        return self

    def value(self, event: Event | None = None) -> Any:
        """The latest-starting window of the relative time (``relative_to_*``)."""
        w = self.wrapper
        return self._read(w.window.current(w.get_timestamp(event or self.event)))

    def current(self, event: Event | None = None) -> Any:
        """The latest-starting window of the record's Kafka timestamp (whatever ``relative_to_*`` says)."""
        return self._read(self.wrapper.window.current(relative_event(event or self.event)))

    def now(self) -> Any:
        """The earliest window containing Faust's ``_relative_now`` (the latest window end written in the
        partition; see :mod:`~stream_processor.engine.windows`)."""
        return self._read(self.wrapper.window.earliest(relative_now(self.event)))

    def delta(self, d: Duration, event: Event | None = None) -> Any:
        """The latest-starting window of the record's Kafka timestamp minus ``d`` (a duration)."""
        return self._read(self.wrapper.window.delta(relative_event(event or self.event), d))

    def __getitem__(self, w: Any) -> Any:
        if isinstance(w, Event):
            return WindowSet(self.key, self.wrapper, w)
        return self._read(tuple(w))

    def __setitem__(self, w: Any, value: Any) -> None:
        if isinstance(w, Event):
            raise NotImplementedError("Cannot set WindowSet key, when key is an event")
        self.wrapper._put(self.event.store, self.key, tuple(w), value)  # noqa: SLF001

    def __delitem__(self, w: Any) -> None:
        if isinstance(w, Event):
            raise NotImplementedError("Cannot delete WindowSet key, when key is an event")
        skey = self.wrapper._skey(self.key, tuple(w))  # noqa: SLF001
        if skey not in self.event.store:
            raise KeyError((self.key, tuple(w)))
        self.event.store.delete(skey)

    def keys(self) -> Any:
        raise NotImplementedError("Accessing keys on a WindowSet is not implemented. Try using the underlying table "
                                  "directly")

    items = values = keys

    def __repr__(self) -> str:
        return f"<WindowSet: table={self.wrapper.name} key={self.key!r}>"


def _inplace(name: str) -> Callable[[WindowSet, Any], WindowSet]:
    op = OPERATORS[name]

    def method(self: WindowSet, other: Any) -> WindowSet:
        return self.apply(op, other)

    method.__name__ = name
    return method


for _name in OPERATORS:
    setattr(WindowSet, _name, _inplace(_name))
