"""What a processor is: per-record logic over one input partition's changelog-backed state."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from typing import Any

from ..exceptions import InvalidRecordError
from ..models import BookTicker, DepthSnapshot, DepthUpdate, Kline, MarketRecord, Trade
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
    letter topic) BEFORE it changes any state: the runtime trusts a RecordError to leave the store as it was.
    Any other exception is a bug: the runtime rolls the transaction back, replays it without that record and
    dead-letters the record (``processing_error``). A processor must not touch Kafka itself.

    ``events`` counts what a processor wants operators to see (order-book gaps, duplicates dropped, ...); the
    runtime exports it as ``stream_processor_processor_events_total``.
    """

    def __init__(self, name: str, settings: ProcessorSettings) -> None:
        self.name = name
        self.settings = settings
        self.events: Counter[str] = Counter()

    def decode(self, value: bytes | None, key: bytes | None, timestamp_ms: int | None = None) -> Any:
        """The record :meth:`process` takes, from one input message; by default a checked market record.

        ``timestamp_ms`` is the Kafka record's timestamp (None or negative: none). A market record must be keyed by
        its symbol (case aside), or it would sit on another partition than its symbol's state, and its event times
        must lie within ``settings.event_time`` of the Kafka timestamp.

        Raises:
            RecordError: the bytes cannot be decoded or are not a valid record (see :mod:`stream_processor.serde`),
                the key is not the symbol, or an event time is outside the window.
        """
        record = decode_market(value, key)
        if key is None or key != record.symbol.encode():
            check_key(record, key)  # raises unless only the case differs
        if timestamp_ms is not None and timestamp_ms >= 0:
            window = self.settings.event_time
            future, past = window.max_future_ms, window.max_past_ms
            if type(record) is Trade and future is not None and past is not None:  # the hot path, inlined
                low, high = timestamp_ms - past, timestamp_ms + future
                if low <= record.time_ms <= high and low <= record.event_time_ms <= high:
                    return record
            check_times(record, timestamp_ms, future, past)
        return record

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


def state_key(record: MarketRecord) -> str:
    """The store key of a market record's state: ``venue/market/symbol`` (spot and USD-M BTCUSDT apart)."""
    return f"{record.venue}/{record.market}/{record.symbol}"


def check_key(record: MarketRecord, key: bytes | None) -> None:
    """Raise InvalidRecordError unless the Kafka ``key`` is the record's symbol (compared without case)."""
    if key is None:
        raise InvalidRecordError(f"no key: records of {record.symbol} must be keyed by the symbol (a record without a "
                                 "key lands on any partition, away from its symbol's state)")
    try:
        text = key.decode()
    except UnicodeDecodeError:
        raise InvalidRecordError(f"key {key[:64]!r} is not UTF-8; records must be keyed by the symbol") from None
    if text.upper() != record.symbol:
        raise InvalidRecordError(f"key {text[:64]!r} is not the record's symbol {record.symbol!r}: it would sit on "
                                 "another partition than the symbol's state")


def event_times(record: MarketRecord) -> list[tuple[str, int]]:
    """The event times of a market record that must lie near its Kafka timestamp: ``(field, ms)`` pairs."""
    kind = type(record)
    if kind is Trade:
        return [("time_ms", record.time_ms), ("event_time_ms", record.event_time_ms)]  # type: ignore[union-attr]
    if kind is Kline:
        times = [("open_time_ms", record.open_time_ms)]  # type: ignore[union-attr]
    elif kind in (DepthUpdate, DepthSnapshot, BookTicker):
        times = []
    else:
        return []
    event = record.event_time_ms
    if event is not None:
        times.append(("event_time_ms", event))
    return times


def check_times(record: MarketRecord, timestamp_ms: int, max_future_ms: int | None, max_past_ms: int | None) -> None:
    """Raise InvalidRecordError if an event time is after ``timestamp_ms + max_future_ms`` or before
    ``timestamp_ms - max_past_ms`` (None: that side unbounded)."""
    for field, value in event_times(record):
        if max_future_ms is not None and value > timestamp_ms + max_future_ms:
            raise InvalidRecordError(f"{field} {value} is {value - timestamp_ms} ms after the record's Kafka timestamp "
                                     f"{timestamp_ms} (max_future_ms {max_future_ms})")
        if max_past_ms is not None and value < timestamp_ms - max_past_ms:
            raise InvalidRecordError(f"{field} {value} is {timestamp_ms - value} ms before the record's Kafka "
                                     f"timestamp {timestamp_ms} (max_past_ms {max_past_ms})")
