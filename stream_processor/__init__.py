"""Exactly-once stream processing on Kafka in Python, and a market-data application built on it.

``stream_processor.engine`` is the engine (App, agents, tables, timers, the processor API, the test driver);
``stream_processor.market`` the market application (decoders, indicators, order books, klines, SMC). The engine's
public names are re-exported here, so a Faust agent ports by changing ``import faust`` to
``import stream_processor as faust``.
"""

from .engine import (
    Agent,
    App,
    ChannelT,
    Event,
    GlobalTable,
    HoppingWindow,
    Processor,
    ProcessorContext,
    PunctuationType,
    Record,
    SetTable,
    Snapshot,
    StoreSpec,
    Stream,
    StreamT,
    Table,
    Topic,
    TumblingWindow,
    VersionedRecord,
    VersionedStore,
    WindowedTable,
    current_event,
    register_serde,
    uuid,
)
from .engine.version import __version__ as __version__

__all__ = ["Agent", "App", "ChannelT", "Event", "GlobalTable", "HoppingWindow", "Processor", "ProcessorContext",
           "PunctuationType", "Record", "Service", "SetTable", "Snapshot", "StoreSpec", "Stream", "StreamT", "Table",
           "Topic", "TumblingWindow", "VersionedRecord", "VersionedStore", "WindowedTable", "current_event",
           "register_serde", "uuid"]


def __getattr__(name: str) -> object:
    """``Service``: mode's ``Service``, as ``faust.Service`` is (see :mod:`stream_processor.engine`)."""
    if name == "Service":
        from .engine import Service

        return Service
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
