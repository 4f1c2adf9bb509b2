"""An agent's input (Faust's ``StreamT``): the records of one partition, in offset order, and Faust's stream
operations on them (``events``, ``items``, ``take``, ``group_by``, ``through``, ``echo``, ``add_processor``).

The stream is driven by :class:`~stream_processor.engine.agent.AgentDriver` record by record (see
:mod:`~stream_processor.engine.agent`): ``async for`` hands over the next record of the partition, and everything
the agent does until it asks for the next one belongs to that record's transaction.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, Any

from . import processor as _processor
from . import records as _records
from .durations import to_seconds
from .events import Event, Message, channel_topic, send_in_transaction
from .processor import ProcessorContext, encode_value

if TYPE_CHECKING:
    from .agent import AgentDriver

EMPTY = object()
WANT = object()  # yielded up to the driver: the agent asks for its next record
TICK = object()  # delivered to a waiting stream.take(): a wall-clock moment passed

Record = tuple[str | None, int | None, int | None, int | None, bytes | None, Any, bytes | None, Any]
"""The record being processed: ``(topic, partition, offset, timestamp_ms, key, headers, value bytes, value)``."""


class Stream:
    """An agent's input: the records of one partition (task), in offset order; iterate with ``async for``.

    ``stream.current_event`` is the :class:`~stream_processor.engine.events.Event` of the record being processed
    (``.key``, ``.value``, ``.message.offset``, ``.message.timestamp`` in seconds, ...; None before the first);
    ``stream.params`` the agent's validated ``params`` from the YAML.
    """

    def __class_getitem__(cls, item: Any) -> Any:  # noqa: D105 - ``faust.Stream[Request]`` in an annotation
        return cls

    def __init__(self, driver: AgentDriver | None, ctx: ProcessorContext | None, params: Any = None,
                 app: Any = None) -> None:
        self._driver = driver
        self._pending: Any = EMPTY
        self._ticks = False  # a take() with ``within`` is waiting: deliver ticks
        self._ctx = ctx
        self.app = app if driver is None else driver.agent.app
        self.params = params
        self.group_by_calls: list[tuple[Any, str | None]] = []
        self.through_calls: list[Any] = []
        self._processors: list[Callable[[Any], Any]] = []
        self.record: Record | None = None  # set by the driver for every record it delivers
        self._event: Event | None = None

    def __aiter__(self) -> Stream:
        return self

    def __anext__(self) -> Any:
        return self._next()

    def set_record(self, record: Record) -> None:
        """The driver hands over the record it delivers next (its event is built when asked for)."""
        self.record, self._event = record, None

    @property
    def current_event(self) -> Event | None:
        """The :class:`~stream_processor.engine.events.Event` of the record being processed (as Faust's
        ``stream.current_event``), or None before the first record."""
        if self._event is None and self.record is not None:
            topic, partition, offset, ts, key, headers, raw, value = self.record
            self._event = Event(self._decoded_key(topic, key), value, headers,
                                Message(topic, partition, offset, ts, key, raw, headers), self._ctx)
        return self._event

    @types.coroutine
    def _apply(self, value: Any) -> Generator[Any, Any, Any]:
        """``value`` through the processors of :meth:`add_processor`, in order (async ones awaited)."""
        for fn in self._processors:
            value = fn(value)
            if inspect.isawaitable(value):
                value = yield from value.__await__()
        return value

    @types.coroutine
    def _next(self) -> Generator[Any, Any, Any]:
        while True:
            while self._pending is EMPTY:
                yield WANT
            value, self._pending = self._pending, EMPTY
            if value is not TICK:
                return (yield from self._apply(value)) if self._processors else value

    @types.coroutine
    def _next_or_tick(self) -> Generator[Any, Any, Any]:
        self._ticks = True
        try:
            while self._pending is EMPTY:
                yield WANT
        finally:
            self._ticks = False
        value, self._pending = self._pending, EMPTY
        if value is TICK or not self._processors:
            return value
        return (yield from self._apply(value))

    def add_processor(self, processor: Callable[[Any], Any]) -> None:
        """Pass every value through ``processor(value)`` (a function or an async function) before the agent sees it,
        as ``faust.Stream.add_processor``; processors run in the order added, each on the previous one's result."""
        self._processors.append(processor)

    def _decoded_key(self, topic: str | None, key: bytes | None) -> Any:
        if key is None or self.app is None or topic is None:
            return key
        declared = self.app.topics.get(topic)
        if declared is not None and declared.key_type is bytes:
            return key
        return _key_text(key)  # as items() always gave it: text unless the topic says bytes

    async def items(self) -> AsyncIterator[tuple[Any, Any]]:
        """``(key, value)`` pairs, None without a key. The key is as its topic's ``key_type`` says: ``bytes`` raw (as
        Faust gives it by default), otherwise str (UTF-8; bytes when not UTF-8)."""
        async for value in self:
            record = self.record
            yield (self._decoded_key(record[0], record[4]) if record is not None else None), value

    async def events(self) -> AsyncIterator[Event]:
        """The :class:`~stream_processor.engine.events.Event` of every record (``event.key``, ``event.value``,
        ``event.message``), as ``faust.Stream.events``: ``event.value`` is the decoded value, before
        :meth:`add_processor`'s processors (which still run), as in Faust."""
        async for _ in self:
            event = self.current_event
            assert event is not None
            yield event

    async def enumerate(self, start: int = 0) -> AsyncIterator[tuple[int, Any]]:
        """``(i, value)`` pairs, ``i`` counting from ``start`` (Faust's ``Stream.enumerate``); the count is this
        instance's, i.e. this partition's (one instance per partition here, one per worker under Faust)."""
        i = start
        async for value in self:
            yield i, value
            i += 1

    async def filter(self, predicate: Callable[[Any], bool]) -> AsyncIterator[Any]:
        """The values for which ``predicate(value)`` is true."""
        async for value in self:
            if predicate(value):
                yield value

    async def map(self, fn: Callable[[Any], Any]) -> AsyncIterator[Any]:
        """``fn(value)`` of every value."""
        async for value in self:
            yield fn(value)

    async def take(self, max_: int, within: Any) -> AsyncIterator[list[Any]]:
        """Lists of up to ``max_`` values, a shorter one once ``within`` (a duration: seconds, timedelta, ``'5s'``,
        see :mod:`~stream_processor.engine.durations`) passed since its first value, as ``faust.Stream.take``.

        A batch's records are committed only after it is yielded (and what the agent does with it is in the
        transaction): a crash while it fills re-reads them. The ``within`` deadline is checked on each record and
        every 100 ms (at the commit cadence), so a partition that goes quiet still gets its last batch.

        Raises ValueError: ``max_ < 1`` or ``within`` not positive (or not a duration).
        """
        seconds = to_seconds(within, what="take within")
        if max_ < 1 or seconds <= 0:
            raise ValueError(f"take needs max_ >= 1 and within > 0, got {max_}, {within!r}")
        ctx = self._ctx
        buffer: list[Any] = []
        deadline = 0.0
        if ctx is not None and self._driver is not None:
            self._driver.want_ticks(int(min(seconds, 0.1) * 1000))
        while True:
            value = await self._next_or_tick()
            now = _processor.wall_clock_ms() / 1000
            if value is not TICK:
                if not buffer:
                    deadline = now + seconds
                if ctx is not None and ctx.topic is not None and ctx.offset is not None:
                    ctx.held.setdefault(ctx.topic, ctx.offset)
                buffer.append(value)
            if buffer and (len(buffer) >= max_ or now >= deadline):
                batch, buffer = buffer, []
                yield batch  # the agent's body handles it before asking for more: only then are its records done
                if ctx is not None:
                    ctx.held.clear()

    def group_by(self, key: Any, name: str | None = None) -> Any:
        """Re-key the stream through the agent's repartition topic, exactly once: each value is sent, keyed by
        ``key(value)`` (a function, a field name, or a Record field reference such as ``Withdrawal.country``), to
        ``<app_id>-<agent>-<name>-repartition`` in its input record's transaction, and the agent's body processes
        it from there, on the partition of its new key (so its tables are partitioned by it). Must be called before
        the first record (``async for v in stream.group_by(...)``), once per agent, and not with :meth:`through`.
        """
        self.group_by_calls.append((key, name))
        if self._driver is None:
            return self  # the registration probe: it only records the call
        return self._driver.group_by(self, key)

    def through(self, channel: Any) -> Any:
        """Forward every value (its record's key, the value's bytes) to ``channel`` (a topic or its name) and
        process it from there, as ``faust.Stream.through``: the forward goes in the input record's transaction
        (exactly once) and the agent's body reads ``channel`` (decoded as that topic declares). Processors added
        before ``through`` run before the forward, as in Faust. Must be called before the first record, once, and
        not with :meth:`group_by` (as Faust: "Stream is already using group_by/through")."""
        self.through_calls.append(channel)
        if self._driver is None:
            return self
        return self._driver.through(self)

    def echo(self, *channels: Any) -> Stream:
        """Also send every value to each of ``channels`` (topics or their names), as ``faust.Stream.echo``: the value
        only (no key, as Faust's ``channel.send(value=value)``), in the transaction of the record being processed."""
        app = self.app
        topics = [app.topic(c) if isinstance(c, str) and app is not None else c for c in channels]

        def echoing(value: Any) -> Any:
            for topic in topics:
                send_in_transaction(topic, None, value, None, None, None, raw=False)
            return value

        self.add_processor(echoing)
        return self


    def noack(self) -> Stream:
        """Refused: Faust's manual acknowledgement. Raises NotImplementedError: a record is done here when its
        transaction commits with its effects; acking it apart from them would break exactly once."""
        raise NotImplementedError("stream.noack()/ack(): a record is acknowledged by its transaction's commit, with "
                                  "everything it caused; manual acks would break exactly once")

    def ack(self, event: Any) -> bool:
        """Refused, as :meth:`noack`. Raises NotImplementedError."""
        return self.noack() is None


def _key_text(key: bytes | None) -> Any:
    if key is None:
        return None
    try:
        return key.decode()
    except UnicodeDecodeError:
        return key


class Repartition:
    """What ``stream.group_by``/``through`` gives the first stage of a re-keyed agent: it forwards every record to
    the repartition (or through) topic and never returns one to the body. ``key`` None: the record's own key."""

    def __init__(self, stream: Stream, key: Callable[[Any], Any] | None, topic: str, ctx: ProcessorContext,
                 encode: Callable[[Any], bytes | None] = encode_value) -> None:
        """``encode``: the value's bytes as the second stage's topic decodes them (its codec)."""
        self.stream, self.key, self.topic, self.ctx, self.encode = stream, key, topic, ctx, encode

    def __aiter__(self) -> Repartition:
        return self

    async def __anext__(self) -> Any:
        while True:
            value = await self.stream._next()  # noqa: SLF001
            if self.key is not None:
                self.ctx.send(self.topic, self.encode(value), self.key(value))
                continue
            record = self.stream.record
            unchanged = record is not None and record[7] is value
            raw = record[6] if unchanged and record is not None else self.encode(value)
            self.ctx.send(self.topic, raw, self.ctx.key, list(self.ctx.headers) or None)


def key_function(key: Any) -> Callable[[Any], Any]:
    """A function of a value from ``group_by``'s ``key``: a Record field reference (``Withdrawal.country``) or a
    name as the value's field or attribute, a callable as it is.

    Raises TypeError for anything else."""
    field = field_of(key)
    if field is not None:
        return lambda value: value[field] if isinstance(value, dict) else getattr(value, field)
    if callable(key):
        return key  # type: ignore[no-any-return]
    raise TypeError(f"group_by key must be a function, a field name or a Record field, got {key!r}")


def field_of(key: Any) -> str | None:
    """The field name ``key`` refers to (a str, a Record field reference, an object with a str ``.field``), else
    None."""
    if isinstance(key, str):
        return key
    helper = getattr(_records, "field_name", None)
    if helper is not None:
        try:
            name = helper(key)
        except (TypeError, ValueError):
            name = None
        if isinstance(name, str):
            return name
    field = getattr(key, "field", None)
    return field if isinstance(field, str) else None


def through_topic(app: Any, channel: Any) -> Any:
    """The topic ``stream.through(channel)`` forwards to: a topic, an agent's channel, or a name (declared)."""
    return app.topic(channel) if isinstance(channel, str) else channel_topic(channel)
