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


#: Faust's type names, for the annotations of ported programs: a channel here is a topic (``app.channel()``).
ChannelT = Topic
StreamT = Stream


def __getattr__(name: str) -> object:
    """``Service``: mode's ``Service`` (faust.Service is mode's too), imported when first asked for."""
    if name == "Service":
        from mode import Service

        return Service
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Agent", "App", "ChannelT", "Event", "GlobalTable", "HoppingWindow", "Processor", "ProcessorContext",
           "PunctuationType", "Record", "Service", "SetTable", "Snapshot", "StoreSpec", "Stream", "StreamT", "Table",
           "Topic", "TumblingWindow", "VersionedRecord", "VersionedStore", "WindowedTable", "current_event",
           "register_serde", "uuid"]
