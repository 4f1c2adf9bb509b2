"""Momentum: the simple return over the last N updates."""

from __future__ import annotations

from collections import deque

from stream_processor.market.indicators.base import Indicator, check_length


class Momentum(Indicator):
    """Return over the last N updates: ``M_t = p_t / p_{t-N} - 1`` (N = ``length``).

    Units: a fraction (0.001 = +0.1 %), not a percentage. Warm-up: None for the first N updates
    (``p_{t-N}`` exists from the (N+1)-th on).

    Source: matches ``pandas_ta.percent_return(close, length=N)`` (``close / roll(close, N) - 1``,
    the first N rows NaN), bit for bit; ``pandas_ta.roc(close, N) / 100`` is the same quantity
    computed as ``100 * (p_t - p_{t-N}) / p_{t-N}``, equal up to rounding.

    Memory: a ``deque(maxlen=N + 1)``. Prices must be finite and > 0 (ValueError otherwise, before
    any state changes).
    """

    __slots__ = ("length", "_window")
    _params = ("length",)

    def __init__(self, length: int) -> None:
        self.length = check_length(length)
        self._window: deque[float] = deque(maxlen=length + 1)
        self._value: float | None = None

    def update(self, price: float) -> float | None:
        """Consume the next price; return ``price / price N updates ago - 1``, or None in warm-up."""
        if not price > 0.0 or price - price != 0.0:
            raise ValueError(f"Momentum: price must be finite and > 0, got {price!r}")
        window = self._window
        window.append(price)
        if len(window) <= self.length:
            return None
        ret = price / window[0] - 1.0
        self._value = ret
        return ret
