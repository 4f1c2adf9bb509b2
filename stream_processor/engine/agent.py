"""Agents (Faust's model) on the processor API: an async function over a stream of one partition's records.

.. code-block:: python

    @app.agent(trades, sink=[enriched])
    async def enrich(stream):
        async for trade in stream:          # one input partition = one transaction owner
            counts[trade.symbol] += 1
            yield {"symbol": trade.symbol, "n": counts[trade.symbol]}

Each task (partition q of the agent's input topics) runs its own instance of the agent function, driven by the
runtime record by record: ``async for`` hands over the next record of that partition, and everything the agent
does until it asks for the next one (``yield`` to the sinks, ``await topic.send(...)``, table writes) belongs to
that record and goes in the partition's transaction, exactly once. The instance is dropped (and restarted from the
last commit) when the task closes, is rolled back or reopened, so an agent must keep its state in tables, not in
local variables that outlive a record (``stream.take`` buffers are the exception the runtime handles: their
records are not committed until the batch is yielded).

What an agent may await: the engine's own awaitables (``topic.send``, which only appends to the transaction), and
real I/O (an HTTP call, ``asyncio.sleep``) as long as one record's processing stays within half of
``kafka.transaction_timeout_ms``; past it the record's transaction is aborted and retried
(:class:`~stream_processor.engine.exceptions.AgentTimeoutError`, counted by the circuit breaker and shown on
``/health``). Real I/O holds the partition (and the worker's other partitions of that agent) while it waits, and
its effect outside Kafka is not exactly once: on a retry it happens again.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import processor as _processor
from .exceptions import RecordError
from .kafka_internals import release_future
from .processor import Processor, ProcessorContext, PunctuationType, encode_value
from .state import StoreSpec

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .app import App
    from .topic import Topic

_EMPTY = object()
_WANT = object()  # yielded up to the driver: the agent asks for its next record
_TICK = object()  # delivered to a waiting stream.take(): a wall-clock moment passed


class _AgentClosed(BaseException):  # noqa: N818 - a signal
    """Ends an agent instance where it waits (GeneratorExit thrown there leaves a nested async generator, such as
    ``stream.filter``, marked as running, and the loop's finalizer then fails to close it)."""


class Stream:
    """An agent's input: the records of one partition (task), in offset order; iterate with ``async for``.

    ``stream.current_event`` is the :class:`~stream_processor.engine.processor.ProcessorContext` of the record
    being processed (its ``topic``, ``partition``, ``offset``, ``timestamp``, ``key``, ``headers``);
    ``stream.params`` the agent's validated ``params`` from the YAML.
    """

    def __init__(self, driver: AgentDriver | None, ctx: ProcessorContext | None, params: Any = None) -> None:
        self._driver = driver
        self._pending: Any = _EMPTY
        self._ticks = False  # a take() with ``within`` is waiting: deliver ticks
        self.current_event = ctx
        self.params = params
        self.group_by_calls: list[tuple[Any, str | None]] = []

    def __aiter__(self) -> Stream:
        return self

    def __anext__(self) -> Any:
        return self._next()

    @types.coroutine
    def _next(self) -> Any:
        while True:
            while self._pending is _EMPTY:
                yield _WANT
            value, self._pending = self._pending, _EMPTY
            if value is not _TICK:
                return value

    @types.coroutine
    def _next_or_tick(self) -> Any:
        self._ticks = True
        try:
            while self._pending is _EMPTY:
                yield _WANT
        finally:
            self._ticks = False
        value, self._pending = self._pending, _EMPTY
        return value

    async def items(self) -> AsyncIterator[tuple[Any, Any]]:
        """``(key, value)`` pairs, None without a key. The key is as its topic's ``key_type`` says: ``bytes`` raw (as
        Faust gives it by default), otherwise str (UTF-8; bytes when not UTF-8)."""
        async for value in self:
            ctx = self.current_event
            key = ctx.key if ctx is not None else None
            yield (key if key is None or self._key_type(ctx) is bytes else _key_text(key)), value

    def _key_type(self, ctx: ProcessorContext | None) -> Any:
        if self._driver is None or ctx is None or ctx.topic is None:
            return None
        topic = self._driver.agent.app.topics.get(ctx.topic)
        return topic.key_type if topic is not None else None

    async def events(self) -> AsyncIterator[Any]:
        """The values with their context: ``(ctx, value)`` pairs (Faust's events, as the context's view)."""
        async for value in self:
            yield self.current_event, value

    async def filter(self, predicate: Callable[[Any], bool]) -> AsyncIterator[Any]:
        """The values for which ``predicate(value)`` is true."""
        async for value in self:
            if predicate(value):
                yield value

    async def map(self, fn: Callable[[Any], Any]) -> AsyncIterator[Any]:
        """``fn(value)`` of every value."""
        async for value in self:
            yield fn(value)

    async def take(self, max_: int, within: float) -> AsyncIterator[list[Any]]:
        """Lists of up to ``max_`` values, a shorter one once ``within`` seconds passed since its first value.

        A batch's records are committed only after it is yielded (and what the agent does with it is in the
        transaction): a crash while it fills re-reads them. The ``within`` deadline is checked on each record and
        every 100 ms (at the commit cadence), so a partition that goes quiet still gets its last batch.
        """
        if max_ < 1 or within <= 0:
            raise ValueError(f"take needs max_ >= 1 and within > 0, got {max_}, {within}")
        ctx = self.current_event
        buffer: list[Any] = []
        deadline = 0.0
        if ctx is not None and self._driver is not None:
            self._driver.want_ticks(int(min(within, 0.1) * 1000))
        while True:
            value = await self._next_or_tick()
            now = _processor.wall_clock_ms() / 1000
            if value is not _TICK:
                if not buffer:
                    deadline = now + within
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
        ``key(value)`` (a function, or an attribute/field name), to ``<app_id>-<agent>-<name>-repartition`` in its
        input record's transaction, and the agent's body processes it from there, on the partition of its new key
        (so its tables are partitioned by it). Must be called before the first record (``async for v in
        stream.group_by(...)``), once per agent.
        """
        self.group_by_calls.append((key, name))
        if self._driver is None:
            return self  # the registration probe: it only records the call
        return self._driver.group_by(self, key)


def _key_text(key: bytes | None) -> Any:
    if key is None:
        return None
    try:
        return key.decode()
    except UnicodeDecodeError:
        return key


class _Repartition:
    """What ``stream.group_by`` gives the first stage of a re-keyed agent: it forwards every record to the
    repartition topic and never returns one to the body."""

    def __init__(self, stream: Stream, key: Callable[[Any], Any], topic: str, ctx: ProcessorContext) -> None:
        self.stream, self.key, self.topic, self.ctx = stream, key, topic, ctx

    def __aiter__(self) -> _Repartition:
        return self

    async def __anext__(self) -> Any:
        while True:
            value = await self.stream._next()  # noqa: SLF001
            self.ctx.send(self.topic, encode_value(value), self.key(value))


def key_function(key: Callable[[Any], Any] | str) -> Callable[[Any], Any]:
    """A function of a value from ``group_by``'s ``key``: a callable as it is, a name as an attribute or field."""
    if callable(key):
        return key
    if isinstance(key, str):
        return lambda value: value[key] if isinstance(value, dict) else getattr(value, key)
    raise TypeError(f"group_by key must be a function or a field name, got {key!r}")


class AgentDriver:
    """Runs one task's instance of an agent function, synchronously while it only waits for records."""

    def __init__(self, agent: Agent, processor: AgentProcessor, ctx: ProcessorContext) -> None:
        self.agent = agent
        self.processor = processor
        self.ctx = ctx
        self.current: Any = None
        self.stream = Stream(self, ctx, processor.params)
        self._tick_punctuator: Any = None
        self.stopped = False
        self._start()

    def _start(self) -> None:
        """A new instance of the agent function (App.agent made sure it is an async def)."""
        gen = self.agent.fun(self.stream)
        self.is_gen = inspect.isasyncgen(gen)
        self.gen = gen
        self.step: Any = gen.__anext__() if self.is_gen else gen
        self.stream._pending = _EMPTY  # noqa: SLF001

    def _failed(self, exc: BaseException) -> BaseException:
        """The agent raised ``exc`` (its instance is over): start a new one for the next record, and say what the
        runtime must do. A RecordError while a take() batch is buffered becomes a processing error, so the
        transaction is rolled back and the buffered records are read again instead of skipped."""
        held = bool(self.ctx.held)
        self.ctx.held.clear()
        self._start()  # the old instance raised: it is finished
        if held and isinstance(exc, RecordError):
            return RuntimeError(f"agent {self.agent.name} refused a record while a take() batch was buffered: {exc}")
        return exc

    def group_by(self, stream: Stream, key: Any) -> Any:
        if self.processor.stage == "repartition":
            return _Repartition(stream, key_function(key), self.agent.repartition_topic, self.ctx)
        return stream  # the body stage reads the repartition topic: records are already keyed

    def want_ticks(self, interval_ms: int) -> None:
        if self._tick_punctuator is None:
            self._tick_punctuator = self.ctx.schedule(interval_ms, PunctuationType.WALL_CLOCK, self._tick)

    def _tick(self, now_ms: int) -> None:
        if self.stream._ticks and not self.stopped:  # noqa: SLF001
            self.stream._pending = _TICK  # noqa: SLF001
            pending = self._run()
            if pending is not None:
                pending.close()
                raise RuntimeError(f"agent {self.agent.name} awaited I/O while handling a take() deadline")

    def deliver(self, value: Any) -> Any:
        """Hand ``value`` to the agent and run it until it asks for the next record; None, or an awaitable to
        finish (the agent awaits real I/O). Raises whatever the agent raised."""
        if self.stopped:
            return None
        self.current = value
        self.stream._pending = value  # noqa: SLF001
        return self._run()

    def _advance(self) -> Any:
        """Run the instance until it asks for its next record or ends (:data:`_WANT`), or awaits something else (that
        is returned); what it yields meanwhile goes to the sinks. Raises what it raised (see :meth:`_failed`)."""
        while True:
            try:
                return self.step.send(None)
            except StopIteration as stop:
                if not self.is_gen:
                    self._stopped()
                    return _WANT
                self._emit(stop.value)
                self.step = self.gen.__anext__()
            except StopAsyncIteration:
                self._stopped()
                return _WANT
            except Exception as exc:
                raise self._failed(exc)  # noqa: B904 - the same exception, or one that carries it

    def _run(self) -> Any:
        signal = self._advance()
        return None if signal is _WANT else self._wait(signal)

    async def _wait(self, signal: Any) -> None:
        """The agent awaits ``signal`` (an asyncio future, or None for a bare yield): wait, then go on."""
        while signal is not _WANT:
            if signal is None:
                await asyncio.sleep(0)
            else:
                release_future(signal)  # we are the task awaiting it
                try:
                    await signal
                except asyncio.CancelledError:
                    if not signal.done():
                        raise  # we are cancelled (the record's time is up), not the future
                except Exception:  # noqa: BLE001, S110 - the agent sees the outcome when it resumes
                    pass
            signal = self._advance()

    def _stopped(self) -> None:
        self.stopped = True
        log.warning("agent %s returned: partition %s of its input is no longer processed by it until the task "
                    "reopens", self.agent.name, self.ctx.task)

    def _emit(self, value: Any) -> None:
        ctx = self.ctx
        key = ctx.key
        for sink in self.processor.sinks:
            if hasattr(sink, "encode_value"):
                ctx.send(sink.name, sink.encode_value(value), key)
            else:
                sink(value)

    def close(self) -> None:
        """Stop the agent's instance where it waits."""
        _end_instance(self.gen, self.step)


def _end_instance(gen: Any, step: Any) -> None:
    """End an agent instance (``gen``, the function's async generator or coroutine) suspended in ``step`` (its
    in-flight ``__anext__``, or the coroutine itself): :class:`_AgentClosed` thrown where it waits runs its
    ``finally`` blocks, then the generator is closed."""
    try:
        step.throw(_AgentClosed())
    except (StopIteration, StopAsyncIteration, GeneratorExit, RuntimeError, _AgentClosed):
        pass
    if inspect.isasyncgen(gen):
        try:
            gen.aclose().send(None)
        except (StopIteration, StopAsyncIteration, GeneratorExit, RuntimeError):
            pass


class Agent:
    """A registered agent (see :meth:`App.agent`); calling it calls the function."""

    def __init__(self, app: App, fun: Callable[..., Any], topics: list[Topic], name: str, sinks: list[Any],
                 tables: list[Any] | None, params: type[BaseModel] | None) -> None:
        self.app = app
        self.fun = fun
        self.topics = topics
        self.name = name
        self.sinks = sinks
        self.declared_tables = tables
        self.params_model = params
        self.group_by: tuple[Any, str] | None = None
        self.__doc__ = fun.__doc__
        self.__wrapped__ = fun

    def __repr__(self) -> str:
        return f"<Agent {self.name}: {[t.name for t in self.topics]}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fun(*args, **kwargs)

    @property
    def repartition_topic(self) -> str:
        assert self.group_by is not None
        return f"{self.app.id}-{self.name}-{self.group_by[1]}-repartition"

    def probe(self) -> None:
        """Start the function on a recording stream until it asks for its first record: learns ``group_by``."""
        params = self.params_model.model_construct() if self.params_model is not None else None
        stream = Stream(None, None, params)
        gen = self.fun(stream)
        step = gen.__anext__() if inspect.isasyncgen(gen) else gen
        try:
            step.send(None)
        except (StopIteration, StopAsyncIteration):
            pass
        finally:
            _end_instance(gen, step)
        if len(stream.group_by_calls) > 1:
            raise ValueError(f"agent {self.name}: group_by is called {len(stream.group_by_calls)} times; once only")
        if stream.group_by_calls:
            key, name = stream.group_by_calls[0]
            if name is None:
                name = key if isinstance(key, str) else getattr(key, "__name__", None)
                if not name or name == "<lambda>":
                    raise ValueError(f"agent {self.name}: group_by with a lambda needs name=...")
            self.group_by = (key, name)

    def tables(self) -> list[Any]:
        """The tables this agent uses: declared, else found in its code (globals and closures it names)."""
        if self.declared_tables is not None:
            return list(self.declared_tables)
        from .table import Table, WindowedTable

        found: dict[str, Any] = {}
        for obj in _referenced(self.fun):
            if isinstance(obj, Table | WindowedTable):
                found.setdefault(obj.name, obj)
        return list(found.values())


def _referenced(fun: Callable[..., Any]) -> Iterable[Any]:
    """Objects a function's code names: its globals and closure cells, in nested code too."""
    code = fun.__code__
    names: set[str] = set()
    stack = [code]
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        names.update(c.co_freevars)
        stack.extend(const for const in c.co_consts if isinstance(const, types.CodeType))
    g = fun.__globals__
    for name in names:
        if name in g:
            yield g[name]
    for cell in fun.__closure__ or ():
        try:
            yield cell.cell_contents
        except ValueError:
            continue


class AgentProcessor(Processor):
    """The processor that runs an agent (or one stage of a re-keyed one) on the runtime.

    ``stage``: ``"body"`` (the agent's function on its input, or on its repartition topic) or ``"repartition"``
    (forwards each input record, re-keyed, to the repartition topic).
    """

    def __init__(self, agent: Agent, name: str, settings: Any, stage: str = "body") -> None:
        super().__init__(name, settings)
        self.agent = agent
        self.stage = stage
        params = settings.params
        if agent.params_model is not None and isinstance(params, dict):
            params = agent.params_model.model_validate(params)
        self.params = params
        app = agent.app
        # The YAML may rename the agent's topics (input_topics, output_topics): a topic keeps the serde it was
        # declared with, a renamed one gets that of the agent's first topic.
        inputs = settings.input_topics
        if stage == "body" and agent.group_by is not None:  # the repartition topic holds the input's values
            self._codecs = dict.fromkeys(inputs, agent.topics[0])
        else:  # renamed in the YAML: the serde goes by position (the first topic's if the count differs)
            declared = agent.topics if len(inputs) == len(agent.topics) else agent.topics[:1] * len(inputs)
            self._codecs = {t: app.topics.get(t, d) for t, d in zip(inputs, declared, strict=True)}
        self.sinks: list[Any] = [app.topic(t) for t in settings.output_topics]
        if stage == "body":
            self.sinks += [s for s in agent.sinks if not hasattr(s, "encode_value") and not isinstance(s, Agent)]
        # The decorator's topics the YAML renamed away belong to no one: neither inputs nor outputs of this agent.
        self.renamed = ({t.name for t in agent.topics} - set(settings.input_topics)) | (
            {s.name for s in agent.sinks if hasattr(s, "encode_value")} - set(settings.output_topics))
        if stage == "body" and agent.group_by is not None:
            self.renamed -= {t.name for t in agent.topics}  # the first stage reads them
        self._outputs = sorted({*settings.output_topics,
                                *(t for t in app.topics if t not in self._codecs and t not in self.renamed)})
        self._tables = agent.tables() if stage == "body" else []

    @property
    def output_topics(self) -> list[str]:
        return self._outputs

    def stores(self) -> list[StoreSpec]:
        return [table.spec for table in self._tables]

    def decode(self, value: bytes | None, key: bytes | None, timestamp_ms: int | None, topic: str) -> Any:
        return self._codecs[topic].decode_value(value, key, timestamp_ms)

    def init(self, ctx: ProcessorContext) -> None:
        ctx.agent_state = AgentDriver(self.agent, self, ctx)

    def process(self, record: Any, ctx: ProcessorContext) -> Any:
        return ctx.agent_state.deliver(record)

    def close(self, ctx: ProcessorContext) -> None:
        driver, ctx.agent_state = ctx.agent_state, None
        if driver is not None:
            driver.close()
