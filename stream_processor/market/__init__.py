"""The market application: decoders of Binance and normalized feeds, incremental indicators, order books, klines,
Smart Money Concepts detectors, and the processors built on them (the types ``trades``, ``orderbook`` and
``klines``, which the engine loads through this package's entry points). Importing it registers serdes for the
market record types, so ``app.topic("raw_trades", value_type=Trade)`` decodes checked trades."""

from ..engine.topic import register_serde
from .models import BookTicker, DepthSnapshot, DepthUpdate, Kline, Trade
from .processors.base import market_serde

for _kind in (Trade, Kline, DepthUpdate, DepthSnapshot, BookTicker):
    register_serde(_kind, market_serde(_kind))
