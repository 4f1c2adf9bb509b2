"""Windowed tables as Faust defines them: ``app.Table(...).tumbling(...)`` / ``.hopping(...)``, times in seconds.

The window arithmetic is faust-streaming 0.15.3's (``faust/_cython/windows.pyx``, the build pip installs, and
``faust/windows.py``), the wrapper's reads and writes are ``faust/tables/wrappers.py``'s ``WindowWrapper`` and
``WindowSet`` with ``faust/tables/base.py``'s ``Collection._windowed_*`` and ``_relative_*``:

- times are seconds since the epoch (floats); a record's time is its Kafka timestamp / 1000;
- a window is ``(start, start + size - 0.1)``; a key's value in it is stored under ``(key, (start, end))``, which is
  also how :meth:`TestDriver.table <stream_processor.engine.testing.TestDriver.table>` shows it (Faust's
  ``table.data`` keys);
- ``ranges(t)``: the windows containing ``t``, starting at ``floor(t / step) * step - size + step`` every ``step``
  (whole seconds: Faust walks them with ``range(int(...))``, so a fractional step is refused here);
- ``table[k] += v`` (and every in-place operator) applies to every window of ``ranges(get_timestamp())``;
  ``table[k] = v`` sets them all; ``del table[k]`` deletes them (KeyError if one is missing, as Faust);
- ``table[k].value()``: the latest-starting window containing ``get_timestamp()`` (the relative time below);
  ``.current()``: the one containing the record's Kafka timestamp, whatever the relative time; ``.delta(d)``: the
  one containing the Kafka timestamp minus ``d`` (a duration); ``.now()``: the EARLIEST window containing the
  latest window end (``start + size - 0.1``) written in this partition of the table (0 before any write: the
  window at the epoch), as Faust's ``_relative_now`` with an event (``_partition_latest_timestamp``); outside a
  record (no event) Faust takes ``time.time()``: here the engine's wall clock;
- the relative time (``get_timestamp``): the Kafka timestamp (default, :meth:`WindowedTable.relative_to_stream`),
  a field of the value (:meth:`~WindowedTable.relative_to_field`: seconds since the epoch, a datetime, or an
  ISO-8601 string), Faust's ``_relative_now`` (:meth:`~WindowedTable.relative_to_now`: in a record that is the
  latest window end above, NOT the wall clock, so Faust's own relative_to_now tables count in the epoch window:
  the same here), a fixed time or a function of the event (:meth:`~WindowedTable.relative_to`);
- a missing window reads as ``default()`` (KeyError without a default), without being stored.

Exactly-once replay: nothing here reads the wall clock inside a record. The latest window end that ``now()`` uses
is kept in the changelog with the table (Faust keeps it in memory only, so after a Faust restart ``now()`` reads
the epoch window until the partition's next write; here it reads what it read before the crash, and a replay gives
the same outputs).

Expiry (``expires``; Faust: none without it), two ways, chosen per window (``expire_by``):

- ``"wall_clock"`` (the default: Faust's): every ``app.conf.table_cleanup_interval`` (a duration; Faust's default
  30 s) of the worker's wall clock, each task of the table's agent closes the windows of its partition whose end is
  at or before ``stale_before(now)``: the start of the latest window containing ``now - expires`` (Faust's cython
  ``HoppingWindow.stale``, ``Table._del_old_keys``), ``now`` the wall clock in seconds. The oldest window ends go
  first; each closed window's ``on_window_close(key, value)`` is called (``key`` = ``(key, (start, end))``) unless a
  window starting at or after it was closed before in that partition (Faust's ``last_closed_window``), then the
  window is deleted. Until then a window is read and written as any other (a late record re-creates a closed
  window, which the next cleanup deletes without calling ``on_window_close`` again, as Faust). The cleanup runs in a
  wall-clock punctuation of the task: its deletions (changelog tombstones) and what ``on_window_close`` sends are in
  one transaction, exactly once; WHEN it runs is the wall clock's (a replay of old data closes its windows at the
  first cleanup, as under Faust).
- ``"stream_time"`` (opt-in: ``.tumbling(size, expires, expire_by="stream_time")``; results that do not depend on
  timing): a window ``(start, end)`` expires when ``start + size + expires`` is at or before the latest relative
  time the table has seen in this partition (its stream time, kept in the changelog): at that moment, inside the
  processing (and the transaction) of the record that moved that time, each expiring window's
  ``on_window_close(key, value)`` is called, then the window is deleted. A late record's read of an expired window
  gives the default and its write is dropped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import math
import operator
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import orjson

from . import processor as _processor
from . import records as _records
from .durations import Duration, to_seconds
from .processor import current_context
from .state import ChangelogStore, StoreSpec  # noqa: TC001

if TYPE_CHECKING:
    from .table import Table

WindowRange = tuple[float, float]
_MISSING = object()
_MAX_SECONDS = 1e11  # year 5138: a larger "seconds since the epoch" is milliseconds (or nanoseconds) by mistake
META = ("latest_s", "latest_end", "closed", "last_closed")
EXPIRE_BY = ("wall_clock", "stream_time")


class HoppingWindow:
    """Fixed-size windows every ``step`` seconds (faust.windows.HoppingWindow); ``TumblingWindow`` is ``step ==
    size``. Durations as :mod:`~stream_processor.engine.durations` reads them. Raises ValueError unless
    ``0 < step <= size`` and both are whole seconds (Faust's ``ranges`` truncates them with ``int()``)."""

    def __init__(self, size: Duration, step: Duration, expires: Duration | None = None, *,
                 expire_by: str = "wall_clock") -> None:
        self.size = to_seconds(size, what="window size")
        self.step = to_seconds(step, what="window step")
        self.expires = to_seconds(expires, what="window expires") if expires else 0.0
        if expire_by not in EXPIRE_BY:
            raise ValueError(f"expire_by {expire_by!r}: one of {', '.join(EXPIRE_BY)}")
        self.expire_by = expire_by
        if not 0 < self.step <= self.size:
            raise ValueError(f"windows need 0 < step <= size, got size {self.size}, step {self.step}")
        if not (self.size.is_integer() and self.step.is_integer()):
            raise ValueError(f"window size and step must be whole seconds, got size {self.size}, step {self.step} "
                             "(Faust's windows truncate them with int())")

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} size={self.size} step={self.step} expires={self.expires} "
                f"expire_by={self.expire_by}>")

    def stale_before(self, now: float) -> float:
        """Faust's ``HoppingWindow.stale``: windows ending at or before this (s) are stale at ``now`` (s): the start
        of the latest window containing ``now - expires``."""
        return self.current(now - self.expires)[0]

    def _initial(self, t: float) -> float:
        return math.floor(t / self.step) * self.step - self.size + self.step

    def ranges(self, t: float) -> list[WindowRange]:
        """Every window containing ``t``, earliest first."""
        return [(float(s), s + self.size - 0.1) for s in range(int(self._initial(t)), int(t) + 1, int(self.step))]

    def current(self, t: float) -> WindowRange:
        """The latest-starting window containing ``t``."""
        start = self._initial(t)
        start += self.step * math.floor((t - start) / self.step)
        return start, start + self.size - 0.1

    def earliest(self, t: float) -> WindowRange:
        """The earliest-starting window containing ``t``."""
        start = self._initial(t)
        return start, start + self.size - 0.1

    def delta(self, t: float, d: Duration) -> WindowRange:
        """The latest-starting window containing ``t - d``."""
        return self.current(t - to_seconds(d, what="delta"))


class TumblingWindow(HoppingWindow):
    """Fixed-size, gap-less, non-overlapping windows (faust.windows.TumblingWindow)."""

    def __init__(self, size: Duration, expires: Duration | None = None, *, expire_by: str = "wall_clock") -> None:
        super().__init__(size, size, expires, expire_by=expire_by)


class Event:
    """What a relative-time handler of :meth:`WindowedTable.relative_to` gets: the record being processed, as
    Faust's event shows it (``key``, ``value``, ``message.topic/partition/offset/timestamp`` in seconds)."""

    __slots__ = ("key", "value", "message", "store")

    def __init__(self, key: Any, value: Any, message: Message, store: ChangelogStore) -> None:
        self.key, self.value, self.message, self.store = key, value, message, store


class Message:
    """An event's message: ``topic``, ``partition``, ``offset``, ``timestamp`` (seconds since the epoch)."""

    __slots__ = ("topic", "partition", "offset", "timestamp")

    def __init__(self, topic: str | None, partition: int | None, offset: int | None, timestamp: float) -> None:
        self.topic, self.partition, self.offset, self.timestamp = topic, partition, offset, timestamp


def current_event(table: Table) -> Event:
    """The event being processed, with ``table``'s store of its partition. Raises RuntimeError outside a record."""
    ctx = current_context.get()
    if ctx is None:  # Faust raises the same outside of a stream's iteration
        raise RuntimeError(f"windowed table {table.name!r} used outside an agent's record: a window is of the "
                           "record being processed")
    store = table._store()  # noqa: SLF001
    if ctx.timestamp is None:
        raise RuntimeError(f"windowed table {table.name!r}: operation outside of stream iteration")
    driver = ctx.agent_state
    value = driver.current if driver is not None else None
    message = Message(ctx.topic, ctx.partition, ctx.offset, ctx.timestamp / 1000)
    return Event(ctx.key, value, message, store)


Relative = Callable[[Event | None], Any]


def relative_event(event: Event | None) -> float:
    """The event's Kafka timestamp (Faust's ``Collection._relative_event``)."""
    if event is None:
        raise RuntimeError("Operation outside of stream iteration")
    return event.message.timestamp


def relative_now(event: Event | None) -> float:
    """Faust's ``Collection._relative_now``: in a record, the latest window end written in its partition (0 before
    any); outside one, the engine's wall clock (s)."""
    if event is None:
        return _processor.wall_clock_ms() / 1000
    return float(event.store.meta.get("latest_end", 0))


def _ref_name(ref: Any) -> str | None:
    """The field name of a Model field reference (``records.field_name``; Faust's FieldDescriptor, duck-typed by
    its str ``.field``), None for anything else."""
    named = getattr(_records, "field_name", None)
    if named is not None:
        name = named(ref)
        if isinstance(name, str):
            return name
    name = getattr(ref, "field", None)
    return name if isinstance(name, str) and not isinstance(ref, type) else None


def field_name(field: Any) -> str:
    """The name of a field reference: a string or ``Model.field``. Raises TypeError for anything else."""
    name = field if isinstance(field, str) else _ref_name(field)
    if name is None:
        raise TypeError(f"relative_to_field: {field!r} is not a field (give Model.field, its name, or a function)")
    return name


def relative_field(field: Any) -> Relative:
    """A handler reading ``field`` of the event's value: ``Model.field``, a field name, or a function of the value
    (called with it). Raises TypeError for anything else."""
    name = field if isinstance(field, str) else _ref_name(field)
    if name is not None:
        label = name

        def get(value: Any) -> Any:
            return value[name] if isinstance(value, dict) else getattr(value, name)
    elif callable(field):
        get, label = field, getattr(field, "__name__", repr(field))
    else:
        field_name(field)  # raises the TypeError

    def to_value(event: Event | None) -> Any:
        if event is None:
            raise RuntimeError("Operation outside of stream iteration")
        return _seconds(get(event.value), label)

    return to_value


def _seconds(value: Any, label: str) -> Any:
    """A field's time as Faust takes it; raises ValueError for a number that is milliseconds by mistake."""
    if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) >= _MAX_SECONDS:
        raise ValueError(f"relative_to_field({label}): {value!r} is not seconds since the epoch (Faust's unit; it "
                         "looks like milliseconds): give seconds, a datetime, or a function such as "
                         "lambda v: v.ts / 1000")
    return value


def relative_handler(relative_to: Any) -> Relative | None:
    """Faust's ``WindowWrapper._relative_handler``: None, a datetime or float (a fixed time), a field reference, or a
    function of the event. Raises TypeError for anything else (Faust's ImproperlyConfigured)."""
    if relative_to is None:
        return None
    if isinstance(relative_to, dt.datetime | float):
        fixed = relative_to.timestamp() if isinstance(relative_to, dt.datetime) else relative_to
        return lambda event: fixed
    if _ref_name(relative_to) is not None:
        return relative_field(relative_to)
    if callable(relative_to):
        return relative_to  # type: ignore[no-any-return]
    raise TypeError(f"Relative cannot be type {type(relative_to)}")


def to_timestamp(value: Any) -> float:
    """What a handler gave as seconds: ISO-8601 strings parsed, datetimes converted (as ``get_timestamp``)."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a window time must be seconds, a datetime or an ISO-8601 string, got {value!r}")
    return float(value)


def window_store_key(key: Any, start: float, size: float) -> str:
    """The store key (changelog key after ``\x01<table>\x00``) of ``key``'s window starting at ``start`` (s) of
    ``size`` seconds: ``(key, (start, start + size - 0.1))`` as the table writes it."""
    from .table import _skey

    start = float(start)
    return _skey((key, (start, start + size - 0.1)))


def parse_window(skey: str) -> float | None:
    """The start of a window key's window, None if ``skey`` is not one (a key of an older layout)."""
    if skey[:1] != "\x02":
        return None
    try:
        doc = orjson.loads(skey[1:])
    except orjson.JSONDecodeError:
        return None
    if type(doc) is list and len(doc) == 2 and type(doc[1]) is list and len(doc[1]) == 2:
        start = doc[1][0]
        return float(start) if isinstance(start, int | float) else None
    return None


def run_callback(callback: Callable[..., Any], *args: Any) -> None:
    """Call a sync or async callback (Faust's ``maybe_async``) to the end; an async one may await only what
    completes at once (``topic.send`` in a record): RuntimeError if it waits for real I/O."""
    result = callback(*args)
    if not inspect.isawaitable(result):
        return
    step = result.__await__()
    try:
        step.send(None)
    except StopIteration:
        return
    step.close()
    raise RuntimeError(f"{getattr(callback, '__name__', callback)!r} awaited real I/O: on_window_close runs inside "
                       "a record's transaction and may only await what completes at once (topic.send)")


def window_spec(table: Table) -> StoreSpec:
    """The store spec of a windowed table: its metadata (times of expiry and now()) kept in the changelog."""
    return dataclasses.replace(table.spec, keep_meta=META, expire=None)


def scan_expired(store: ChangelogStore, horizon: float) -> list[tuple[float, str]]:
    """``(start, key)`` of every window starting at or before ``horizon`` (the keys of an older layout too, as
    start -inf), earliest first."""
    found = []
    for skey in store.keys():
        start = parse_window(skey)
        if start is None:
            found.append((-math.inf, skey))
        elif start <= horizon:
            found.append((start, skey))
    found.sort(key=lambda pair: pair[0])
    return found


OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "__iadd__": operator.add, "__isub__": operator.sub, "__imul__": operator.mul, "__itruediv__": operator.truediv,
    "__ifloordiv__": operator.floordiv, "__imod__": operator.mod, "__ipow__": operator.pow,
    "__ilshift__": operator.lshift, "__irshift__": operator.rshift, "__iand__": operator.and_,
    "__ixor__": operator.xor, "__ior__": operator.or_,
}


def no_keys(name: str) -> Iterator[Any]:
    raise NotImplementedError(f"windowed table {name!r}: keys/items/values/len need Faust's key_index=True "
                              "(.tumbling(..., key_index=True)), which keeps the keys in a second table")


__all__ = ["Event", "HoppingWindow", "Message", "TumblingWindow", "current_event", "field_name", "relative_event",
           "relative_field", "relative_handler", "relative_now", "window_store_key"]
