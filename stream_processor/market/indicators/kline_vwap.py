"""Session VWAP of klines (typical price weighted by volume), anchored at each UTC midnight."""

from __future__ import annotations

from stream_processor.market.indicators.base import Indicator
from stream_processor.market.indicators.vwap import VWAP


class KlineVWAP(Indicator):
    """Volume-weighted average typical price of the current UTC day's bars.

    Formula: ``tp_i = (high_i + low_i + close_i) / 3``; ``VWAP_t = sum(tp_i * volume_i) /
    sum(volume_i)`` over the bars i <= t whose ``open_time_ms`` falls in the same UTC day as bar t;
    both sums restart at each UTC midnight (of the bar's OPEN time). Units: quote currency per base
    unit (a price). Warm-up: none; None only while the day's volume is 0 (pandas: 0/0 = NaN).

    Source: matches ``pandas_ta.vwap(high, low, close, volume, anchor="D")`` on a DatetimeIndex of
    the bars' open times in UTC: ``hlc3 = (high + low + close) / 3.0`` (numpy, same order), then
    ``(hlc3 * volume).groupby(index.to_period("D")).cumsum() / volume.groupby(...).cumsum()``.
    pandas-ta's vwap has no ``talib`` switch (TA-Lib's TYPPRICE would be used for hlc3 only if TA-Lib
    were installed). The running sums are the Neumaier-compensated ones of :class:`VWAP` (this class
    feeds it the typical price and the bar volume), so agreement with pandas' cumsum is ~1e-15.

    Ordering: a bar on an earlier UTC day than the session raises ValueError and changes nothing.
    Prices and volume must be finite, volume >= 0 (ValueError otherwise, before any state changes).
    The volume is whatever the venue reports (base units on Binance; FTX's looks like USD notional):
    the VWAP is a price either way. Memory: O(1).
    """

    __slots__ = ("_vwap",)

    def __init__(self) -> None:
        self._vwap = VWAP()
        self._value: float | None = None

    def update(self, high: float, low: float, close: float, volume: float, open_time_ms: int) -> float | None:
        """Consume one bar; return the VWAP of the day so far, or None while its volume is 0."""
        tp = (high + low + close) / 3.0
        if tp - tp != 0.0:
            raise ValueError(f"KlineVWAP: prices must be finite, got {high!r}, {low!r}, {close!r}")
        vwap = self._vwap.update(tp, volume, open_time_ms)
        self._value = vwap
        return vwap
