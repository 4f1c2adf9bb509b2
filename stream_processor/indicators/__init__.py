"""Incremental (O(1) per update) technical indicators that reproduce pandas-ta's batch results.

Each indicator consumes one observation per ``update`` call and returns its new value, or None
while warming up (exactly where pandas-ta gives NaN). ``to_state()`` / ``from_state()`` snapshot
and restore the full state as a JSON-safe dict (for the Kafka changelog).
"""

from stream_processor.indicators.atr import ATR
from stream_processor.indicators.base import Indicator
from stream_processor.indicators.bollinger import BollingerBands, BollingerResult
from stream_processor.indicators.ema import EMA
from stream_processor.indicators.kline_vwap import KlineVWAP
from stream_processor.indicators.macd import MACD, MACDResult
from stream_processor.indicators.momentum import Momentum
from stream_processor.indicators.returns import Returns, ReturnsResult
from stream_processor.indicators.rma import RMA
from stream_processor.indicators.rolling_sum import RollingSum
from stream_processor.indicators.rsi import RSI
from stream_processor.indicators.sma import SMA
from stream_processor.indicators.vwap import VWAP

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
