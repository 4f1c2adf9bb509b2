"""``SetTable``: a table whose values are sets (faust.SetTable, ``faust/tables/sets.py``).

``table[key]`` is the key's set, created empty (and kept) on first access, as Faust's ``ChangeloggedSetManager``
does; it is a :class:`ChangeloggedSet`, a ``set`` (``add``, ``discard``, ``update``, ``difference_update``,
``intersection_update``, ``symmetric_difference_update``, ``clear``, ``in``, iteration, set algebra) whose ``repr``
is the plain set's and whose ``.data`` is itself (Faust's wrapper keeps its set in ``.data``). Changed in place, it
is written to the changelog at the next commit, in the transaction of the record that changed it, like every table
value here (Faust writes one changelog event per operation; here the set is written whole, as a JSON array: the
changelog is this engine's own, read by nothing else). Elements are JSON values or Records (kept as their class, as
table values are); a JSON array element comes back as a tuple (a list is not hashable).

A windowed SetTable (``.tumbling(...)`` / ``.hopping(...)``) gives Faust's ``SetWindowSet``: ``table[key].add(x)``
and ``.discard(x)`` apply to every window of the relative time.

``start_manager=True`` (Faust's ``SetTableManager``: an extra agent on a ``-setmanager`` topic fed by
``table.manager.add(...)``) is refused: ask for it by sending to a topic your own agent reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import orjson

from .records import decode_state, encode_state
from .table import Table, _tuples
from .window_set import WindowedTable, WindowSet
from .windows import HoppingWindow


class ChangeloggedSet(set[Any]):
    """One key's set in a :class:`SetTable` (Faust's ``ChangeloggedSet``): a ``set``."""

    @property
    def data(self) -> set[Any]:
        """The set itself (Faust's wrapper keeps its set in ``.data``)."""
        return self

    def __repr__(self) -> str:
        return "{" + ", ".join(map(repr, self)) + "}" if self else "set()"


def set_to_state(value: Any) -> Any:
    """A set as its JSON document: a list of its elements (records with their class)."""
    return orjson.loads(encode_state(list(value)))


def set_from_state(state: Any) -> ChangeloggedSet:
    """The set of :func:`set_to_state`'s document."""
    elements = decode_state(orjson.dumps(state))
    return ChangeloggedSet(_tuples(e) if isinstance(e, list) else e for e in elements)


class SetTable(Table):
    """A table of sets (see the module docstring); create it with ``app.SetTable(name, ...)`` (the arguments of
    :class:`~stream_processor.engine.table.Table`, ``default`` and ``value_type`` aside: values are sets; Faust's
    ``value_type`` names the elements' type and is kept as ``element_type``).

    Raises NotImplementedError for ``start_manager=True``.
    """

    def __init__(self, name: str, *, value_type: type | None = None, start_manager: bool = False,
                 manager_topic_name: str | None = None, manager_topic_suffix: str | None = None,
                 **kwargs: Any) -> None:
        if start_manager:
            raise NotImplementedError(f"SetTable {name!r}: start_manager=True (Faust's SetTableManager agent) is "
                                      "not offered: send the operations to a topic an agent of yours reads")
        kwargs.pop("default", None)
        super().__init__(name, default=ChangeloggedSet, **kwargs)
        self.element_type = value_type
        self.manager_topic_name = manager_topic_name or name + (manager_topic_suffix or "-setmanager")
        self.spec = dataclasses.replace(self.spec, from_state=set_from_state, to_state=set_to_state)

    def __repr__(self) -> str:
        return f"<SetTable {self.name}>"

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value if isinstance(value, ChangeloggedSet) else ChangeloggedSet(value))

    def using_window(self, window: HoppingWindow, *, key_index: bool = False) -> WindowedTable:
        """This table as windows of ``window``: a :class:`SetWindowedTable`."""
        super().using_window(window, key_index=key_index)
        return SetWindowedTable(self, window)


class SetWindowedTable(WindowedTable):
    """A windowed :class:`SetTable` (Faust's ``SetWindowWrapper``): ``table[key]`` is a :class:`SetWindowSet`."""

    def __getitem__(self, key: Any) -> SetWindowSet:
        return SetWindowSet(key, self, self._event())

    def relative_to(self, ts: Any) -> WindowedTable:
        return _as_sets(super().relative_to(ts))

    def relative_to_now(self) -> WindowedTable:
        return _as_sets(super().relative_to_now())

    def relative_to_field(self, field: Any) -> WindowedTable:
        return _as_sets(super().relative_to_field(field))

    def relative_to_stream(self) -> WindowedTable:
        return _as_sets(super().relative_to_stream())


def _as_sets(wrapper: WindowedTable) -> SetWindowedTable:
    return SetWindowedTable(wrapper.table, wrapper.window, wrapper.get_relative_timestamp)


class SetWindowSet(WindowSet):
    """The windowed sets of one key (Faust's ``SetWindowSet``): :meth:`add` and :meth:`discard` apply to every
    window of the relative time."""

    __slots__ = ()

    def add(self, element: Any, *, event: Any = None) -> None:
        self._apply_set_operation(ChangeloggedSet.add, element, event)

    def discard(self, element: Any, *, event: Any = None) -> None:
        self._apply_set_operation(ChangeloggedSet.discard, element, event)

    def _apply_set_operation(self, op: Callable[[Any, Any], Any], element: Any, event: Any) -> None:
        w, event = self.wrapper, event or self.event
        for window in w.window.ranges(w.get_timestamp(event)):
            members = w._get(event.store, self.key, window)  # noqa: SLF001
            op(members, element)
            w._put(event.store, self.key, window, members)  # noqa: SLF001


def set_table_method(app: Any, name: str, **kwargs: Any) -> SetTable:
    """``app.SetTable(name, ...)`` (faust.App.SetTable): a :class:`SetTable` registered in ``app.tables``. Raises
    ValueError for a name already declared."""
    if name in app.tables:
        raise ValueError(f"table {name!r} is already declared")
    table: SetTable = SetTable(name, **kwargs)
    app.tables[name] = table
    return table


__all__ = ["ChangeloggedSet", "SetTable", "SetWindowSet", "SetWindowedTable", "set_table_method"]
