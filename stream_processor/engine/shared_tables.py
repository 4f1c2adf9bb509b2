"""Agents that share a table: one processor runs them together, so partition q of the table is one store.

Faust lets several agents use one table (``examples/tableofset.py``: ``join`` adds to a SetTable from one topic,
``leave`` discards from it from another); the table is partitioned like the agents' input topics, which must be
co-partitioned, and the agent processing a record of partition q reads and writes table partition q. Here a table
partition is a store of a task, written in that task's transaction, so two agents can only share it if they run in
one task: :func:`shared_groups` finds the agents linked by a table (directly or through a chain of tables), and
:func:`register_shared` registers each such group as one processor (:class:`SharedAgentsProcessor`, named
``<agent>__<agent>...``) whose inputs are all their topics. Its task q reads partition q of every one of them, in
timestamp order (the task's partition group, as for an agent over several topics), and hands each record to the
agent whose topic it came from (each agent keeps its own instance per task, with its own stream): both agents'
records of partition q see, and change, the same store, each record in its own transaction with its effects, so
the table is exactly once whichever agent wrote it. The topics must have the same number of partitions (the worker
refuses otherwise, as for any processor with several inputs). An agent with ``group_by`` cannot share a table (its
table is partitioned by its repartition topic): ValueError.

The YAML configures the group under the processor's name (``stream_processors.join__leave``), not its agents'.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .agent import Agent, AgentProcessor
from .processor import Processor, ProcessorContext
from .registry import ProcessorType
from .state import StoreSpec  # noqa: TC001 - the return annotation of stores()

if TYPE_CHECKING:
    from .app import App


def shared_groups(agents: list[Agent]) -> list[list[Agent]]:
    """The agents in groups linked by the tables they use (an agent alone is a group of one), in registration
    order; a GlobalTable links no one (each agent writing it keeps its own partitions of it)."""
    parent = list(range(len(agents)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    first: dict[str, int] = {}  # table name -> the first agent using it
    for i, agent in enumerate(agents):
        for table in agent.tables():
            if getattr(table, "is_global", False):
                continue  # each agent keeps its own partitions of a global table (see global_table)
            j = root(first.setdefault(table.name, i))
            parent[root(i)] = j
    groups: dict[int, list[Agent]] = {}
    for i, agent in enumerate(agents):
        groups.setdefault(root(i), []).append(agent)
    return list(groups.values())


def sink_topics(agent: Agent) -> list[str]:
    """The topics an agent's ``yield`` goes to (its sink topics, and the topics of its sink agents)."""
    return [s.name if hasattr(s, "encode_value") else s.topics[0].name for s in agent.sinks
            if hasattr(s, "encode_value") or isinstance(s, Agent)]


def group_name(agents: list[Agent]) -> str:
    """The processor name of a group: its agents' names joined by ``__`` (topic names allow no ``+``)."""
    return "__".join(a.name for a in agents)


def register_shared(app: App, agents: list[Agent], settings_class: type[Any],
                    defaults: Mapping[str, Any] | None = None) -> None:
    """Register ``agents`` (a group of :func:`shared_groups`, two or more) as one processor type of ``app``, with
    ``defaults`` (settings every agent's entry gets, e.g. from Faust's App arguments) beside its topics.

    Raises ValueError: an agent of the group uses ``group_by``, or two of them read one topic.
    """
    inputs: list[str] = []
    for agent in agents:
        if agent.group_by is not None:
            raise ValueError(f"agent {agent.name!r} shares a table with {[a.name for a in agents if a is not agent]} "
                             "and uses group_by: its tables are partitioned by its repartition topic, theirs are not")
        for topic in agent.topics:
            if topic.name in inputs:
                raise ValueError(f"topic {topic.name!r} is read by two agents sharing a table: give it one agent")
            inputs.append(topic.name)
    sinks = sorted({t for a in agents for t in sink_topics(a)})
    name = group_name(agents)

    def build(processor_name: str, settings: Any) -> SharedAgentsProcessor:
        return SharedAgentsProcessor(agents, processor_name, settings)

    app.types[name] = ProcessorType(name, settings_class, build,
                                    {**(defaults or {}), "input_topics": inputs, "output_topics": sinks},
                                    implicit=True)


class SharedAgentsProcessor(Processor):
    """Several agents in one processor (see the module docstring): each input record goes to the agent of its
    topic, with that agent's driver as the task's ``agent_state`` while it runs."""

    def __init__(self, agents: list[Agent], name: str, settings: Any) -> None:
        super().__init__(name, settings)
        self.members: dict[str, AgentProcessor] = {}  # input topic -> the agent's processor
        for agent in agents:
            topics = [t.name for t in agent.topics]
            own = settings.model_copy(update={"input_topics": topics, "output_topics": sink_topics(agent)})
            member = AgentProcessor(agent, name, own)
            self.members.update(dict.fromkeys(topics, member))
        self._members = list(dict.fromkeys(self.members.values()))
        inputs = set(self.members)
        self._outputs = sorted({t for m in self._members for t in m.output_topics} - inputs)
        self._drivers: dict[ProcessorContext, dict[int, Any]] = {}  # per task: id(member) -> its AgentDriver

    @property
    def output_topics(self) -> list[str]:
        return self._outputs

    def stores(self) -> list[StoreSpec]:
        specs: dict[str, StoreSpec] = {}
        for member in self._members:
            for spec in member.stores():
                specs.setdefault(spec.name, spec)
        return list(specs.values())

    def decode(self, value: bytes | None, key: bytes | None, timestamp_ms: int | None, topic: str) -> Any:
        return self.members[topic].decode(value, key, timestamp_ms, topic)

    def init(self, ctx: ProcessorContext) -> None:
        drivers = self._drivers[ctx] = {}
        for member in self._members:
            member.init(ctx)
            drivers[id(member)] = ctx.agent_state

    def process(self, record: Any, ctx: ProcessorContext) -> Any:
        assert ctx.topic is not None
        member = self.members[ctx.topic]
        ctx.agent_state = self._drivers[ctx][id(member)]
        return member.process(record, ctx)

    def close(self, ctx: ProcessorContext) -> None:
        drivers = self._drivers.pop(ctx, {})
        for member in self._members:
            ctx.agent_state = drivers.get(id(member))
            member.close(ctx)
        ctx.agent_state = None


def finalize_agents(app: App, register_one: Callable[[Agent], None], settings_class: type[Any],
                    defaults: Mapping[str, Any] | None = None) -> None:
    """What ``App.finalize`` does with its agents: probe each, then register each group of :func:`shared_groups`
    (one agent: ``register_one``; several: :func:`register_shared`)."""
    agents = list(app.agents.values())
    for agent in agents:
        agent.probe()
    for group in shared_groups(agents):
        if len(group) == 1:
            register_one(group[0])
        else:
            register_shared(app, group, settings_class, defaults)


__all__ = ["SharedAgentsProcessor", "finalize_agents", "group_name", "register_shared", "shared_groups"]
