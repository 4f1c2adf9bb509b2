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
    register(ProcessorType("trades", TradesProcessorSettings, TradesProcessor)),
    register(ProcessorType("orderbook", OrderbookProcessorSettings, OrderbookProcessor)),
    register(ProcessorType("klines", KlinesProcessorSettings, KlinesProcessor)),
    register(ProcessorType("eos_check", EosCheckProcessorSettings, EosCheckProcessor)),
]

__all__ = ["BUILTIN_TYPES", "EosCheckProcessor", "KlinesProcessor", "MarketProcessor", "OrderbookProcessor",
           "TradesProcessor"]
