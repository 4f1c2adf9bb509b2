"""Moving average convergence/divergence (MACD): line, signal and histogram, as pandas-ta computes them."""

from __future__ import annotations

from dataclasses import dataclass

from stream_processor.market.indicators.base import Indicator, check_length
from stream_processor.market.indicators.ema import EMA


@dataclass(frozen=True, slots=True)
class MACDResult:
    """One MACD output. ``signal`` and ``histogram`` are None until the signal line has warmed up.

    Units: those of the input (quote currency for prices).
    """

    macd: float
    signal: float | None
    histogram: float | None


class MACD(Indicator):
    """MACD with periods ``fast`` < ``slow`` and ``signal`` (defaults 12, 26, 9).

    Formula: ``macd_t = EMA_fast(close)_t - EMA_slow(close)_t``; ``signal_t = EMA_signal(macd)_t``;
    ``histogram_t = macd_t - signal_t``. Each EMA is :class:`EMA` (``alpha = 2/(N+1)``, seeded with
    the SMA of its first N inputs), and the signal EMA starts at the first MACD value.

    Warm-up: None for the first ``slow - 1`` updates; from the ``slow``-th update a
    :class:`MACDResult` whose ``signal``/``histogram`` are None until update ``slow + signal - 1``
    (with 12/26/9: the macd line from the 26th close, signal and histogram from the 34th).

    Source: matches ``pandas_ta.macd(close, fast, slow, signal, talib=False)``: ``fastma =
    ema(close, fast)``, ``slowma = ema(close, slow)`` (both ``presma=True``), ``macd = fastma -
    slowma``, ``signalma = ema(macd.loc[macd.first_valid_index():], signal)``, ``histogram = macd -
    signalma``; NaN positions identical. Deliberate difference: pandas-ta silently swaps ``fast``
    and ``slow`` when ``slow < fast``; here ``fast >= slow`` raises ValueError (a configuration
    mistake, not something to repair quietly).

    ``value`` is the last :class:`MACDResult` (None in warm-up). Closes must be finite (ValueError
    otherwise, before any state changes). Memory: O(1).
    """

    __slots__ = ("fast", "slow", "signal", "_fast_ema", "_slow_ema", "_signal_ema")
    _params = ("fast", "slow", "signal")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        self.fast = check_length(fast)
        self.slow = check_length(slow)
        self.signal = check_length(signal)
        if fast >= slow:
            raise ValueError(f"MACD: fast ({fast}) must be shorter than slow ({slow})")
        self._fast_ema = EMA(fast)
        self._slow_ema = EMA(slow)
        self._signal_ema = EMA(signal)
        # The MACD line (fast EMA - slow EMA), None in warm-up; ``value`` builds the result from it.
        self._value: float | None = None

    @property
    def value(self) -> MACDResult | None:  # type: ignore[override]
        """The last output, or None while the MACD line is warming up."""
        line = self._value
        if line is None:
            return None
        signal = self._signal_ema.value
        return MACDResult(line, signal, None if signal is None else line - signal)

    def update(self, close: float) -> MACDResult | None:
        """Consume the next close; return the MACD line, signal and histogram (None in warm-up)."""
        if close - close != 0.0:
            raise ValueError(f"MACD: close must be finite, got {close!r}")
        fast = self._fast_ema.update(close)
        slow = self._slow_ema.update(close)
        if slow is None:
            return None
        assert fast is not None  # fast < slow: the fast EMA is seeded first
        line = fast - slow
        self._value = line
        signal = self._signal_ema.update(line)
        return MACDResult(line, signal, None if signal is None else line - signal)
