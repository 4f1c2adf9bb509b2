"""The exactly-once engine: App, agents, tables, timers, the processor API, the runtime and the test driver.

It does not import the market application (:mod:`stream_processor.market`); a YAML entry naming a built-in market
processor type imports it on demand.
"""

from .agent import Agent, Stream
from .app import App, Topic, register_serde
from .processor import Processor, ProcessorContext, PunctuationType
from .records import Record
from .state import StoreSpec
from .table import Table, WindowedTable

__all__ = ["Agent", "App", "Processor", "ProcessorContext", "PunctuationType", "Record", "Stream", "StoreSpec",
           "Table", "Topic", "WindowedTable", "register_serde"]
