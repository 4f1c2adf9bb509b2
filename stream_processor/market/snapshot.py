"""The market's store values: their one layout version, and the migration of the layouts written before it.

Every stateful object of the market package is a :class:`~stream_processor.engine.snapshot.Snapshot` (the engine's
one snapshot base). The objects kept under a store key, a symbol's trades state, a symbol's klines state, an order
book and its changelog log, are :class:`MarketSnapshot` s: their ``STATE_VERSION`` is the version of their whole
state, indicators, detectors and builders nested in it included, and the store writes it in the envelope of each
changelog record (see :mod:`stream_processor.engine.snapshot`).

Layouts:

- 0: a bare state (no envelope), written before the stores had versions;
- 1: written by the code up to commit df71527: the state of every object inside carried its own ``"kind"`` (class
  name) and ``"version"`` (its own layout: ``KlineBuilder`` and ``OrderBook`` at 2, every other class at 1), and each
  object refused a state of another kind or version;
- 2: those per-object headers are gone; the envelope holds the only version.

:meth:`MarketSnapshot.migrate` reads layouts 0 and 1: it checks every header as that code did and drops it.
"""

from __future__ import annotations

from typing import Any, ClassVar

from stream_processor.engine.snapshot import Snapshot

LAYOUT_1_VERSIONS: dict[str, int] = {"KlineBuilder": 2, "OrderBook": 2}
"""The per-object versions of layout 1 other than 1 (the only states the code of df71527 read)."""


def drop_headers(state: Any) -> Any:
    """A state of layout 0 or 1 without its per-object ``kind``/``version`` headers (layout 2).

    A header is a pair of keys ``"kind"`` (a str) and ``"version"`` (an int) in one JSON object; no market state has
    such a pair otherwise. Raises ValueError for a header of a version the code of df71527 would have refused (e.g. a
    ``KlineBuilder`` at 1, from before its trade-id tie-break).
    """
    if type(state) is list:
        return [drop_headers(v) for v in state]
    if type(state) is not dict:
        return state
    kind, version = state.get("kind"), state.get("version")
    if type(kind) is str and type(version) is int:
        expected = LAYOUT_1_VERSIONS.get(kind, 1)
        if version != expected:
            raise ValueError(f"state of {kind!r} v{version}: layout 1 holds {kind} v{expected} (a state of an older "
                             "layout that no migration reads)")
        return {k: drop_headers(v) for k, v in state.items() if k != "kind" and k != "version"}
    return {k: drop_headers(v) for k, v in state.items()}


class MarketSnapshot(Snapshot):
    """Base of the market's store values (see the module docstring): layout version 2, layouts 0 and 1 migrated."""

    __slots__ = ()

    STATE_VERSION: ClassVar[int] = 2

    @classmethod
    def migrate(cls, state: Any, version: int) -> Any:
        """A state of layout 0 or 1 in layout 2 (:func:`drop_headers`); ValueError for any other version."""
        if version in (0, 1):
            return drop_headers(state)
        return super().migrate(state, version)
