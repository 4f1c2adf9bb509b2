"""What a processor is: per-record logic over one input partition's changelog-backed state."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from ..models import MarketRecord
from ..serde.decode import decode as decode_market
from ..settings import ProcessorSettings
from ..state import ChangelogStore, Snapshottable

Output = tuple[str, bytes | None, bytes]
"""One output record: ``(topic, key, value)``."""


class Processor(ABC):
    """Turns decoded input records into output records, keeping per-key state in a changelog store.

    The runtime calls :meth:`process` for every record of an input partition in offset order, with that
    partition's store; everything it returns is sent in the partition's transaction. A processor raises
    :class:`~stream_processor.exceptions.RecordError` for a record it cannot use (it goes to the dead
    letter topic); it must not touch Kafka itself.
    """

    def __init__(self, name: str, settings: ProcessorSettings) -> None:
        self.name = name
        self.settings = settings

    def decode(self, value: bytes | None, key: bytes | None) -> Any:
        """The record :meth:`process` takes, from one input message's bytes; by default a market record.

        Raises:
            RecordError: the bytes cannot be decoded or are not a valid record (see :mod:`stream_processor.serde`).
        """
        return decode_market(value, key)

    @abstractmethod
    def state_from(self, state: dict[str, Any]) -> Snapshottable:
        """Rebuild one key's live state object from its changelog snapshot."""

    @abstractmethod
    def process(
        self, record: MarketRecord, store: ChangelogStore, topic: str, partition: int, offset: int
    ) -> list[Output]:
        """The outputs of one input record (``topic``/``partition``/``offset`` name its source)."""

    def new_store(self) -> ChangelogStore:
        """An empty store for one input partition."""
        return ChangelogStore(self.state_from)
