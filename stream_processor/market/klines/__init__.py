"""Klines: candles built from trades (KlineBuilder) and the indicators of closed candles (KlineIndicators)."""

from stream_processor.market.klines.builder import KlineBuilder, LateTradeError, interval_name
from stream_processor.market.klines.indicators import KLINE_INDICATOR_FIELDS, KlineIndicatorParams, KlineIndicators

__all__ = [
    "KLINE_INDICATOR_FIELDS",
    "KlineBuilder",
    "KlineIndicatorParams",
    "KlineIndicators",
    "LateTradeError",
    "interval_name",
]
