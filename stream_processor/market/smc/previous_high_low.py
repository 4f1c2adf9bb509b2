"""Streaming previous high and low of a higher time frame (day, 4 hours, week...), as the reference computes them."""

from __future__ import annotations

import re
from typing import Any

from stream_processor.market.smc.events import Candle, PerCandle, f32

_MINUTE = 60_000
_DAY = 86_400_000
_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_UNITS = {"min": _MINUTE, "m": _MINUTE, "t": _MINUTE, "h": 60 * _MINUTE, "d": _DAY}
_FRAME = re.compile(r"^\s*(\d*)\s*(min|m|T|h|H|D|d|W)(?:-([A-Za-z]{3}))?\s*$")


def parse_time_frame(time_frame: str) -> tuple[int, int]:
    """``(period_ms, anchor)`` of a time frame: ``anchor`` is -1 for N minutes / hours / days, else the weekday
    (0 = Monday .. 6 = Sunday) a week ends on. Raises ValueError naming ``time_frame`` when it is not one of
    ``"<N>min"`` (also ``"<N>m"``, ``"<N>T"``), ``"<N>h"`` (``"H"``), ``"<N>D"`` (``"d"``), ``"W"`` / ``"1W"`` or
    ``"W-SUN"`` .. ``"W-SAT"`` (N >= 1, default 1)."""
    m = _FRAME.match(time_frame) if isinstance(time_frame, str) else None
    if m is None:
        raise ValueError(f"time_frame must be like '15min', '4h', '1D' or 'W' (W-SUN), got {time_frame!r}")
    count, unit, anchor = m.group(1), m.group(2), m.group(3)
    n = int(count) if count else 1
    if n < 1:
        raise ValueError(f"time_frame needs a count >= 1, got {time_frame!r}")
    if unit == "W":
        if n != 1:
            raise ValueError(f"time_frame: only single weeks are supported, got {time_frame!r}")
        day = (anchor or "SUN").upper()
        if day not in _WEEKDAYS:
            raise ValueError(f"time_frame: unknown week anchor in {time_frame!r} (W-MON .. W-SUN)")
        return 7 * _DAY, _WEEKDAYS.index(day)
    if anchor is not None:
        raise ValueError(f"time_frame: only weeks take an anchor, got {time_frame!r}")
    return n * _UNITS[unit.lower()], -1


class PreviousHighLow(PerCandle):
    """``smartmoneyconcepts.smc.previous_high_low(ohlc, time_frame)`` (v0.0.27), per candle, streamed.

    Definition (the reference's, with ``open_time_ms`` as its UTC index): the candles are grouped into the periods
    of ``ohlc.resample(time_frame)`` that hold candles (empty periods do not exist: ``dropna``), each period labelled
    like pandas does:

    - N minutes / hours / days: periods ``[origin + k*N, origin + (k+1)*N)`` with ``origin`` the UTC midnight of
      the FIRST candle's day (pandas' ``origin="start_day"``), labelled by their start;
    - ``"W"`` (= ``"W-SUN"``, ``"W-MON"``..): weeks of whole UTC days ending on the anchor day (Monday 00:00 ..
      Sunday 23:59:59.999 for W-SUN), labelled by the anchor day's 00:00 (pandas' ``closed="right",
      label="right"``).

    For a candle at time ``t`` let ``k`` be the number of periods with a label ``< t``; the previous period is the
    ``k-1``-th (1-based) of them, i.e. the second-to-last period labelled before ``t``: ``previous_high`` /
    ``previous_low`` are its highest high and lowest low; None (the reference: NaN) while ``k <= 1``. Candles
    with the same ``k`` form a group; ``broken_high`` is true once the highest high of the group so far (this
    candle included) is above ``previous_high`` (``broken_low``: lowest low below ``previous_low``).

    What that means, exactly as the reference has it: for a start-labelled frame (4h, 1D) the previous period is
    the last complete one, except on a candle that opens exactly at a period start, which gets the period before
    that (its own period's label is not ``< t``). For ``"W"`` the label is the week's END (Sunday 00:00), so every
    candle of a week from Monday to Sunday 00:00 gets the week BEFORE last, and a Sunday candle after 00:00 the
    last week. Only periods whose candles are all earlier than ``t`` are ever used, so nothing looks ahead:
    every value is final at the candle's close (delay 0) and equals the reference's.

    Numbers: prices in quote currency. ``previous_high`` / ``previous_low`` are returned in full precision; the
    reference stores them as float32 and compares prices against those float32 values, and so do we for
    ``broken_high`` / ``broken_low`` (a high within float32 rounding of the level may count as broken or not,
    like there).

    Differences: time frames of months / quarters / years, multiple weeks and resample options (``origin``,
    ``offset``, ``closed``...) are not supported; the reference has no time zone here (use UTC times).

    Raises ValueError for an invalid ``time_frame`` (naming it), an invalid candle or one not later than the
    previous one. Memory: O(1) (the current and the last two periods). Cost: O(1) per candle.
    """

    __slots__ = (
        "time_frame", "_period", "_anchor", "_origin", "_last_time", "_cur", "_prev1", "_prev2", "_completed",
        "_group", "_run_high", "_run_low", "_values",
    )  # fmt: skip
    _params = ("time_frame",)
    _derived = frozenset({"_period", "_anchor"})

    def __init__(self, time_frame: str = "1D") -> None:
        self._period, self._anchor = parse_time_frame(time_frame)
        self.time_frame = time_frame
        self._origin: int | None = None  # UTC midnight of the first candle's day (ms)
        self._last_time: int | None = None
        self._cur: list | None = None  # [label_ms, high, low] of the period of the latest candle
        self._prev1: list | None = None  # the last completed period
        self._prev2: list | None = None  # the one before it
        self._completed = 0  # periods completed so far
        self._group = -1  # k of the latest candle
        self._run_high = 0.0  # highest high / lowest low of the group so far
        self._run_low = 0.0
        self._values: dict[str, Any] | None = None

    def _label(self, t: int) -> int:
        if self._anchor < 0:
            origin = self._origin
            return origin + (t - origin) // self._period * self._period
        day = t // _DAY
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
        return (day + (self._anchor - weekday) % 7) * _DAY

    def step(self, c: Candle) -> dict[str, Any]:
        """Return this candle's ``{"previous_high", "previous_low", "broken_high", "broken_low"}``.

        ``previous_high`` / ``previous_low``: quote currency, None while there is no previous period;
        ``broken_high`` / ``broken_low``: bool (False while there is none). For a validated ``Candle``.
        """
        t = c.open_time_ms
        if self._last_time is not None and t <= self._last_time:
            raise ValueError(f"candle at {t} ms is not after the previous one at {self._last_time} ms")
        self._last_time = t
        if self._origin is None:
            self._origin = t // _DAY * _DAY
        label = self._label(t)
        cur = self._cur
        if cur is None or cur[0] != label:
            if cur is not None:
                self._prev2, self._prev1 = self._prev1, cur
                self._completed += 1
            self._cur = [label, c.high, c.low]
        else:
            if c.high > cur[1]:
                cur[1] = c.high
            if c.low < cur[2]:
                cur[2] = c.low
        before = label < t
        k = self._completed + (1 if before else 0)
        if k != self._group:
            self._group = k
            self._run_high, self._run_low = c.high, c.low
        else:
            if c.high > self._run_high:
                self._run_high = c.high
            if c.low < self._run_low:
                self._run_low = c.low
        previous = self._prev1 if before else self._prev2
        if previous is None:
            values = {"previous_high": None, "previous_low": None, "broken_high": False, "broken_low": False}
        else:
            high, low = previous[1], previous[2]
            values = {
                "previous_high": high,
                "previous_low": low,
                "broken_high": self._run_high > f32(high),
                "broken_low": self._run_low < f32(low),
            }
        self._values = values
        return dict(values)
