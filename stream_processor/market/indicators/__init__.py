"""Incremental (O(1) per update) technical indicators that reproduce pandas-ta's batch results.

Each indicator consumes one observation per ``update`` call and returns its new value, or None
while warming up (exactly where pandas-ta gives NaN). ``to_state()`` / ``from_state()`` snapshot
and restore the full state as a JSON-safe dict (for the Kafka changelog).
"""

from stream_processor.market.indicators.atr import ATR
from stream_processor.market.indicators.base import Indicator
from stream_processor.market.indicators.bollinger import BollingerBands, BollingerResult
from stream_processor.market.indicators.ema import EMA
from stream_processor.market.indicators.kline_vwap import KlineVWAP
from stream_processor.market.indicators.macd import MACD, MACDResult
from stream_processor.market.indicators.momentum import Momentum
from stream_processor.market.indicators.returns import Returns, ReturnsResult
from stream_processor.market.indicators.rma import RMA
from stream_processor.market.indicators.rolling_sum import RollingSum
from stream_processor.market.indicators.rsi import RSI
from stream_processor.market.indicators.sma import SMA
from stream_processor.market.indicators.vwap import VWAP

__all__ = [
    "ATR",
    "EMA",
    "MACD",
    "RMA",
    "RSI",
    "SMA",
    "VWAP",
    "BollingerBands",
    "BollingerResult",
    "Indicator",
    "KlineVWAP",
    "MACDResult",
    "Momentum",
    "Returns",
    "ReturnsResult",
    "RollingSum",
]
