"""Streaming fair value gaps and their mitigation, one candle after the reference without lookahead."""

from __future__ import annotations

from bisect import insort
from collections import deque
from typing import Any, Self

from stream_processor.engine.snapshot import Snapshot
from stream_processor.market.models import Kline
from stream_processor.market.smc.events import Candle, Event, as_candle, make_event

# Open gap record: [sort key, index, open_time_ms, top, bottom]
_KEY, _IDX, _TIME, _TOP, _BOT = range(5)


class FairValueGaps(Snapshot):
    """Fair value gaps of ``smartmoneyconcepts.smc.fvg(ohlc, join_consecutive=...)`` (v0.0.27), streamed.

    Definition (the reference's): candle ``i`` is a bullish gap when ``high[i-1] < low[i+1]`` and
    ``close[i] > open[i]`` (``top = low[i+1]``, ``bottom = high[i-1]``), a bearish gap when
    ``low[i-1] > high[i+1]`` and ``close[i] < open[i]`` (``top = low[i-1]``, ``bottom = high[i+1]``). A gap is
    mitigated at the first candle ``j >= i+2`` whose low is ``<= top`` (bullish) or whose high is ``>= bottom``
    (bearish): the reference's ``MitigatedIndex``. Prices in quote currency.

    Streaming: event ``fvg`` for candle ``i`` is confirmed at the close of ``i+1`` (delay: 1 candle);
    ``fvg_mitigated`` (``index`` = the gap's candle, ``mitigated_index`` = ``confirmed_index`` = j) at the close of
    ``j`` (no delay). Both agree with the reference exactly (the gap test needs nothing later than ``i+1`` and the
    mitigation is a first passage).

    Fields: ``fvg``: ``top``, ``bottom``; ``fvg_mitigated``: ``top``, ``bottom``, ``mitigated_index``.

    ``join_consecutive=True`` (the reference's ``fvg(ohlc, join_consecutive=True)``): a run of gaps of the same
    direction on consecutive candles ``i, i+1, ..., k`` becomes one gap on its LAST candle ``k``, with the highest top
    and the lowest bottom of the run; the earlier candles of the run hold no gap, and only the joined gap is
    mitigated (first candle ``j >= k+2`` whose low is ``<= top`` / high is ``>= bottom``). Streaming: the gap at ``i``
    is emitted at ``i+1`` as usual; when candle ``i+2`` shows that ``i+1`` is a gap of the same direction, the event
    ``fvg_replaced`` (``index`` = ``i``, its ``top`` / ``bottom``, ``replaced_by_index`` = ``i+1``,
    ``replaced_by_top`` / ``replaced_by_bottom`` = the joined bounds) is emitted, then ``fvg`` for ``i+1`` with the
    joined bounds. The replaced gap is no longer open: it is neither mitigated nor listed by ``unmitigated()``
    (even if candle ``i+2`` reached its top: the reference absorbs it first). Every ``fvg`` event of this mode
    also carries ``first_index`` (the first candle of the joined run; = ``index`` when nothing was joined). Only the
    last gap can be replaced, and only by the next candle's: applying the events in order gives, at every
    candle, the reference's columns over the candles seen so far (the last row needs the next candle, as without
    joining). Delay: 1 candle for ``fvg``, 2 for ``fvg_replaced`` (relative to the replaced gap's candle).

    Bounds: open (unmitigated) gaps are kept sorted by the price that mitigates them, so a candle costs
    O(log n + mitigated) plus the list insert; at most ``max_open`` per direction are kept: beyond that the one
    farthest from being mitigated (lowest bullish top, highest bearish bottom) is dropped without an event.
    """

    __slots__ = ("max_open", "join_consecutive", "_count", "_prev", "_bull", "_bear", "_last")
    _params = ("max_open", "join_consecutive")

    def __init__(self, max_open: int = 2000, join_consecutive: bool = False) -> None:
        if isinstance(max_open, bool) or not isinstance(max_open, int) or max_open < 1:
            raise ValueError(f"max_open must be an int >= 1, got {max_open!r}")
        if not isinstance(join_consecutive, bool):
            raise ValueError(f"join_consecutive must be a bool, got {join_consecutive!r}")
        self.max_open = max_open
        self.join_consecutive = join_consecutive
        self._count = 0
        self._prev: deque[list] = deque(maxlen=2)  # [open, high, low, close, open_time_ms] of the last 2 candles
        self._bull: list[list] = []  # sorted by top: mitigated from the high end
        self._bear: list[list] = []  # sorted by bottom: mitigated from the low end
        # join_consecutive only: [direction, index, open_time_ms, top, bottom, first_index] of the last gap
        self._last: list | None = None

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """``Snapshot.from_state``; a snapshot taken before ``join_consecutive`` existed restores as not joining."""
        return super().from_state({"join_consecutive": False, "_last": None, **state})

    @property
    def open_gaps(self) -> int:
        """Number of unmitigated gaps being tracked (both directions)."""
        return len(self._bull) + len(self._bear)

    def unmitigated(self) -> list[tuple[int, float, float, int, int]]:
        """Every open (unmitigated, not replaced) gap as ``(direction, top, bottom, index, open_time_ms)``.

        ``direction`` +1 bullish / -1 bearish, ``top`` / ``bottom`` in quote currency (the joined bounds with
        ``join_consecutive``), ``index`` / ``open_time_ms`` the gap's candle; sorted by ``index``. A new list: read
        only, the detector is not changed. At most ``max_open`` per direction (see Bounds).
        """
        gaps = [(1, g[_TOP], g[_BOT], g[_IDX], g[_TIME]) for g in self._bull]
        gaps += [(-1, g[_TOP], g[_BOT], g[_IDX], g[_TIME]) for g in self._bear]
        gaps.sort(key=lambda g: g[3])
        return gaps

    def update(self, candle: Candle | Kline | tuple) -> list[Event]:
        """Consume the next closed candle; return the ``fvg_mitigated`` and ``fvg`` events it confirms.

        Raises ValueError for an invalid candle (see ``as_candle``) or one not later than the previous one.
        """
        return self.step(as_candle(candle))

    def step(self, c: Candle) -> list[Event]:
        """``update`` for a ``Candle`` already validated by ``as_candle`` (what ``SmcDetector`` passes)."""
        prev = self._prev
        if prev and c.open_time_ms <= prev[-1][4]:
            raise ValueError(f"candle at {c.open_time_ms} ms is not after the previous one at {prev[-1][4]} ms")
        if self.join_consecutive:
            return self._step_joined(c)
        t = self._count
        self._count = t + 1
        events: list[Event] = []
        if self._bull or self._bear:
            self._mitigate(c, t, events)
        if len(prev) == 2:
            (_, h2, l2, _, _), (o1, _, _, c1, t1) = prev
            i = t - 1
            if h2 < c.low and c1 > o1:
                top, bottom = c.low, h2
                insort(self._bull, [top, i, t1, top, bottom])
                self._trim(self._bull, 0)
                events.append(make_event("fvg", 1, i, t1, t, c.open_time_ms, top=top, bottom=bottom))
            elif l2 > c.high and c1 < o1:
                top, bottom = l2, c.high
                insort(self._bear, [bottom, i, t1, top, bottom])
                self._trim(self._bear, -1)
                events.append(make_event("fvg", -1, i, t1, t, c.open_time_ms, top=top, bottom=bottom))
        prev.append([c.open, c.high, c.low, c.close, c.open_time_ms])
        return events

    def _step_joined(self, c: Candle) -> list[Event]:
        """``step`` with ``join_consecutive``: the gap test first (a join removes the last gap before mitigation)."""
        prev = self._prev
        t = self._count
        self._count = t + 1
        events: list[Event] = []
        gap = None  # (direction, top, bottom) of candle t-1
        if len(prev) == 2:
            (_, h2, l2, _, _), (o1, _, _, c1, t1) = prev
            if h2 < c.low and c1 > o1:
                gap = (1, c.low, h2)
            elif l2 > c.high and c1 < o1:
                gap = (-1, l2, c.high)
        replaced = None
        i = t - 1
        if gap is not None:
            last = self._last
            if last is not None and last[0] == gap[0] and last[1] == i - 1:
                replaced = last
                self._remove_open(last)
        if self._bull or self._bear:
            self._mitigate(c, t, events)
        if gap is not None:
            direction, top, bottom = gap
            first = i
            if replaced is not None:
                top, bottom, first = max(replaced[3], top), min(replaced[4], bottom), replaced[5]
                events.append(
                    make_event(
                        "fvg_replaced", direction, replaced[1], replaced[2], t, c.open_time_ms,
                        top=replaced[3], bottom=replaced[4], replaced_by_index=i,
                        replaced_by_top=top, replaced_by_bottom=bottom,
                    )
                )  # fmt: skip
            if direction == 1:
                insort(self._bull, [top, i, t1, top, bottom])
                self._trim(self._bull, 0)
            else:
                insort(self._bear, [bottom, i, t1, top, bottom])
                self._trim(self._bear, -1)
            self._last = [direction, i, t1, top, bottom, first]
            events.append(
                make_event("fvg", direction, i, t1, t, c.open_time_ms, top=top, bottom=bottom, first_index=first)
            )
        prev.append([c.open, c.high, c.low, c.close, c.open_time_ms])
        return events

    def _remove_open(self, last: list) -> None:
        """Take the gap ``last`` (a ``_last`` record) out of the open lists, if it is still there."""
        gaps = self._bull if last[0] == 1 else self._bear
        for k, g in enumerate(gaps):
            if g[_IDX] == last[1]:
                del gaps[k]
                return

    def _trim(self, gaps: list[list], farthest: int) -> None:
        if len(gaps) > self.max_open:
            del gaps[farthest]

    def _mitigate(self, c: Candle, t: int, events: list[Event]) -> None:
        done: list[tuple[int, list]] = []
        bull = self._bull
        while bull and bull[-1][_KEY] >= c.low:
            done.append((1, bull.pop()))
        bear = self._bear
        n = 0
        while n < len(bear) and bear[n][_KEY] <= c.high:
            n += 1
        if n:
            done.extend((-1, g) for g in bear[:n])
            del bear[:n]
        done.sort(key=lambda d: d[1][_IDX])
        for direction, g in done:
            events.append(
                make_event(
                    "fvg_mitigated", direction, g[_IDX], g[_TIME], t, c.open_time_ms,
                    top=g[_TOP], bottom=g[_BOT], mitigated_index=t,
                )
            )  # fmt: skip
