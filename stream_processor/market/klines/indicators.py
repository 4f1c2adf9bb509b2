"""Indicator state of one symbol and interval fed closed klines: SMA, EMA, RSI, MACD, ATR, Bollinger, VWAP, returns."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from stream_processor.engine.snapshot import Snapshot
from stream_processor.market.indicators.atr import ATR
from stream_processor.market.indicators.bollinger import BollingerBands
from stream_processor.market.indicators.ema import EMA
from stream_processor.market.indicators.kline_vwap import KlineVWAP
from stream_processor.market.indicators.macd import MACD
from stream_processor.market.indicators.returns import Returns
from stream_processor.market.indicators.rsi import RSI
from stream_processor.market.indicators.sma import SMA
from stream_processor.market.models import Kline

KLINE_INDICATOR_FIELDS = (
    "sma",
    "ema",
    "rsi",
    "macd",
    "macd_signal",
    "macd_hist",
    "atr",
    "bb_lower",
    "bb_mid",
    "bb_upper",
    "vwap",
    "return",
    "log_return",
)
"""The keys of :meth:`KlineIndicators.update`'s result, in order."""


@dataclass(frozen=True, slots=True)
class KlineIndicatorParams:
    """Periods of the kline indicators, in bars (defaults: the usual ones, as in pandas-ta).

    Raises ValueError (from the indicators' constructors, when :class:`KlineIndicators` is built)
    for a length < 1, ``macd_fast >= macd_slow``, or ``bb_std`` not a finite number > 0.
    """

    sma_length: int = 20
    ema_length: int = 20
    rsi_length: int = 14
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    atr_length: int = 14
    bb_length: int = 20
    bb_std: float = 2.0


class KlineIndicators(Snapshot):
    """All kline indicators of one symbol and interval; ``update`` consumes one CLOSED kline, O(1).

    Output fields (a flat dict, JSON-safe: floats or None, None while an indicator warms up), each
    matching pandas-ta (``talib=False``) on the series of closed klines; see each class for the
    formula, units and exact convention:

    - ``sma``, ``ema``: of close over ``sma_length``/``ema_length`` bars (:class:`SMA`, :class:`EMA`;
      warm-up N-1 bars). Units: price.
    - ``rsi``: :class:`RSI` of close, 0..100 (pandas-ta's convention: from the 2nd bar on).
    - ``macd``, ``macd_signal``, ``macd_hist``: :class:`MACD` line, signal and histogram (warm-up
      ``slow - 1`` bars for the line, ``slow + signal - 2`` for the other two). Units: price.
    - ``atr``: :class:`ATR` of high/low/close (warm-up ``atr_length - 1`` bars). Units: price.
    - ``bb_lower``, ``bb_mid``, ``bb_upper``: :class:`BollingerBands` (sample std, warm-up
      ``bb_length - 1`` bars). Units: price.
    - ``vwap``: :class:`KlineVWAP`, typical price weighted by volume since 00:00 UTC of the bar's
      open time (None while the day's volume is 0, e.g. always for a venue without volume).
    - ``return``, ``log_return``: :class:`Returns` close-to-close (None on the first bar).

    Refusals (ValueError with the reason; nothing changes): a kline that is not closed; one of
    another venue/symbol/interval than the first kline seen; an ``open_time_ms`` that is not after
    the previous kline's (a duplicate or a reordering: the caller must feed each closed bar once,
    in order); non-finite prices or volume, a price <= 0, ``high < low``, or a volume < 0.
    Every input is checked before any indicator is touched, so a refusal cannot leave the
    indicators half-updated.

    State: :meth:`to_state` / :meth:`from_state` (JSON-safe; the restored object continues with
    identical outputs). Memory: O(largest window).
    """

    __slots__ = (
        "params",
        "_key",
        "_last_open_ms",
        "_sma",
        "_ema",
        "_rsi",
        "_macd",
        "_atr",
        "_bbands",
        "_vwap",
        "_returns",
    )
    _indicators: ClassVar[tuple[tuple[str, type[Any]], ...]] = (
        ("_sma", SMA),
        ("_ema", EMA),
        ("_rsi", RSI),
        ("_macd", MACD),
        ("_atr", ATR),
        ("_bbands", BollingerBands),
        ("_vwap", KlineVWAP),
        ("_returns", Returns),
    )

    def __init__(self, params: KlineIndicatorParams | None = None) -> None:
        p = params if params is not None else KlineIndicatorParams()
        if not isinstance(p, KlineIndicatorParams):
            raise ValueError(f"params must be a KlineIndicatorParams, got {type(p).__name__}")
        self.params = p
        self._key: tuple[str, str, str] | None = None
        self._last_open_ms: int | None = None
        self._sma = SMA(p.sma_length)
        self._ema = EMA(p.ema_length)
        self._rsi = RSI(p.rsi_length)
        self._macd = MACD(p.macd_fast, p.macd_slow, p.macd_signal)
        self._atr = ATR(p.atr_length)
        self._bbands = BollingerBands(p.bb_length, p.bb_std)
        self._vwap = KlineVWAP()
        self._returns = Returns()

    @property
    def last_open_time_ms(self) -> int | None:
        """Open time of the last kline consumed, or None."""
        return self._last_open_ms

    def update(self, kline: Kline) -> dict[str, float | None]:
        """Consume one closed kline; return the indicator fields (:data:`KLINE_INDICATOR_FIELDS`)."""
        self.check(kline)
        high, low, close = kline.high, kline.low, kline.close
        self._key = (kline.venue, kline.symbol, kline.interval)
        self._last_open_ms = kline.open_time_ms
        macd = self._macd.update(close)
        bands = self._bbands.update(close)
        ret = self._returns.update(close)
        return {
            "sma": self._sma.update(close),
            "ema": self._ema.update(close),
            "rsi": self._rsi.update(close),
            "macd": None if macd is None else macd.macd,
            "macd_signal": None if macd is None else macd.signal,
            "macd_hist": None if macd is None else macd.histogram,
            "atr": self._atr.update(high, low, close),
            "bb_lower": None if bands is None else bands.lower,
            "bb_mid": None if bands is None else bands.mid,
            "bb_upper": None if bands is None else bands.upper,
            "vwap": self._vwap.update(high, low, close, kline.volume, kline.open_time_ms),
            "return": None if ret is None else ret.simple,
            "log_return": None if ret is None else ret.log,
        }

    def check(self, k: Kline) -> None:
        """Raise ValueError if :meth:`update` cannot consume ``k``; changes nothing."""
        if not isinstance(k, Kline):
            raise ValueError(f"expected a Kline, got {type(k).__name__}")
        where = f"kline {k.symbol} {k.interval} open_time_ms={k.open_time_ms!r}"
        if k.is_closed is not True:
            raise ValueError(f"{where}: not closed (only closed klines update the indicators)")
        key = (k.venue, k.symbol, k.interval)
        if self._key is not None and key != self._key:
            raise ValueError(f"{where}: this state belongs to {self._key}, got {key}")
        t = k.open_time_ms
        if isinstance(t, bool) or not isinstance(t, int):
            raise ValueError(f"{where}: open_time_ms must be an int (ms since the epoch)")
        if self._last_open_ms is not None and t <= self._last_open_ms:
            raise ValueError(
                f"{where}: open time is not after the previous kline's ({self._last_open_ms}); "
                "duplicate or out-of-order kline refused"
            )
        prices = (k.open, k.high, k.low, k.close)
        if not all(isinstance(x, float | int) and 0.0 < x < math.inf for x in prices):
            raise ValueError(f"{where}: prices must be finite and > 0, got {prices}")
        if k.high < k.low:
            raise ValueError(f"{where}: high {k.high} < low {k.low}")
        v = k.volume
        if not (isinstance(v, float | int) and 0.0 <= v < math.inf):
            raise ValueError(f"{where}: volume must be finite and >= 0, got {v!r}")

    def to_state(self) -> dict[str, Any]:
        """Snapshot of the full state as a JSON-serializable dict (survives an orjson round-trip)."""
        state: dict[str, Any] = {
            "params": asdict(self.params),
            "key": None if self._key is None else list(self._key),
            "last_open_time_ms": self._last_open_ms,
        }
        for name, _ in self._indicators:
            state[name[1:]] = getattr(self, name).to_state()
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> KlineIndicators:
        """Rebuild from :meth:`to_state`; the object continues with outputs identical to the original.

        Raises ValueError if the snapshot misses a field or has unknown parameters.
        """
        needed = ["params", "key", "last_open_time_ms", *(name[1:] for name, _ in cls._indicators)]
        missing = [name for name in needed if name not in state]
        if missing:
            raise ValueError(f"{cls.__name__} state misses {missing}")
        try:
            params = KlineIndicatorParams(**state["params"])
        except TypeError as exc:
            raise ValueError(f"{cls.__name__} state has bad params: {exc}") from None
        obj = cls(params)
        key = state["key"]
        obj._key = None if key is None else (str(key[0]), str(key[1]), str(key[2]))
        obj._last_open_ms = state["last_open_time_ms"]
        for name, klass in cls._indicators:
            setattr(obj, name, klass.from_state(state[name[1:]]))
        return obj

    def __repr__(self) -> str:
        return f"KlineIndicators({self.params!r}) key={self._key!r} last_open_time_ms={self._last_open_ms!r}"
