"""A test driver that needs no broker, like Kafka Streams' TopologyTestDriver (and Faust's ``test_context``).

.. code-block:: python

    driver = TestDriver(app)                      # or TestDriver(settings=..., processors=["trades"])
    driver.pipe("raw_trades", trade_json, key=b"BTCUSDT", timestamp=1_700_000_000_000)
    driver.values("enriched_trades")              # the JSON values written since the last read
    driver.table("trade_counts")                  # a table's contents, over every partition
    driver.advance_time(60_000)                   # the wall clock: timers of take(), wall-clock punctuation
    driver.restart()                              # drop every task; restore the stores from the changelog kept

It runs the worker's own tasks (:mod:`stream_processor.engine.task`: processing, poison isolation, dead letters,
check and isolate modes, commits, restores) and task manager over in-memory clients
(:mod:`stream_processor.engine.memory`) instead of Kafka's, as TopologyTestDriver runs the real StreamTask over mock
clients. Each processor is one consumer that owns every partition of its inputs; a task commits every
``commit_every`` records, and its outputs are then visible to the processors that read them (a re-keyed agent's
repartition topic, chained agents), which run next. A piped record is processed to the end of everything it causes,
except in a task with several inputs: it takes them in timestamp order, so a record waits while another input has
nothing to compare it with (another processor's output not committed yet, say) until a later record or a flush
(reading a topic, a table or the clock) brings it; at a flush, once nothing else can happen, it goes on without
that input (as if ``max_task_idle_ms`` ran out: ``ProcessorContext.enforced`` says so).
Partitions are Kafka's (murmur2 of the key); a topic gets the partitions of the settings' ``topics`` section (1 if
absent) unless ``partitions`` says otherwise. Times are ms since the epoch.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import TopicPartition

from . import processor as processor_module
from .breaker import CircuitBreaker
from .checkpoint import transactional_id
from .kafka_internals import DefaultPartitioner
from .memory import MemoryBroker, MemoryConsumer, MemoryProducer, MemoryRecord
from .partition_group import is_progress
from .processor import Processor, encode_key, encode_value
from .registry import build_processor
from .replicas import feed_from, sources
from .settings import Settings
from .state import OFFSET_KEY
from .task import AgentAwaitsIO, TaskEnv
from .task_manager import TaskManager
from .topics import DEFAULT_MAX_MESSAGE_BYTES, MAX_REQUEST_BYTES, RECORD_OVERHEAD, changelog_topic

_PARTITIONER = DefaultPartitioner()
#: The largest record a topic takes here: what the worker finds for a topic with Kafka's default configs.
DEFAULT_LIMIT = min(DEFAULT_MAX_MESSAGE_BYTES, MAX_REQUEST_BYTES) - RECORD_OVERHEAD


@dataclass(frozen=True)
class TestRecord:
    """One record of a driver's topic."""

    __test__ = False  # not a pytest class

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int

    def json(self) -> Any:
        """The value as JSON."""
        return None if self.value is None else orjson.loads(self.value)

    def header(self, name: str) -> str | None:
        """The first header ``name``, as text."""
        return next((v.decode() for k, v in self.headers if k == name), None)


def _test_record(record: MemoryRecord) -> TestRecord:
    return TestRecord(record.topic, record.partition, record.offset, record.key, record.value, record.headers,
                      record.timestamp)


class _Processor:
    """One processor in the driver: its consumer (owning every partition of its inputs) and its task manager."""

    def __init__(self, driver: TestDriver, processor: Processor) -> None:
        settings = driver.settings
        psettings = processor.settings
        broker = driver.broker
        self.name = processor.name
        self.consumer = MemoryConsumer(broker, psettings.consumer_group)
        self.env = TaskEnv(
            processor, settings, consumer=self.consumer, restore_consumer=MemoryConsumer(broker),
            new_producer=lambda inputs: MemoryProducer(
                broker, transactional_id(settings.app_id, psettings.consumer_group, inputs)
                if psettings.processing_mode == "exactly_once" else None),
            clock_ms=lambda: driver.now_ms, allow_io=False, idle_until_forced=True)
        self.env.limits.update(dict.fromkeys(self.env.written_topics, DEFAULT_LIMIT))
        cb = settings.circuit_breaker
        breaker = CircuitBreaker(cb.failures, cb.backoff_ms / 1000, cb.max_backoff_ms / 1000)
        self.manager = TaskManager(self.env, breaker)
        self.partitions = {TopicPartition(t, p) for t in psettings.input_topics for p in broker.partitions_for(t)}

    async def open(self) -> None:
        """Take every partition of the inputs and open every task (restoring its state from the changelog)."""
        self.consumer.assign(sorted(self.partitions))
        await self.manager.assign(self.partitions)
        while await self.manager.open_next():
            pass
        failed = next((t.open_error for t in self.manager.tasks.values() if t.open_error is not None), None)
        if failed is not None:
            raise failed  # a test wants to see it (the worker retries with a backoff)

    async def close(self) -> None:
        for task in self.manager.revoke_all():
            await self.manager.close(task)


class TestDriver:
    """Pipe records into an app's input topics; read its output topics and tables (see the module docstring).

    ``app``: an :class:`~stream_processor.engine.app.App` (its enabled agents and processors run), or ``settings``
    with ``processors`` (names of entries; default every enabled one) for processors of the global registry.
    ``start_ms``: the driver's wall clock at the start. ``commit_every``: records per transaction and task (1: every
    record is committed before the next; more: faster for long inputs; reading a topic, a table or the clock
    commits what is open first, :meth:`restart` aborts it).
    """

    __test__ = False

    def __init__(self, app: Any = None, *, settings: Settings | None = None, processors: list[str] | None = None,
                 partitions: dict[str, int] | None = None, start_ms: int = 1_700_000_000_000,
                 commit_every: int = 1) -> None:
        if app is not None:
            settings = settings or app.settings
        if settings is None:
            raise ValueError("TestDriver needs an app or settings")
        if commit_every < 1:
            raise ValueError(f"commit_every must be >= 1, got {commit_every}")
        self.settings = settings
        self.commit_every = commit_every
        self.now_ms = start_ms
        self._partitions = dict(partitions or {})
        self._changelogs = {changelog_topic(settings, name): p.input_topics
                            for name, p in settings.stream_processors.items()}
        self._changelogs_of = {changelog_topic(settings, name): name for name in settings.stream_processors}
        self._stale: set[tuple[str, int]] = set()  # tasks whose changelog was written from outside
        self.broker = MemoryBroker(self.partitions, lambda: self.now_ms)
        types = app.types if app is not None else None
        self._topics: dict[str, Any] = dict(getattr(app, "topics", None) or {})
        names = processors or [n for n, p in settings.stream_processors.items() if p.enabled]
        self.processors: dict[str, Processor] = {n: build_processor(n, settings, types) for n in names}
        self._returned: dict[str, set[tuple[int, int]]] = {}
        self._previous_clock = processor_module.wall_clock_ms
        processor_module.wall_clock_ms = lambda: self.now_ms
        self._runs = [_Processor(self, p) for p in self.processors.values()]
        self._feeds = sources(settings, self.processors, getattr(app, "tables", None) or {})  # global tables
        self._replicated: dict[tuple[str, int], int] = {}  # changelog partition -> next index to feed
        for run in self._runs:
            _sync(run.open())

    def close(self) -> None:
        """Close every task and give the engine its wall clock back."""
        for run in self._runs:
            _sync(run.close())
        processor_module.wall_clock_ms = self._previous_clock

    def __enter__(self) -> TestDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- topics ----------------------------------------------------------------------------------------------------
    def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has here: as ``partitions`` says, else as the worker creates it (a changelog
        gets its processor's largest input's count), else the settings' ``topics`` section (1 if absent)."""
        given = self._partitions.get(topic)
        if given:
            return given
        inputs = self._changelogs.get(topic)
        if inputs is not None:
            return max(self.partitions(t) for t in inputs)
        return self.settings.topic(topic).partitions

    def _append(self, topic: str, value: Any, key: Any, headers: Any, timestamp: int | None, partition: int | None,
                offset: int | None) -> TestRecord:
        declared = self._topics.get(topic)  # an app's topic writes as its codecs do (Faust's wire format)
        key_bytes = encode_key(key) if declared is None or isinstance(key, bytes) else declared.encode_key(key)
        value_bytes = (encode_value(value) if declared is None or isinstance(value, bytes)
                       else declared.encode_value(value))
        if partition is None:
            n = self.partitions(topic)
            parts = list(range(n))
            partition = 0 if key_bytes is None else _PARTITIONER(key_bytes, parts, parts)
        record = self.broker.append(TopicPartition(topic, partition), key_bytes, value_bytes, headers or (),
                                    self.now_ms if timestamp is None else timestamp, offset=offset)
        return _test_record(record)

    def pipe(self, topic: str, value: Any, key: Any = None, *, timestamp: int | None = None,
             headers: list[tuple[str, bytes]] | None = None, partition: int | None = None,
             offset: int | None = None) -> TestRecord:
        """Write one record to ``topic`` (value and key encoded by the topic's codecs when the app declared it,
        else like ``context.send``) and process it, and everything it causes, to the end. ``partition``/``offset``:
        where it lands (default: by key; the next offset), e.g. to replay records read from Kafka at their own
        offsets. A record written to a processor's changelog topic (state of an earlier version, say) is restored
        into its task before that task's next record.
        Raises RuntimeError if an agent awaits real I/O (use :meth:`apipe`), ValueError for an offset below the
        partition's next one, StateRestoreError when a changelog cannot be read and its store is set to fail."""
        record = self._append(topic, value, key, headers, timestamp, partition, offset)
        name = self._changelogs_of.get(topic)
        if name is not None:  # state written from outside (an earlier version's): restored before the next record
            self._stale.add((name, record.partition))
        _sync(self._drain())
        return record

    async def apipe(self, topic: str, value: Any, key: Any = None, *, timestamp: int | None = None,
                    headers: list[tuple[str, bytes]] | None = None, partition: int | None = None) -> TestRecord:
        """:meth:`pipe` for agents that await real I/O."""
        record = self._append(topic, value, key, headers, timestamp, partition, None)
        await self._drain(allow_io=True)
        return record

    def _visible(self, topic: str) -> list[MemoryRecord]:
        logs = self.broker.logs.get(topic, [])
        records = [r for log in logs for r in log if r.visible and not is_progress(r.headers)]
        records.sort(key=lambda r: r.seq)
        return records

    def read(self, topic: str) -> list[TestRecord]:
        """The records written to ``topic`` since the last read of it, in write order (progress records aside)."""
        self.flush()
        returned = self._returned.setdefault(topic, set())
        out = []
        for record in self._visible(topic):
            where = (record.partition, record.offset)
            if where not in returned:
                returned.add(where)
                out.append(_test_record(record))
        return out

    def values(self, topic: str) -> list[Any]:
        """The JSON values of :meth:`read`."""
        return [r.json() for r in self.read(topic)]

    def all(self, topic: str) -> list[TestRecord]:
        """Every record written to ``topic``, in write order (progress records aside)."""
        self.flush()
        return [_test_record(r) for r in self._visible(topic)]

    def dead_letters(self, processor: str | None = None) -> list[TestRecord]:
        """Every dead-lettered record (of ``processor``'s dead-letter topic, default every one)."""
        topics = {p.settings.dead_letter_topic for n, p in self.processors.items() if processor in (None, n)}
        return [r for t in sorted(topics) for r in self.all(t)]

    # ---- state -----------------------------------------------------------------------------------------------------
    def _stores(self, processor: str | None, name: str) -> list[tuple[str, int, Any]]:
        self.flush()
        out = []
        for run in self._runs:
            if processor not in (None, run.name):
                continue
            for q, task in sorted(run.manager.tasks.items()):
                if task.stores is not None and name in task.stores.stores:
                    out.append((run.name, q, task.stores.stores[name]))
        return out

    def table(self, name: str = "", processor: str | None = None) -> dict[Any, Any]:
        """The contents of store ``name`` (a table's name; ``""``: a processor's default store) over every task, keys
        as the table gives them. ``processor``: whose store, when several have one of that name."""
        from .table import _ukey

        out: dict[Any, Any] = {}
        for _, _, store in self._stores(processor, name):
            for key, value in _items(store):
                out[_ukey(key) if name else key] = value
        return out

    def state(self, processor: str, store: str = "") -> dict[int, dict[str, Any]]:
        """The live objects of ``processor``'s store ``store`` per partition (keys as stored)."""
        return {q: dict(_items(s)) for _, q, s in self._stores(processor, store)}

    def changelog(self, processor: str) -> list[TestRecord]:
        """The changelog records of ``processor``'s stores that it committed (the offset markers the engine writes
        beside them left out)."""
        return [r for r in self.all(changelog_topic(self.settings, processor))
                if r.key is None or not r.key.startswith(OFFSET_KEY)]

    def advance_time(self, ms: int) -> None:
        """Move the wall clock forward and fire the wall-clock punctuation due (each task commits after)."""
        self.flush()
        self.now_ms += ms
        for run in self._runs:
            _sync(run.manager.punctuate_wall_clock(self.now_ms))
        self.flush()

    def restart(self) -> None:
        """Lose every task's memory, as a crash would: open transactions are aborted, stores are restored from the
        changelog, and the records after each input partition's committed offset (those of an aborted transaction,
        those an agent still buffered) are processed again."""
        for run in self._runs:
            _sync(run.close())
        for run in self._runs:
            _sync(run.open())
        _sync(self._drain())

    # ---- processing ------------------------------------------------------------------------------------------------
    async def _drain(self, allow_io: bool = False, commit: bool = False) -> None:
        """Process everything that can be processed: every processor fetches and processes, each task committing
        every ``commit_every`` records, until nothing moves. ``commit`` (a flush): then commit what is open, which
        may let a task waiting for another processor's output go on, and at last let a task still waiting for an
        input with no record go on without it. Without ``commit`` such a task keeps its records until a later record
        or a flush brings what it waits for (as the worker's task waits for its upstream's commits)."""
        for run in self._runs:
            run.env.allow_io = allow_io
        force = False
        while True:
            moved = False
            for run in self._runs:
                moved |= await self._step(run, force)
            self._replicate()
            if moved:
                force = False
                continue
            if not commit:
                return
            if await self._commit_open():
                continue  # what the open transactions hold becomes visible: a waiting task may go on
            if force or not any(len(t.group) for run in self._runs for t in run.manager.tasks.values()):
                return
            force = True

    def _replicate(self) -> None:
        """Feed the global tables' replicas the changelog records committed since the last call (as the worker's
        read_committed replica reader does); a partition is read up to its first record still in a transaction."""
        for topic in self._feeds:
            for q, partition_log in enumerate(self.broker.logs.get(topic, [])):
                start = i = self._replicated.get((topic, q), 0)
                while i < len(partition_log) and (partition_log[i].txn is None
                                                  or partition_log[i].txn.state != "open"):  # type: ignore[union-attr]
                    i += 1
                feed_from(self._feeds, (r for r in partition_log[start:i] if r.visible))
                self._replicated[(topic, q)] = i

    async def _step(self, run: _Processor, force: bool) -> bool:
        moved = False
        batches = run.consumer.poll()
        if batches:
            run.manager.add(batches)
            moved = True
        every = self.commit_every
        for task in list(run.manager.open_tasks.values()):
            if len(task.group) and (run.name, task.q) in self._stale:
                self._stale.discard((run.name, task.q))
                await run.manager.close(task)
                await run.manager.try_open(task)
                if task.open_error is not None:
                    raise task.open_error
                moved = True
                continue
            while len(task.group):
                recoveries = run.manager.recoveries
                taken = await run.manager.process(task, max(1, every - task.pending_count), force)
                if run.manager.recoveries != recoveries:
                    moved = True  # aborted and reopened: what it had not committed is read again
                if not taken:
                    break
                moved = True
                if task.is_open and (task.pending_count >= every or task.commit_now):
                    await self._commit(run, task)
        return moved

    async def _commit(self, run: _Processor, task: Any) -> None:
        """Commit ``task``'s open transaction; a failure aborts and recovers it, as the worker's commit does."""
        task.commit_now = False
        if task.checkpoint is None or not task.checkpoint.is_open:
            return
        try:
            await task.commit_inline(between_batches=True)
        except Exception as exc:  # noqa: BLE001 - a state record that cannot be written: check mode
            await run.manager.recover(task, exc)

    async def _commit_open(self) -> bool:
        committed = False
        for run in self._runs:
            for task in list(run.manager.open_tasks.values()):
                if task.checkpoint is not None and task.checkpoint.is_open:
                    await self._commit(run, task)
                    committed = True
        return committed

    def flush(self) -> None:
        """Commit every open transaction (and process what the commits make visible to other processors)."""
        _sync(self._drain(commit=True))

    async def aflush(self) -> None:
        """:meth:`flush` for agents that await real I/O."""
        await self._drain(allow_io=True, commit=True)


def _items(store: Any) -> Any:
    items = getattr(store, "items", None)
    return items() if items is not None else store.data.items()


def _sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine of the driver that must finish without awaiting anything (no agent awaits real I/O).

    Raises RuntimeError if it would await: the caller must use the async form (``apipe``, ``aflush``).
    """
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    except AgentAwaitsIO:
        raise RuntimeError("an agent awaited real I/O: use `await driver.apipe(...)`") from None
    coro.close()
    raise RuntimeError("an agent awaited real I/O: use `await driver.apipe(...)`")
