"""The exactly-once engine: App, agents, tables, timers, the processor API, the runtime and the test driver.

It does not import the market application (:mod:`stream_processor.market`): processor types a YAML entry names are
loaded through the ``stream_processor.processors`` entry points, application settings sections through
``stream_processor.sections``.
"""

import uuid as _uuid

from .agent import Agent, Stream
from .app import App
from .events import Event, current_event
from .global_table import GlobalTable
from .processor import Processor, ProcessorContext, PunctuationType
from .records import Record
from .set_table import SetTable
from .snapshot import Snapshot
from .state import StoreSpec
from .table import Table, WindowedTable
from .topic import Topic, register_serde
from .versioned import VersionedRecord, VersionedStore
from .windows import HoppingWindow, TumblingWindow


def uuid() -> str:
    """A random UUID as text (faust.uuid: ``str(uuid4())``)."""
    return str(_uuid.uuid4())


__all__ = ["Agent", "App", "Event", "GlobalTable", "HoppingWindow", "Processor", "ProcessorContext", "PunctuationType",
           "Record", "SetTable", "Snapshot", "StoreSpec", "Stream", "Table", "Topic", "TumblingWindow",
           "VersionedRecord", "VersionedStore", "WindowedTable", "current_event", "register_serde", "uuid"]
