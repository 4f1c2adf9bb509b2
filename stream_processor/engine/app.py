"""The App: topics, agents, tables, processors and timers, registered by decorator and run exactly once.

.. code-block:: python

    from stream_processor import App

    app = App("market", config="config/streams-config.yaml")
    trades = app.topic("raw_trades", value_type=Trade)
    enriched = app.topic("enriched_trades")
    counts = app.Table("trade_counts", default=int)

    @app.agent(trades, sink=[enriched])
    async def enrich(stream):
        async for trade in stream:
            counts[trade.symbol] += 1
            yield {"symbol": trade.symbol, "n": counts[trade.symbol]}

Run it with ``stream-processor -A mymodule:app worker``. It runs what the app registered (its agents, its
``@app.processor`` types named by the configuration, its timers) and nothing else. Without ``config`` (and without
``settings``) the app needs no file: ``app_id`` is its id, the broker :data:`~.settings.DEFAULT_BROKER`
(``localhost:9092``), and the environment overrides both (``KAFKA_BOOTSTRAP_SERVERS``, ... see
:data:`~.settings.ENV_OVERRIDES`). The YAML (``config``, or ``--config`` on the command line) supplies Kafka, ports,
the processing guarantee and per-agent settings: an entry ``stream_processors.<agent name>`` may set ``enabled``,
``processing_mode``, ``consumer_group`` (default ``<app_id>-<name>``), ``params`` (validated by the agent's
``params`` model), ``dead_letter_topic`` and the other keys of
:class:`~stream_processor.engine.settings.ProcessorSettings`. Entries of other registered types (``@app.processor``
classes, types installed packages provide, see :mod:`~stream_processor.engine.registry`) run beside the agents.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .agent import Agent, AgentProcessor
from .app_services import (
    SIGNALS,
    STREAM_OUTSIDE_AGENT,
    AppTask,
    FlowControl,
    Page,
    Signal,
    click_command,
    cron_delay,
    discover,
    fun_name,
    routed,
    run_services,
)
from .channels import app_channel, close_replies
from .durations import Duration, to_seconds
from .faust_conf import FaustConf
from .global_table import GlobalTable, global_table_method
from .processor import Processor
from .registry import ProcessorType
from .security import client_options
from .set_table import SetTable, set_table_method
from .settings import DEFAULT_BROKER, ProcessorSettings, Settings, load_settings
from .shared_tables import finalize_agents
from .table import Table, table_method
from .topic import Topic

log = logging.getLogger(__name__)

class AgentSettings(ProcessorSettings):
    """An agent's YAML entry: a processor's keys, ``params`` free-form (validated by the agent's model)."""

    params: dict[str, Any] = {}


class App:
    """A stream-processing application: register topics, tables, agents, processors and timers, then run it with
    ``stream-processor -A module:app worker`` (or :meth:`main`).

    ``id``: the default ``app_id`` (prefix of changelog topics, transactional ids and consumer groups; the YAML's
    ``app_id`` wins). ``config``: the YAML file, or ``settings``: the document as a mapping (tests, examples);
    neither: the defaults and the environment only (see the module docstring). ``sections``: models of the app's
    own top-level sections of that document, by key (``{"alerting": AlertingSettings}``), validated with the rest and
    read with ``app.settings.section(key)`` (see :class:`~stream_processor.engine.settings.Settings`).

    ``**faust``: Faust's ``App(...)`` keywords (``broker``, ``store``, ``version``, ``topic_partitions``, ``web_port``,
    ``processing_guarantee``, ...), read into :attr:`conf` (see :mod:`~stream_processor.engine.faust_conf`: each is
    applied, accepted with no effect and logged at start, or refused with TypeError). Precedence: the environment,
    then the YAML (``config``/``settings``), then these arguments, then the defaults.
    """

    def __init__(self, id: str, config: str | Path | None = None, settings: Mapping[str, Any] | None = None, *,  # noqa: A002 - Faust's name
                 sections: Mapping[str, type[BaseModel]] | None = None, **faust: Any) -> None:
        self.conf = FaustConf(id, faust)
        self.id = self.conf.id
        self.config = Path(config) if config is not None else None
        self.settings_doc = settings
        self.sections: dict[str, type[BaseModel]] = dict(sections or {})
        self.topics: dict[str, Topic] = {}
        self.tables: dict[str, Table] = {}
        self.agents: dict[str, Agent] = {}
        self.types: dict[str, ProcessorType] = {}
        self.timers: list[tuple[str, Callable[[], float], Callable[[], Any]]] = []
        self.settings_hooks: list[Callable[[Settings], None]] = []
        self.tasks: list[AppTask] = []
        self.commands: dict[str, Any] = {}  # click commands of @app.command, by name
        self.pages: list[Page] = []
        self.services: list[Any] = []  # @app.service: mode Services started with the worker (app_services)
        self.channels = 0  # app.channel() topics declared so far (channels.app_channel names them by this count)
        self.pages_served = False  # the worker's web server serves them (app_services.page_routes)
        self.signals = {name: Signal(name) for name in SIGNALS}
        for name, signal in self.signals.items():
            setattr(self, name, signal)
        self.needs_leader = False  # an on_leader timer or task: the worker joins the leader group
        self.elector: Any = None  # the worker's LeaderElector while it runs
        self._settings: Settings | None = None
        self._producer: Any = None
        self._finalized = False
        #: Faust's ``app.rebalancing`` (a timer skips its table dump while it is True): always False here, since a
        #: table read outside a record sees the partitions this worker's tasks hold at that moment (local_tables).
        self.rebalancing = False
        self.flow_control = FlowControl()  # Faust's; a test fixture resumes it (agent.test_context needs nothing)

    def __repr__(self) -> str:
        return f"<App {self.id}>"

    # ---- declarations -------------------------------------------------------------------------------
    def topic(self, name: str, value_type: type | None = None, key_type: type | None = None,
              partitions: int | None = None, value_serializer: Any = None, key_serializer: Any = None) -> Topic:
        """The topic ``name`` (the same object when declared twice with the same types). ``value_serializer`` /
        ``key_serializer``: ``'json'`` or ``'raw'`` (default: the App's, see :mod:`~.codecs`)."""
        existing = self.topics.get(name)
        if existing is not None:
            if value_type is not None and existing.value_type not in (None, value_type):
                raise ValueError(f"topic {name!r} is already declared with value_type {existing.value_type!r}")
            if value_type is not None and existing.value_type is None:  # declared untyped first (app.filter, a sink)
                existing.value_type = value_type
            if key_type is not None and existing.key_type is None:
                existing.key_type = key_type
            if partitions is not None and existing.partitions is None:
                existing.partitions = partitions
            if value_serializer is not None and existing.value_serializer is None:
                existing.value_serializer = value_serializer
            if key_serializer is not None and existing.key_serializer is None:
                existing.key_serializer = key_serializer
            return existing
        topic = self.topics[name] = Topic(self, name, value_type, key_type, partitions, value_serializer,
                                          key_serializer)
        return topic

    def Table(self, name: str, default: Callable[[], Any] | None = None, value_type: type | None = None,  # noqa: N802 - Faust's name
              help: str | None = None, on_error: str | None = None, **faust: Any) -> Table:  # noqa: A002
        """A changelog-backed table (see :mod:`stream_processor.engine.table`); Faust's keywords
        (``on_window_close``, ``key_type``, ``partitions``) too."""
        return table_method(self, name, default, value_type, help, on_error, **faust)

    def SetTable(self, name: str, **kwargs: Any) -> SetTable:  # noqa: N802 - Faust's name
        """A table of sets (faust.SetTable, see :mod:`~.set_table`)."""
        return set_table_method(self, name, **kwargs)

    def GlobalTable(self, name: str, **kwargs: Any) -> GlobalTable:  # noqa: N802 - Faust's name
        """A table every worker reads whole (faust.GlobalTable, see :mod:`~.global_table`)."""
        return global_table_method(self, name, **kwargs)

    def agent(self, channel: Topic | str | list[Topic | str] | None = None, *, name: str | None = None,
              sink: list[Any] | None = None, tables: list[Any] | None = None, params: type | None = None,
              concurrency: int = 1, key_type: type | None = None, value_type: type | None = None,
              isolated_partitions: bool = False, **_faust: Any) -> Callable[[Callable[..., Any]], Agent]:
        """Register an async function over a stream of ``channel``'s records (see :mod:`~.agent`).

        ``channel`` None (``@app.agent()``): the agent has a topic of its own, created by the Agent as Faust does,
        with ``key_type``/``value_type`` (only used then). ``sink``: topics (or agents, or plain callables) every
        ``yield``-ed value goes to, keyed like the input record. ``tables``: the tables it uses (default: those its
        code names). ``params``: a pydantic model for its YAML ``params``. Several topics must be co-partitioned.
        Faust's ``supervisor_strategy``/``use_reply_headers`` have no effect; ``isolated_partitions`` is what every
        agent here is (one instance per partition), so it changes nothing either.
        """
        del isolated_partitions  # one instance per input partition is how every agent runs here
        if concurrency != 1:
            raise ValueError("concurrency must be 1: one instance per partition is what makes an agent exactly once")
        topics: list[Topic] | None = None
        if channel is not None:
            topics = [self.topic(c) if isinstance(c, str) else c
                      for c in (channel if isinstance(channel, list) else [channel])]
        types = {k: v for k, v in (("key_type", key_type), ("value_type", value_type)) if v is not None}
        sinks = [self.topic(s) if isinstance(s, str) else s for s in (sink or [])]

        def register(fun: Callable[..., Any]) -> Agent:
            if not (inspect.iscoroutinefunction(fun) or inspect.isasyncgenfunction(fun)):
                raise TypeError(f"agent {name or fun_name(fun)}: must be an async def function (with or without "
                                "yield)")
            agent_name = name or fun_name(fun)
            if agent_name in self.agents or agent_name in self.types:
                raise ValueError(f"agent {agent_name!r} is already registered")
            agent = Agent(self, fun, topics, agent_name, sinks, tables, params, **types)
            self.agents[agent_name] = agent
            return agent

        return register

    def channel(self, value_type: type | None = None, key_type: type | None = None, **faust: Any) -> Topic:
        """Faust's ``app.channel()``: here a topic of the app, so what goes through it is exactly once (see
        :func:`~.channels.app_channel`)."""
        return app_channel(self, value_type, key_type, **faust)

    def service(self, service: Any) -> Any:
        """Faust's ``@app.service``: a mode ``Service`` class (or instance) started when the worker starts, before
        the tasks and timers, and stopped after them (:mod:`~.app_services`)."""
        self.services.append(service)
        return service

    def stream(self, channel: Any, **faust: Any) -> Any:
        """Refused (Faust's stream outside an agent). Raises NotImplementedError."""
        raise NotImplementedError(STREAM_OUTSIDE_AGENT)

    def processor(self, type_name: str | None = None, *, settings: type[ProcessorSettings] = AgentSettings,
                  implicit: bool = False, output_roles: tuple[tuple[str, ...], ...] = (),
                  keywords: tuple[str, ...] = (), **defaults: Any) -> Callable[[type[Processor]], type[Processor]]:
        """Register a :class:`~stream_processor.engine.processor.Processor` class as a processor type (default
        name: the class name, lowercased). YAML entries name it by ``type``; ``settings``: its entries' settings
        class (a ProcessorSettings subclass with its ``params``). With ``implicit`` it runs under its type name
        even without a YAML entry, with ``defaults`` (e.g. ``input_topics=[...]``). ``output_roles`` and
        ``keywords``: as in :class:`~stream_processor.engine.registry.ProcessorType` (``output_topics`` written as
        a map of role -> topic; the words that make it the type of an entry without ``type``).

        Raises ValueError: the name is already an agent's or another type's of this app.
        """

        def register(cls: type[Processor]) -> type[Processor]:
            name = type_name or cls.__name__.lower()
            if name in self.types or name in self.agents:
                raise ValueError(f"processor type {name!r} is already registered")
            self.types[name] = ProcessorType(name, settings, cls, defaults, implicit, output_roles, keywords)
            return cls

        return register

    def timer(self, interval: Duration, *, on_leader: bool = False, name: str | None = None,
              **_faust: Any) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
        """Run an async function every ``interval`` (a Faust duration: timedelta, seconds, ``'5s'``, see
        :mod:`~.durations`) of wall-clock time while the worker runs; the first call one interval after the start.

        ``on_leader``: only on the worker that leads the app's group (:mod:`~.leader`; Faust's ``app.is_leader()``),
        so one worker of the app runs it at a time. Timers run outside any partition's transaction: what they send
        goes out at least once (see :meth:`Topic.send`). For a punctuation inside a partition's transaction, use a
        processor's ``context.schedule``. ``traced``/``max_drift_correction`` (Faust's) have no effect. Raises
        ValueError: the interval is not a positive duration.
        """
        seconds = -1.0 if isinstance(interval, int | float) and interval <= 0 else to_seconds(interval, what="timer")
        if seconds <= 0:
            raise ValueError(f"timer interval must be positive, got {interval!r}")

        def register(fun: Callable[[], Any]) -> Callable[[], Any]:
            self.timers.append((name or fun_name(fun), lambda: seconds, self._leading(fun, on_leader)))
            return fun

        return register

    def _leading(self, fun: Callable[[], Any], on_leader: bool) -> Callable[[], Any]:
        """``fun``, or for ``on_leader`` a wrapper that calls it only while this worker leads (faust's timer)."""
        if not on_leader:
            return fun
        self.needs_leader = True

        async def when_leader() -> Any:
            return await fun() if self.is_leader() else None

        when_leader.__name__ = fun_name(fun)
        return when_leader

    def is_leader(self) -> bool:
        """True while this worker leads the app's group (:mod:`~.leader`); outside a worker (the test driver, a
        command) True: one process is the whole group."""
        return bool(self.elector.is_leader) if self.elector is not None else True

    def task(self, fun: Callable[..., Any] | None = None, *, on_leader: bool = False, traced: bool = True) -> Any:
        """Run an async function once when the worker starts (``on_leader``: once this worker first becomes the
        leader), outside any transaction (its sends at least once); it gets the app when it takes a parameter
        (faust.app.base.App.task). Usable as ``@app.task`` or ``@app.task(on_leader=True)``."""
        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            if not inspect.iscoroutinefunction(f):
                raise TypeError(f"app.task {f.__name__}: must be an async def function")
            self.needs_leader = self.needs_leader or on_leader
            self.tasks.append(AppTask(f.__name__, f, on_leader))
            return f

        return register(fun) if fun is not None else register

    def command(self, *options: Any, name: str | None = None, **_faust: Any) -> Callable[[Callable[..., Any]], Any]:
        """A subcommand of the app's command line (``python app.py <name>``, ``stream-processor -A app <name>``)
        running an async function, with click ``options`` (``stream_processor.cli.option``/``argument``, Faust's
        ``faust.cli.option``); see :func:`~.app_services.click_command`. Returns the function."""
        def register(fun: Callable[..., Any]) -> Callable[..., Any]:
            command = click_command(self, fun, options, name)
            self.commands[str(command.name)] = command
            return fun

        return register

    def page(self, path: str, *, name: str | None = None, **_faust: Any) -> Callable[[Any], Any]:
        """Faust's web view ``async def view(web, request, **match_info)`` at ``path`` (aiohttp's syntax:
        ``/count/{word}/``), on the worker's web server (see :func:`~.app_services.page_routes`; logged at start when
        the server does not serve them). Returns the view. Raises TypeError for a View class (not offered)."""
        def register(fun: Any) -> Any:
            if not inspect.iscoroutinefunction(fun):
                raise TypeError(f"app.page {path}: an async def view function (Faust's View classes are not offered)")
            self.pages.append(Page(path, fun, str(name or fun.__name__), getattr(fun, "_sp_route", None)))
            return fun

        return register

    def table_route(self, table: Any, shard_param: str | None = None, **_faust: Any) -> Callable[[Any], Any]:
        """Faust's routing of a view to the worker holding a table key: accepted; the view answers 501 naming why
        (see :data:`~.app_services.ROUTED`)."""
        return routed("table")

    def topic_route(self, topic: Any, shard_param: str | None = None, **_faust: Any) -> Callable[[Any], Any]:
        """Faust's routing of a view by a topic's partition: accepted; answers 501 as :meth:`table_route`."""
        return routed("topic")

    def crontab(self, cron_format: str, *, timezone: dt.tzinfo | None = None, on_leader: bool = False,
                **_faust: Any) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
        """Run an async function at the times of ``cron_format`` (``"*/5 * * * *"``; in ``timezone``, default
        ``app.conf.timezone``, UTC unless App(timezone=) says otherwise); like :meth:`timer` otherwise (``on_leader``
        included). Raises ValueError for a malformed expression."""
        delay = cron_delay(cron_format, timezone or self.conf.timezone)

        def register(fun: Callable[[], Any]) -> Callable[[], Any]:
            self.timers.append((fun_name(fun), delay, self._leading(fun, on_leader)))
            return fun

        return register

    def on_settings(self, fun: Callable[[Settings], None]) -> Callable[[Settings], None]:
        """Register ``fun(settings)``, called once the app's settings are validated, before anything uses them (a
        worker, the test driver, a command): for declarations that depend on the configuration, e.g. topics the
        worker must create (``app.topic(name)``). An exception it raises comes out of :attr:`settings`."""
        self.settings_hooks.append(fun)
        return fun

    # ---- stateless helpers --------------------------------------------------------------------------
    def filter(self, source: Topic | str, predicate: Callable[[Any], bool], to: Topic | str, *,
               name: str | None = None) -> Agent:
        """An agent sending each value of ``source`` for which ``predicate(value)`` is true to ``to``, exactly once
        (keyed like its input)."""

        async def filter_agent(stream: Any) -> Any:
            async for value in stream:
                if predicate(value):
                    yield value

        return self.agent(source, name=name or f"filter-{_topic_name(source)}-{_topic_name(to)}", sink=[to],
                          tables=[])(filter_agent)

    def map(self, source: Topic | str, fn: Callable[[Any], Any], to: Topic | str, *,
            name: str | None = None) -> Agent:
        """An agent sending ``fn(value)`` of each value of ``source`` to ``to``, exactly once (keyed like its input).
        ``fn`` returning None drops the value."""

        async def map_agent(stream: Any) -> Any:
            async for value in stream:
                out = fn(value)
                if out is not None:
                    yield out

        return self.agent(source, name=name or f"map-{_topic_name(source)}-{_topic_name(to)}", sink=[to],
                          tables=[])(map_agent)

    def branch(self, source: Topic | str, branches: Mapping[Topic | str, Callable[[Any], bool]], *,
               default: Topic | str | None = None, name: str | None = None) -> Agent:
        """An agent sending each value of ``source`` to the first topic of ``branches`` whose predicate is true (to
        ``default`` when none is, else nowhere), exactly once, keyed like its input (Kafka Streams' ``branch``)."""
        routes = [(self.topic(t) if isinstance(t, str) else t, p) for t, p in branches.items()]
        fallback = self.topic(default) if isinstance(default, str) else default

        async def branch_agent(stream: Any) -> None:
            async for value in stream:
                for topic, predicate in routes:
                    if predicate(value):
                        await topic.send(key=stream.current_event.key, value=value)
                        break
                else:
                    if fallback is not None:
                        await fallback.send(key=stream.current_event.key, value=value)

        return self.agent(source, name=name or f"branch-{_topic_name(source)}", tables=[])(branch_agent)

    # ---- running ------------------------------------------------------------------------------------
    def finalize(self) -> None:
        """Check the registrations and register every agent as a processor type (done once, before running).

        Agents that share a table run as one processor (see :mod:`~.shared_tables`). Raises ValueError: an
        agent's group_by is malformed, or agents sharing a table re-key their input.
        """
        if self._finalized:
            return
        discover(self.conf.autodiscover, self.conf.origin)
        finalize_agents(self, self._register_agent, AgentSettings,
                        self.conf.agent_defaults(ProcessorSettings.model_fields))
        self._finalized = True

    def _register_agent(self, agent: Agent) -> None:
        inputs = [t.name for t in agent.topics]
        conf = self.conf.agent_defaults(ProcessorSettings.model_fields)
        sinks = [s.name if isinstance(s, Topic) else s.topics[0].name for s in agent.sinks
                 if isinstance(s, Topic | Agent)]
        if agent.group_by is None:
            self.types[agent.name] = ProcessorType(
                agent.name, AgentSettings, _agent_factory(agent),
                {"input_topics": inputs, "output_topics": sinks, **conf}, implicit=True)
            return
        repartition = agent.repartition_topic
        partitions = max((self.topics[t].partitions or 0) for t in inputs) or None
        self.topic(repartition, partitions=partitions)
        stage1 = f"{agent.name}-repartition"
        self.types[stage1] = ProcessorType(
            stage1, AgentSettings, _agent_factory(agent, "repartition"),
            {"input_topics": inputs, "output_topics": [repartition], **conf}, implicit=True)
        self.types[agent.name] = ProcessorType(
            agent.name, AgentSettings, _agent_factory(agent),
            {"input_topics": [repartition], "output_topics": sinks, **conf}, implicit=True)

    @property
    def settings(self) -> Settings:
        """The validated configuration (loaded once). Raises ConfigError naming the file and key."""
        if self._settings is None:
            self.finalize()
            n = self.conf.topic_partitions  # App(topic_partitions=): topics declared without partitions
            topics = {name: {"partitions": t.partitions or n} for name, t in self.topics.items() if t.partitions or n}
            defaults = self.conf.settings_defaults()
            if self.config is None:
                defaults.setdefault("kafka", {}).setdefault("bootstrap_servers", [DEFAULT_BROKER])
            settings = load_settings(self.config, types=self.types, doc=self.settings_doc, defaults=defaults,
                                     extra_topics=topics, sections=self.sections)
            # A repartition topic gets its agent's input partitions, as the YAML (or the code) gives them.
            more = {}
            for agent in self.agents.values():
                if agent.group_by is not None and agent.repartition_topic not in settings.topics:
                    entry = settings.stream_processors.get(f"{agent.name}-repartition")
                    inputs = entry.input_topics if entry is not None else [t.name for t in agent.topics]
                    more[agent.repartition_topic] = {"partitions": max(settings.topic(t).partitions for t in inputs),
                                                     "repartition": True}
            if more:
                settings = load_settings(self.config, types=self.types, doc=self.settings_doc, defaults=defaults,
                                         extra_topics={**topics, **more}, sections=self.sections)
            for hook in self.settings_hooks:
                hook(settings)
            self._settings = settings
        return self._settings

    async def send_outside(self, topic: str, key: bytes | None, value: bytes | None,
                           headers: list[tuple[str, bytes]] | None, partition: int | None) -> Any:
        """Send through the app's idempotent (not transactional) producer: for timers; at least once."""
        if self._producer is None:
            from aiokafka import AIOKafkaProducer

            from .kafka_internals import Partitioner

            producer = AIOKafkaProducer(**client_options(self.settings.kafka), partitioner=Partitioner(),
                                        enable_idempotence=True, acks="all",
                                        client_id=f"{self.settings.processor_id}-timers")
            await producer.start()
            self._producer = producer
        return await self._producer.send_and_wait(topic, value, key=key, headers=headers, partition=partition)

    async def run_timers(self, stopping: asyncio.Event) -> None:
        """Run the app's tasks once and its timers until ``stopping`` is set, with leader election when an
        ``on_leader`` one needs it (the worker calls this; see :func:`~.app_services.run_services`)."""
        await run_services(self, stopping)

    async def close(self) -> None:
        """Stop the reply consumer (``agent.ask``) and the timers' producer."""
        await close_replies(self)
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    def main(self, argv: list[str] | None = None) -> None:
        """Run the command line with this app (``python mymodule.py worker``)."""
        from ..cli import main

        main(argv, obj=self)


def _topic_name(topic: Topic | str) -> str:
    return topic if isinstance(topic, str) else topic.name


def _agent_factory(agent: Agent, stage: str = "body") -> Callable[[str, Any], AgentProcessor]:
    """The processor factory of ``agent``'s stage (``"body"`` or ``"repartition"``)."""

    def build(name: str, settings: Any) -> AgentProcessor:
        return AgentProcessor(agent, name, settings, stage)

    return build
