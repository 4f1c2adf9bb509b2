"""Shared machinery of the incremental indicators: the ``value`` property and the JSON state snapshot.

Every indicator keeps its whole state in ``__slots__``. ``to_state`` walks the slots of the class and
its bases and writes a dict of JSON-safe values (floats, ints, str, None, lists; a ``deque`` window
becomes a list, a nested indicator its own state dict). ``from_state`` rebuilds the object through
its constructor (so windows get their ``maxlen`` and derived constants are recomputed) from the
parameters named in ``_params``, then restores every stored slot.

Inputs are checked to be finite before any state changes: a NaN or an infinity in a window would
poison a compensated running sum for good, and orjson writes NaN/inf as ``null``, which would
break the snapshot round-trip. The hot paths test ``x - x != 0.0`` (true exactly for NaN and +-inf,
since ``x - x`` is 0.0 for every finite float), which is cheaper than ``math.isfinite``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar, Self


class Indicator:
    """Base of the O(1)-per-update indicators; subclasses declare their state in ``__slots__``.

    Class attributes a subclass sets:

    - ``_params``: the constructor's parameter names; each must also be a slot of the same name.
    - ``_derived``: slots recomputed by the constructor from the parameters (left out of the state).

    ``value`` is the last output, or None while warming up.
    """

    __slots__ = ("_value",)

    _params: ClassVar[tuple[str, ...]] = ()
    _derived: ClassVar[frozenset[str]] = frozenset()
    _state_fields: ClassVar[tuple[str, ...]] = ("_value",)
    #: Bumped when a class's state layout changes; a snapshot of another version is refused.
    state_version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        slots = [s for klass in reversed(cls.__mro__) for s in klass.__dict__.get("__slots__", ())]
        cls._state_fields = tuple(s for s in slots if s not in cls._derived)

    @property
    def value(self) -> float | None:
        """The last output, or None while warming up."""
        return self._value

    def to_state(self) -> dict[str, Any]:
        """Snapshot of the full state as a JSON-serializable dict (survives an orjson round-trip)."""
        state: dict[str, Any] = {"kind": type(self).__name__, "version": self.state_version}
        for name in self._state_fields:
            val = getattr(self, name)
            if isinstance(val, deque):
                val = list(val)
            elif isinstance(val, Indicator):
                val = val.to_state()
            state[name] = val
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild an indicator from ``to_state()``; it continues with outputs identical to the original.

        Raises ValueError when the snapshot is of another class or version, misses a field, or holds
        a window longer than the indicator's length.
        """
        kind, version = state.get("kind"), state.get("version")
        if kind != cls.__name__ or version != cls.state_version:
            raise ValueError(
                f"state of {kind!r} v{version} cannot restore {cls.__name__} v{cls.state_version}"
            )
        missing = [name for name in cls._state_fields if name not in state]
        if missing:
            raise ValueError(f"{cls.__name__} state misses {missing}")
        obj = cls(**{name: state[name] for name in cls._params})
        for name in cls._state_fields:
            current, stored = getattr(obj, name), state[name]
            if isinstance(current, deque):
                if current.maxlen is not None and len(stored) > current.maxlen:
                    raise ValueError(
                        f"{cls.__name__}.{name}: {len(stored)} values exceed the window of {current.maxlen}"
                    )
                current.extend(stored)
            elif isinstance(current, Indicator):
                setattr(obj, name, type(current).from_state(stored))
            else:
                setattr(obj, name, stored)
        return obj

    def __repr__(self) -> str:
        params = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._params)
        return f"{type(self).__name__}({params}) value={self._value!r}"


def check_length(length: int) -> int:
    """Return ``length`` if it is an int >= 1, else raise ValueError."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be an int >= 1, got {length!r}")
    return length
