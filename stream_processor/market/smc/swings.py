"""Streaming swing highs and lows, confirmed ``swing_length`` candles late, with the reference's pruning made causal."""

from __future__ import annotations

from collections import deque

from stream_processor.engine.snapshot import Snapshot
from stream_processor.market.models import Kline
from stream_processor.market.smc.events import STARTUP_CANDLES, Candle, Event, as_candle, make_event

SWING_HIGH, SWING_LOW = 1, -1
_NAMES = {SWING_HIGH: "swing_high", SWING_LOW: "swing_low"}


def check_swing_length(swing_length: int) -> int:
    """Return ``swing_length`` if it is an int >= 1, else raise ValueError."""
    if isinstance(swing_length, bool) or not isinstance(swing_length, int) or swing_length < 1:
        raise ValueError(f"swing_length must be an int >= 1, got {swing_length!r}")
    return swing_length


class SwingDetector(Snapshot):
    """Swing highs and lows of ``smartmoneyconcepts.smc.swing_highs_lows(ohlc, swing_length=L)`` (v0.0.27), causally.

    Definition (the reference's, L = ``swing_length``): candle ``i`` is a raw swing high when
    ``high[i] == max(high[i-L+1 .. i+L])`` (the reference's ``high.shift(-L).rolling(2L).max()``: L-1 candles
    before, L after), else a raw swing low when ``low[i] == min(low[i-L+1 .. i+L])``; the rolling window must be
    full, so ``i >= 2L-1``. The reference then prunes, until nothing changes, every pair of consecutive swings of
    the same type, keeping the higher high (the lower low; the earlier one on a tie). That pass reaches a fixed
    point that is simple to state: of each run of consecutive same-type raw swings, the earliest most extreme
    one survives; the surviving swings alternate high, low, high...

    Streaming: raw swing ``i`` is known at the close of candle ``i+L`` (confirmation delay: L candles). A new raw
    swing of the other type than the last one is accepted (``swing_high`` / ``swing_low`` event) and makes the last
    one final. A new raw swing of the same type that is strictly more extreme replaces the last one: a
    ``swing_replaced`` event (``index`` = the old swing, ``replaced_by_index``) followed by the new swing's event; one
    that is not strictly more extreme is dropped silently. So the set of swings left after applying the events in
    order is, at every candle, the reference's final set computed over the candles seen so far (less its mark on
    the last candle, below); only the latest swing can still be replaced.

    Candle 0: the reference marks candle 0 as a swing of the opposite type of the first swing (level: its high or
    low). With ``mark_first_bar`` (default) that swing is emitted, with ``synthetic: True``, just before the first
    swing (if that comes within ``STARTUP_CANDLES`` candles). The reference also marks the LAST candle of its
    frame with the opposite type of the last swing: that depends on where the data ends, so it is not emitted.

    Event fields: ``type`` ("swing_high" / "swing_low" / "swing_replaced"), ``direction`` (+1 high, -1 low, like the
    reference's ``HighLow``), ``index``, ``open_time_ms``, ``confirmed_index``, ``confirmed_time_ms``, ``level``
    (the high or the low, quote currency), ``synthetic`` (swing events); ``replaced_by_index``,
    ``replaced_by_level`` (swing_replaced).

    Cost: O(L) per candle (max and min of a 2L window), memory O(L).
    """

    __slots__ = ("swing_length", "mark_first_bar", "_count", "_highs", "_lows", "_times", "_first", "_last")
    _params = ("swing_length", "mark_first_bar")

    def __init__(self, swing_length: int = 5, mark_first_bar: bool = True) -> None:
        self.swing_length = check_swing_length(swing_length)
        self.mark_first_bar = bool(mark_first_bar)
        self._count = 0
        window = 2 * swing_length
        self._highs: deque[float] = deque(maxlen=window)
        self._lows: deque[float] = deque(maxlen=window)
        self._times: deque[int] = deque(maxlen=window)
        self._first: list | None = None  # [high, low, open_time_ms] of candle 0
        self._last: list | None = None  # [direction, index, level, open_time_ms] of the latest swing

    @property
    def count(self) -> int:
        """Number of candles consumed."""
        return self._count

    @property
    def last_swing(self) -> dict | None:
        """The latest swing (the only one that can still be replaced): direction, index, level, open_time_ms."""
        if self._last is None:
            return None
        direction, index, level, time_ms = self._last
        return {"direction": direction, "index": index, "level": level, "open_time_ms": time_ms}

    def unsettled(self) -> tuple[int, list[int]]:
        """``(first, [])``: rows (candle indices) >= ``first`` may still change with later candles.

        The latest swing can still be replaced and later candles can become swings; every earlier row is final.
        """
        return (self._last[1] if self._last is not None else 0), []

    def update(self, candle: Candle | Kline | tuple) -> list[Event]:
        """Consume the next closed candle; return the swing events it confirms (often none).

        Raises ValueError for an invalid candle (see ``as_candle``) or one not later than the previous one.
        """
        return self.step(as_candle(candle))

    def step(self, c: Candle) -> list[Event]:
        """``update`` for a ``Candle`` already validated by ``as_candle`` (what ``SmcDetector`` passes)."""
        times = self._times
        if times and c.open_time_ms <= times[-1]:
            raise ValueError(f"candle at {c.open_time_ms} ms is not after the previous one at {times[-1]} ms")
        t = self._count
        self._count = t + 1
        highs, lows = self._highs, self._lows
        highs.append(c.high)
        lows.append(c.low)
        times.append(c.open_time_ms)
        if t == 0:
            self._first = [c.high, c.low, c.open_time_ms]
        length = self.swing_length
        if t < 3 * length - 1:  # candle t-L needs a full window: t-L >= 2L-1
            return []
        k = length - 1  # position of candle t-L in the window of candles t-2L+1 .. t
        if highs[k] == max(highs):
            direction, level = SWING_HIGH, highs[k]
        elif lows[k] == min(lows):
            direction, level = SWING_LOW, lows[k]
        else:
            return []
        return self._accept(direction, t - length, level, times[k], t, c.open_time_ms)

    def _accept(self, direction: int, index: int, level: float, time_ms: int, t: int, t_ms: int) -> list[Event]:
        last = self._last
        events: list[Event] = []
        if last is None:
            if self.mark_first_bar and self._first is not None and t < STARTUP_CANDLES:
                high0, low0, time0 = self._first
                level0 = high0 if direction == SWING_LOW else low0
                events.append(
                    make_event(_NAMES[-direction], -direction, 0, time0, t, t_ms, level=level0, synthetic=True)
                )
        elif last[0] == direction:
            if (level <= last[2]) if direction == SWING_HIGH else (level >= last[2]):
                return events  # the reference keeps the earlier, more extreme (or equal) one
            events.append(
                make_event(
                    "swing_replaced", direction, last[1], last[3], t, t_ms,
                    level=last[2], replaced_by_index=index, replaced_by_level=level,
                )
            )  # fmt: skip
        self._last = [direction, index, level, time_ms]
        events.append(make_event(_NAMES[direction], direction, index, time_ms, t, t_ms, level=level, synthetic=False))
        return events
