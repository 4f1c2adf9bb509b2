"""The broker form of a faust-streaming example program: run by the worker on a real broker, killed with ``kill -9``
mid-stream and restarted, and compared with faust-streaming's own ``test_context`` on the same input.

:func:`run_on_broker` takes a :class:`BrokerRun` (the program, its input as :class:`~.harness.Put` steps, the tables
and the topics compared) and does, against the broker at ``bootstrap``:

1. writes the program, with only its import lines changed (:func:`~.harness.port`), to
   ``<tmp>/worker/faust_programs_<name>.py``: the module name :func:`~.harness.load` gives it in both in-process
   runs, so the names Faust derives from it (an agent's own topic ``<app id>-<module>.<function>``, a Record's
   ``__faust`` namespace) are the same on the broker as under ``test_context``;
2. creates the input topics with the partitions the engine gives them from the program (``App(topic_partitions=)``
   or the topic's ``partitions=``; 1 where the program names neither);
3. starts worker 1 (``python -m stream_processor -A faust_programs_<name>:app worker``, the broker given by
   ``KAFKA_BOOTSTRAP_SERVERS``, which wins over the program's ``broker=``), and sends the input at about
   ``rate`` records/s (an idempotent producer: every record is in its topic once);
4. kills worker 1 with SIGKILL once its consumer groups have committed ``kill_at`` records of the input topics,
   asserting that the input is still being sent (the kill is mid-stream), and starts worker 2;
5. once the input is complete (sent, and for a program that sends to its own input, :attr:`BrokerRun.settled`),
   reads the input topics back: they must hold the steps' records exactly (none lost, none twice), and only the
   program's own records beside them; these, at their broker timestamps, follow the steps as further input;
6. runs the program under faust-streaming 0.15.3's ``test_context`` (:func:`~.harness.run_faust`) on that input:
   the expected tables and records;
7. polls (read_committed) the tables, each folded from its processor's changelog topic, and the compared topics,
   until they equal the expected ones or :data:`DEADLINE_S` passes (asserting worker 2 is alive), stops worker 2
   with SIGTERM (asserting it exits 0), and returns what the broker holds then (with each table key's values in
   changelog order, :attr:`BrokerOutcome.histories`), what Faust gave, and when each step happened.

A table on the broker is its changelog topic (:func:`~stream_processor.engine.topics.changelog_topic` of the
processor that holds it: an agent's name; the body stage of a ``group_by`` agent, which has the agent's name; the
``a__b`` processor of agents that share a table) folded under read_committed: keys ``\\x01<table>\\x00<store key>``
(a store key is the ``str`` key itself, or ``\\x02`` + JSON: a windowed key is ``\\x02["key",[start_s,end_s]]``),
values decoded with :func:`~stream_processor.engine.records.decode_state`, a None value a tombstone, the last record
of a key winning; other keys (offset markers, a store's metadata) are skipped. A topic's records are compared as a
multiset: sorted ``(key, value)`` bytes, equal when none is lost and none is written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import types
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import ConsumerRecord

from stream_processor.engine.records import decode_state
from stream_processor.engine.set_table import SetTable
from stream_processor.engine.topics import changelog_topic

from .harness import Outcome, Put, Scenario, load, plain, port, run_faust, source_of

ROOT = Path(__file__).resolve().parents[2]
#: How long worker 2 may take to reach Faust's results after the input is complete (s).
DEADLINE_S = 180
#: How long worker 1 may take to commit ``kill_at`` input records (s).
KILL_DEADLINE_S = 120

KeyValue = tuple[bytes | None, bytes | None]


@dataclass
class BrokerRun:
    """One program's broker run. ``steps``: its input (Puts to module attributes naming topics or agents, with a
    timestamp, ms since the epoch, and optionally a partition), sent in this order at about ``rate`` records/s;
    ``kill_at``: the number of input records worker 1's consumer groups have committed when it gets SIGKILL;
    ``tables``: module attribute of a table -> the processor whose changelog holds it; ``topics``: module
    attributes (topics or agents) whose records are compared; ``settled``: for a program that sends to its own input
    (an ``app.task``), True once worker 2's log shows it has finished (the input is complete then).

    Record times must be near the wall clock (or ahead of it, up to the broker's
    ``log.message.timestamp.after.max.ms``, an hour by default): the broker deletes a segment whose newest record
    is older than ``retention.ms`` (7 days) at its next retention check, so old times lose input under the worker."""

    name: str
    steps: list[Put]
    kill_at: int
    tables: dict[str, str] = field(default_factory=dict)
    topics: tuple[str, ...] = ()
    rate: float = 500.0
    settled: Callable[[str], bool] | None = None


@dataclass
class BrokerOutcome:
    """What the broker holds at the end (``ours``) and what ``test_context`` gave on the same input (``faust``),
    both as :class:`~.harness.Outcome` (tables through :func:`~.harness.plain`, each topic's records sorted);
    ``extra_input``: the records the program sent to its own input topics, by topic."""

    ours: Outcome
    faust: Outcome
    extra_input: dict[str, list[KeyValue]]
    committed_at_kill: int
    #: Table attribute -> key -> each value its changelog gave it (read_committed, in order; None: deleted).
    histories: dict[str, dict[Any, list[Any]]]
    #: Seconds from worker 1's start: its kill, the input's end (the steps sent and the program's own input
    #: settled), Faust's results known, the broker's equal to them (or the deadline), worker 2 stopped.
    timeline: dict[str, float] = field(default_factory=dict)


def topic_name(obj: Any) -> str:
    """The topic of a module attribute (this engine's objects): a topic's name, an agent's own topic."""
    topics = getattr(obj, "topics", None)
    return str(topics[0].name if topics else obj.name)


def store_key(skey: str) -> Any:
    """A table key from its store key: the ``str`` itself, or the JSON after ``\\x02`` with arrays as tuples (a
    windowed key ``(key, (start_s, end_s))``, as Faust's ``table.data`` has it)."""
    if skey[:1] != "\x02":
        return skey
    return _tuples(orjson.loads(skey[1:]))


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def fold(records: list[ConsumerRecord[bytes, bytes]], store: str, as_set: bool = False,
         history: dict[Any, list[Any]] | None = None) -> dict[Any, Any]:
    """The table ``store`` as the changelog ``records`` (in offset order per partition) leave it: the last value of
    each key, a None value deleting it; a SetTable's values (``as_set``) as sets. ``history``, if given, gets every
    value of each key in order (the states a reader of the changelog saw). Raises AssertionError for a key written
    in two partitions (a table key lives in the partition of the record that wrote it)."""
    table: dict[Any, Any] = {}
    where: dict[Any, int] = {}
    prefix = b"\x01" + store.encode() + b"\x00"
    for rec in records:
        if rec.key is None or not rec.key.startswith(prefix):
            continue  # another table's, an offset marker or a store's metadata
        key = store_key(rec.key[len(prefix):].decode())
        assert where.setdefault(key, rec.partition) == rec.partition, \
            f"table {store}: key {key!r} in changelog partitions {where[key]} and {rec.partition}"
        if rec.value is None:
            table.pop(key, None)
        else:
            value = decode_state(rec.value)
            table[key] = set(value) if as_set else value
        if history is not None:
            history.setdefault(key, []).append(table.get(key))
    return table


async def read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` under read_committed, partition by partition in offset order ([] if it does not
    exist)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # partitions_for_topic answers from fetched metadata only
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        if not parts:
            return []
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)  # read_committed: the last stable offsets
        for tp in tps:
            await consumer.seek_to_beginning(tp)
        out: dict[int, list[ConsumerRecord[bytes, bytes]]] = {p: [] for p in parts}
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=1000)
            for tp, records in batch.items():
                out[tp.partition].extend(r for r in records if r.offset < ends[tp])
        return [r for p in parts for r in out[p]]
    finally:
        await consumer.stop()


async def produce(bootstrap: str, sends: list[tuple[str, Put]], rate: float) -> None:
    """Send ``sends`` (topic, step) at about ``rate`` records/s (idempotent, acks=all); raises the first error of a
    send (a record the broker did not take)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    started = time.monotonic()
    try:
        acks = []
        for i, (topic, step) in enumerate(sends):
            acks.append(await producer.send(topic, step.value, key=step.key, partition=step.partition,
                                            timestamp_ms=step.timestamp_ms))
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


class Worker:
    """``python -m stream_processor -A <module>:app worker`` in ``workdir``, logging to ``<workdir>/<name>.log``."""

    def __init__(self, workdir: Path, module: str, bootstrap: str, name: str) -> None:
        self.log = workdir / f"{name}.log"
        self.name = name
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PROCESSOR_ID": name, "PYTHONUNBUFFERED": "1",
               "METRICS_PORT": "0", "HEALTH_CHECK_PORT": "0",  # any free ports: other tests' workers run beside it
               "PYTHONPATH": os.pathsep.join([str(workdir), str(workdir.parent), str(ROOT)])}
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "stream_processor", "-A", f"{module}:app", "worker"],
                                            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def assert_alive(self) -> None:
        assert self.process.poll() is None, f"{self.name} exited ({self.process.returncode}):\n{self.tail()}"

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after 60 s; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


async def create_topics(bootstrap: str, partitions: dict[str, int]) -> None:
    """Create the input topics (replication 1); one left by an earlier run on this broker fails the test."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, n, 1) for t, n in sorted(partitions.items())])
    except TopicAlreadyExistsError:
        pytest.fail(f"topics {sorted(partitions)} exist already: an earlier run left them; use a fresh broker")
    finally:
        await admin.close()


async def committed(admin: AIOKafkaAdminClient, groups: list[str], topics: set[str]) -> int:
    """The offsets ``groups`` have committed on ``topics``, summed (records consumed: the input is not
    transactional, so an offset counts records)."""
    total = 0
    for group in groups:
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        except KafkaError as exc:
            if not exc.retriable:
                raise
            continue  # the offsets topic is being created, the coordinator is moving: nothing to count yet
        total += sum(meta.offset for tp, meta in offsets.items() if tp.topic in topics and meta.offset > 0)
    return total


@dataclass
class _Program:
    """The program as the worker runs it (its module loaded here with the worker's module name)."""

    module: types.ModuleType
    inputs: dict[str, int]  # input topic -> partitions
    groups: list[str]  # the consumer groups reading the input topics
    changelogs: dict[str, tuple[str, str, bool]]  # table attribute -> (changelog topic, store name, is a SetTable)
    topics: dict[str, str]  # compared attribute -> topic


def _program(run: BrokerRun) -> _Program:
    module = load(run.name, port(source_of(run.name)))
    settings = module.app.settings
    inputs = {topic_name(getattr(module, s.target)): 0 for s in run.steps}
    inputs = {t: settings.topic(t).partitions for t in inputs}
    groups = [p.consumer_group for p in settings.stream_processors.values() if set(p.input_topics) & set(inputs)]
    changelogs = {}
    for attr, processor in run.tables.items():
        assert processor in settings.stream_processors, \
            f"{run.name}: no processor {processor!r}; the app registers {sorted(settings.stream_processors)}"
        table = getattr(module, attr)
        changelogs[attr] = (changelog_topic(settings, processor), table.name, isinstance(table, SetTable))
    return _Program(module, inputs, groups, changelogs, {a: topic_name(getattr(module, a)) for a in run.topics})


async def _broker_state(bootstrap: str, program: _Program,
                        histories: dict[str, dict[Any, list[Any]]] | None = None) -> Outcome:
    state = Outcome()
    for attr, (topic, store, as_set) in program.changelogs.items():
        history = None if histories is None else histories.setdefault(attr, {})
        state.tables[attr] = plain(fold(await read_topic(bootstrap, topic), store, as_set, history))
    for attr, topic in program.topics.items():
        state.records[attr] = sorted((r.key, r.value) for r in await read_topic(bootstrap, topic))
    return state


async def _faust_outcome(run: BrokerRun, steps: list[Put]) -> Outcome:
    """``test_context``'s results on ``steps`` (its monkeypatches, the pinned clock among them, undone after)."""
    scenario = Scenario(list(steps), topics=run.topics, tables=tuple(run.tables))
    with pytest.MonkeyPatch.context() as patch:
        outcome = await asyncio.wait_for(run_faust(run.name, scenario, patch), 300)
    outcome.records = {attr: sorted(records) for attr, records in outcome.records.items()}
    return outcome


async def _read_input(bootstrap: str, run: BrokerRun, program: _Program,
                      sends: list[tuple[str, Put]]) -> tuple[list[Put], dict[str, list[KeyValue]]]:
    """The input topics read back: asserts each of the steps' records is there exactly once; returns the other
    records (the program's own sends) as Puts at their broker timestamps, and by topic."""
    targets = {topic: step.target for topic, step in sends}
    extra_steps: list[Put] = []
    extra: dict[str, list[KeyValue]] = {}
    for topic in program.inputs:
        want = Counter((s.key, s.value) for t, s in sends if t == topic)
        records = await read_topic(bootstrap, topic)
        have = Counter((r.key, r.value) for r in records)
        assert not want - have, f"input topic {topic}: {sum((want - have).values())} records of the input are lost"
        seen: Counter[KeyValue] = Counter()
        for rec in sorted(records, key=lambda r: r.timestamp):
            seen[(rec.key, rec.value)] += 1
            if seen[(rec.key, rec.value)] > want[(rec.key, rec.value)]:
                extra.setdefault(topic, []).append((rec.key, rec.value))
                extra_steps.append(Put(targets[topic], rec.value, key=rec.key, timestamp_ms=rec.timestamp))
    assert run.settled is not None or not extra, f"records in the input topics that were not sent: {extra}"
    return sorted(extra_steps, key=lambda p: p.timestamp_ms or 0), extra


async def run_on_broker(run: BrokerRun, bootstrap: str, tmp_path: Path) -> BrokerOutcome:
    """The steps of the module docstring: the broker's tables and records at the end, and Faust's."""
    workdir = tmp_path / "worker"
    workdir.mkdir()
    module = f"faust_programs_{run.name}"
    (workdir / f"{module}.py").write_text(port(source_of(run.name)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        program = _program(run)
    sends = [(topic_name(getattr(program.module, s.target)), s) for s in run.steps]
    await create_topics(bootstrap, program.inputs)

    first = Worker(workdir, module, bootstrap, "w1")
    started = time.monotonic()
    timeline: dict[str, float] = {}

    def mark(what: str) -> None:
        timeline[what] = round(time.monotonic() - started, 1)

    second: Worker | None = None
    sending = asyncio.create_task(produce(bootstrap, sends, run.rate))
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            deadline = time.monotonic() + KILL_DEADLINE_S
            while (done := await committed(admin, program.groups, set(program.inputs))) < run.kill_at:
                first.assert_alive()
                assert not sending.done(), f"the input ended before w1 committed {run.kill_at} records ({done})"
                assert time.monotonic() < deadline, f"w1 committed {done} input records in {KILL_DEADLINE_S} s"
                await asyncio.sleep(0.1)
        finally:
            await admin.close()
        first.kill()  # mid-stream: the producer is still sending
        mark("kill")
        assert not sending.done(), f"the input ended before the kill ({done} records committed)"
        second = Worker(workdir, module, bootstrap, "w2")
        await sending
        deadline = time.monotonic() + DEADLINE_S
        while run.settled is not None and not run.settled(second.log.read_text(errors="replace")):
            second.assert_alive()
            assert time.monotonic() < deadline, f"w2's own input not settled in {DEADLINE_S} s:\n{second.tail()}"
            await asyncio.sleep(0.5)
        mark("input")
        extra_steps, extra = await _read_input(bootstrap, run, program, sends)
        expected = await _faust_outcome(run, run.steps + extra_steps)
        mark("faust")

        ours = await _broker_state(bootstrap, program)
        while (ours.tables, ours.records) != (expected.tables, expected.records) and time.monotonic() < deadline:
            second.assert_alive()
            await asyncio.sleep(1.0)
            ours = await _broker_state(bootstrap, program)
        mark("equal")
        if (ours.tables, ours.records) != (expected.tables, expected.records):
            print(f"{run.name}: not Faust's results {DEADLINE_S} s after the input; w2's log:\n{second.tail()}")
        second.assert_alive()
        code = second.stop()
        mark("stopped")
        assert code == 0, f"w2 exited {code} on SIGTERM:\n{second.tail()}"
        histories: dict[str, dict[Any, list[Any]]] = {}
        ours = await _broker_state(bootstrap, program, histories)  # after the stop: nothing more was written
    finally:
        for worker in (first, second):
            if worker is not None:
                worker.stop()
        if not sending.done():
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending
    return BrokerOutcome(ours, expected, extra, done, histories, timeline)
