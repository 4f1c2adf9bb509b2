"""The built-in market processors, registered as the types ``trades``, ``orderbook``, ``klines`` and
``eos_check`` (see :mod:`stream_processor.engine.registry`)."""

from __future__ import annotations

from ...engine.registry import ProcessorType, register
from ..settings import (
    EosCheckProcessorSettings,
    KlinesProcessorSettings,
    OrderbookProcessorSettings,
    TradesProcessorSettings,
)
from .base import MarketProcessor
from .eos_check import EosCheckProcessor
from .klines import KlinesProcessor
from .orderbook import OrderbookProcessor
from .trades import TradesProcessor

BUILTIN_TYPES = [
    register(ProcessorType("trades", TradesProcessorSettings, TradesProcessor,
                           output_roles=(("enriched", "enriched_trades", "trades", "output"),),
                           keywords=("trade",))),
    register(ProcessorType("orderbook", OrderbookProcessorSettings, OrderbookProcessor,
                           output_roles=(("enriched", "enriched_orderbook", "orderbook", "output"),),
                           keywords=("orderbook", "order_book", "book", "depth"))),
    register(ProcessorType("klines", KlinesProcessorSettings, KlinesProcessor,
                           output_roles=(("enriched", "enriched_klines", "klines", "output"),
                                         ("signals", "smc_signals", "smc", "patterns"),
                                         ("alerts", "alert")),
                           keywords=("kline", "candle", "ohlc", "smc"))),
    register(ProcessorType("eos_check", EosCheckProcessorSettings, EosCheckProcessor,
                           output_roles=(("echo",), ("aggregates", "agg")), keywords=("eos",))),
]

__all__ = ["BUILTIN_TYPES", "EosCheckProcessor", "KlinesProcessor", "MarketProcessor", "OrderbookProcessor",
           "TradesProcessor"]
