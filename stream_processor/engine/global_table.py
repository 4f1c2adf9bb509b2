"""``GlobalTable``: a table every worker holds whole (faust.GlobalTable), and what a transaction may do with it.

Faust's GlobalTable is a Table whose every partition each worker reads (as a standby of all of them); an agent
writes to the changelog partition of the record it processes. Here:

- **writes** go where a Table's go: the agent processing a record of partition q writes the key to partition q of
  its own changelog, in that record's transaction (exactly once, restored with the task like any table). A key
  lives in one place: writing (or deleting) a key that another partition, or another agent's changelog, already
  holds raises ValueError, so two tasks never hold two versions of a key. Writes outside an agent's record (a
  timer, a web view), or from an agent whose tasks do not keep the table (``tables=[...]`` without it), raise
  RuntimeError;
- **reads** see the whole table: the task's own partition as it is in this transaction (its own writes included),
  every other partition as last committed (``read_committed``) and replicated to this process by
  :class:`GlobalReplica` (the worker feeds it every committed changelog record of the table, from every partition
  and every agent that writes it). A read of another partition is not part of the transaction: a replay may see a
  newer value than the first run did (Faust's standby reads are the same). Outside a record (a timer, a web view)
  every partition is read from the replica;
- ``len()``, ``in``, iteration: over the whole table, the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .processor import current_context
from .state import STORE_PREFIX, ChangelogStore
from .table import Table, _skey, _ukey

_MISSING = object()
Source = tuple[str, int]  # (the writing processor's name, changelog partition)


class GlobalReplica:
    """Every partition of one global table as committed, fed with its changelog records (see the module
    docstring). ``feed`` is idempotent by offset: a record at or below the last one applied is skipped."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.prefix = STORE_PREFIX + table.name.encode() + b"\x00"
        self.stores: dict[Source, ChangelogStore] = {}
        self.positions: dict[Source, int] = {}

    def feed(self, processor: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        """Apply one committed changelog record of ``processor``'s partition (records of other stores skipped)."""
        source = (processor, partition)
        if key is None or offset <= self.positions.get(source, -1):
            return
        self.positions[source] = offset
        if not key.startswith(self.prefix):
            return
        store = self.stores.get(source)
        if store is None:
            store = self.stores[source] = ChangelogStore(self.table.spec)
        store.load(key[len(self.prefix):], value)

    def holder(self, skey: str, besides: Source | None) -> Source | None:
        """Where ``skey`` lives, other than ``besides``; None if nowhere else."""
        for source, store in self.stores.items():
            if source != besides and skey in store:
                return source
        return None

    def get(self, skey: str, besides: Source | None) -> Any:
        source = self.holder(skey, besides)
        return _MISSING if source is None else self.stores[source].get(skey)

    def keys(self, besides: Source | None) -> list[str]:
        return [k for source, store in self.stores.items() if source != besides for k in store.keys()]


class GlobalTable(Table):
    """A table read whole by every worker (see the module docstring); create it with ``app.GlobalTable(name,
    ...)`` (the arguments of :class:`~stream_processor.engine.table.Table`)."""

    is_global = True

    def __init__(self, name: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(name, *args, **kwargs)
        self.replica = GlobalReplica(self)

    def __repr__(self) -> str:
        return f"<GlobalTable {self.name}>"

    def _own(self) -> tuple[ChangelogStore | None, Source | None]:
        """The task's store of this table and its source, or (None, None) outside a record or in an agent whose tasks
        do not keep it."""
        ctx = current_context.get()
        if ctx is None:
            return None, None
        store = ctx.stores.stores.get(self.name)
        return (store, (ctx.processor, ctx.task)) if store is not None else (None, None)

    def _writable(self, key: Any) -> tuple[ChangelogStore, str]:
        store, source = self._own()
        if store is None:
            raise RuntimeError(f"global table {self.name!r} is written only by an agent that keeps it, while it "
                               "processes a record (its tasks hold a partition of it)")
        skey = _skey(key)
        if skey not in store:
            other = self.replica.holder(skey, source)
            if other is not None:
                raise ValueError(f"global table {self.name!r}: key {key!r} is held by partition {other[1]} of agent "
                                 f"{other[0]!r}; a task writes only keys of its own partition")
        return store, skey

    def __getitem__(self, key: Any) -> Any:
        store, source = self._own()
        skey = _skey(key)
        if store is not None and skey in store:
            return super().__getitem__(key)
        value = self.replica.get(skey, source)
        if value is not _MISSING:
            return value
        if store is not None:
            return super().__getitem__(key)  # the default, kept in this task's partition if mutable
        if self.default is None:
            raise KeyError(key)
        return self.default()

    def __setitem__(self, key: Any, value: Any) -> None:
        store, skey = self._writable(key)
        store.put(skey, value)

    def __delitem__(self, key: Any) -> None:
        store, skey = self._writable(key)
        if skey not in store:
            raise KeyError(key)
        store.delete(skey)

    def __contains__(self, key: object) -> bool:
        store, source = self._own()
        skey = _skey(key)
        return (store is not None and skey in store) or self.replica.holder(skey, source) is not None

    def _skeys(self) -> list[str]:
        store, source = self._own()
        own = store.keys() if store is not None else []
        return list(dict.fromkeys([*own, *self.replica.keys(source)]))

    def __iter__(self) -> Iterator[Any]:
        return (_ukey(k) for k in self._skeys())

    def __len__(self) -> int:
        return len(self._skeys())

    def tumbling(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"global table {self.name!r}: windowed global tables are not offered")

    hopping = tumbling


def global_table_method(app: Any, name: str, **kwargs: Any) -> GlobalTable:
    """``app.GlobalTable(name, ...)`` (faust.App.GlobalTable): a :class:`GlobalTable` registered in ``app.tables``.
    Raises ValueError for a name already declared."""
    if name in app.tables:
        raise ValueError(f"table {name!r} is already declared")
    table = app.tables[name] = GlobalTable(name, **kwargs)
    return table


__all__ = ["GlobalReplica", "GlobalTable", "global_table_method"]
