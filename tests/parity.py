"""Helpers of tests/integration/test_driver_parity.py: one case's input records run through the broker-less
:class:`~stream_processor.engine.testing.TestDriver` and through a real worker on the broker, and the outputs of
both compared record by record.

A case's input is a list of :class:`Input` records (topic, partition, key, value, headers, Kafka timestamp in ms
since the epoch), in the order they are piped into the driver; the broker gets the same records, in the same order
per partition, so at the same offsets. Outputs are read per topic and partition in offset order, progress records
(header ``sp-progress``, engine bookkeeping) left out, and compared field by field: key, value, headers, timestamp
(:func:`differences`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import re
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from stream_processor import App
from stream_processor.engine.kafka_internals import DefaultPartitioner
from stream_processor.engine.partition_group import is_progress
from stream_processor.engine.settings import Settings
from stream_processor.engine.testing import TestDriver
from stream_processor.engine.topics import ensure_topics
from stream_processor.engine.worker import Worker
from stream_processor.market.replay import FeedReader
from tests.helpers import read_topic, wait_for, wait_until_settled

_PARTITIONER = DefaultPartitioner()
#: A worker's start, drain and stop each get this long (s) before the case fails with what it was waiting for.
TIMEOUT_S = 120.0
#: Differences shown per case when outputs differ (the first ones of each topic and partition).
SHOWN = 12
_RUN_ID = re.compile(r"-[0-9a-f]{8}(?=-|$)")  # the unique part of a run's topic names


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` among ``partitions`` (murmur2), as the driver and
    aiokafka's producer do."""
    parts = list(range(partitions))
    return int(_PARTITIONER(key, parts, parts))


@dataclass(frozen=True)
class Input:
    """One input record of a case: where it goes and what it is (``timestamp``: ms since the epoch)."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int


@dataclass(frozen=True)
class Out:
    """One output record as read back (driver or broker); ``offset`` names it in reports, it is not compared."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int

    def header(self, name: str) -> str | None:
        """The first header ``name``, as text."""
        return next((v.decode(errors="replace") for k, v in self.headers if k == name), None)


def _out(rec: Any) -> Out:
    headers = tuple((str(k), bytes(v)) for k, v in (rec.headers or ()))
    return Out(rec.topic, rec.partition, rec.offset, rec.key, rec.value, headers, rec.timestamp)


# ---- input ---------------------------------------------------------------------------------------------------------
def feed_inputs(path: Path, lines: int, topics: Mapping[str, str], partitions: Mapping[str, int],
                kinds: Iterable[str] | None = None) -> list[Input]:
    """The first ``lines`` lines of a recorded feed file as the replay publishes them (``stream-processor replay``:
    its JSON unchanged, on the raw topic of its family, keyed by symbol), stamped with their recorded receive time
    (ms) instead of the moment of publishing, so both runs get the same timestamps, each with a header naming the
    file. ``topics``: raw topic per family (``replay.topics``); ``partitions``: partition count per topic; ``kinds``:
    the families kept (default all)."""
    keep = set(kinds) if kinds is not None else None
    out = []
    for msg in itertools.islice(FeedReader([path]), lines):
        if keep is not None and msg.kind not in keep:
            continue
        topic = topics[msg.kind]
        key = msg.symbol.encode() if msg.symbol else None
        partition = 0 if key is None else partition_of(key, partitions[topic])
        out.append(Input(topic, partition, key, msg.raw, (("feed", path.name.encode()),), msg.ns // 1_000_000))
    return out


def merged(records: Iterable[Input], priority: Sequence[str] = ()) -> list[Input]:
    """``records`` in timestamp order, ties by ``priority`` (topics, first first), each partition's records in their
    order: the order in which a task with several inputs takes them (engine/partition_group.py)."""
    rank = {t: i for i, t in enumerate(priority)}
    partitions: dict[tuple[str, int], list[Input]] = defaultdict(list)
    for r in records:
        partitions[(r.topic, r.partition)].append(r)
    return list(heapq.merge(*partitions.values(), key=lambda r: (r.timestamp, rank.get(r.topic, len(rank)))))


def with_bad(records: list[Input], bad: list[tuple[int, bytes]]) -> list[Input]:
    """``records`` with a bad value after record ``i`` of each ``(i, value)``, on its partition, with its key,
    headers and timestamp (so among the valid records of its symbol)."""
    out = list(records)
    for i, value in sorted(bad, reverse=True):
        r = records[i]
        out.insert(i + 1, Input(r.topic, r.partition, r.key, value, r.headers, r.timestamp))
    return out


def retention_off(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (a settings document) with ``retention_ms: -1`` on every topic of its ``topics`` section: the inputs
    carry timestamps of 2024, and every output is stamped with its input's, which a 7-day retention would let the
    broker delete at its next retention check."""
    doc["topics"] = {name: {**spec, "retention_ms": -1} for name, spec in doc["topics"].items()}
    return doc


# ---- the two runs --------------------------------------------------------------------------------------------------
def pipe_all(driver: TestDriver, records: Iterable[Input]) -> None:
    """Pipe ``records`` into the driver, each at its partition (and so at the partition's next offset)."""
    for r in records:
        driver.pipe(r.topic, r.value, r.key, timestamp=r.timestamp, headers=list(r.headers), partition=r.partition)


def driver_outputs(driver: TestDriver, topics: Iterable[str]) -> list[Out]:
    """Every committed record of ``topics`` in the driver (progress records left out), by topic, partition,
    offset."""
    out = [_out(r) for t in sorted(set(topics)) for r in driver.all(t)]
    return sorted(out, key=lambda r: (r.topic, r.partition, r.offset))


async def publish(bootstrap: str, records: Sequence[Input]) -> list[tuple[str, int, int]]:
    """Produce ``records`` in order (idempotent, acks=all), each to its own partition with its timestamp and
    headers; returns where each landed ``(topic, partition, offset)``."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        sent = [await producer.send(r.topic, r.value, key=r.key, partition=r.partition, timestamp_ms=r.timestamp,
                                    headers=list(r.headers)) for r in records]
        metas = await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return [(m.topic, m.partition, m.offset) for m in metas]


def expected_offsets(records: Sequence[Input], before: Mapping[tuple[str, int], int] | None = None
                     ) -> list[tuple[str, int, int]]:
    """Where ``records`` land when appended in order to partitions holding ``before`` records each (default
    empty): the offsets the driver gives them, which the broker must give them too."""
    nxt: Counter[tuple[str, int]] = Counter(before or {})
    out = []
    for r in records:
        out.append((r.topic, r.partition, nxt[(r.topic, r.partition)]))
        nxt[(r.topic, r.partition)] += 1
    return out


@contextlib.asynccontextmanager
async def worker_running(settings: Settings, app: Any = None, only: list[str] | None = None
                         ) -> AsyncIterator[tuple[Worker, Callable[[], None]]]:
    """An in-process worker of ``settings`` (and ``app``'s agents), its topics created first, ready (every task of
    its first assignment open, state restored) when this enters: yields it and ``alive()`` (AssertionError once
    its run has ended, with its error). Stopped gracefully (everything open commits) on exit."""
    worker = Worker(settings, only=only, app=app)
    await ensure_topics(settings, worker.topics)
    task = asyncio.create_task(worker.run())

    def alive() -> None:
        assert not task.done(), f"the worker stopped: {task.exception() if not task.cancelled() else 'cancelled'}"

    async def ready() -> bool:
        alive()
        return worker.starting is None and all(r.ready for r in worker.runners)

    try:
        await wait_for(ready, TIMEOUT_S, message=lambda: f"worker ready ({worker.starting}, "
                                                         f"{[(r.name, r.state) for r in worker.runners]})")
        yield worker, alive
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, timeout=TIMEOUT_S)


async def settle(bootstrap: str, settings: Settings, processors: Sequence[str], alive: Callable[[], None]) -> None:
    """Wait until every group of ``processors`` has committed the end of its inputs and no transaction is open on
    their outputs. ``processors`` go upstream first (a repartition stage before the body reading its topic): the
    lags are read in that order, so a downstream input is read after its writer has committed all of it."""
    groups = {settings.stream_processors[n].consumer_group: settings.stream_processors[n].input_topics
              for n in processors}
    await wait_until_settled(bootstrap, groups, outputs_of(settings, processors), timeout=TIMEOUT_S, alive=alive)


async def broker_outputs(bootstrap: str, topics: Iterable[str]) -> list[Out]:
    """Every committed record of ``topics`` on the broker (read_committed; progress records left out), by topic,
    partition, offset."""
    out = [_out(r) for t in sorted(set(topics)) for r in await read_topic(bootstrap, t) if not is_progress(r.headers)]
    return sorted(out, key=lambda r: (r.topic, r.partition, r.offset))


# ---- a case both ways -------------------------------------------------------------------------------------------
def outputs_of(settings: Settings, processors: Sequence[str]) -> list[str]:
    """Every topic ``processors`` write: outputs (with the extra topics they send to) and dead-letter topics."""
    procs = [settings.stream_processors[n] for n in processors]
    return sorted({t for p in procs for t in (*p.sends_to(), p.dead_letter_topic)})


def run_driver(settings: Settings, app: App | None, processors: list[str], inputs: list[Input],
               **driver_args: Any) -> list[Out]:
    """The driver's outputs of ``processors`` over ``inputs``."""
    with TestDriver(app, settings=settings, processors=processors, **driver_args) as driver:
        pipe_all(driver, inputs)
        return driver_outputs(driver, outputs_of(settings, processors))


async def create_topics(settings: Settings, app: App | None) -> None:
    """Create every topic the worker of ``settings`` (and ``app``) would: the inputs must exist to publish them."""
    await ensure_topics(settings, Worker(settings, app=app).topics)


async def run_broker(bootstrap: str, settings: Settings, app: App | None, processors: list[str],
                     inputs: list[Input]) -> list[Out]:
    """Publish ``inputs``, run a worker until every group of ``processors`` (upstream first) has committed them,
    stop it, and read every output back."""
    await create_topics(settings, app)
    assert await publish(bootstrap, inputs) == expected_offsets(inputs)  # the offsets the driver gave them
    async with worker_running(settings, app) as (_, alive):
        await settle(bootstrap, settings, processors, alive)
    return await broker_outputs(bootstrap, outputs_of(settings, processors))


async def parity(case: str, bootstrap: str, settings: Settings, app: App | None, processors: list[str],
                 inputs: list[Input], writers: Mapping[str, Writer] | None = None, **driver_args: Any) -> list[Out]:
    """Run ``inputs`` both ways, assert the outputs are the same, print the coverage line; return the outputs."""
    expected = run_driver(settings, app, processors, inputs, **driver_args)
    got = await run_broker(bootstrap, settings, app, processors, inputs)
    print(coverage(case, len(inputs), outputs_of(settings, processors), got))
    assert_same(case, expected, got, writers)
    return got


# ---- comparison ----------------------------------------------------------------------------------------------------
Writer = Callable[[Out], Hashable]


def dead_letter_writer(rec: Out) -> Hashable:
    """The task that wrote a dead letter: its processor and input partition (the ``processor`` and
    ``source_partition`` headers)."""
    return rec.header("processor"), rec.header("source_partition")


def task_of_key(partitions: int) -> Writer:
    """The task that wrote an output keyed like its input: the partition of its key among the input's
    ``partitions``."""
    return lambda rec: -1 if rec.key is None else partition_of(rec.key, partitions)


def by_key(rec: Out) -> Hashable:
    """The record's key: for outputs whose keys each come from one writer, in an order of their own."""
    return rec.key


def _fields(rec: Out, unstable: Callable[[Out], frozenset[str]] | None) -> tuple[Any, ...]:
    drop = unstable(rec) if unstable is not None else frozenset()
    return rec.key, rec.value, tuple(h for h in rec.headers if h[0] not in drop), rec.timestamp


def _show(rec: Out | None) -> str:
    if rec is None:
        return "(none)"
    value = (rec.value or b"")[:600]
    return (f"offset {rec.offset}: key={rec.key!r} timestamp={rec.timestamp} headers={list(rec.headers)} "
            f"value={value!r}{'...' if rec.value and len(rec.value) > 600 else ''}")


def differences(case: str, driver: Sequence[Out], broker: Sequence[Out], writers: Mapping[str, Writer] | None = None,
                unstable: Mapping[str, Callable[[Out], frozenset[str]]] | None = None) -> list[str]:
    """Where the broker's outputs differ from the driver's: per topic and partition, the records in offset order,
    compared by key, value, headers and timestamp.

    ``writers``: for a topic whose partitions several tasks write (a one-partition dead-letter topic, an output with
    fewer partitions than the input), the writer of a record (:func:`dead_letter_writer`, :func:`task_of_key`):
    each writer's records are compared in offset order, since how the writers' transactions interleave in the
    partition is the order they committed in. ``unstable``: per topic, the header names of a record that may
    legitimately differ (an offset of an intermediate topic). Returns one line per difference: case, topic,
    partition (and writer), offsets and both records.
    """
    writers, unstable = dict(writers or {}), dict(unstable or {})
    groups: dict[tuple[str, int, Hashable], tuple[list[Out], list[Out]]] = defaultdict(lambda: ([], []))
    for side, records in ((0, driver), (1, broker)):
        for rec in records:
            writer_of = writers.get(rec.topic)
            groups[(rec.topic, rec.partition, writer_of(rec) if writer_of else None)][side].append(rec)
    found = []
    for (topic, partition, writer), (mine, theirs) in sorted(groups.items(), key=lambda kv: repr(kv[0])):
        where = f"{case}: {topic}[{partition}]" + (f" writer {writer!r}" if writer is not None else "")
        strip = unstable.get(topic)
        for i, (a, b) in enumerate(itertools.zip_longest(mine, theirs)):
            if a is None or b is None or _fields(a, strip) != _fields(b, strip):
                found.append(f"{where}, record {i} (driver {len(mine)} records, broker {len(theirs)}):\n"
                             f"  driver {_show(a)}\n  broker {_show(b)}")
                break  # the first difference of each partition (and writer): later ones usually follow from it
    return found


def assert_same(case: str, driver: Sequence[Out], broker: Sequence[Out], writers: Mapping[str, Writer] | None = None,
                unstable: Mapping[str, Callable[[Out], frozenset[str]]] | None = None) -> None:
    """AssertionError listing the first :data:`SHOWN` :func:`differences`, if any."""
    found = differences(case, driver, broker, writers, unstable)
    assert not found, f"{len(found)} difference(s) between the driver and the broker:\n" + "\n".join(found[:SHOWN])


def coverage(case: str, inputs: int, topics: Iterable[str], outputs: Sequence[Out]) -> str:
    """One line saying what a case compared: its input records and the output records of each of ``topics`` (the
    run's unique part of the names left out)."""
    per_topic = Counter(r.topic for r in outputs)
    shown = ", ".join(f"{_RUN_ID.sub('', t)}={per_topic[t]}" for t in sorted(set(topics)))
    return f"parity {case}: {inputs} inputs, {len(outputs)} outputs compared ({shown})"
