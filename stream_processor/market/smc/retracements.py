"""Streaming retracement from the last swing, in %, as the reference computes it, with swings known L candles late."""

from __future__ import annotations

from collections import deque
from typing import Any

from stream_processor.engine.snapshot import Snapshot
from stream_processor.market.models import Kline
from stream_processor.market.smc.events import Candle, Event, as_candle
from stream_processor.market.smc.swings import check_swing_length

#: Real (not synthetic) swings the reference leaves out before its values start; see ``Retracements``.
WARMUP_SWINGS = 2


def _round1(x: float) -> float:
    """``round(numpy.float64(x), 1)`` as numpy does it: ``rint(x * 10) / 10`` (ties to even)."""
    return round(x * 10.0) / 10.0


class Retracements(Snapshot):
    """``smartmoneyconcepts.smc.retracements(ohlc, swing_highs_lows(ohlc, swing_length))`` (v0.0.27), streamed.

    Definition (the reference's): ``top`` / ``bottom`` are the levels of the latest swing high / swing low, and the
    direction is the type of the latest swing (+1 after a swing high: the price retraces down from ``top``; -1
    after a swing low). For candle ``i`` with direction ``d`` (and ``p`` the direction at ``i-1``)::

        p == +1 (and d == +1):  current = round(100 - (low[i] - bottom) / (top - bottom) * 100, 1)
        d == -1:                current = round(100 - (high[i] - top) / (bottom - top) * 100, 1)
        deepest = max(deepest[i-1] if the branch's direction was already p's else 0, current)

    (0 when the divisor is 0; rounding as numpy's: ties to even.) So on the candle of a swing high the values are
    0 (neither branch applies); on the candle of a swing low both apply and the second wins (``deepest`` starts
    over). Values can be below 0 (price beyond the swing: 0 floors ``deepest`` only) or above 100 (beyond the
    opposite swing). The reference then shifts its three columns down one row (row ``i+1`` holds candle ``i``'s
    values, row 0 the last candle's), and zeroes its rows up to the third change of direction between
    consecutive rows, the wrap-around row 0 included.

    Streaming (fed the events of a ``SwingDetector`` with the same ``swing_length``, like ``OrderBlocks``):
    ``step(candle_t)`` returns candle ``t``'s own values, i.e. the reference's row ``t+1`` (unshifted: the
    shift only delays them). A swing at ``s`` is known at ``s+L`` (L = ``swing_length``); then the state is
    recomputed over candles ``s..t`` (a window of the last L+1 candles), so the value at ``t`` is the reference's
    whenever the reference's latest swing at or before ``t`` is the one known at ``t``. Settled candles: candle
    ``t`` is settled when the latest swing known at ``t`` (after the ``swing_replaced`` events so far) is never
    replaced later and the reference's next swing comes after ``t``. Its value equals the reference's (row
    ``t+1``). The others differ: a candle less than L after a swing gets the previous swing's direction and
    levels; a candle after a swing that a later, more extreme one replaces gets that swing's (the reference
    never had it). Those values are not corrected afterwards (they were returned); the state is, from the next
    swing on.

    Warm-up: the reference's zeroed rows end with the third change of direction counted over its shifted column
    with the wrap-around; that first change (last row to row 0) exists when the series' last swing is of the
    other type than its first one, which depends on where the data ends. We return None for the three values
    until ``WARMUP_SWINGS`` = 2 real swings are known, i.e. as the reference does when that change exists (as in
    its EURUSD file); otherwise the reference zeroes one more run of candles (through its third real swing).
    The reference writes 0 where we return None. The reference's synthetic swing on the last candle only moves
    its row 0, which we do not produce.

    Fields: ``direction`` (+1 / -1; None in the warm-up), ``current_retracement_pct`` and
    ``deepest_retracement_pct`` (percent of the distance between the last swing high and low, rounded to 0.1).
    Raises ValueError for an invalid ``swing_length`` (naming it), an invalid candle, one not later than the
    previous one, or swing events of another swing length (a swing known at ``t`` must be at ``t - L``).
    Memory: O(L). Cost: O(1) per candle, O(L) when a swing is confirmed.
    """

    __slots__ = (
        "swing_length", "_count", "_last_time", "_window", "_top", "_bottom", "_dir", "_prev_dir", "_swing",
        "_real", "_cur", "_deep", "_values",
    )  # fmt: skip
    _params = ("swing_length",)

    def __init__(self, swing_length: int = 5) -> None:
        self.swing_length = check_swing_length(swing_length)
        self._count = 0
        self._last_time: int | None = None
        self._window: deque[list[float]] = deque(maxlen=swing_length + 1)  # [high, low] of candles t-L .. t
        self._top = 0.0  # level of the latest swing high (the reference starts from 0)
        self._bottom = 0.0
        self._dir = 0  # type of the latest swing known
        self._prev_dir = 0  # type of the swing before it
        self._swing = -1  # index of the latest swing known
        self._real = 0  # real (not synthetic) swings known, after replacements
        self._cur = 0.0  # current and deepest retracement of the latest candle
        self._deep = 0.0
        self._values: dict[str, Any] | None = None

    @property
    def values(self) -> dict[str, Any] | None:
        """The latest candle's values (see ``step``), None before the first candle."""
        return None if self._values is None else dict(self._values)

    @property
    def count(self) -> int:
        """Number of candles consumed."""
        return self._count

    @property
    def swing_index(self) -> int | None:
        """Index of the latest swing known (the one the retracement is measured from), None before the first."""
        return None if self._swing < 0 else self._swing

    def update(self, candle: Candle | Kline | tuple, swing_events: list[Event]) -> dict[str, Any]:
        """Consume the next closed candle and the swing events a ``SwingDetector`` returned for it.

        Raises ValueError for an invalid candle (see ``as_candle``) or one not later than the previous one.
        """
        return self.step(as_candle(candle), swing_events)

    def _calc(self, d: int, p: int, high: float, low: float, deep: float) -> None:
        """The reference's loop body for one candle: direction ``d``, previous direction ``p``."""
        cur, new_deep = 0.0, 0.0
        if p == 1:
            divisor = self._top - self._bottom
            cur = _round1(100 - (((low - self._bottom) / divisor) * 100)) if divisor != 0 else 0.0
            new_deep = max(deep, cur)
        if d == -1:
            divisor = self._bottom - self._top
            cur = _round1(100 - ((high - self._top) / divisor) * 100) if divisor != 0 else 0.0
            new_deep = max(deep if p == -1 else 0.0, cur)
        self._cur, self._deep = cur, new_deep

    def step(self, c: Candle, swing_events: list[Event]) -> dict[str, Any]:
        """Return this candle's ``{"direction", "current_retracement_pct", "deepest_retracement_pct"}``.

        For a validated ``Candle``; ``swing_events``: what ``SwingDetector.step`` returned for the same candle.
        """
        t_ms = c.open_time_ms
        if self._last_time is not None and t_ms <= self._last_time:
            raise ValueError(f"candle at {t_ms} ms is not after the previous one at {self._last_time} ms")
        t = self._count
        for e in swing_events:
            if (
                e["type"] in ("swing_high", "swing_low")
                and not e.get("synthetic")
                and e["index"] != t - self.swing_length
            ):
                raise ValueError(
                    f"swing at {e['index']} confirmed at candle {t}: not from a SwingDetector({self.swing_length})"
                )
        window = self._window
        window.append([c.high, c.low])
        new_swing = -1
        for e in swing_events:
            kind = e["type"]
            if kind == "swing_replaced":
                self._real -= 1
                continue
            if kind not in ("swing_high", "swing_low"):
                continue
            index, d = e["index"], e["direction"]
            if e.get("synthetic"):
                self._prev_dir, self._dir, self._swing = 0, d, index
            else:
                self._real += 1
                if d != self._dir:
                    self._prev_dir = self._dir
                self._dir, self._swing, new_swing = d, index, index
            if d == 1:
                self._top = e["level"]
            else:
                self._bottom = e["level"]
        self._last_time = t_ms
        self._count = t + 1
        d = self._dir
        if new_swing >= 0:
            # replay candles s .. t with the swing at s (the window holds exactly them)
            first = True
            for high, low in window:
                self._calc(d, self._prev_dir if first else d, high, low, 0.0 if first else self._deep)
                first = False
        else:
            self._calc(d, d, c.high, c.low, self._deep)
        if self._real < WARMUP_SWINGS:
            values = {"direction": None, "current_retracement_pct": None, "deepest_retracement_pct": None}
        else:
            values = {"direction": d, "current_retracement_pct": self._cur, "deepest_retracement_pct": self._deep}
        self._values = values
        return dict(values)
