"""Wilder's moving average (RMA): an exponential average with ``alpha = 1 / N``."""

from __future__ import annotations

from stream_processor.market.indicators.base import check_length
from stream_processor.market.indicators.ema import EMA


class RMA(EMA):
    """Wilder's moving average (RMA, "SMMA") with ``alpha = 1 / N`` (N = ``length``).

    Formula: ``RMA_t = (1 - alpha) * RMA_{t-1} + alpha * x_t``. Units: those of the input.

    Seeding (``presma``):

    - ``presma=False`` (default): ``RMA_0 = x_0``, so there is no warm-up (the first update returns
      its input). Source: ``pandas_ta.rma(close, length=N)`` (pandas-ta 0.4.71b0 has no TA-Lib path
      for rma), which is ``close.ewm(alpha=1/N, adjust=False).mean()`` with no ``min_periods``.
    - ``presma=True``: None for the first N-1 updates, then ``RMA_{N-1} = mean(x_0 .. x_{N-1})`` and
      the recursion after it. This is Wilder's original seeding and what ``pandas_ta.atr(...,
      talib=False)`` does to the true range before calling ``rma`` (``tr[:N-1] = NaN``,
      ``tr[N-1] = tr[0:N].mean()``); pandas' ``ewm`` starts at the first non-NaN value.

    Arithmetic: pandas' ``ewm`` kernel for ``adjust=False`` operation for operation. pandas turns
    ``alpha`` into ``com = (1 - alpha) / alpha`` and back into ``a = 1 / (1 + com)`` (not always
    bit-equal to ``1 / N``), then ``RMA_t = ((1-a) * RMA_{t-1} + a * x_t) / ((1-a) + a)``, skipped
    when ``x_t == RMA_{t-1}``; so given the same seed the outputs follow pandas to the last bit. The
    ``presma`` seed is a Neumaier-compensated sum / N, which may differ from numpy's pairwise-summed
    mean by an ulp; that difference decays by (1 - 1/N) per update.

    The seed and the recursion are :class:`EMA`'s (the same pandas kernel); only ``alpha`` and the
    ``presma=False`` start differ. Inputs must be finite (ValueError otherwise, before any state changes).
    Memory: O(1).
    """

    __slots__ = ("presma",)
    _params = ("length", "presma")

    def __init__(self, length: int, presma: bool = False) -> None:
        super().__init__(check_length(length))
        if not isinstance(presma, bool):
            raise ValueError(f"presma must be a bool, got {presma!r}")
        self.presma = presma
        alpha = 1.0 / length
        # pandas.core.window.ewm.get_center_of_mass, then the Cython kernel's alpha = 1 / (1 + com).
        self._alpha = 1.0 / (1.0 + (1.0 - alpha) / alpha)
        self._beta = 1.0 - self._alpha
        self._norm = self._beta + self._alpha

    def update(self, x: float) -> float | None:
        """Consume the next value; return the RMA, or None in warm-up (only with ``presma=True``)."""
        if self._value is None and not self.presma:
            if x - x != 0.0:
                raise ValueError(f"RMA: input must be finite, got {x!r}")
            self._value = x
            return x
        return super().update(x)
