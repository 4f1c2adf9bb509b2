"""Incremental (O(1) per update) technical indicators that reproduce pandas-ta's batch results.

Each indicator consumes one observation per ``update`` call and returns its new value, or None
while warming up (exactly where pandas-ta gives NaN). ``to_state()`` / ``from_state()`` snapshot
and restore the full state as a JSON-safe dict (for the Kafka changelog).
"""

from stream_processor.indicators.base import Indicator
from stream_processor.indicators.ema import EMA
from stream_processor.indicators.momentum import Momentum
from stream_processor.indicators.rolling_sum import RollingSum
from stream_processor.indicators.sma import SMA
from stream_processor.indicators.vwap import VWAP

__all__ = ["EMA", "SMA", "VWAP", "Indicator", "Momentum", "RollingSum"]
