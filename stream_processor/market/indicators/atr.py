"""Average true range (ATR): Wilder's average of the true range, as pandas-ta computes it."""

from __future__ import annotations

from stream_processor.market.indicators.base import Indicator, check_length
from stream_processor.market.indicators.rma import RMA


class ATR(Indicator):
    """Average true range over N = ``length`` bars (default 14), in price units.

    True range: ``TR_0 = high_0 - low_0`` for the first bar (no previous close), then
    ``TR_t = max(high_t - low_t, |high_t - close_{t-1}|, |close_{t-1} - low_t|)``.
    ``ATR = RMA_N(TR)`` seeded with the mean of the first N true ranges (:class:`RMA` with
    ``presma=True``): ``ATR_{N-1} = mean(TR_0 .. TR_{N-1})``, then
    ``ATR_t = (1 - 1/N) * ATR_{t-1} + TR_t / N``. Warm-up: None for the first N-1 bars, the ATR from
    the N-th bar on. Units: those of the prices (quote currency).

    Source: matches ``pandas_ta.atr(high, low, close, length=N, talib=False)`` with its defaults
    (``mamode="rma"``, ``drift=1``, ``prenan=False``, ``presma=True``, ``percent=False``):
    ``true_range`` takes the row max of ``|high - low|``, ``|high - prev_close|`` and
    ``|prev_close - low|`` skipping NaN (so the first bar's TR is its range), then the SMA seed and
    ``rma``. Deliberate difference: pandas-ta's ``non_zero_range`` adds machine epsilon (2.2e-16) to
    EVERY bar's ``high - low`` if ANY bar of the whole batch has ``high == low``; that depends on
    bars not yet seen, so a stream cannot reproduce it. Here the range is exact; the effect on the
    output is below 1e-12 relative for prices of order 1 and nil for larger prices.

    ``update`` requires ``high >= low`` and finite inputs (ValueError otherwise, before any state
    changes); ``close`` need not lie inside the range. Memory: O(1).
    """

    __slots__ = ("length", "_prev_close", "_rma")
    _params = ("length",)

    def __init__(self, length: int = 14) -> None:
        self.length = check_length(length)
        self._prev_close: float | None = None
        self._rma = RMA(length, presma=True)
        self._value: float | None = None

    def update(self, high: float, low: float, close: float) -> float | None:
        """Consume one bar; return the ATR, or None in warm-up."""
        hl = high - low
        if hl - hl != 0.0 or close - close != 0.0 or not hl >= 0.0:
            raise ValueError(f"ATR: high, low, close must be finite with high >= low; got {high!r}, {low!r}, {close!r}")
        pc = self._prev_close
        if pc is None:
            tr = hl
        else:
            tr = max(hl, abs(high - pc), abs(pc - low))
        self._prev_close = close
        atr = self._rma.update(tr)
        if atr is not None:
            self._value = atr
        return atr
