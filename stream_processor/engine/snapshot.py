"""The snapshot base of everything kept in a changelog-backed store: ``to_state`` / ``from_state``, one version.

A store value (the object kept under a key, e.g. a symbol's indicators) and every object nested in its state
subclass :class:`Snapshot`. ``to_state()`` returns a JSON-safe dict (floats, ints, str, bools, None, lists, dicts with
str keys); ``from_state(state)`` rebuilds an object that continues with outputs identical to the original's. By
default both walk the class's ``__slots__`` (a ``deque`` is written as a list, a nested :class:`Snapshot` as its own
state dict); a class may write its own pair instead and still uses the rest of the contract.

Versions. The layout of a store value's state, with the states nested in it, has ONE version: the value class's
:attr:`Snapshot.STATE_VERSION`. The store writes it once, in the envelope of each changelog record
(``{"v": STATE_VERSION, "state": ...}``, see :class:`~stream_processor.engine.state.StoreSpec` ``value_type``);
nothing inside a state carries a version or a class name. On restore, a record of an older version is passed to
the value class's :meth:`Snapshot.migrate` first; a newer version (written by newer code), or a migration that
raises, follows the store's ``on_error`` (``reset`` the key or ``fail``). When the layout of a nested class changes,
bump ``STATE_VERSION`` of every store value class that holds it and migrate the nested part in their ``migrate``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar, Self


def copy_json(value: Any) -> Any:
    """Deep copy of a JSON-like value (lists, deques and dicts are copied, scalars shared); a deque becomes a
    list."""
    if isinstance(value, list | deque):
        return [copy_json(v) for v in value]
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    return value


class Snapshot:
    """Base of every stateful object the changelog holds (see the module docstring).

    Class attributes a subclass sets:

    - ``STATE_VERSION``: the layout version of the state of this class's objects when they are store values (with
      everything nested in them); bump it when the layout changes, and override :meth:`migrate`.
    - ``_params``: the constructor's parameter names; each must also be a slot of the same name (default
      :meth:`from_state` only).
    - ``_derived``: slots recomputed by the constructor from the parameters (left out of the state).

    Stored values must be JSON-safe (lists rather than tuples: a tuple would come back as a list).
    """

    __slots__ = ()

    STATE_VERSION: ClassVar[int] = 1
    _params: ClassVar[tuple[str, ...]] = ()
    _derived: ClassVar[frozenset[str]] = frozenset()
    _state_fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        slots = [s for klass in reversed(cls.__mro__) for s in klass.__dict__.get("__slots__", ())]
        cls._state_fields = tuple(s for s in slots if s not in cls._derived)

    def to_state(self) -> dict[str, Any]:
        """Snapshot of the full state as a JSON-serializable dict (survives an orjson round trip)."""
        state: dict[str, Any] = {}
        for name in self._state_fields:
            val = getattr(self, name)
            state[name] = val.to_state() if isinstance(val, Snapshot) else copy_json(val)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild an object from ``to_state()``; it continues with outputs identical to the original's.

        Keys of ``state`` that are not fields of the class are ignored. Raises ValueError when the state misses a
        field or a window holds more values than its ``maxlen``.
        """
        obj = cls._construct(state)
        for name in cls._state_fields:
            current, stored = getattr(obj, name), state[name]
            if isinstance(current, Snapshot):
                setattr(obj, name, type(current).from_state(stored))
            elif isinstance(current, deque):
                if current.maxlen is not None and len(stored) > current.maxlen:
                    raise ValueError(
                        f"{cls.__name__}.{name}: {len(stored)} values exceed the window of {current.maxlen}"
                    )
                current.clear()
                current.extend(copy_json(stored))
            else:
                setattr(obj, name, copy_json(stored))
        return obj

    @classmethod
    def _construct(cls, state: dict[str, Any]) -> Self:
        """A new object from the parameters of ``state`` (a class overriding :meth:`from_state` then restores its
        fields). Raises ValueError when the state is not a dict or misses a field."""
        if type(state) is not dict:
            raise ValueError(f"{cls.__name__} state must be a JSON object, got {type(state).__name__}")
        missing = [name for name in cls._state_fields if name not in state]
        if missing:
            raise ValueError(f"{cls.__name__} state misses {missing}")
        return cls(**{name: state[name] for name in cls._params})

    @classmethod
    def migrate(cls, state: Any, version: int) -> Any:
        """``state``, written in layout ``version`` (0: a bare state written before the store had versions; always
        below ``STATE_VERSION``), in the layout of ``STATE_VERSION``, ready for :meth:`from_state`.

        The store calls it while restoring. Raises ValueError when there is no migration from ``version`` (the
        default: the store then resets the key or fails, per its ``on_error``).
        """
        raise ValueError(f"{cls.__name__}: no migration from layout version {version} to {cls.STATE_VERSION}")

    def __repr__(self) -> str:
        params = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._params)
        return f"{type(self).__name__}({params})"
