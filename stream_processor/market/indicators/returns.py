"""One-bar simple and log returns of a close series."""

from __future__ import annotations

import math
from dataclasses import dataclass

from stream_processor.market.indicators.base import Indicator


@dataclass(frozen=True, slots=True)
class ReturnsResult:
    """Returns over one bar, as fractions (0.001 = +0.1 %), not percentages."""

    simple: float
    log: float


class Returns(Indicator):
    """One-bar returns: ``simple_t = close_t / close_{t-1} - 1`` and ``log_t = ln(close_t / close_{t-1})``.

    Units: fractions (dimensionless). Warm-up: None for the first close (no previous close).

    Source: matches ``pandas_ta.percent_return(close, length=1)`` (``close / roll(close, 1) - 1``,
    the first row NaN) bit for bit, and ``pandas_ta.log_return(close, length=1)``
    (``numpy.log(close / roll(close, 1))``) up to the last-ulp difference between ``math.log`` and
    numpy's vectorized ``log``. (``Momentum(1)`` computes the same simple return; this class adds
    the log return and keeps one previous close, no window.)

    ``value`` is the last :class:`ReturnsResult` (None in warm-up). Closes must be finite and > 0
    (ValueError otherwise, before any state changes). Memory: O(1).
    """

    __slots__ = ("_prev", "_log")

    def __init__(self) -> None:
        self._prev: float | None = None
        self._log: float | None = None
        self._value: float | None = None  # the simple return; ``value`` adds the log return

    @property
    def value(self) -> ReturnsResult | None:  # type: ignore[override]
        """The last output, or None while warming up."""
        if self._value is None or self._log is None:
            return None
        return ReturnsResult(self._value, self._log)

    def update(self, close: float) -> ReturnsResult | None:
        """Consume the next close; return the simple and log return since the previous one."""
        if not close > 0.0 or close - close != 0.0:
            raise ValueError(f"Returns: close must be finite and > 0, got {close!r}")
        prev = self._prev
        self._prev = close
        if prev is None:
            return None
        ratio = close / prev
        simple = ratio - 1.0
        log = math.log(ratio)
        self._value = simple
        self._log = log
        return ReturnsResult(simple, log)
