"""Run a whole Faust program twice, under faust-streaming 0.15.3 and under this engine, and compare what it did.

A program is one of faust-streaming's ``examples/`` (or the pageviews tutorial), kept byte for byte in
``programs/`` (:data:`UPSTREAM` gives the commit; each file's git blob id is checked). Its two sources differ only
in their import lines (:func:`port`): ``import faust`` -> ``import stream_processor as faust`` and
``from faust[.x] import ...`` -> ``from stream_processor[.x] import ...``. Each source is executed as a fresh module
(not ``__main__``, so ``app.main()`` does not run), then driven by a :class:`Scenario`: a list of steps, each
either a :class:`Put` (one input record, as bytes, to a topic or an agent the module names) or a :class:`Call` (a
timer, crontab or other ``async def`` of the module, called once, as the worker's timer loop would call it).

- Under faust (:func:`run_faust`): every agent of the app runs in its own ``agent.test_context()`` over its own
  channel (several agents at once, as a worker runs them). Whatever the program sends (``topic.send``,
  ``send_soon``, ``agent.send``, a ``group_by``'s repartition, a sink) is taken at ``Topic.publish_message`` /
  ``Topic.send_soon`` (the producer hop, which needs a broker), already serialized as the worker would send it, and
  delivered to the channels that read that topic (the agents, a ``group_by``'s repartition stream), until nothing is
  left to deliver; the table store is ``memory://`` (the store kind does not change what a table holds).
- Under this engine (:func:`run_ours`): ``TestDriver(app)``; a Put is ``driver.pipe``; a Call runs the function
  with the app's outside-a-transaction producer (``App.send_outside``) replaced by one that pipes what it sends into
  the driver.

Both runs read the same wall clock (:class:`Clock`: ``time.time`` pinned, the driver's ``now_ms`` the same), and
an :class:`Outcome` is taken from each: the records the program sent to the topics the scenario names (key and
value bytes, in send order; the steps' own input records left out), the tables at the end (Records as dicts, sets
sorted, windowed keys as Faust gives them: ``(key, (start_s, end_s))``), the module-level state the scenario
names, and what the program printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import io
import re
import time
import types
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

PROGRAMS = Path(__file__).resolve().parent / "programs"
#: faust-streaming's commit the programs were copied from (https://github.com/faust-streaming/faust).
UPSTREAM = "181b184002d0b49da439bbcb0dd58901000456a7"
#: Each program's upstream path at :data:`UPSTREAM` and its git blob id there (``git rev-parse HEAD:<path>``).
UPSTREAM_FILES = {
    "hello_world": ("examples/hello_world.py", "0d47bc61693f65306ebbf8c91524522079bfbba1"),
    "word_count": ("examples/word_count.py", "dafb1b98a3a14dd7235656a0c5f78805eec0ca90"),
    "withdrawals": ("examples/withdrawals.py", "ad2d84a85e2240dff409ffb868607b660298c7e0"),
    "tabletest": ("examples/tabletest.py", "448a3b9b4e3b0b0a18e4d73acd7404f206813df4"),
    "tableofset": ("examples/tableofset.py", "ee1e823b942f3ac84554ad3f20cd3dfa7df1d056"),
    "task_queue": ("examples/task_queue.py", "0eaabdd9b356a1a1adc16dec2eeee0bd155769e8"),
    "windowed_aggregation": ("examples/windowed_aggregation.py", "ea7f1ed5c50a32b80a5022b7a2eabbe5d981e6c8"),
    "leader": ("examples/leader.py", "22bc4b419770ac361074f390e9847136a4ebb254"),
    "bound_agent": ("examples/bound_agent.py", "f4e63dc898800bf7496670760d8c16fceb8699ac"),
    "concurrency": ("examples/concurrency.py", "826d6cac013033cf9465778c05b356f7bd8e1d5a"),
    "livecheck": ("examples/livecheck.py", "717706f5b3f5525e626ff62a3f1c9f742e3c268f"),
    "fastapi_example": ("examples/fastapi_example.py", "fcdfebe93130b081d02a19da46e5898953bef651"),
    "hopping": ("examples/windowing/hopping.py", "e104e20e4180363c47bfe9a51f123f4389f34051"),
    "hopping_2": ("examples/windowing/hopping_2.py", "39a0871fc2c60bfaaa7a118e6a059e41f409e875"),
    "tumbling": ("examples/windowing/tumbling.py", "366d92677a56f0f1f847e6edccf8fbd9a9fe6f07"),
    "tz_aware": ("examples/crontab/tz_aware.py", "449b2be88e1d4a75fddd9c6e3faac0cdcf7b6e91"),
    "tz_unaware": ("examples/crontab/tz_unaware.py", "9c8fa889474438553936f5ba3a5aee77d5fbfdbd"),
    "isolated_partitions_crashing": ("examples/advanced/isolated_partitions_crashing.py",
                                     "a37b9c4ea7cf4db91707d4a99e595ecd4dea56e8"),
    "rpc": ("examples/advanced/rpc.py", "2f82bdc05aa57ffa7cdcef9f0d168f0ea35f7e8f"),
    "service": ("examples/advanced/service.py", "2d8b49242b2545d33e9645e441cceed651916db0"),
    "kubernetes_consumer": ("examples/kubernetes/consumer/consumer.py", "5c422039e7119c2d8948dbb6cdade3601cd90903"),
}
#: The wall clock both runs start at (ms since the epoch, UTC): 2023-11-14T22:13:20Z, the driver's default.
START_MS = 1_700_000_000_000

_IMPORT = re.compile(r"^(import faust\b|from faust(\.\S+)? import )", re.MULTILINE)


def port(source: str) -> str:
    """``source`` with its Faust import lines pointed at this engine, and nothing else changed."""

    def repl(match: re.Match[str]) -> str:
        if match.group(1).startswith("import"):
            return "import stream_processor as faust"
        return f"from stream_processor{match.group(2) or ''} import "

    return _IMPORT.sub(repl, source)


def git_blob_id(data: bytes) -> str:
    """The id git gives a file of ``data`` (``git hash-object``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Put:
    """One input record: ``value``/``key`` bytes to the topic (or the agent's channel) the module calls
    ``target``, with a timestamp in ms since the epoch (default: the clock), the wall clock set to ``clock_ms`` first
    (default: the timestamp: live data; earlier timestamps than the clock: replayed data)."""

    target: str
    value: bytes | None
    key: bytes | None = None
    timestamp_ms: int | None = None
    partition: int | None = None
    clock_ms: int | None = None


@dataclass(frozen=True)
class Call:
    """Call the module's ``async def`` ``name`` once (a timer, a crontab: the function it registered), after setting
    the clock to ``at_ms``; or ``fun(module)``, an awaitable, for what the module does not name (a ``partial``)."""

    name: str
    at_ms: int | None = None
    fun: Callable[[types.ModuleType], Any] | None = None

    def run(self, module: types.ModuleType) -> Any:
        return self.fun(module) if self.fun is not None else _timer_body(getattr(module, self.name))()


@dataclass
class Scenario:
    """What a program is given and what is compared. ``topics``/``tables``/``state``: module attributes naming the
    topics (or agents) whose records, the tables whose contents, and the module-level values compared at the end;
    ``prints``: compare what the program printed (``masks``: regexes of what differs by nature, e.g. a uuid, replaced
    by ``<masked>`` first); ``setup``: called with the module before the steps (e.g. a program's own ``main()``)."""

    steps: list[Put | Call]
    topics: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    state: tuple[str, ...] = ()
    prints: bool = False
    masks: tuple[str, ...] = ()
    setup: Callable[[types.ModuleType], None] | None = None
    #: Called with the faust module after the steps (e.g. Faust's table cleanup, which fires on_window_close).
    faust_after: Callable[[types.ModuleType], Any] | None = None
    #: Called with (module, driver) after the steps of our run (the same moment, in this engine's terms).
    ours_after: Callable[[types.ModuleType, Any], None] | None = None
    #: What of the printed lines is compared (default: every line, in order): for a program whose prints come from
    #: several partitions, each partition's lines in order (Faust orders a partition's records, not two partitions').
    printed_as: Callable[[list[str]], Any] | None = None

    def compared_prints(self, printed: list[str]) -> Any:
        return printed if self.printed_as is None else self.printed_as(printed)


@dataclass
class Outcome:
    """What one run did (see the module docstring)."""

    records: dict[str, list[tuple[bytes | None, bytes | None]]] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    printed: list[str] = field(default_factory=list)


class Clock:
    """The wall clock of a run, in ms since the epoch: ``time.time`` is pinned to it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, start_ms: int = START_MS) -> None:
        self.now_ms = start_ms
        monkeypatch.setattr(time, "time", lambda: self.now_ms / 1000)


def source_of(name: str) -> str:
    """The upstream program ``name`` (``programs/<name>.py``), as faust-streaming wrote it."""
    return (PROGRAMS / f"{name}.py").read_text()


def load(name: str, source: str, setup: Callable[[types.ModuleType], None] | None = None) -> types.ModuleType:
    """Execute ``source`` as a fresh module ``faust_programs_<name>`` (not ``__main__``: ``app.main()`` stays
    uncalled), the same module name in both runs (a program that names its functions by ``__module__`` sees the
    same names)."""
    module = types.ModuleType(f"faust_programs_{name}")
    module.__file__ = str(PROGRAMS / f"{name}.py")
    exec(compile(source, module.__file__, "exec", dont_inherit=True), module.__dict__)  # noqa: S102 - the program under test
    if setup is not None:
        setup(module)
    return module


def plain(value: Any) -> Any:
    """``value`` with Records as dicts (their fields), sets and tuples as lists, datetimes as ISO text: what two
    frameworks' objects are compared as."""
    asdict = getattr(value, "asdict", None)
    if callable(asdict) and not isinstance(value, type):
        return {k: plain(v) for k, v in asdict().items()}
    if isinstance(value, dict):
        return {plain_key(k): plain(v) for k, v in value.items()}
    if isinstance(value, AbstractSet):  # a set, or a SetTable's value (faust's ChangeloggedSet)
        return sorted(plain(v) for v in value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def plain_key(key: Any) -> Any:
    """A table key as compared: a windowed key stays ``(key, (start_s, end_s))`` (Faust's), seconds rounded to ms."""
    if isinstance(key, tuple) and len(key) == 2 and isinstance(key[1], tuple) and len(key[1]) == 2:
        start, end = key[1]
        return (plain_key(key[0]), (round(float(start), 3), round(float(end), 3)))
    if isinstance(key, tuple):
        return tuple(plain_key(k) for k in key)
    return key


def masked(text: str, masks: tuple[str, ...]) -> list[str]:
    for pattern in masks:
        text = re.sub(pattern, "<masked>", text)
    return text.splitlines()


@contextlib.contextmanager
def printed_into(sink: list[str], masks: tuple[str, ...]) -> Iterator[None]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield
    sink.extend(masked(buffer.getvalue(), masks))


# ---- under faust-streaming 0.15.3 ---------------------------------------------------------------------------------
class _Bus:
    """What a faust program sends, taken at the producer hop, and delivered to the streams that read its topic."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, Any]] = []  # topic, key, value, channel
        self.pending: list[tuple[str, bytes | None, bytes | None, int | None, int | None]] = []  # ..., partition, ms
        self.readers: dict[str, list[Any]] = {}  # topic name -> the iterator channels of the streams reading it
        self.agent_channels: set[int] = set()
        self._scanned = 0  # how much of ``sent`` add_derived has looked at
        self.offsets: dict[tuple[str, int], int] = {}  # (topic, partition) -> the last offset delivered

    def record(self, fut: Any) -> Any:
        message = fut.message
        channel = message.channel
        name = channel.get_topic_name()
        self.sent.append((name, message.key, message.value, channel))
        timestamp_ms = None if message.timestamp is None else int(message.timestamp * 1000)
        self.pending.append((name, message.key, message.value, message.partition, timestamp_ms))
        return fut

    def add_reader(self, name: str, channel: Any) -> None:
        readers = self.readers.setdefault(name, [])
        if not any(r is channel for r in readers):
            readers.append(channel)

    def add_agent(self, wrapper: Any) -> None:
        """An agent's test wrapper reads its channel's topic through its stream's channel (as ``put`` does)."""
        self.agent_channels.add(id(wrapper.channel))
        from faust.topics import Topic

        if isinstance(wrapper.channel, Topic):  # an in-memory Channel (app.channel()) is delivered to directly
            self.add_reader(wrapper.channel.get_topic_name(), wrapper.stream().channel)

    def add_derived(self) -> None:
        """The topics a stream derived and sent to (a ``group_by``'s repartition topic): read by its iterators."""
        for name, _key, _value, channel in self.sent[self._scanned:]:
            if id(channel) not in self.agent_channels:
                for sub in list(getattr(channel, "_subscribers", ())):
                    self.add_reader(name, sub)
        self._scanned = len(self.sent)


def _patch_faust(monkeypatch: pytest.MonkeyPatch, bus: _Bus) -> None:
    from faust.topics import Topic

    async def publish_message(self: Any, fut: Any, wait: bool = False) -> Any:
        return bus.record(fut)

    def send_soon(self: Any, **kwargs: Any) -> Any:
        kwargs.pop("force", None)
        return bus.record(self.as_future_message(**kwargs))

    async def maybe_declare(self: Any) -> None:
        """A topic is declared (created on the broker) by the worker: nothing to create here."""

    monkeypatch.setattr(Topic, "publish_message", publish_message)
    monkeypatch.setattr(Topic, "maybe_declare", maybe_declare)
    monkeypatch.setattr(Topic, "declare", maybe_declare)
    monkeypatch.setattr(Topic, "send_soon", send_soon)


def _faust_message(app: Any, topic: str, key: bytes | None, value: bytes | None, timestamp_s: float,
                   partition: int | None, offset: int) -> Any:
    """A received message, as the test wrapper's ``put`` makes it (a stream drops one of another generation)."""
    from faust.types import Message

    return Message(topic=topic, partition=partition or 0, offset=offset, timestamp=timestamp_s,
                   timestamp_type=0, headers=None, key=key, value=value, checksum=b"", serialized_key_size=0,
                   serialized_value_size=0, generation_id=app.consumer_generation_id)


async def _settle(app: Any, bus: _Bus, clock: Clock, wrappers: list[Any]) -> None:
    """Deliver what was sent until nothing is left and every queue is empty (polled over event-loop turns)."""
    quiet = 0
    for _ in range(100_000):
        bus.add_derived()
        if bus.pending:
            quiet = 0
            name, key, value, partition, timestamp_ms = bus.pending.pop(0)
            timestamp_s = (clock.now_ms if timestamp_ms is None else timestamp_ms) / 1000
            where = (name, partition or 0)
            offset = bus.offsets[where] = bus.offsets.get(where, -1) + 1  # a partition's next offset, as Kafka's
            for reader in bus.readers.get(name, []):
                message = _faust_message(app, name, key, value, timestamp_s, partition, offset)
                await reader.put(await reader.decode(message))
            continue
        busy = any(r.queue.qsize() for rs in bus.readers.values() for r in rs) or any(
            w.stream().channel.queue.qsize() for w in wrappers)
        for wrapper in wrappers:
            if wrapper._crash_reason is not None:  # noqa: SLF001 - the test wrapper's record of a crash
                raise wrapper._crash_reason  # noqa: SLF001
        quiet = 0 if busy else quiet + 1
        if quiet > 50:  # 50 turns with nothing queued: every agent is waiting for input
            return
        await asyncio.sleep(0)
    raise AssertionError("the faust program never settled")


async def run_faust(name: str, scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    """The program under faust-streaming's own ``agent.test_context()`` (see the module docstring)."""
    try:
        import faust  # noqa: F401 - the reference must be there: a missing faust fails the test, it never skips
    except ImportError as exc:
        pytest.fail(f"faust-streaming is not installed ({exc}): pip install -r requirements-dev.txt")
    clock = Clock(monkeypatch)
    bus = _Bus()
    _patch_faust(monkeypatch, bus)
    outcome = Outcome()
    with printed_into(outcome.printed, scenario.masks):
        module = load(name, source_of(name), scenario.setup)
        app = module.app
        app.conf.store = "memory://"
        async with contextlib.AsyncExitStack() as stack:
            wrappers = []
            for agent in list(app.agents.values()):
                wrapper = await stack.enter_async_context(agent.test_context(channel=agent.channel))
                wrappers.append(wrapper)
            await asyncio.sleep(0)  # the agents start and subscribe their streams
            for wrapper in wrappers:
                bus.add_agent(wrapper)
            for step in scenario.steps:
                if isinstance(step, Put):
                    clock.now_ms = step.clock_ms or step.timestamp_ms or clock.now_ms
                    channel = _faust_channel(getattr(module, step.target))
                    bus.pending.append((channel.get_topic_name(), step.key, step.value, step.partition,
                                        step.timestamp_ms))
                else:
                    clock.now_ms = step.at_ms or clock.now_ms
                    await step.run(module)
                await _settle(app, bus, clock, wrappers)
            if scenario.faust_after is not None:
                result = scenario.faust_after(module)
                if asyncio.iscoroutine(result):
                    await result
                await _settle(app, bus, clock, wrappers)
    for attr in scenario.topics:
        topic = _faust_channel(getattr(module, attr)).get_topic_name()
        outcome.records[attr] = [(k, v) for n, k, v, _ in bus.sent if n == topic]
    for attr in scenario.tables:
        table = getattr(module, attr)
        table = getattr(table, "table", table)  # a WindowWrapper's table
        outcome.tables[attr] = plain(dict(table.data.items()))
    outcome.state = {attr: plain(getattr(module, attr)) for attr in scenario.state}
    return outcome


def _timer_body(fun: Any) -> Any:
    """The function a timer, crontab or task decorator registered: Faust's ``@app.timer`` returns its loop (which
    never ends) ``functools.wraps``-ed around the function (twice: ``app.task`` wraps it again); a step calls the
    function, once."""
    return inspect.unwrap(fun)


def _faust_channel(obj: Any) -> Any:
    """The channel of a topic or an agent (faust)."""
    return getattr(obj, "channel", None) if hasattr(obj, "test_context") else obj


# ---- under this engine --------------------------------------------------------------------------------------------
def run_ours(name: str, scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> Outcome:
    """The program, with only its import lines changed, under :class:`~stream_processor.engine.testing.TestDriver`."""
    from stream_processor.engine.testing import TestDriver

    clock = Clock(monkeypatch)
    outcome = Outcome()
    with printed_into(outcome.printed, scenario.masks):
        module = load(name, port(source_of(name)), scenario.setup)
        app = module.app
        sent: list[tuple[str, bytes | None, bytes | None, int | None]] = []

        async def send_outside(topic: str, key: bytes | None, value: bytes | None, headers: Any,
                               partition: int | None) -> None:
            sent.append((topic, key, value, partition))

        monkeypatch.setattr(app, "send_outside", send_outside)
        inputs: set[tuple[str, int, int]] = set()  # the records the steps gave: not the program's own sends
        with TestDriver(app, start_ms=clock.now_ms) as driver:
            for step in scenario.steps:
                if isinstance(step, Put):
                    clock.now_ms = driver.now_ms = step.clock_ms or step.timestamp_ms or clock.now_ms
                    given = driver.pipe(_our_topic(getattr(module, step.target)), step.value, key=step.key,
                                        timestamp=step.timestamp_ms, partition=step.partition)
                    inputs.add((given.topic, given.partition, given.offset))
                else:
                    clock.now_ms = driver.now_ms = step.at_ms or clock.now_ms
                    # A timer fires after the records before it were processed, as in a worker (where a task waits
                    # for an empty input at most max_task_idle_ms): the driver holds them until a flush.
                    driver.flush()
                    asyncio.run(step.run(module))
                    while sent:
                        topic, key, value, partition = sent.pop(0)
                        driver.pipe(topic, value, key=key, partition=partition)
            if scenario.ours_after is not None:
                scenario.ours_after(module, driver)
            for attr in scenario.topics:
                outcome.records[attr] = [(r.key, r.value) for r in driver.all(_our_topic(getattr(module, attr)))
                                         if (r.topic, r.partition, r.offset) not in inputs]
            for attr in scenario.tables:
                outcome.tables[attr] = plain(driver.table(getattr(module, attr).name))
    outcome.state = {attr: plain(getattr(module, attr)) for attr in scenario.state}
    return outcome


def _our_topic(obj: Any) -> str:
    """The topic name of a topic or an agent (this engine)."""
    topics = getattr(obj, "topics", None)
    if topics:
        return str(topics[0].name)
    return str(obj.name)
