"""Faust's events: the record an agent is processing, with its Kafka metadata (``faust.events.Event`` and
``faust.types.tuples.Message``), and :func:`current_event`.

.. code-block:: python

    async for event in stream.events():
        print(event.key, event.value, event.message.offset, event.message.timestamp)   # timestamp: seconds

    event = current_event()          # anywhere inside an agent: the record being processed
    await event.forward(other_topic) # the original key and value bytes, in this record's transaction
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .processor import current_context, encode_value

__all__ = ["TP", "Event", "Message", "current_event", "send_in_transaction"]

_EXISTING: Any = object()


class TP(NamedTuple):
    """A topic partition, as ``faust.types.TP``."""

    topic: str
    partition: int


class Message:
    """The Kafka record under an event, as ``faust.types.tuples.Message``: ``topic``, ``partition``, ``offset``,
    ``timestamp`` (SECONDS since the epoch, a float, as Faust has it; ``timestamp_ms`` the Kafka value in ms),
    ``key`` and ``value`` (the serialized bytes, or None), ``headers`` (a list of ``(str, bytes)``), ``tp``."""

    __slots__ = ("topic", "partition", "offset", "timestamp_ms", "key", "value", "headers")

    def __init__(self, topic: str | None, partition: int | None, offset: int | None, timestamp_ms: int | None,
                 key: bytes | None, value: bytes | None, headers: Any) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.timestamp_ms, self.key, self.value = timestamp_ms, key, value
        self.headers = list(headers or ())

    @property
    def timestamp(self) -> float | None:
        """The record's Kafka timestamp in seconds since the epoch (``faust.types.tuples.Message.timestamp``)."""
        return None if self.timestamp_ms is None else self.timestamp_ms / 1000.0

    @property
    def tp(self) -> TP:
        """``(topic, partition)``."""
        return TP(self.topic or "", self.partition if self.partition is not None else -1)

    def __repr__(self) -> str:
        return f"<Message {self.topic}[{self.partition}]@{self.offset}>"


class Event:
    """A record being processed by an agent, as ``faust.events.Event``: ``key`` (decoded as its topic's
    ``key_type`` says: bytes for ``bytes``, text otherwise, as ``stream.items()`` gives it), ``value`` (decoded,
    before any ``stream.add_processor`` processor, as Faust's), ``headers`` (a dict, as Faust's), ``message``
    (:class:`Message`).

    For the engine's own programs written before events, the attributes of the task's
    :class:`~stream_processor.engine.processor.ProcessorContext` (``topic``, ``offset``, ``timestamp`` in ms, ...)
    are read through to the record's context.
    """

    __slots__ = ("key", "value", "headers", "message", "_ctx")

    def __init__(self, key: Any, value: Any, headers: Any, message: Message, ctx: Any = None) -> None:
        self.key, self.value, self.message, self._ctx = key, value, message, ctx
        self.headers: dict[str, Any] = dict(headers or ())  # a dict, as Faust's Event makes it

    def __getattr__(self, name: str) -> Any:
        ctx = object.__getattribute__(self, "_ctx")
        if ctx is None or name.startswith("_"):
            raise AttributeError(name)
        if name == "timestamp":  # the ms value of the record, not of whatever the context holds now
            return self.message.timestamp_ms
        return getattr(ctx, name)

    def __repr__(self) -> str:
        return f"<Event {self.message.topic}[{self.message.partition}]@{self.message.offset} key={self.key!r}>"

    async def send(self, channel: Any, key: Any = _EXISTING, value: Any = _EXISTING, partition: int | None = None,
                   timestamp: float | None = None, headers: Any = _EXISTING) -> None:
        """Send this event's (decoded) key and value, or those given, to ``channel`` (a topic, its name or an
        agent), as ``faust.events.Event.send``: in the transaction of the record being processed (exactly once).
        ``timestamp``: seconds since the epoch (Faust's unit). Raises RuntimeError outside an agent."""
        send_in_transaction(channel, self.key if key is _EXISTING else key,
                            self.value if value is _EXISTING else value,
                            self.headers if headers is _EXISTING else headers, partition, timestamp, raw=False)

    async def forward(self, channel: Any, key: Any = _EXISTING, value: Any = _EXISTING, partition: int | None = None,
                      timestamp: float | None = None, headers: Any = _EXISTING) -> None:
        """Send the ORIGINAL message (its key and value bytes, not re-serialized, and its headers) to ``channel``,
        as ``faust.events.Event.forward``, in the transaction of the record being processed (exactly once).
        Raises RuntimeError outside an agent."""
        send_in_transaction(channel, self.message.key if key is _EXISTING else key,
                            self.message.value if value is _EXISTING else value,
                            self.message.headers if headers is _EXISTING else headers, partition, timestamp,
                            raw=value is _EXISTING)


def channel_topic(channel: Any) -> Any:
    """The :class:`~stream_processor.engine.topic.Topic` of ``channel``: a topic, or an agent (its channel)."""
    topics = getattr(channel, "topics", None)
    if isinstance(topics, list) and topics:  # an Agent
        return topics[0]
    return channel


def send_in_transaction(channel: Any, key: Any, value: Any, headers: Any, partition: int | None,
                        timestamp: float | None, *, raw: bool) -> None:
    """Send to ``channel`` (a topic, its name or an agent) in the transaction of the record being processed;
    ``raw``: ``value`` is already bytes. ``timestamp`` in seconds since the epoch. Raises RuntimeError outside an
    agent."""
    ctx = current_context.get()
    if ctx is None:
        raise RuntimeError("event.send/forward outside an agent: there is no record being processed")
    if isinstance(channel, str):
        name, data = channel, value if raw else encode_value(value)
    else:
        topic = channel_topic(channel)
        name, data = topic.name, value if raw else topic.encode_value(value)
    if isinstance(headers, dict):
        headers = [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in headers.items()]
    ctx.send(name, data, key, list(headers) if headers else None, partition,
             None if timestamp is None else int(timestamp * 1000))


def current_event() -> Event | None:
    """The event being processed by the agent running now (``faust.current_event``), or None outside an agent."""
    ctx = current_context.get()
    driver = getattr(ctx, "agent_state", None) if ctx is not None else None
    if driver is None:
        return None
    event: Event | None = driver.stream.current_event
    return event
