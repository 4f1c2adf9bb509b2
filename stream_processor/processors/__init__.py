"""Processors, built from the ``stream_processors`` section of the config by their ``type``."""

from __future__ import annotations

from ..settings import ProcessorSettings
from .base import Output, Processor
from .eos_check import EosCheckProcessor
from .klines import KlinesProcessor
from .orderbook import OrderbookProcessor
from .trades import TradesProcessor

PROCESSOR_TYPES: dict[str, type[Processor]] = {
    "trades": TradesProcessor,
    "eos_check": EosCheckProcessor,
    "orderbook": OrderbookProcessor,
    "klines": KlinesProcessor,
}


def build_processor(name: str, settings: ProcessorSettings) -> Processor:
    """The processor of config entry ``stream_processors.<name>``."""
    return PROCESSOR_TYPES[settings.type](name, settings)


__all__ = [
    "EosCheckProcessor", "KlinesProcessor", "OrderbookProcessor", "Output", "PROCESSOR_TYPES", "Processor",
    "TradesProcessor", "build_processor",
]
