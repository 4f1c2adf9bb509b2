"""What a table reads outside an agent's record (a timer, a task, a web view): the partitions of it that the tasks
open in this process hold, as a Faust worker's table holds the partitions assigned to it (and no others).

The worker's and the test driver's tasks :func:`attach` their stores when they open and :func:`detach` them when
they close; :class:`LocalView` reads the union. Such a read is not part of any transaction: it sees what the tasks
hold now, the writes of a transaction not yet committed included (as Faust's in-memory tables do), and a partition
being restored or moved to another worker is not there. Writing outside a record raises RuntimeError: a write
belongs in the transaction of the record that causes it.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

__all__ = ["LocalView", "attach", "detach"]

_OPEN: weakref.WeakValueDictionary[tuple[str, int, int], Any] = weakref.WeakValueDictionary()


def attach(processor: str, q: int, stores: Any) -> None:
    """Task ``q`` of ``processor`` holds ``stores`` (a TaskStores) from now on."""
    _OPEN[(processor, q, id(stores))] = stores


def detach(processor: str, q: int, stores: Any) -> None:
    """Task ``q`` of ``processor`` no longer holds ``stores``."""
    _OPEN.pop((processor, q, id(stores)), None)


class LocalView:
    """Table ``name``'s partitions held by this process's open tasks, read-only (see the module docstring)."""

    read_only = True

    def __init__(self, name: str) -> None:
        self.name = name
        self._stores = [s.stores[name] for s in list(_OPEN.values()) if name in s.stores]

    def get(self, key: str, default: Any = None) -> Any:
        for store in self._stores:
            if key in store:
                return store.get(key, default)
        return default

    def __contains__(self, key: object) -> bool:
        return any(key in store for store in self._stores)

    def keys(self) -> list[str]:
        return [k for store in self._stores for k in store.keys()]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return sum(len(store) for store in self._stores)

    def items(self) -> list[tuple[str, Any]]:
        return [item for store in self._stores for item in store.items()]

    def mark_dirty(self, key: str) -> None:
        """Nothing: a value read outside a record is not written back."""

    def put(self, key: str, value: Any) -> None:
        self.delete(key)

    def delete(self, key: str) -> None:
        raise RuntimeError(f"table {self.name!r} written outside an agent's record: a table is written in the "
                           "transaction of the record that changes it (read it from a timer; write it from an agent)")
