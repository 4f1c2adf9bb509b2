"""The market processors and their processor types, ``trades``, ``orderbook`` and ``klines``.

Each type is a :class:`~stream_processor.engine.registry.ProcessorType` below; this package's ``pyproject.toml``
declares each one in the entry-point group ``stream_processor.processors`` (``trades =
"stream_processor.market.processors:TRADES"``, ...), so that a YAML entry naming one loads it through
:mod:`stream_processor.engine.registry`, and the market app (:mod:`stream_processor.market.app`) registers them on
itself. Nothing is registered globally on import.
"""

from __future__ import annotations

from ...engine.registry import ProcessorType
from ..settings import KlinesProcessorSettings, OrderbookProcessorSettings, TradesProcessorSettings
from .base import MarketProcessor
from .klines import KlinesProcessor
from .orderbook import OrderbookProcessor
from .trades import TradesProcessor

TRADES = ProcessorType("trades", TradesProcessorSettings, TradesProcessor,
                       output_roles=(("enriched", "enriched_trades", "trades", "output"),),
                       keywords=("trade",))
ORDERBOOK = ProcessorType("orderbook", OrderbookProcessorSettings, OrderbookProcessor,
                          output_roles=(("enriched", "enriched_orderbook", "orderbook", "output"),),
                          keywords=("orderbook", "order_book", "book", "depth"))
KLINES = ProcessorType("klines", KlinesProcessorSettings, KlinesProcessor,
                       output_roles=(("enriched", "enriched_klines", "klines", "output"),
                                     ("signals", "smc_signals", "smc", "patterns"),
                                     ("alerts", "alert")),
                       keywords=("kline", "candle", "ohlc", "smc"))

PROCESSOR_TYPES = (TRADES, ORDERBOOK, KLINES)
"""The market's processor types, as its entry points declare them."""

__all__ = ["KLINES", "ORDERBOOK", "PROCESSOR_TYPES", "TRADES", "KlinesProcessor", "MarketProcessor",
           "OrderbookProcessor", "TradesProcessor"]
