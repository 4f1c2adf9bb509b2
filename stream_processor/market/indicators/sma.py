"""Simple moving average over the last N values."""

from __future__ import annotations

from stream_processor.market.indicators.base import Indicator, check_length
from stream_processor.market.indicators.rolling_sum import RollingSum


class SMA(Indicator):
    """Simple moving average: ``SMA_t = (x_{t-N+1} + ... + x_t) / N`` (N = ``length``).

    Units: those of the input (quote currency for prices). Warm-up: None for the first N-1 updates.

    Source: matches ``pandas_ta.sma(close, length=N, talib=False)`` (numba ``convolve(ones(N)/N, x)``,
    NaN for the first N-1 rows). The window sum is a Neumaier-compensated ``RollingSum``, so there is
    no drift however long the stream runs.
    """

    __slots__ = ("length", "_sum")
    _params = ("length",)

    def __init__(self, length: int) -> None:
        self.length = check_length(length)
        self._sum = RollingSum(length)
        self._value: float | None = None

    def update(self, x: float) -> float | None:
        """Consume the next value; return the mean of the last N, or None in warm-up."""
        total = self._sum.update(x)
        if total is None:
            return None
        mean = total / self.length
        self._value = mean
        return mean
