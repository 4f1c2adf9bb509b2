"""Shared pieces of the SMC detectors: the candle input, the event dict, the recent-candle window, the snapshot base.

Candles: every detector is fed one CLOSED candle at a time, either a ``stream_processor.market.models.Kline``
(``is_closed`` must be true) or a ``Candle`` / any 6-sequence ``(open, high, low, close, volume,
open_time_ms)``: prices in quote currency, volume in base units, ``open_time_ms`` in ms since the Unix epoch
(UTC). Candles must arrive in strictly increasing ``open_time_ms``; the detectors number them 0, 1, 2, ... in
arrival order (``index`` in every event is that 0-based count since the start of the series).

Events are plain JSON-safe dicts (see ``make_event``), so they can be written to a topic as they are.

State: each detector is a :class:`~stream_processor.engine.snapshot.Snapshot` keeping its whole state in
``__slots__``; ``to_state`` writes a JSON-safe dict (floats, ints, str, bools, None, lists, dicts with str keys; a
``deque`` becomes a list, a nested detector its own state dict) and ``from_state`` rebuilds the object so that it
continues with identical events.
"""

from __future__ import annotations

import struct
from collections import deque
from typing import Any, NamedTuple

from stream_processor.engine.snapshot import Snapshot
from stream_processor.market.models import Kline

Event = dict[str, Any]

#: Every event ``type`` the SMC detectors emit (alert rules may name only these).
EVENT_TYPES = frozenset({
    "swing_high", "swing_low", "swing_replaced",
    "bos", "choch", "bos_cancelled", "choch_cancelled",
    "fvg", "fvg_mitigated", "fvg_replaced",
    "order_block", "order_block_mitigated", "breaker_invalidated", "order_block_cancelled",
    "liquidity", "liquidity_swept",
})

_F32 = struct.Struct("<f")

#: Candles kept from the start of a series until its first swing is confirmed. The reference marks candle 0
#: as a swing (see ``SwingDetector``); the detectors measure that swing's breaks and sweeps from candle 0, so
#: they need those candles. A series whose first swing comes later than this gets no candle-0 swing (a
#: market that makes no swing in 5,000 candles is not one this package is meant for).
STARTUP_CANDLES = 5000


class Candle(NamedTuple):
    """One closed candle: prices in quote currency, ``volume`` in base units, ``open_time_ms`` in ms (UTC)."""

    open: float
    high: float
    low: float
    close: float
    volume: float
    open_time_ms: int


def as_candle(candle: Candle | Kline | tuple | list) -> Candle:
    """Return ``candle`` as a validated ``Candle``.

    Accepts a ``Candle``, a closed ``Kline`` or a 6-sequence ``(open, high, low, close, volume, open_time_ms)``.
    Raises ValueError for an open Kline, a sequence of another length, a non-finite price or volume, or a
    non-integer ``open_time_ms``.
    """
    if type(candle) is Candle:
        c = candle
    elif isinstance(candle, Kline):
        if not candle.is_closed:
            raise ValueError(f"SMC detectors take closed candles only; kline at {candle.open_time_ms} is open")
        c = Candle(candle.open, candle.high, candle.low, candle.close, candle.volume, candle.open_time_ms)
    else:
        if len(candle) != 6:
            raise ValueError(f"a candle is (open, high, low, close, volume, open_time_ms), got {candle!r}")
        c = Candle(*candle)
    o, h, lo, cl, v, t = c
    # x - x != 0.0 is true exactly for NaN and +-inf (see stream_processor/indicators/base.py).
    if o - o != 0.0 or h - h != 0.0 or lo - lo != 0.0 or cl - cl != 0.0 or v - v != 0.0:
        raise ValueError(f"candle prices and volume must be finite, got {c!r}")
    if isinstance(t, bool) or not isinstance(t, int):
        raise ValueError(f"open_time_ms must be an int (ms since the epoch), got {t!r}")
    return c


def make_event(
    kind: str,
    direction: int,
    index: int,
    open_time_ms: int,
    confirmed_index: int,
    confirmed_time_ms: int,
    **fields: Any,
) -> Event:
    """Build one event dict.

    ``kind`` becomes ``type``; ``direction`` is +1 (bullish, or a swing high) / -1 (bearish, or a swing low);
    ``index`` / ``open_time_ms`` name the candle the event refers to, ``confirmed_index`` /
    ``confirmed_time_ms`` the candle whose close confirmed it (never earlier than the data it depends on).
    ``fields`` (levels, other candle indices...) are added as they are and must be JSON-safe.
    """
    return {
        "type": kind,
        "direction": direction,
        "index": index,
        "open_time_ms": open_time_ms,
        "confirmed_index": confirmed_index,
        "confirmed_time_ms": confirmed_time_ms,
        **fields,
    }


def f32(x: float) -> float:
    """``x`` rounded to the nearest float32, as a Python float.

    The reference library stores BOS/CHoCH and order-block levels in float32 arrays and compares prices
    against those rounded values; the detectors do the same where they mirror it.
    """
    return _F32.unpack(_F32.pack(x))[0]


class PerCandle(Snapshot):
    """Base of the detectors that give values per candle rather than events (previous high/low, sessions): a
    subclass keeps its latest values in the slot ``_values`` and implements ``step(c: Candle) -> dict``."""

    __slots__ = ()
    _values: dict[str, Any] | None

    @property
    def values(self) -> dict[str, Any] | None:
        """The latest candle's values (see ``step``), None before the first candle."""
        return None if self._values is None else dict(self._values)

    def update(self, candle: Candle | Kline | tuple) -> dict[str, Any]:
        """Consume the next closed candle; return its values (see ``step``).

        Raises ValueError for an invalid candle (see ``as_candle``) or one not later than the previous one.
        """
        return self.step(as_candle(candle))  # type: ignore[attr-defined]


class CandleWindow(Snapshot):
    """The most recent candles, looked up by index; rows are ``[open, high, low, close, volume, open_time_ms]``.

    Until ``bound()`` is called the window keeps every candle (at most ``startup`` of them: older ones are
    dropped beyond that); after it, only the last ``keep``. The detectors keep everything until the first
    swing is known, because the reference marks candle 0 as a swing of the opposite type of the first swing,
    and that synthetic swing's breaks, sweeps and order block are measured from candle 0.

    ``row(i)`` raises IndexError when candle ``i`` has left the window (or has not arrived).
    """

    __slots__ = ("keep", "startup", "_start", "_rows", "_bounded")
    _params = ("keep", "startup")

    def __init__(self, keep: int, startup: int) -> None:
        self.keep = keep
        self.startup = startup
        self._start = 0
        self._rows: deque[list] = deque()
        self._bounded = False

    @property
    def end(self) -> int:
        """Index of the next candle to arrive (= number of candles seen)."""
        return self._start + len(self._rows)

    def append(self, c: Candle) -> None:
        """Add the next candle and drop what falls out of the window.

        Raises ValueError (and keeps nothing) when ``c`` is not later than the last candle.
        """
        rows = self._rows
        if rows and c.open_time_ms <= rows[-1][5]:
            raise ValueError(f"candle at {c.open_time_ms} ms is not after the previous one at {rows[-1][5]} ms")
        rows.append([c.open, c.high, c.low, c.close, c.volume, c.open_time_ms])
        limit = self.keep if self._bounded else self.startup
        while len(rows) > limit:
            rows.popleft()
            self._start += 1

    @property
    def bounded(self) -> bool:
        """True once ``bound()`` has been called."""
        return self._bounded

    def bound(self) -> None:
        """From now on keep only the last ``keep`` candles."""
        self._bounded = True
        rows = self._rows
        while len(rows) > self.keep:
            rows.popleft()
            self._start += 1

    def drop_before(self, i: int) -> None:
        """Forget the candles before candle ``i``."""
        rows = self._rows
        while rows and self._start < i:
            rows.popleft()
            self._start += 1

    @property
    def start(self) -> int:
        """Index of the oldest candle kept."""
        return self._start

    def row(self, i: int) -> list:
        """The row of candle ``i``."""
        j = i - self._start
        if j < 0:
            raise IndexError(f"candle {i} has left the window (oldest kept: {self._start})")
        return self._rows[j]

    def time(self, i: int) -> int:
        """``open_time_ms`` of candle ``i``."""
        return self.row(i)[5]
