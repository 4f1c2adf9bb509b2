"""Relative strength index (RSI) on Wilder averages of gains and losses, as pandas-ta computes it."""

from __future__ import annotations

from stream_processor.market.indicators.base import Indicator, check_length
from stream_processor.market.indicators.rma import RMA


class RSI(Indicator):
    """Relative strength index: ``RSI_t = 100 * G_t / (G_t + |L_t|)``, in 0..100 (N = ``length``).

    ``d_t = close_t - close_{t-1}``; ``G = RMA_N(max(d, 0))`` and ``L = RMA_N(min(d, 0))`` (Wilder
    averages, ``alpha = 1/N``, see :class:`RMA`). Units: percent points (0..100).

    Source: matches ``pandas_ta.rsi(close, length=N, talib=False)`` (defaults ``scalar=100``,
    ``mamode="rma"``, ``drift=1``): ``close.diff()`` split into gains and losses, each averaged by
    ``pandas_ta.rma``, which seeds with the first difference itself (no SMA seed, no ``min_periods``).
    So, unlike TA-Lib or ChartSchool (first RSI at the (N+1)-th close), the warm-up is ONE update:
    None for the first close (its difference is NaN), an RSI from the second close on. The same
    expression ``100 * G / (G + |L|)`` is evaluated in the same order as pandas-ta; after the first
    difference the averages follow pandas bit for bit.

    None is also returned while ``G + |L| == 0`` (every difference so far was 0; pandas gives
    0/0 = NaN there). Closes must be finite (ValueError otherwise, before any state changes).
    Memory: O(1).
    """

    __slots__ = ("length", "_prev", "_gain", "_loss")
    _params = ("length",)

    def __init__(self, length: int = 14) -> None:
        self.length = check_length(length)
        self._prev: float | None = None
        self._gain = RMA(length)
        self._loss = RMA(length)
        self._value: float | None = None

    def update(self, close: float) -> float | None:
        """Consume the next close; return the RSI (0..100), or None (first close, or no move yet)."""
        if close - close != 0.0:
            raise ValueError(f"RSI: close must be finite, got {close!r}")
        prev = self._prev
        self._prev = close
        if prev is None:
            return None
        d = close - prev
        gain = self._gain.update(d if d > 0.0 else 0.0)
        loss = self._loss.update(d if d < 0.0 else 0.0)
        assert gain is not None and loss is not None  # RMA without presma has no warm-up
        den = gain + abs(loss)
        if den == 0.0:
            self._value = None
            return None
        rsi = 100.0 * gain / den
        self._value = rsi
        return rsi
