"""Shared machinery of the incremental indicators: the ``value`` property and the JSON state snapshot.

The snapshot is :class:`~stream_processor.engine.snapshot.Snapshot`'s, shared with every stateful object.
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

from stream_processor.engine.snapshot import Snapshot


class Indicator(Snapshot):
    """Base of the O(1)-per-update indicators; subclasses declare their state in ``__slots__``.

    Class attributes a subclass sets (see :class:`~stream_processor.engine.snapshot.Snapshot`):

    - ``_params``: the constructor's parameter names; each must also be a slot of the same name.
    - ``_derived``: slots recomputed by the constructor from the parameters (left out of the state).

    ``value`` is the last output, or None while warming up.
    """

    __slots__ = ("_value",)

    @property
    def value(self) -> float | None:
        """The last output, or None while warming up."""
        return self._value

    def __repr__(self) -> str:
        params = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._params)
        return f"{type(self).__name__}({params}) value={self._value!r}"


def check_length(length: int) -> int:
    """Return ``length`` if it is an int >= 1, else raise ValueError."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be an int >= 1, got {length!r}")
    return length
