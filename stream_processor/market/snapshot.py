"""The JSON state snapshot shared by indicators, SMC detectors and other changelog state: slots in, slots out.

A subclass keeps its whole state in ``__slots__``. ``to_state`` walks the slots of the class and its bases and
writes a dict of JSON-safe values (floats, ints, str, bools, None, lists, dicts with str keys; a ``deque`` becomes a
list, a nested ``Snapshot`` its own state dict). ``from_state`` rebuilds the object through its constructor (so
windows get their ``maxlen`` and derived constants are recomputed) from the parameters named in ``_params``, then
restores every stored slot.
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar, Self


def _copy(value: Any) -> Any:
    """Deep copy of a JSON-like value (lists and dicts are copied, scalars shared)."""
    if isinstance(value, list | deque):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


class Snapshot:
    """Base of every stateful object the changelog holds: ``to_state`` / ``from_state`` over the slots.

    Class attributes a subclass sets:

    - ``_params``: the constructor's parameter names; each must also be a slot of the same name.
    - ``_derived``: slots recomputed by the constructor from the parameters (left out of the state).

    Stored values must be JSON-safe (lists rather than tuples: a tuple would come back as a list).
    """

    __slots__ = ()

    _params: ClassVar[tuple[str, ...]] = ()
    _derived: ClassVar[frozenset[str]] = frozenset()
    _state_fields: ClassVar[tuple[str, ...]] = ()
    #: Bumped when a class's state layout changes; a snapshot of another version is refused.
    state_version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        slots = [s for klass in reversed(cls.__mro__) for s in klass.__dict__.get("__slots__", ())]
        cls._state_fields = tuple(s for s in slots if s not in cls._derived)

    def to_state(self) -> dict[str, Any]:
        """Snapshot of the full state as a JSON-serializable dict (survives an orjson round trip)."""
        state: dict[str, Any] = {"kind": type(self).__name__, "version": self.state_version}
        for name in self._state_fields:
            val = getattr(self, name)
            state[name] = val.to_state() if isinstance(val, Snapshot) else _copy(val)
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild an object from ``to_state()``; it continues with outputs identical to the original's.

        Raises ValueError when the snapshot is of another class or version, or misses a field.
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
                current.extend(_copy(stored))
            else:
                setattr(obj, name, _copy(stored))
        return obj

    @classmethod
    def _construct(cls, state: dict[str, Any]) -> Self:
        """A new object from the parameters of ``state`` (a class overriding :meth:`from_state` then restores its
        fields). Raises ValueError when the snapshot is of another class or version, or misses a field."""
        kind, version = state.get("kind"), state.get("version")
        if kind != cls.__name__ or version != cls.state_version:
            raise ValueError(f"state of {kind!r} v{version} cannot restore {cls.__name__} v{cls.state_version}")
        missing = [name for name in cls._state_fields if name not in state]
        if missing:
            raise ValueError(f"{cls.__name__} state misses {missing}")
        return cls(**{name: state[name] for name in cls._params})

    def __repr__(self) -> str:
        params = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._params)
        return f"{type(self).__name__}({params})"
