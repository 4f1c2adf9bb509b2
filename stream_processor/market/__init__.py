"""The market application: decoders of Binance and normalized feeds, incremental indicators, order books, klines,
Smart Money Concepts detectors, and the processors built on them (registered on import, with serdes for the market
record types, so ``app.topic("raw_trades", value_type=Trade)`` decodes checked trades)."""

from ..engine.app import register_serde
from . import processors  # noqa: F401 - registers the built-in processor types
from .models import BookTicker, DepthSnapshot, DepthUpdate, Kline, Trade
from .processors.base import market_serde

for _kind in (Trade, Kline, DepthUpdate, DepthSnapshot, BookTicker):
    register_serde(_kind, market_serde(_kind))
