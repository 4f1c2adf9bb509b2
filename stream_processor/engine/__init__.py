"""The exactly-once engine: App, agents, tables, timers, the processor API, the runtime and the test driver.

It does not import the market application (:mod:`stream_processor.market`): processor types a YAML entry names are
loaded through the ``stream_processor.processors`` entry points, application settings sections through
``stream_processor.sections``.
"""

from .agent import Agent, Stream
from .app import App
from .processor import Processor, ProcessorContext, PunctuationType
from .records import Record
from .snapshot import Snapshot
from .state import StoreSpec
from .table import Table, WindowedTable
from .topic import Topic, register_serde
from .versioned import VersionedRecord, VersionedStore

__all__ = ["Agent", "App", "Processor", "ProcessorContext", "PunctuationType", "Record", "Snapshot", "Stream",
           "StoreSpec", "Table", "Topic", "VersionedRecord", "VersionedStore", "WindowedTable", "register_serde"]
