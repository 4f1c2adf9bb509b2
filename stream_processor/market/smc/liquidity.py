"""Streaming liquidity (clusters of equal highs or lows) and its sweep, over the final swings, without lookahead."""

from __future__ import annotations

from bisect import insort

from stream_processor.engine.snapshot import Snapshot
from stream_processor.market.models import Kline
from stream_processor.market.smc.events import STARTUP_CANDLES, Candle, CandleWindow, Event, as_candle
from stream_processor.market.smc.swings import check_swing_length

# Swing / anchor record: [direction, index, level, open_time_ms, range_low, range_high, swept_index,
#                         swept_time_ms, sum of member levels, members, end index, end open_time_ms]
_DIR, _IDX, _LVL, _TIME, _LOW, _HIGH, _SWEPT, _SWEPT_T, _SUM, _N, _END, _END_T = range(12)


class Liquidity(Snapshot):
    """Liquidity of ``smartmoneyconcepts.smc.liquidity(ohlc, swings, range_percent)`` (v0.0.27), streamed.

    Input: each closed candle with the swing events ``SwingDetector`` emitted for it (``update(candle, swing_events)``).

    Definition (the reference's; swing highs give bullish liquidity, +1, swing lows bearish, -1): the swings are
    taken in index order; a swing not yet used anchors a range ``level +- pip_range``; it is swept at the first
    later candle whose high reaches ``level + pip_range`` (lows: whose low reaches ``level - pip_range``); every
    later unused swing of the same type, before the sweep, whose level lies in the range joins the anchor's
    group and is used. A group of two or more is liquidity: ``level`` = mean of the member levels, ``end_index``
    = the last member, ``swept_index`` = the sweep (the reference's Level, End, Swept).

    The range: the reference takes ``pip_range = range_percent * (max(high) - min(low))`` over the WHOLE frame,
    which looks ahead. Here, with ``pip_range=None`` (default), each anchor's range is fixed when its swing is
    confirmed: ``range_percent * (highest high - lowest low of the candles seen so far)`` (causal; narrower than
    the reference's early in a series, equal once the series has seen its extremes). A fixed ``pip_range`` (quote
    currency) can be given instead; with the reference's value it reproduces the reference.

    Streaming: the reference groups its FINAL swings (after pruning), so a swing joins or anchors a group only
    once it is final, i.e. when the next swing of the other type is confirmed (delay: at least ``swing_length``
    candles after that next swing, unbounded in candles). Sweeps are tracked from the candle after the swing,
    from its first confirmation. Events: ``liquidity`` when a group reaches two members and again (same
    ``index``, the latest wins) each time one more joins: ``level``, ``end_index``, ``end_time_ms``, ``members``,
    ``range_low``, ``range_high``, ``swept_index`` (None if not swept yet); ``liquidity_swept`` (``swept_index``,
    ``swept_time_ms``, ``level``) at the sweep of a group, or right after its ``liquidity`` event when the group
    formed after its sweep (a member before the sweep became final after it).

    Bounds: at most ``max_anchors`` open anchors per direction (oldest dropped beyond that); an anchor is
    dropped once swept and no later swing can join it. Unswept anchors are kept sorted by their sweep price, so
    a candle costs O(1 + anchors it sweeps); a final swing O(open anchors).
    """

    __slots__ = (
        "swing_length", "range_percent", "pip_range", "max_anchors",
        "_count", "_window", "_high", "_low", "_tentative", "_bull", "_bear", "_bull_open", "_bear_open",
        "_last_final",
    )  # fmt: skip
    _params = ("swing_length", "range_percent", "pip_range", "max_anchors")

    def __init__(
        self,
        swing_length: int = 5,
        range_percent: float = 0.01,
        pip_range: float | None = None,
        max_anchors: int = 500,
    ) -> None:
        self.swing_length = check_swing_length(swing_length)
        if not isinstance(range_percent, int | float) or not 0.0 <= range_percent < float("inf"):
            raise ValueError(f"range_percent must be a finite number >= 0, got {range_percent!r}")
        if pip_range is not None and (not isinstance(pip_range, int | float) or not 0.0 <= pip_range < float("inf")):
            raise ValueError(f"pip_range must be None or a finite number >= 0, got {pip_range!r}")
        if isinstance(max_anchors, bool) or not isinstance(max_anchors, int) or max_anchors < 1:
            raise ValueError(f"max_anchors must be an int >= 1, got {max_anchors!r}")
        self.range_percent = float(range_percent)
        self.pip_range = None if pip_range is None else float(pip_range)
        self.max_anchors = max_anchors
        self._count = 0
        self._window = CandleWindow(swing_length + 1, STARTUP_CANDLES)
        self._high: float | None = None  # highest high so far
        self._low: float | None = None  # lowest low so far
        self._tentative: list | None = None  # the latest swing, not final yet
        self._bull: list[list] = []  # open anchors of swing highs, in index order
        self._bear: list[list] = []  # open anchors of swing lows
        self._bull_open: list[list] = []  # [range_high, index] of the unswept ones, sorted
        self._bear_open: list[list] = []  # [range_low, index] of the unswept ones, sorted
        self._last_final = -1  # index of the latest final swing

    def unsettled(self) -> tuple[int, list[int]]:
        """``(first, indices)``: the rows (candle indices) whose liquidity may still change with later candles.

        Every row >= ``first`` (the swings not final yet, and later candles), and the rows in ``indices``: the
        anchors a later swing could still join. Every other row is final.
        """
        anchors = sorted(a[_IDX] for a in self._bull + self._bear)
        return self._last_final + 1, anchors

    def untaken(self) -> list[tuple[int, float, int, int, int, float]]:
        """The liquidity pools not swept yet, as ``(direction, level, members, index, open_time_ms, sweep_price)``.

        A pool is an open anchor that no candle has swept yet: a group of ``members`` >= 2 equal highs
        (``direction`` +1) / lows (-1), ``level`` = the mean of the member levels as in the ``liquidity`` event,
        or a single final swing that no later swing joined (``members`` 1, ``level`` = the swing's); plus the
        latest swing (not final yet, ``members`` 1) when it is not swept. ``index`` / ``open_time_ms``: the
        anchor's (first) swing; ``sweep_price``: the high (+1) / low (-1) that sweeps it, ``level`` +- the
        anchor's range (``range_high`` / ``range_low``). Bullish pools first; a new list: read only.
        O(open anchors).
        """
        pools = [(1, a[_SUM] / a[_N], a[_N], a[_IDX], a[_TIME], a[_HIGH]) for a in self._bull if a[_SWEPT] is None]
        pools += [(-1, a[_SUM] / a[_N], a[_N], a[_IDX], a[_TIME], a[_LOW]) for a in self._bear if a[_SWEPT] is None]
        tent = self._tentative
        if tent is not None and tent[_SWEPT] is None:
            sweep = tent[_HIGH] if tent[_DIR] == 1 else tent[_LOW]
            pools.append((tent[_DIR], tent[_LVL], 1, tent[_IDX], tent[_TIME], sweep))
        return pools

    def nearest_untaken(self, price: float) -> tuple[tuple | None, tuple | None]:
        """``(above, below)``: the pools of ``untaken()`` nearest to ``price`` on their own side.

        ``above``: the buy-side pool (swing highs, +1) with the lowest ``level > price``; ``below``: the sell-side
        pool (swing lows, -1) with the highest ``level < price``; ties: the later anchor. Each is None or
        ``(level, members, index, open_time_ms)``. Read only; O(open anchors), no copy.
        """
        inf = float("inf")
        up_lvl, up, down_lvl, down = inf, None, -inf, None
        for a in self._bull:
            if a[_SWEPT] is None:
                level = a[_SUM] / a[_N]
                if price < level and (level < up_lvl or (level == up_lvl and a[_IDX] > up[2])):
                    up_lvl, up = level, (level, a[_N], a[_IDX], a[_TIME])
        for a in self._bear:
            if a[_SWEPT] is None:
                level = a[_SUM] / a[_N]
                if price > level and (level > down_lvl or (level == down_lvl and a[_IDX] > down[2])):
                    down_lvl, down = level, (level, a[_N], a[_IDX], a[_TIME])
        t = self._tentative
        if t is not None and t[_SWEPT] is None:
            level = t[_LVL]
            if t[_DIR] == 1:
                if price < level and (level < up_lvl or (level == up_lvl and t[_IDX] > up[2])):
                    up = (level, 1, t[_IDX], t[_TIME])
            elif price > level and (level > down_lvl or (level == down_lvl and t[_IDX] > down[2])):
                down = (level, 1, t[_IDX], t[_TIME])
        return up, down

    def update(self, candle: Candle | Kline | tuple, swing_events: list[Event]) -> list[Event]:
        """Consume the next closed candle and its swing events; return the liquidity events it confirms.

        Raises ValueError for an invalid candle (see ``as_candle``), one not later than the previous one, or
        swing events that do not follow the swing stream.
        """
        return self.step(as_candle(candle), swing_events)

    def step(self, c: Candle, swing_events: list[Event]) -> list[Event]:
        """``update`` for a ``Candle`` already validated by ``as_candle`` (what ``SmcDetector`` passes)."""
        self._window.append(c)
        t = self._count
        self._count = t + 1
        if self._high is None or c.high > self._high:
            self._high = c.high
        if self._low is None or c.low < self._low:
            self._low = c.low
        events: list[Event] = []
        tent = self._tentative
        if tent is not None and tent[_SWEPT] is None and self._swept(tent, c.high, c.low):
            tent[_SWEPT], tent[_SWEPT_T] = t, c.open_time_ms
        swept: list[int] = []
        entries = self._bull_open  # swept when the high reaches range_high
        n = 0
        while n < len(entries) and entries[n][0] <= c.high:
            n += 1
        if n:
            swept += [e[1] for e in entries[:n]]
            del entries[:n]
        entries = self._bear_open  # swept when the low reaches range_low
        while entries and entries[-1][0] >= c.low:
            swept.append(entries.pop()[1])
        if swept:
            anchors = {a[_IDX]: a for a in self._bull + self._bear if a[_IDX] in swept}
            for index in sorted(swept):
                a = anchors[index]
                a[_SWEPT], a[_SWEPT_T] = t, c.open_time_ms
                if a[_N] >= 2:
                    events.append(self._event("liquidity_swept", a, t, c.open_time_ms))
        for ev in swing_events:
            self._on_swing(ev, t, c.open_time_ms, events)
        if swing_events and not self._window.bounded:
            self._window.bound()
        return events

    @staticmethod
    def _swept(s: list, high: float, low: float) -> bool:
        return high >= s[_HIGH] if s[_DIR] == 1 else low <= s[_LOW]

    def _on_swing(self, ev: Event, t: int, t_ms: int, events: list[Event]) -> None:
        kind = ev["type"]
        tent = self._tentative
        if kind == "swing_replaced":
            if tent is None or tent[_IDX] != ev["index"]:
                raise ValueError(f"swing_replaced of candle {ev['index']} does not name the latest swing")
            self._tentative = None
            return
        if kind not in ("swing_high", "swing_low"):
            raise ValueError(f"not a swing event: {kind!r}")
        direction, index, level = ev["direction"], ev["index"], ev["level"]
        if tent is not None:
            if tent[_DIR] == direction:
                raise ValueError(f"two consecutive swings of direction {direction} without a swing_replaced")
            self._finalize(tent, t, t_ms, events)
        pip = self.pip_range if self.pip_range is not None else self.range_percent * (self._high - self._low)
        rec = [direction, index, level, ev["open_time_ms"], level - pip, level + pip, None, None, level, 1, index, 0]
        rec[_END_T] = ev["open_time_ms"]
        window = self._window
        for j in range(index + 1, t + 1):
            r = window.row(j)
            if self._swept(rec, r[1], r[2]):
                rec[_SWEPT], rec[_SWEPT_T] = j, r[5]
                break
        self._tentative = rec

    def _finalize(self, s: list, t: int, t_ms: int, events: list[Event]) -> None:
        """Swing ``s`` is final: it joins the first open anchor that takes it, or becomes an anchor."""
        self._last_final = index = s[_IDX]
        self._join(s, index, t, t_ms, events)
        # Anchors swept at or before this swing can take no later swing (later final swings have larger indices).
        for anchors in (self._bull, self._bear):
            if any(a[_SWEPT] is not None and a[_SWEPT] <= index for a in anchors):
                anchors[:] = [a for a in anchors if a[_SWEPT] is None or a[_SWEPT] > index]

    def _join(self, s: list, index: int, t: int, t_ms: int, events: list[Event]) -> None:
        level = s[_LVL]
        anchors = self._bull if s[_DIR] == 1 else self._bear
        for a in anchors:
            if (a[_SWEPT] is None or index < a[_SWEPT]) and a[_LOW] <= level <= a[_HIGH]:
                a[_SUM] += level
                a[_N] += 1
                a[_END], a[_END_T] = index, s[_TIME]
                events.append(
                    self._event(
                        "liquidity", a, t, t_ms,
                        end_index=index, end_time_ms=s[_TIME], members=a[_N],
                        range_low=a[_LOW], range_high=a[_HIGH],
                    )
                )  # fmt: skip
                if a[_SWEPT] is not None and a[_N] == 2:
                    events.append(self._event("liquidity_swept", a, t, t_ms))
                return
        anchors.append(s)
        entries = self._bull_open if s[_DIR] == 1 else self._bear_open
        if s[_SWEPT] is None:
            insort(entries, [s[_HIGH] if s[_DIR] == 1 else s[_LOW], index])
        if len(anchors) > self.max_anchors:
            dropped = anchors.pop(0)[_IDX]
            entries[:] = [e for e in entries if e[1] != dropped]

    @staticmethod
    def _event(kind: str, a: list, t: int, t_ms: int, **extra) -> Event:
        event = {
            "type": kind,
            "direction": a[_DIR],
            "index": a[_IDX],
            "open_time_ms": a[_TIME],
            "confirmed_index": t,
            "confirmed_time_ms": t_ms,
            "level": a[_SUM] / a[_N],
            "swept_index": a[_SWEPT],
        }
        if kind == "liquidity_swept":
            event["swept_time_ms"] = a[_SWEPT_T]
            event["end_index"] = a[_END]
        event.update(extra)
        return event
