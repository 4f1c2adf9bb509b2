"""The market processors' common base: market records decoded and checked, one store of market snapshots."""

from __future__ import annotations

from typing import Any, ClassVar

from ...engine.exceptions import InvalidRecordError
from ...engine.processor import Processor, ProcessorContext
from ...engine.state import StoreSpec
from ..context import CONTEXT_STORE, DEFAULT_HISTORY_MS, context_store, decode_context, lookup, remember
from ..models import BookTicker, DepthSnapshot, DepthUpdate, Kline, MarketRecord, Trade
from ..serde.decode import decode as decode_market
from ..settings import EventTimeSettings
from ..snapshot import MarketSnapshot


class MarketProcessor(Processor):
    """A processor of market records (see :mod:`stream_processor.engine.processor` for the contract).

    It keeps one store of live state objects of class :attr:`state_type` (a
    :class:`~stream_processor.market.snapshot.MarketSnapshot`: the store writes its ``STATE_VERSION`` in every
    changelog record and migrates older layouts), and decodes every input as a checked market record
    (:meth:`decode`).

    A processor whose ``params`` name an ``smc_context_topic`` (one of its ``input_topics``) also keeps the SMC
    context of its symbols in the versioned store :data:`~stream_processor.market.context.CONTEXT_STORE`: records
    of that topic decode as :class:`~stream_processor.market.context.ContextRecord` and :meth:`process` hands them
    to :meth:`remember_context`; :meth:`join_context` adds an output's ``smc`` and ``smc_stale``. See
    :mod:`stream_processor.market.context`.
    """

    #: The class of the default store's values.
    state_type: ClassVar[type[MarketSnapshot]]

    def __init__(self, name: str, settings: Any) -> None:
        super().__init__(name, settings)
        params = getattr(settings, "params", None)
        #: The topic of SMC context records this processor joins (``params.smc_context_topic``), or None.
        self.context_topic: str | None = getattr(params, "smc_context_topic", None)
        #: How long the joined contexts are kept (ms of Kafka record time).
        self.context_history_ms: int = getattr(params, "smc_context_history_ms", DEFAULT_HISTORY_MS)

    def stores(self) -> list[StoreSpec]:
        specs = [StoreSpec(value_type=self.state_type)]
        if self.context_topic is not None:
            specs.append(context_store(self.context_history_ms))
        return specs

    def state_from(self, state: dict[str, Any]) -> Any:
        """Rebuild one key's live state object from its snapshot (in the current layout)."""
        return self.state_type.from_state(state)

    def remember_context(self, record: Any, ctx: ProcessorContext) -> None:
        """Keep one SMC context record in the task's context store, as the version of its symbol and interval valid
        from the record's Kafka timestamp (it changes no other state, sends nothing). Raises InvalidRecordError for
        a record without a Kafka timestamp."""
        remember(ctx.state(CONTEXT_STORE), record, ctx.timestamp)  # type: ignore[arg-type]

    def join_context(self, out: dict[str, Any], ctx: ProcessorContext, key: str, event_time_ms: int | None,
                     price: float | None) -> None:
        """Set the ``smc`` and ``smc_stale`` fields of ``out``, the output of the record being processed, of symbol
        ``key`` (``venue/market/symbol``), event time ``event_time_ms`` and price ``price`` (see
        :func:`~stream_processor.market.context.lookup`, with the record's Kafka timestamp).

        ``smc_stale`` is true when the record was taken while the context topic's partition had nothing fetched and
        its wait had run out (the topic is in ``ctx.enforced``): a context stored before the record's timestamp may
        still be on its way. Such a record is counted as the event ``smc_context_stale``.
        """
        out["smc"] = lookup(ctx.state(CONTEXT_STORE), key, ctx.timestamp, event_time_ms, price)  # type: ignore[arg-type]
        stale = out["smc_stale"] = self.context_topic in ctx.enforced
        if stale:
            self.events["smc_context_stale"] += 1

    def decode(self, value: bytes | None, key: bytes | None, timestamp_ms: int | None = None,
               topic: str | None = None) -> Any:
        """The record :meth:`process` takes, from one input message; by default a checked market record.

        ``timestamp_ms`` is the Kafka record's timestamp (None or negative: none). A market record must be keyed by
        its symbol (case aside), or it would sit on another partition than its symbol's state, and its event times
        must lie within ``settings.event_time`` of the Kafka timestamp.

        Raises:
            RecordError: the bytes cannot be decoded or are not a valid record (see
                :mod:`stream_processor.market.serde`), the key is not the symbol, or an event time is outside the
                window.
        """
        if topic == self.context_topic and topic is not None:
            return decode_context(value, key)
        return decode_checked(value, key, timestamp_ms, self.settings.event_time)


def decode_checked(value: bytes | None, key: bytes | None, timestamp_ms: int | None,
                   window: EventTimeSettings) -> MarketRecord:
    """A market record decoded from one input message, its key and event times checked (see
    :meth:`MarketProcessor.decode`). Raises RecordError."""
    record = decode_market(value, key)
    if key is None or key != record.symbol.encode():
        check_key(record, key)  # raises unless only the case differs
    if timestamp_ms is not None and timestamp_ms >= 0:
        future, past = window.max_future_ms, window.max_past_ms
        if type(record) is Trade and future is not None and past is not None:  # the hot path, inlined
            low, high = timestamp_ms - past, timestamp_ms + future
            if low <= record.time_ms <= high and low <= record.event_time_ms <= high:
                return record
        check_times(record, timestamp_ms, future, past)
    return record


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


def market_serde(kind: type) -> Any:
    """The decoder of a topic declared with ``value_type=kind`` (Trade, Kline, ...): a market record decoded, its
    key and event times checked as the built-in processors check them (default window), and of that kind.

    Raises (from the decoder) RecordError: undecodable, invalid, or another kind of market record.
    """
    window = EventTimeSettings()

    def decode(value: bytes | None, key: bytes | None, timestamp_ms: int | None) -> Any:
        record = decode_checked(value, key, timestamp_ms, window)
        if type(record) is not kind:
            raise InvalidRecordError(f"expected a {kind.__name__}, got a {type(record).__name__}")
        return record

    return decode
