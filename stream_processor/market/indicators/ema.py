"""Exponential moving average, seeded like TA-Lib with the SMA of the first N values."""

from __future__ import annotations

from stream_processor.market.indicators.base import Indicator, check_length


class EMA(Indicator):
    """Exponential moving average with ``alpha = 2 / (N + 1)`` (N = ``length``).

    Formula: ``EMA_{N-1} = mean(x_0 .. x_{N-1})`` (the SMA seed), then
    ``EMA_t = (1 - alpha) * EMA_{t-1} + alpha * x_t``. Units: those of the input. Warm-up: None for
    the first N-1 updates; the N-th update returns the seed.

    Source: matches ``pandas_ta.ema(close, length=N, talib=False)`` (defaults ``presma=True``,
    ``adjust=False``): pandas-ta replaces ``close[N-1]`` by ``close[:N].mean()``, sets ``close[:N-1]``
    to NaN and runs ``close.ewm(span=N, adjust=False).mean()``. The recursion below is pandas' own
    ``ewm`` kernel for ``adjust=False`` operation for operation: ``alpha = 1 / (1 + com)`` with
    ``com = (N - 1) / 2``, ``EMA_t = ((1-alpha) * EMA_{t-1} + alpha * x_t) / ((1-alpha) + alpha)``,
    skipped when ``x_t == EMA_{t-1}``, so after the seed the outputs follow pandas to the last bit
    given the same seed. The seed is the compensated (Neumaier) sum / N, which can differ from
    numpy's pairwise-summed mean by an ulp; that difference decays by (1-alpha) per update.

    Memory: O(1) (running seed sum and count; no window).
    """

    __slots__ = ("length", "_alpha", "_beta", "_norm", "_count", "_seed_sum", "_seed_comp")
    _params = ("length",)
    _derived = frozenset({"_alpha", "_beta", "_norm"})

    def __init__(self, length: int) -> None:
        self.length = check_length(length)
        self._alpha = 1.0 / (1.0 + (length - 1) / 2)
        self._beta = 1.0 - self._alpha
        self._norm = self._beta + self._alpha
        self._count = 0
        self._seed_sum = 0.0
        self._seed_comp = 0.0
        self._value: float | None = None

    def update(self, x: float) -> float | None:
        """Consume the next value; return the EMA, or None in warm-up."""
        if x - x != 0.0:
            raise ValueError(f"{type(self).__name__}: input must be finite, got {x!r}")
        ema = self._value
        if ema is None:
            return self._warm_up(x)
        if ema != x:
            ema = (self._beta * ema + self._alpha * x) / self._norm
            self._value = ema
        return ema

    def _warm_up(self, x: float) -> float | None:
        s = self._seed_sum
        t = s + x
        if abs(s) >= abs(x):
            self._seed_comp += (s - t) + x
        else:
            self._seed_comp += (x - t) + s
        self._seed_sum = t
        self._count += 1
        if self._count < self.length:
            return None
        seed = (t + self._seed_comp) / self.length
        self._seed_sum = self._seed_comp = 0.0
        self._value = seed
        return seed
