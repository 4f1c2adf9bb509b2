"""Agents used as channels, as Faust has them (``faust.agents.agent.Agent.send/cast/ask/map/kvmap/join/kvjoin``).

An agent's channel is its (first) input topic; an agent declared without one reads ``<app id>-<agent name>``
(Faust's ``Agent._prepare_channel``). ``await agent.send(key=, value=)`` writes to that topic:

- inside an agent (the record being processed): in that record's transaction, exactly once;
- anywhere else (a timer, a task, a command, a web view): through the app's idempotent producer, at least once
  (a retry after an unacknowledged send may write it twice).

``ask`` is request-reply, as Faust's: the value goes out wrapped in Faust's ``ReqRepRequest`` envelope
(``{"value": ..., "reply_to": ..., "correlation_id": ..., "__faust": {"ns": "@ReqRepRequest"}}``, the same JSON
Faust writes); the agent processes the unwrapped value and, for each value it yields while handling that record,
sends a ``ReqRepResponse`` (``{"key", "value", "correlation_id"}``) to the reply topic in its own transaction
(exactly once: the reply is visible only when the record's processing commits). The asker waits on a
:class:`ReplyConsumer` of the reply topic (read_committed), matching the correlation id. The reply topic is the
app's ``<app id>-reply`` (declared by every agent that can reply, i.e. that yields) or a ``reply_to`` topic the
app declared: a reply must go to a topic of the app, as every output does. The app declares its reply topic when
created with ``reply_create_topic=True`` (as Faust's docs ask of RPC users); ``ask`` without it raises
RuntimeError.

The request itself always goes out through the app's producer, also from inside an agent: a request sent in the
asker's transaction would only be visible once that record committed, after its ``ask`` returned, so it could
never be answered. From inside an agent, ``ask``/``map``/``join`` are therefore real I/O (see
:mod:`~stream_processor.engine.agent`): at least once (a retried record asks again) and bounded by the agent's
time budget.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

import orjson

from .events import send_in_transaction
from .processor import current_context, encode_value

if TYPE_CHECKING:
    from .app import App
    from .topic import Topic

__all__ = ["REQUEST_NS", "RESPONSE_NS", "AgentChannel", "ReplyConsumer", "app_channel", "close_replies",
           "reply_topic_name", "request_of", "response_value", "wants_replies"]

REQUEST_NS = "@ReqRepRequest"
RESPONSE_NS = "@ReqRepResponse"
_REQUEST_MARK = b'"' + REQUEST_NS.encode() + b'"'
_CONSUMERS: weakref.WeakKeyDictionary[Any, dict[str, ReplyConsumer]] = weakref.WeakKeyDictionary()


def app_channel(app: App, value_type: type | None = None, key_type: type | None = None, *, maxsize: int | None = None,
                **faust: Any) -> Topic:
    """Faust's ``app.channel()`` (an in-memory queue there, lost with the process) as a topic of the app:
    ``<app id>-channel-<n>``, n counting the app's channels in the order the program declares them (the same in
    every worker of one program), one partition (a channel has no partitions: one keeps its order). Agents read it,
    ``send`` writes it and a sink names it as a topic: exactly once inside an agent, at least once elsewhere.
    ``maxsize`` (an in-memory queue's bound) has no effect. Raises TypeError for a keyword Faust's channel does not
    take."""
    del maxsize
    unknown = set(faust) - {"schema", "loop", "active_partitions", "is_iterator"}
    if unknown:
        raise TypeError(f"app.channel() got unexpected keyword arguments {sorted(unknown)}")
    name = f"{app.id}-channel-{app.channels}"
    app.channels += 1
    return app.topic(name, value_type=value_type, key_type=key_type, partitions=1)


def reply_topic_name(app: Any) -> str:
    """The app's reply topic: Faust's ``reply_to`` setting when given, else ``<app id>-reply`` (Faust's default, a
    new ``f-reply-<uuid>`` per process, cannot be declared ahead as every output topic must be here)."""
    given = getattr(getattr(app, "conf", None), "reply_to", None)
    return given if isinstance(given, str) and given else f"{app.id}-reply"


def wants_replies(app: Any) -> bool:
    """True if the app declares its reply topic: ``App(..., reply_create_topic=True)``, the setting Faust's docs
    ask RPC users to set."""
    return bool(getattr(getattr(app, "conf", None), "reply_create_topic", None))


def request_of(value: bytes | None, value_type: Any) -> tuple[bytes | None, str, str] | None:
    """``(inner value bytes, reply_to, correlation_id)`` of a ``ReqRepRequest`` envelope, else None. The inner value
    is re-encoded for its topic's ``value_type``: text as UTF-8 for ``str``/``bytes`` topics, JSON otherwise."""
    if value is None or _REQUEST_MARK not in value:
        return None
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or (doc.get("__faust") or {}).get("ns") != REQUEST_NS:
        return None
    inner = doc.get("value")
    if isinstance(inner, str) and value_type in (str, bytes):
        data: bytes | None = inner.encode()
    else:
        data = None if inner is None else orjson.dumps(inner)
    return data, str(doc.get("reply_to")), str(doc.get("correlation_id"))


def response_value(key: Any, value: Any, correlation_id: str) -> dict[str, Any]:
    """Faust's ``ReqRepResponse`` of ``value`` (``key``: the request's key, bytes given as text when UTF-8)."""
    if isinstance(key, bytes):
        try:
            key = key.decode()
        except UnicodeDecodeError:
            key = None
    return {"key": key, "value": value, "correlation_id": correlation_id, "__faust": {"ns": RESPONSE_NS}}


def _headers(headers: Any) -> list[tuple[str, bytes]] | None:
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, dict) else headers
    return [(str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in pairs]


class ReplyConsumer:
    """Replies of one reply topic, by correlation id (as Faust's ``ReplyConsumer``): :meth:`add` a correlation id,
    then await the future it gives; a reply nobody waits for is dropped.

    ``fetch``: an async function giving the next reply values (bytes); default: a read_committed aiokafka consumer
    of every partition of the topic, from its end when started (the test driver passes its own).
    """

    def __init__(self, app: Any, topic: str, fetch: Any = None) -> None:
        self.app, self.topic = app, topic
        self.waiting: dict[str, asyncio.Future[Any]] = {}
        self._fetch = fetch
        self._consumer: Any = None
        self._task: asyncio.Task[None] | None = None

    def add(self, correlation_id: str) -> asyncio.Future[Any]:
        """A future that gets the value of the reply with ``correlation_id``."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[correlation_id] = future
        return future

    def deliver(self, raw: bytes | None) -> None:
        """Resolve the waiting future of one reply record (others' replies and malformed records are ignored)."""
        try:
            doc = orjson.loads(raw or b"null")
        except orjson.JSONDecodeError:
            return
        if isinstance(doc, dict):
            future = self.waiting.pop(str(doc.get("correlation_id")), None)
            if future is not None and not future.done():
                future.set_result(doc.get("value"))

    async def start(self) -> None:
        """Start reading the reply topic (once; positioned at its end before returning)."""
        if self._task is not None:
            return
        if self._fetch is None:
            self._fetch = await self._kafka_fetch()
        self._task = asyncio.create_task(self._run(), name=f"replies-{self.topic}")

    async def _kafka_fetch(self) -> Any:
        from aiokafka import AIOKafkaConsumer

        from .security import client_options

        consumer = AIOKafkaConsumer(**client_options(self.app.settings.kafka), group_id=None,
                                    enable_auto_commit=False, isolation_level="read_committed")
        await consumer.start()
        self._consumer = consumer
        consumer.subscribe([self.topic])  # no group: every partition, assigned on the first fetches
        deadline = asyncio.get_running_loop().time() + 30
        while not consumer.assignment():
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"reply topic {self.topic!r} has no partitions after 30 s: is a worker of the app "
                                   "running (it creates the topic)?")
            await consumer.getmany(timeout_ms=100)  # earlier replies: no one waits for them
        tps = sorted(consumer.assignment())
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)

        async def fetch() -> list[bytes | None]:
            batches = await consumer.getmany(timeout_ms=200)
            return [r.value for records in batches.values() for r in records]

        return fetch

    async def _run(self) -> None:
        while True:
            for raw in await self._fetch():
                self.deliver(raw)
            await asyncio.sleep(0)

    async def stop(self) -> None:
        """Stop reading; waiting futures are cancelled."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
        for future in self.waiting.values():
            future.cancel()
        self.waiting.clear()


def replies(app: Any, topic: str, fetch: Any = None) -> ReplyConsumer:
    """The app's :class:`ReplyConsumer` of ``topic`` (made once; ``fetch`` as its constructor takes)."""
    per_app = _CONSUMERS.setdefault(app, {})
    consumer = per_app.get(topic)
    if consumer is None:
        consumer = per_app[topic] = ReplyConsumer(app, topic, fetch)
    return consumer


async def close_replies(app: Any) -> None:
    """Stop every reply consumer of ``app`` (call when the app closes)."""
    for consumer in list(_CONSUMERS.pop(app, {}).values()):
        await consumer.stop()


async def _items(items: AsyncIterable[tuple[Any, Any]] | Iterable[tuple[Any, Any]]) -> AsyncIterator[tuple[Any, Any]]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item


class AgentChannel:
    """The channel side of an :class:`~stream_processor.engine.agent.Agent` (see the module docstring)."""

    app: Any
    topics: list[Any]
    name: str

    @property
    def channel(self) -> Any:
        """The topic this agent reads (its first input)."""
        return self.topics[0]

    def _reply_topic(self, reply_to: Any) -> str:
        if reply_to is None:
            return reply_topic_name(self.app)
        if isinstance(reply_to, str):
            return reply_to
        if isinstance(reply_to, AgentChannel):
            return str(reply_to.channel.name)
        return str(reply_to.name)

    async def send(self, *, key: Any = None, value: Any = None, partition: int | None = None,
                   timestamp: float | None = None, headers: Any = None, reply_to: Any = None,
                   correlation_id: str | None = None) -> None:
        """Send ``value`` to this agent (its channel topic), as ``faust.Agent.send``: inside an agent in the
        transaction of the record being processed (exactly once), elsewhere through the app's producer (at least
        once). ``timestamp``: seconds since the epoch (Faust's unit; only inside an agent). ``reply_to``: wrap the
        value in a request, so the agent replies there (see :meth:`ask`).

        Raises ValueError: ``timestamp`` outside an agent (the app's producer sets its own)."""
        if reply_to is not None:
            value = self._request(value, self._reply_topic(reply_to), correlation_id or str(uuid.uuid4()))
        if current_context.get() is not None:
            send_in_transaction(self.channel, key, value, _headers(headers), partition, timestamp, raw=False)
            return
        if timestamp is not None:
            raise ValueError(f"agent {self.name}: send(timestamp=...) is only supported inside an agent")
        await self._send_outside(key, value, headers, partition)

    async def _send_outside(self, key: Any, value: Any, headers: Any, partition: int | None) -> None:
        topic = self.channel
        await self.app.send_outside(topic.name, topic.encode_key(key), topic.encode_value(value), _headers(headers),
                                    partition)

    @staticmethod
    def _request(value: Any, reply_to: str, correlation_id: str) -> dict[str, Any]:
        return {"value": value, "reply_to": reply_to, "correlation_id": correlation_id,
                "__faust": {"ns": REQUEST_NS}}

    async def cast(self, value: Any = None, *, key: Any = None, partition: int | None = None,
                   timestamp: float | None = None, headers: Any = None) -> None:
        """Send without waiting for a reply (``faust.Agent.cast``): :meth:`send`, with its guarantee."""
        await self.send(key=key, value=value, partition=partition, timestamp=timestamp, headers=headers)

    async def ask_nowait(self, value: Any = None, *, key: Any = None, partition: int | None = None,
                         headers: Any = None, reply_to: Any = None,
                         correlation_id: str | None = None) -> asyncio.Future[Any]:
        """Send a request and give the future of its reply's value (``faust.Agent.ask_nowait``; see the module
        docstring: the request goes through the app's producer, at least once)."""
        topic = self._reply_topic(reply_to)
        if topic not in self.app.topics:
            raise RuntimeError(f"agent {self.name}: ask needs its reply topic {topic!r} declared: create the app with "
                               "reply_create_topic=True (as Faust's RPC needs), or pass reply_to=<a topic of the app>")
        consumer = replies(self.app, topic)
        await consumer.start()
        cid = correlation_id or str(uuid.uuid4())
        future = consumer.add(cid)
        await self._send_outside(key, self._request(value, topic, cid), headers, partition)
        return future

    async def ask(self, value: Any = None, *, key: Any = None, partition: int | None = None, headers: Any = None,
                  reply_to: Any = None, correlation_id: str | None = None) -> Any:
        """Send ``value`` to this agent and return the value it yields for it (``faust.Agent.ask``): request-reply
        through the reply topic, waiting as long as it takes (as Faust). The agent must yield to reply."""
        return await (await self.ask_nowait(value, key=key, partition=partition, headers=headers, reply_to=reply_to,
                                            correlation_id=correlation_id))

    async def kvmap(self, items: AsyncIterable[tuple[Any, Any]] | Iterable[tuple[Any, Any]],
                    reply_to: Any = None) -> AsyncIterator[Any]:
        """Ask for every ``(key, value)`` and give the replies as they arrive (``faust.Agent.kvmap``)."""
        futures = [await self.ask_nowait(value, key=key, reply_to=reply_to) async for key, value in _items(items)]
        for future in asyncio.as_completed(futures):
            yield await future

    async def map(self, values: AsyncIterable[Any] | Iterable[Any], key: Any = None,
                  reply_to: Any = None) -> AsyncIterator[Any]:
        """Ask for every value (all with ``key``) and give the replies as they arrive (``faust.Agent.map``)."""
        async for reply in self.kvmap(_keyed(values, key), reply_to):
            yield reply

    async def kvjoin(self, items: AsyncIterable[tuple[Any, Any]] | Iterable[tuple[Any, Any]],
                     reply_to: Any = None) -> list[Any]:
        """Ask for every ``(key, value)``; the replies in the order asked (``faust.Agent.kvjoin``)."""
        futures = [await self.ask_nowait(value, key=key, reply_to=reply_to) async for key, value in _items(items)]
        return list(await asyncio.gather(*futures))

    async def join(self, values: AsyncIterable[Any] | Iterable[Any], key: Any = None,
                   reply_to: Any = None) -> list[Any]:
        """Ask for every value (all with ``key``); the replies in the order asked (``faust.Agent.join``)."""
        return await self.kvjoin(_keyed(values, key), reply_to)


async def _keyed(values: AsyncIterable[Any] | Iterable[Any], key: Any) -> AsyncIterator[tuple[Any, Any]]:
    if isinstance(values, AsyncIterable):
        async for value in values:
            yield key, value
    else:
        for value in values:
            yield key, value


def encode_response(key: Any, value: Any, correlation_id: str) -> bytes | None:
    """The bytes of the reply to a request (see :func:`response_value`)."""
    return encode_value(response_value(key, value, correlation_id))
