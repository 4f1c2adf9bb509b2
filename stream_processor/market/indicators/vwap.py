"""Session VWAP, anchored at each UTC midnight."""

from __future__ import annotations

from stream_processor.market.indicators.base import Indicator

DAY_MS = 86_400_000


class VWAP(Indicator):
    """Volume-weighted average price of the current UTC day's trades.

    Formula: ``VWAP_t = sum(price_i * size_i) / sum(size_i)`` over the trades i <= t whose
    ``time_ms`` falls in the same UTC day as trade t; both sums restart at each UTC midnight.
    Units: quote currency per base unit (a price). Warm-up: none; the first trade of a day
    returns its own price (None only while the day's volume is 0, where pandas gives 0/0 = NaN).

    Source: matches ``pandas_ta.vwap(high=price, low=price, close=price, volume=size, anchor="D")``
    on a DatetimeIndex built from ``time_ms`` in UTC (``pd.to_datetime(time_ms, unit="ms", utc=True)``
    or the naive equivalent). pandas-ta groups by ``index.to_period("D")``, i.e. the calendar day in
    the index's own wall-clock time (UTC here), and takes ``cumsum(hlc3 * volume) / cumsum(volume)``
    per group, where ``hlc3 = (high + low + close) / 3`` is the price itself up to one rounding
    when high = low = close. pandas-ta's vwap has no ``talib`` switch (``talib=False`` is swallowed
    by ``**kwargs``); its hlc3 would use TA-Lib's TYPPRICE only if TA-Lib were installed.
    Both running sums here are Neumaier-compensated.

    Ordering: ``time_ms`` (int, ms since the epoch, UTC) must not go back to an earlier UTC day
    (pandas-ta requires an ordered index); such a trade raises ValueError and changes nothing.
    Out-of-order times within the current day are summed normally. Price and size must be finite,
    size >= 0 (ValueError otherwise, before any state changes). Memory: O(1).
    """

    __slots__ = ("_day", "_pv_sum", "_pv_comp", "_vol_sum", "_vol_comp")

    def __init__(self) -> None:
        self._day: int | None = None
        self._pv_sum = 0.0
        self._pv_comp = 0.0
        self._vol_sum = 0.0
        self._vol_comp = 0.0
        self._value: float | None = None

    def check(self, time_ms: int) -> None:
        """Raise ValueError if :meth:`update` must refuse a trade at ``time_ms``: not an int, or on an earlier UTC day
        than the session's. Changes nothing."""
        day = time_ms // DAY_MS
        if not isinstance(day, int):
            raise ValueError(f"VWAP: time_ms must be an int (ms since the epoch), got {time_ms!r}")
        if self._day is not None and day < self._day:
            raise ValueError(f"VWAP: trade at {time_ms} ms is on an earlier UTC day than the session (day {self._day})")

    def update(self, price: float, size: float, time_ms: int) -> float | None:
        """Consume one trade; return the VWAP of the day so far, or None while its volume is 0."""
        pv = price * size
        if pv - pv != 0.0 or price - price != 0.0 or not size >= 0.0:
            raise ValueError(f"VWAP: price and size must be finite, size >= 0; got {price!r}, {size!r}")
        day = time_ms // DAY_MS
        if day != self._day:
            self.check(time_ms)
            self._day = day
            self._pv_sum = self._pv_comp = self._vol_sum = self._vol_comp = 0.0
            self._value = None
        # Neumaier-compensated additions to both running sums.
        s = self._pv_sum
        t = s + pv
        if abs(s) >= abs(pv):
            self._pv_comp += (s - t) + pv
        else:
            self._pv_comp += (pv - t) + s
        self._pv_sum = t
        s = self._vol_sum
        v = s + size
        if s >= size:
            self._vol_comp += (s - v) + size
        else:
            self._vol_comp += (size - v) + s
        self._vol_sum = v
        volume = v + self._vol_comp
        if volume == 0.0:
            return self._value
        vwap = (t + self._pv_comp) / volume
        self._value = vwap
        return vwap
