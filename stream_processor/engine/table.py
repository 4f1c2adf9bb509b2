"""Tables: dict-like, changelog-backed state of an agent, partitioned like its input (Faust's ``app.Table``).

A table is one store per task (partition q of its agent's input): ``table[key]`` inside the agent reads and writes
the store of the partition whose record is being processed, and every change is written to partition q of the
agent's changelog topic in that record's transaction (under the key ``\\x01<table>\\x00<key>``); a delete is a
tombstone. On assignment the store is restored from the changelog. A table is written only while an agent
processes a record; elsewhere (an ``app.timer``, a task) it reads the partitions this process's tasks hold now and
a write raises :class:`RuntimeError` (see :mod:`~stream_processor.engine.local_tables`).

Keys are ``str`` (stored as they are) or any JSON value (stored as ``\\x02`` + its JSON). Values are JSON values
(a :class:`~stream_processor.engine.records.Record` among them stays that Record after a restore: its class is
written with it, as Faust does), or objects of ``value_type`` when it has ``to_state()``/``from_state(state)``
(a :class:`~stream_processor.engine.snapshot.Snapshot`; its ``STATE_VERSION`` and ``migrate(state, version)``
version and migrate the state, see :class:`~stream_processor.engine.state.StoreSpec`). A mutable value read
from the table (a dict, a list, an object) is written back at the next commit even when changed in place.

Windowed tables (:meth:`Table.tumbling`, :meth:`Table.hopping`) are Faust's, times in seconds: see
:mod:`~stream_processor.engine.windows`; ``on_window_close`` is called as a window expires.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import orjson

from .local_tables import LocalView
from .processor import current_context
from .state import StoreSpec

_IMMUTABLE = (int, float, str, bool, type(None), tuple, bytes, frozenset)
_MISSING = object()
WINDOW_SEP = "\x1e"  # the windows' key layout before Faust's (``key\x1e<start ms>``): read by nothing here now;
# tests/eos/harness.py imports it until it builds keys with windows.window_store_key


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

    ``default``: called for a missing key (like ``collections.defaultdict``; None: KeyError). ``on_window_close``:
    ``callback(key, value)`` (sync or async) for each window of a windowed table as it expires (see
    :mod:`~stream_processor.engine.windows`); ``key_type``, ``partitions``: accepted as Faust takes them (keys keep
    their Python type; a table has its agent's input partitions).
    """

    def __init__(self, name: str, default: Callable[[], Any] | None = None, value_type: type | None = None,
                 help: str | None = None, on_error: str | None = None, *,  # noqa: A002 - Faust's name
                 key_type: type | None = None, partitions: int | None = None,
                 on_window_close: Callable[[Any, Any], Any] | None = None) -> None:
        if not name or "\x00" in name:
            raise ValueError(f"table name {name!r} must be non-empty, without NUL")
        self.name = name
        self.default = default
        self.value_type = value_type
        self.key_type = key_type
        self.partitions = partitions
        self.help = help
        self.on_window_close = on_window_close
        self.window: HoppingWindow | None = None
        self.key_index_table: Table | None = None  # key_index=True: the keys ever set (using_window)
        snapshots = value_type is not None and callable(getattr(value_type, "from_state", None))
        self.spec = StoreSpec(name=name, value_type=value_type if snapshots else None, on_error=on_error)

    def __repr__(self) -> str:
        return f"<Table {self.name}>"

    def _store(self) -> Any:
        """The store of the record's task; outside a record, a read-only view of the partitions this process's
        tasks hold (:mod:`~stream_processor.engine.local_tables`: writes raise RuntimeError)."""
        ctx = current_context.get()
        if ctx is None:
            return LocalView(self.name)
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
            if not isinstance(value, _IMMUTABLE) and not getattr(store, "read_only", False):
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
        if skey not in store and not getattr(store, "read_only", False):  # outside a record: delete() raises
            raise KeyError(key)
        store.delete(skey)

    def __contains__(self, key: object) -> bool:
        return _skey(key) in self._store()

    def __iter__(self) -> Iterator[Any]:
        return (_ukey(k) for k in self._store().keys())

    def __len__(self) -> int:
        return len(self._store())

    def as_ansitable(self, title: str = "{table.name}", *, key: str = "Key", value: str = "Value",
                     sort: bool = False, sortkey: Callable[[Any], Any] = operator.itemgetter(0),
                     target: Any = None) -> str:
        """The table as faust's ``Table.as_ansitable`` draws it (terminaltables' AsciiTable of ``(key, value)``
        rows, ``title`` formatted with ``table=self`` and title-cased); ``target`` is accepted (Faust draws with
        box characters on a terminal: here always ASCII)."""
        rows = sorted(self.items(), key=sortkey) if sort else list(self.items())
        return ascii_table([(_title(key), _title(value)), *rows], _title(title.format(table=self)))

    def using_window(self, window: HoppingWindow, *, key_index: bool = False) -> WindowedTable:
        """This table as windows of ``window`` (Faust's ``Table.using_window``): its store keeps the windows' times
        in the changelog. ``key_index``: keep the keys set in a second table, ``<name>-key_index`` (as Faust does),
        so the windowed table has ``keys()``/``items()``/``values()``/``len()``."""
        if key_index:
            self.key_index_table = Table(f"{self.name}-key_index")
        self.window = window
        self.spec = window_spec(self)
        return WindowedTable(self, window)

    def tumbling(self, size: Duration, expires: Duration | None = None, key_index: bool = False, *,
                 expire_by: str = "wall_clock") -> WindowedTable:
        """This table as tumbling windows of ``size`` (a duration: timedelta, seconds, ``"10s"``), expiring
        ``expires`` after their end (None: never, as Faust) by Faust's wall-clock cleanup, or by the table's stream
        time with ``expire_by="stream_time"``; see :mod:`~stream_processor.engine.windows`. Raises ValueError for
        another ``expire_by``."""
        return self.using_window(TumblingWindow(size, expires, expire_by=expire_by), key_index=key_index)

    def hopping(self, size: Duration, step: Duration, expires: Duration | None = None,
                key_index: bool = False, *, expire_by: str = "wall_clock") -> WindowedTable:
        """This table as hopping windows of ``size`` every ``step`` (durations), expiring ``expires`` after their
        end as :meth:`tumbling` says."""
        return self.using_window(HoppingWindow(size, step, expires, expire_by=expire_by), key_index=key_index)


def _title(text: str) -> str:
    """mode's ``text.title``: ``"foo-bar baz"`` -> ``"Foo Bar Baz"``."""
    return " ".join(p.capitalize() for p in text.replace("-", " ").replace("_", " ").split())


def ascii_table(rows: list[tuple[Any, Any]], title: str = "") -> str:
    """terminaltables' ``AsciiTable(rows, title=title).table`` for one-line cells (``str`` of each): a header
    row, a rule under it, the title over the top border when it fits."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    top = "+" + title + rule[1 + len(title):] if title and len(title) <= len(rule) - 2 else rule
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    body = [rule, *lines[1:]] if len(lines) > 1 else []  # no rows: the header's rule is the bottom border
    return "\n".join([top, lines[0], *body, rule])


def table_method(app: Any, name: str, default: Callable[[], Any] | None = None, value_type: type | None = None,
                 help: str | None = None, on_error: str | None = None, **faust: Any) -> Table:  # noqa: A002
    """``app.Table(name, ...)`` with Faust's keywords (``on_window_close``, ``key_type``, ``partitions``): a
    :class:`Table` registered in ``app.tables``. Raises ValueError for a name already declared, TypeError for a
    keyword :class:`Table` does not take."""
    if name in app.tables:
        raise ValueError(f"table {name!r} is already declared")
    table = app.tables[name] = Table(name, default, value_type, help, on_error, **faust)
    return table


# The windows, in their own modules (re-exported: where they always were).
from .durations import Duration  # noqa: E402
from .window_set import WindowedTable, WindowSet  # noqa: E402
from .windows import HoppingWindow, TumblingWindow, window_spec  # noqa: E402

__all__ = ["Table", "WindowSet", "WindowedTable", "ascii_table", "table_method"]
