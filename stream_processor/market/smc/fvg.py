"""Streaming fair value gaps and their mitigation, one candle after the reference without lookahead."""

from __future__ import annotations

from bisect import insort
from collections import deque

from stream_processor.market.models import Kline
from stream_processor.market.smc.events import Candle, Event, Stateful, as_candle, make_event

# Open gap record: [sort key, index, open_time_ms, top, bottom]
_KEY, _IDX, _TIME, _TOP, _BOT = range(5)


class FairValueGaps(Stateful):
    """Fair value gaps of ``smartmoneyconcepts.smc.fvg(ohlc, join_consecutive=False)`` (v0.0.27), streamed.

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

    Bounds: open (unmitigated) gaps are kept sorted by the price that mitigates them, so a candle costs
    O(log n + mitigated) plus the list insert; at most ``max_open`` per direction are kept: beyond that the one
    farthest from being mitigated (lowest bullish top, highest bearish bottom) is dropped without an event.
    """

    __slots__ = ("max_open", "_count", "_prev", "_bull", "_bear")
    _params = ("max_open",)

    def __init__(self, max_open: int = 2000) -> None:
        if isinstance(max_open, bool) or not isinstance(max_open, int) or max_open < 1:
            raise ValueError(f"max_open must be an int >= 1, got {max_open!r}")
        self.max_open = max_open
        self._count = 0
        self._prev: deque[list] = deque(maxlen=2)  # [open, high, low, close, open_time_ms] of the last 2 candles
        self._bull: list[list] = []  # sorted by top: mitigated from the high end
        self._bear: list[list] = []  # sorted by bottom: mitigated from the low end

    @property
    def open_gaps(self) -> int:
        """Number of unmitigated gaps being tracked (both directions)."""
        return len(self._bull) + len(self._bear)

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
