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
import functools
import inspect
import logging
import re
import sys
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .agent_test import AgentTestWrapper
from .channels import AgentChannel, encode_response, reply_topic_name, request_of, wants_replies
from .durations import to_ms
from .exceptions import RecordError
from .kafka_internals import release_future
from .processor import Processor, ProcessorContext, PunctuationType
from .state import StoreSpec
from .stream import EMPTY, TICK, WANT, Repartition, Stream, field_of, key_function, through_topic
from .window_set import close_stale, wall_clock_expiring

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .app import App
    from .topic import Topic

__all__ = ["Agent", "AgentDriver", "AgentProcessor", "Stream"]

class _AgentClosed(BaseException):  # noqa: N818 - a signal
    """Ends an agent instance where it waits (GeneratorExit thrown there leaves a nested async generator, such as
    ``stream.filter``, marked as running, and the loop's finalizer then fails to close it)."""


_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_SINKS = object()  # an async sink awaits: finish it before the agent goes on


class AgentDriver:
    """Runs one task's instance of an agent function, synchronously while it only waits for records."""

    def __init__(self, agent: Agent, processor: AgentProcessor, ctx: ProcessorContext) -> None:
        self.agent = agent
        self.processor = processor
        self.ctx = ctx
        self.current: Any = None
        self.request: tuple[str, str] | None = None  # (reply_to, correlation_id) of the record being processed
        self.stream = Stream(self, ctx, processor.params)
        self._sink_waits: list[tuple[Any, Any]] = []  # async sinks suspended: (coroutine, what it awaits)
        self._tick_punctuator: Any = None
        self.stopped = False
        self._start()

    def _start(self) -> None:
        """A new instance of the agent function (App.agent made sure it is an async def)."""
        gen = self.agent.fun(self.stream)
        self.is_gen = inspect.isasyncgen(gen)
        self.gen = gen
        self.step: Any = gen.__anext__() if self.is_gen else gen
        self.stream._pending = EMPTY  # noqa: SLF001

    def _failed(self, exc: BaseException) -> BaseException:
        """The agent raised ``exc`` (its instance is over): start a new one for the next record, and say what the
        runtime must do. A RecordError while a take() batch is buffered becomes a processing error, so the
        transaction is rolled back and the buffered records are read again instead of skipped."""
        for wrapper in self.agent.test_wrappers:  # agent.test_context(): put() raises it, as Faust's
            wrapper.on_crash(exc)
        held = bool(self.ctx.held)
        self.ctx.held.clear()
        self._start()  # the old instance raised: it is finished
        if held and isinstance(exc, RecordError):
            return RuntimeError(f"agent {self.agent.name} refused a record while a take() batch was buffered: {exc}")
        return exc

    def group_by(self, stream: Stream, key: Any) -> Any:
        if self.processor.stage == "repartition":
            return Repartition(stream, key_function(key), self.agent.repartition_topic, self.ctx,
                               self._second_stage_encode())
        stream._processors = []  # noqa: SLF001 - those added before belong to the first stage
        return stream  # the body stage reads the repartition topic: records are already keyed

    def _second_stage_encode(self) -> Any:
        """How a value is written for the second stage, which decodes with the through topic's or the input's codec."""
        return (self.agent.through or self.agent.topics[0]).encode_value

    def through(self, stream: Stream) -> Any:
        if self.processor.stage == "repartition":
            return Repartition(stream, None, self.agent.repartition_topic, self.ctx, self._second_stage_encode())
        stream._processors = []  # noqa: SLF001 - those added before ran before the forward
        return stream

    def want_ticks(self, interval_ms: int) -> None:
        if self._tick_punctuator is None:
            self._tick_punctuator = self.ctx.schedule(interval_ms, PunctuationType.WALL_CLOCK, self._tick)

    def _tick(self, now_ms: int) -> None:
        if self.stream._ticks and not self.stopped:  # noqa: SLF001
            self.stream._pending = TICK  # noqa: SLF001
            pending = self._run()
            if pending is not None:
                pending.close()
                raise RuntimeError(f"agent {self.agent.name} awaited I/O while handling a take() deadline")

    def deliver(self, value: Any, raw: bytes | None = None, request: tuple[str, str] | None = None) -> Any:
        """Hand ``value`` (decoded from ``raw``; ``request``: the ``(reply_to, correlation_id)`` of an ``ask``) to the
        agent and run it until it asks for the next record; None, or an awaitable to finish (the agent awaits real
        I/O). Raises whatever the agent raised."""
        if self.stopped:
            return None
        ctx = self.ctx
        self.current, self.request = value, request
        self.stream.set_record((ctx.topic, ctx.partition, ctx.offset, ctx.timestamp, ctx.key, ctx.headers, raw, value))
        self.stream._pending = value  # noqa: SLF001
        if self.agent.test_wrappers and not self.is_gen:  # test_context's results of an agent that does not yield
            for wrapper in self.agent.test_wrappers:
                wrapper.on_value(value)
        return self._run()

    def _advance(self) -> Any:
        """Run the instance until it asks for its next record or ends (:data:`WANT`), or awaits something else (that
        is returned; :data:`_SINKS`: an async sink awaits); what it yields meanwhile goes to the sinks. Raises what it
        raised (see :meth:`_failed`)."""
        while True:
            try:
                return self.step.send(None)
            except StopIteration as stop:
                if not self.is_gen:
                    self._stopped()
                    return WANT
                self.step = self.gen.__anext__()
                self._emit(stop.value)
                if self._sink_waits:
                    return _SINKS
            except StopAsyncIteration:
                self._stopped()
                return WANT
            except Exception as exc:
                raise self._failed(exc)  # noqa: B904 - the same exception, or one that carries it

    def _run(self) -> Any:
        signal = self._advance()
        return None if signal is WANT else self._wait(signal)

    async def _wait(self, signal: Any) -> None:
        """The agent awaits ``signal`` (an asyncio future, or None for a bare yield): wait, then go on."""
        while signal is not WANT:
            if signal is _SINKS:
                while self._sink_waits:
                    coro, awaited = self._sink_waits.pop(0)
                    await _finish(coro, awaited)
            else:
                await _settle(signal)
            signal = self._advance()

    def _stopped(self) -> None:
        self.stopped = True
        log.warning("agent %s returned: partition %s of its input is no longer processed by it until the task "
                    "reopens", self.agent.name, self.ctx.task)

    def _emit(self, value: Any) -> None:
        """Send a yielded value to every sink (topics and agents: in the transaction, keyed like the input record;
        functions: called, async ones awaited before the agent goes on) and, for an ``ask``, reply."""
        ctx = self.ctx
        key = ctx.key
        for wrapper in self.agent.test_wrappers:
            wrapper.on_value(value)
        if self.request is not None:
            reply_to, correlation_id = self.request
            event = self.stream.current_event
            ctx.send(reply_to, encode_response(event.key if event is not None else key, value, correlation_id))
        for sink in self.processor.sinks:
            if hasattr(sink, "encode_value"):
                ctx.send(sink.name, sink.encode_value(value), key)
                continue
            result = sink(value)
            if inspect.isawaitable(result):
                coro = result.__await__()
                try:
                    awaited = coro.send(None)
                except StopIteration:
                    continue  # it did not suspend: done
                self._sink_waits.append((coro, awaited))

    def close(self) -> None:
        """Stop the agent's instance where it waits."""
        _end_instance(self.gen, self.step)


async def _settle(signal: Any) -> None:
    """Wait for what a coroutine driven by hand yielded (an asyncio future, or None for a bare yield)."""
    if signal is None:
        await asyncio.sleep(0)
        return
    release_future(signal)  # we are the task awaiting it
    try:
        await signal
    except asyncio.CancelledError:
        if not signal.done():
            raise  # we are cancelled (the record's time is up), not the future
    except Exception:  # noqa: BLE001, S110 - the coroutine sees the outcome when it resumes
        pass


async def _finish(coro: Any, awaited: Any) -> None:
    """Run an async sink's coroutine (its ``__await__`` iterator, suspended on ``awaited``) to its end. Raises what
    it raised."""
    while True:
        await _settle(awaited)
        try:
            awaited = coro.send(None)
        except StopIteration:
            return


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


class Agent(AgentChannel):
    """A registered agent (see :meth:`App.agent`); calling it calls the function. It is also a channel (see
    :mod:`~stream_processor.engine.channels`: ``send``, ``cast``, ``ask``, ``map``, ``join``, ``kvmap``).

    ``topics`` None: the agent reads its own topic, ``<app id>-<module>.<qualname>`` as Faust's
    ``Agent._prepare_channel`` names it (``<app id>-<name>`` when ``name`` is not the function's ``__name__``),
    declared with ``key_type``/``value_type``. ``sinks``: topics, agents, functions or async functions.

    Raises TypeError: a sink is none of those.
    """

    def __init__(self, app: App, fun: Callable[..., Any], topics: list[Topic] | None, name: str, sinks: list[Any],
                 tables: list[Any] | None, params: type[BaseModel] | None, *, key_type: type | None = None,
                 value_type: type | None = None) -> None:
        for sink in sinks:
            if not (hasattr(sink, "encode_value") or callable(sink)):
                raise TypeError(f"agent {name}: sink {sink!r} is not a topic, an agent or a function")
        self.app = app
        self.fun = fun
        self.name = name
        if topics is None:
            topics = [app.topic(f"{app.id}-{_faust_name(fun) if name == getattr(fun, '__name__', None) else name}",
                                value_type=value_type, key_type=key_type)]
        self.topics = topics
        self.sinks = sinks
        self.declared_tables = tables
        self.params_model = params
        self.group_by: tuple[Any, str] | None = None
        self.through: Topic | None = None  # stream.through's topic: the second stage reads it
        self.__doc__ = fun.__doc__
        self.__wrapped__ = fun
        self.test_wrappers: list[AgentTestWrapper] = []  # open test_context()s: told what it yields and raises
        if wants_replies(app):  # it may answer ask(): its replies go to the app's reply topic
            app.topic(reply_topic_name(app))

    def __repr__(self) -> str:
        return f"<Agent {self.name}: {[t.name for t in self.topics]}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fun(*args, **kwargs)

    def test_context(self, **faust: Any) -> AgentTestWrapper:
        """Faust's ``agent.test_context()``: ``async with`` it, ``await wrapper.put(value)``, read
        ``wrapper.results`` (see :mod:`~stream_processor.engine.agent_test`)."""
        return AgentTestWrapper(self, **faust)

    @property
    def repartition_topic(self) -> str:
        """The topic between the two stages: ``stream.through``'s, or ``<app_id>-<agent>-<name>-repartition``."""
        if self.through is not None:
            return self.through.name
        assert self.group_by is not None
        return f"{self.app.id}-{self.name}-{self.group_by[1]}-repartition"

    def probe(self) -> None:
        """Start the function on a recording stream until it asks for its first record: learns ``group_by`` and
        ``through``. Raises ValueError: called more than once, both, or group_by with an unnamed lambda."""
        params = self.params_model.model_construct() if self.params_model is not None else None
        stream = Stream(None, None, params, app=self.app)
        gen = self.fun(stream)
        step = gen.__anext__() if inspect.isasyncgen(gen) else gen
        try:
            step.send(None)
        except (StopIteration, StopAsyncIteration):
            pass
        finally:
            _end_instance(gen, step)
        calls = len(stream.group_by_calls) + len(stream.through_calls)
        if calls > 1:
            raise ValueError(f"agent {self.name}: group_by/through is called {calls} times; once only")
        if stream.through_calls:
            self.through = through_topic(self.app, stream.through_calls[0])
            self.group_by = (None, self.through.name)
        if stream.group_by_calls:
            key, name = stream.group_by_calls[0]
            if name is None:
                name = field_of(key) or getattr(key, "__name__", None)
                if not name or name == "<lambda>":
                    raise ValueError(f"agent {self.name}: group_by with a lambda needs name=...")
            self.group_by = (key, name)

    def tables(self) -> list[Any]:
        """The tables this agent uses: declared, else found in its code (globals and closures it names)."""
        from .table import Table, WindowedTable

        found: dict[str, Any] = {}
        objs = self.declared_tables if self.declared_tables is not None else _referenced(self.fun)
        for obj in objs:
            if isinstance(obj, Table | WindowedTable):
                found.setdefault(obj.name, obj)
                index = getattr(getattr(obj, "table", obj), "key_index_table", None)  # key_index=True: its index too
                if index is not None:
                    found.setdefault(index.name, index)
        return list(found.values())


def _faust_name(fun: Callable[..., Any]) -> str:
    """``module.qualname`` of ``fun``, ``__main__`` as the script's name (as mode's ``canonshortname``); characters
    Kafka refuses in a topic name (a nested function's ``<locals>``) as ``_`` (Faust's worker could not create that
    topic at all)."""
    module = fun.__module__
    if module == "__main__":
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
        module = Path(main_file).stem if main_file else module
    return _TOPIC_UNSAFE.sub("_", f"{module}.{fun.__qualname__}")


def _referenced(fun: Callable[..., Any]) -> Iterable[Any]:
    """Objects a function's code names: its globals and closure cells, in nested code too; for a
    ``functools.partial``, also the arguments it binds."""
    while isinstance(fun, functools.partial):
        yield from fun.args
        yield from fun.keywords.values()
        fun = fun.func
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
            self._codecs = dict.fromkeys(inputs, agent.through or agent.topics[0])
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
        self._raw: bytes | None = None  # the record being decoded and processed: its value bytes
        self._request: tuple[str, str] | None = None  # and its ask's (reply_to, correlation_id)

    @property
    def output_topics(self) -> list[str]:
        return self._outputs

    def stores(self) -> list[StoreSpec]:
        return [table.spec for table in self._tables]

    def decode(self, value: bytes | None, key: bytes | None, timestamp_ms: int | None, topic: str) -> Any:
        """The value as its topic declares; a Faust ``ReqRepRequest`` envelope (an ``ask``) is unwrapped first and
        its reply address kept for :meth:`process`."""
        codec = self._codecs[topic]
        request = request_of(value, codec.value_type)
        self._request = None
        if request is not None:
            value, reply_to, correlation_id = request
            self._request = (reply_to, correlation_id)
        self._raw = value
        return codec.decode_value(value, key, timestamp_ms)

    def init(self, ctx: ProcessorContext) -> None:
        ctx.agent_state = AgentDriver(self.agent, self, ctx)
        expiring = [t for t in map(wall_clock_expiring, self._tables) if t is not None]
        if expiring:  # Faust's table cleanup: a wall-clock punctuation of the task, in its transaction
            interval_ms = to_ms(self.agent.app.conf.table_cleanup_interval, what="table_cleanup_interval")

            def cleanup(now_ms: int) -> None:
                for table in expiring:
                    close_stale(table, ctx.stores.stores[table.name], now_ms / 1000)

            ctx.schedule(interval_ms, PunctuationType.WALL_CLOCK, cleanup)

    def process(self, record: Any, ctx: ProcessorContext) -> Any:
        return ctx.agent_state.deliver(record, self._raw, self._request)

    def close(self, ctx: ProcessorContext) -> None:
        driver, ctx.agent_state = ctx.agent_state, None
        if driver is not None:
            driver.close()
