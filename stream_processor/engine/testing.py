"""A test driver that needs no broker, like Kafka Streams' TopologyTestDriver (and Faust's ``test_context``).

.. code-block:: python

    driver = TestDriver(app)                      # or TestDriver(settings=..., processors=["trades"])
    driver.pipe("raw_trades", trade_json, key=b"BTCUSDT", timestamp=1_700_000_000_000)
    driver.values("enriched_trades")              # the JSON values written since the last read
    driver.table("trade_counts")                  # a table's contents, over every partition
    driver.advance_time(60_000)                   # the wall clock: timers of take(), wall-clock punctuation
    driver.restart()                              # drop every task; restore the stores from the changelog kept

It runs the processors' own code on the engine's own pieces (processor contexts, stores, punctuation, agents), with
the runtime's rules: a record's effects are committed together after it (one transaction per record), a
RecordError dead-letters the record with the same headers, any other exception rolls the task back (its stores
restored from the changelog) and dead-letters the record as ``processing_error``; records an agent still buffers
(``stream.take``) are re-read after :meth:`restart`. Outputs on topics another processor reads are processed next,
so a re-keyed agent (``group_by``) and chained agents run as they do on Kafka. Partitions are Kafka's (murmur2 of
the key); a topic gets the partitions of the settings' ``topics`` section (1 if absent) unless ``partitions``
says otherwise. Times are ms since the epoch.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka.partitioner import DefaultPartitioner

from . import processor as processor_module
from .exceptions import RecordError, StateRecordError, TransactionStateError
from .processor import Processor, ProcessorContext, current_context, encode_key, encode_value
from .registry import build_processor
from .runner import dead_letter_headers
from .settings import Settings
from .state import TaskStores
from .topics import changelog_topic

_PARTITIONER = DefaultPartitioner()


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


class _Task:
    def __init__(self, processor: Processor, q: int, stores: TaskStores) -> None:
        self.ctx = ProcessorContext(processor.name, q, stores)
        self.stores = stores
        self.pending: list[TestRecord] = []  # records processed in the open transaction
        self.log: list[TestRecord] = []  # records processed from the committed offsets on (what a rollback replays)
        self.outputs: list[tuple[Any, ...]] = []  # (topic, key, value, headers, partition, timestamp) in it


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
        self.settings = settings
        types = app.types if app is not None else None
        names = processors or [n for n, p in settings.stream_processors.items() if p.enabled]
        self.processors: dict[str, Processor] = {n: build_processor(n, settings, types) for n in names}
        self._partitions = dict(partitions or {})
        self.now_ms = start_ms
        if commit_every < 1:
            raise ValueError(f"commit_every must be >= 1, got {commit_every}")
        self.commit_every = commit_every
        self.topics: dict[str, dict[int, list[TestRecord]]] = defaultdict(lambda: defaultdict(list))
        self._read: dict[str, int] = defaultdict(int)  # records of each topic already returned by read()
        self._order: dict[str, list[TestRecord]] = defaultdict(list)  # every record of a topic, in write order
        self._tasks: dict[tuple[str, int], _Task] = {}
        self._committed: dict[tuple[str, str, int], int] = {}  # (processor, topic, partition) -> next offset
        self._position: dict[tuple[str, str, int], int] = {}
        self._done: dict[tuple[str, str, int], int] = {}  # next offset processed, as of the last commit
        self._refused_before: dict[tuple[str, str, int], int] = {}  # see ProcessorContext.refused_before
        self._stream_time: dict[tuple[str, int], int] = {}  # each task's stream time as of its last commit
        self._queue: deque[TestRecord] = deque()
        self._readers: dict[str, list[str]] = defaultdict(list)
        self._allowed: dict[str, set[str]] = {}
        for name, proc in self.processors.items():
            for topic in proc.settings.input_topics:
                self._readers[topic].append(name)
            self._allowed[name] = {*proc.output_topics, proc.settings.dead_letter_topic}
        self._previous_clock = processor_module.wall_clock_ms
        processor_module.wall_clock_ms = lambda: self.now_ms

    def close(self) -> None:
        """Close every task and give the engine its wall clock back."""
        for (name, _), task in list(self._tasks.items()):
            self.processors[name].close(task.ctx)
        self._tasks.clear()
        processor_module.wall_clock_ms = self._previous_clock

    def __enter__(self) -> TestDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- topics ----------------------------------------------------------------------------------------
    def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has here."""
        return self._partitions.get(topic) or self.settings.topic(topic).partitions

    def _partition_of(self, topic: str, key: bytes | None, partition: int | None) -> int:
        if partition is not None:
            return partition
        n = self.partitions(topic)
        if key is None:
            return 0
        parts = list(range(n))
        return _PARTITIONER(key, parts, parts)

    def _append(self, topic: str, key: bytes | None, value: bytes | None, headers: Any, timestamp: int,
                partition: int | None, offset: int | None = None) -> TestRecord:
        p = self._partition_of(topic, key, partition)
        log = self.topics[topic][p]
        following = log[-1].offset + 1 if log else 0
        if offset is not None and offset < following:
            raise ValueError(f"{topic}-{p}: offset {offset} is below the next one ({following})")
        record = TestRecord(topic, p, following if offset is None else offset, key, value, tuple(headers or ()),
                            timestamp)
        log.append(record)
        self._order[topic].append(record)
        return record

    def pipe(self, topic: str, value: Any, key: Any = None, *, timestamp: int | None = None,
             headers: list[tuple[str, bytes]] | None = None, partition: int | None = None,
             offset: int | None = None) -> TestRecord:
        """Write one record to ``topic`` (value and key encoded like ``context.send`` does) and process it, and
        everything it causes, to the end. ``partition``/``offset``: where it lands (default: by key; the next
        offset), e.g. to replay records read from Kafka at their own offsets. Raises RuntimeError if an agent
        awaits real I/O (use :meth:`apipe`), ValueError for an offset below the partition's next one."""
        record = self._append(topic, encode_key(key), encode_value(value), headers,
                              self.now_ms if timestamp is None else timestamp, partition, offset)
        self._queue.append(record)
        self._drain_sync()
        return record

    async def apipe(self, topic: str, value: Any, key: Any = None, *, timestamp: int | None = None,
                    headers: list[tuple[str, bytes]] | None = None, partition: int | None = None) -> TestRecord:
        """:meth:`pipe` for agents that await real I/O."""
        record = self._append(topic, encode_key(key), encode_value(value), headers,
                              self.now_ms if timestamp is None else timestamp, partition)
        self._queue.append(record)
        while self._queue:
            await self._handle(self._queue.popleft(), allow_io=True)
        return record

    def _drain_sync(self) -> None:
        while self._queue:
            _sync(self._handle(self._queue.popleft(), allow_io=False))

    def read(self, topic: str) -> list[TestRecord]:
        """The records written to ``topic`` since the last read of it, in write order."""
        self.flush()
        records = self._order.get(topic, [])
        start, self._read[topic] = self._read[topic], len(records)
        return records[start:]

    def values(self, topic: str) -> list[Any]:
        """The JSON values of :meth:`read`."""
        return [r.json() for r in self.read(topic)]

    def all(self, topic: str) -> list[TestRecord]:
        """Every record written to ``topic``, in write order."""
        self.flush()
        return list(self._order.get(topic, []))

    def dead_letters(self, processor: str | None = None) -> list[TestRecord]:
        """Every dead-lettered record (of ``processor``'s dead-letter topic, default every one)."""
        self.flush()
        topics = {p.settings.dead_letter_topic for n, p in self.processors.items() if processor in (None, n)}
        return [r for t in sorted(topics) for r in self._order.get(t, [])]

    # ---- state ---------------------------------------------------------------------------------------
    def table(self, name: str = "", processor: str | None = None) -> dict[Any, Any]:
        """The contents of store ``name`` (a table's name; ``""``: a processor's default store) over every open
        task, keys as the table gives them. ``processor``: whose store, when several have one of that name."""
        from .table import _ukey

        self.flush()
        self._open_restored()
        out: dict[Any, Any] = {}
        for (pname, _), task in sorted(self._tasks.items()):
            if processor not in (None, pname) or name not in task.stores.stores:
                continue
            for key, value in task.stores.stores[name].data.items():
                out[_ukey(key) if name else key] = value
        return out

    def state(self, processor: str, store: str = "") -> dict[int, dict[str, Any]]:
        """The live objects of ``processor``'s store ``store`` per partition (keys as stored)."""
        self.flush()
        self._open_restored()
        return {q: dict(task.stores.stores[store].data) for (name, q), task in sorted(self._tasks.items())
                if name == processor and store in task.stores.stores}

    def changelog(self, processor: str) -> list[TestRecord]:
        """The changelog records ``processor`` committed."""
        return self.all(changelog_topic(self.settings, processor))

    def advance_time(self, ms: int) -> None:
        """Move the wall clock forward and fire the wall-clock punctuation due (each task commits after)."""
        self.flush()
        self.now_ms += ms
        for task in list(self._tasks.values()):
            ctx = task.ctx
            if ctx.wall_clock_due(self.now_ms):
                ctx.punctuate_wall_clock(self.now_ms)
                task.outputs.extend((*out, self.now_ms) for out in ctx.outputs)
                ctx.outputs.clear()
        self.flush()

    def restart(self) -> None:
        """Lose every task's memory, as a crash would: open transactions are aborted, stores are restored from the
        changelog, and the records after each input partition's committed offset (those of an aborted transaction,
        those an agent still buffered) are processed again."""
        closed = list(self._tasks)
        for (name, _), task in list(self._tasks.items()):
            self.processors[name].close(task.ctx)
        self._tasks.clear()
        for key, position in sorted(self._position.items()):
            name, topic, p = key
            committed = self._committed.get(key, 0)  # nothing committed: from the start
            self._refused_before[key] = self._done.get(key, 0)
            for record in self.topics[topic][p]:
                if committed <= record.offset < position:
                    self._queue.append(_Replay(record, name))
            self._position[key] = committed
        for name, q in closed:  # every task reopens, as on an assignment (wall-clock punctuation resumes)
            self._task(name, q)
        self._drain_sync()

    # ---- processing ----------------------------------------------------------------------------------
    def _task(self, name: str, q: int) -> _Task:
        task = self._tasks.get((name, q))
        if task is None:
            proc = self.processors[name]
            stores = TaskStores(proc.stores(), proc.settings.state_errors)
            for record in self.topics[changelog_topic(self.settings, name)][q]:
                stores.load(record.key, record.value)  # type: ignore[arg-type]
            if stores.resets:
                proc.events["state_reset"] += stores.resets
            task = self._tasks[(name, q)] = _Task(proc, q, stores)
            task.ctx.stream_time = self._stream_time.get((name, q), -1)
            task.ctx.refused_before = {t: n for (pn, t, p), n in self._refused_before.items() if pn == name and p == q}
            proc.init(task.ctx)
        return task

    def _open_restored(self) -> None:
        """Open every task that has a changelog (after a restart, its state is only there)."""
        for name in self.processors:
            for q, records in list(self.topics.get(changelog_topic(self.settings, name), {}).items()):
                if records:
                    self._task(name, q)

    def _reopen(self, name: str, q: int) -> _Task:
        """Abort task q's transaction: its outputs are dropped, its stores restored from the changelog."""
        task = self._tasks.pop((name, q), None)
        if task is not None:
            self.processors[name].close(task.ctx)
        return self._task(name, q)

    async def _handle(self, item: Any, allow_io: bool) -> None:
        record, only = (item.record, item.processor) if isinstance(item, _Replay) else (item, None)
        for name in self._readers.get(record.topic, []):
            if only is not None and name != only:
                continue
            await self._process(name, record, allow_io)

    async def _process(self, name: str, record: TestRecord, allow_io: bool) -> None:
        """Process ``record`` in its task's open transaction; commit every ``commit_every`` records."""
        task = self._task(name, record.partition)
        try:
            await self._run(task, record, allow_io)
        except _Failed as failed:
            # As the runtime: abort, replay from the committed offsets (the transaction's earlier records and those
            # a take() batch holds), dead-letter this one.
            replay = [r for r in task.log if r is not record]
            task = self._reopen(name, record.partition)
            for earlier in replay:
                await self._run(task, earlier, allow_io)
                task.log.append(earlier)
                if self._position[(name, earlier.topic, earlier.partition)] > earlier.offset and \
                        earlier.offset >= self._done.get((name, earlier.topic, earlier.partition), 0):
                    task.pending.append(earlier)
            if record.offset >= task.ctx.refused_before.get(record.topic, -1):
                self._dead_letter(task, record, "processing_error", repr(failed.__cause__))
        task.log.append(record)
        task.pending.append(record)
        self._position[(name, record.topic, record.partition)] = record.offset + 1
        if len(task.pending) >= self.commit_every:
            await self._commit(name, task, allow_io)

    async def _run(self, task: _Task, record: TestRecord, allow_io: bool) -> None:
        """Decode and process one record into the task's transaction (a refused one is dead-lettered there).

        Raises _Failed (the cause: the processor's exception) for anything but a RecordError.
        """
        proc = self.processors[task.ctx.processor]
        ctx = task.ctx
        ctx.partition = record.partition
        token = current_context.set(ctx)
        try:
            value = record.value
            if value is not None and len(value) > proc.settings.max_input_bytes:
                raise _TooLarge(f"value of {len(value)} bytes is above max_input_bytes "
                                f"({proc.settings.max_input_bytes})")
            pending = ctx.run(proc, record.topic, record.offset, record.timestamp, record.key, record.headers, value)
            if pending is not None:
                if not allow_io:
                    pending.close()
                    raise _NeedsIO
                await pending
            ctx.punctuate_stream_time()
        except RecordError as exc:
            ctx.outputs.clear()
            if record.offset >= ctx.refused_before.get(record.topic, -1):  # else dead-lettered before a restart
                self._dead_letter(task, record, exc.reason, str(exc))
        except _NeedsIO:
            ctx.outputs.clear()
            raise
        except Exception as exc:  # noqa: BLE001 - as the runtime: roll back, dead-letter
            ctx.outputs.clear()
            if isinstance(exc, RuntimeError) and "no running event loop" in str(exc) and not allow_io:
                raise _NeedsIO from exc  # the agent awaited I/O outside a loop
            raise _Failed from exc
        finally:
            current_context.reset(token)
        allowed = self._allowed[proc.name]
        for out in ctx.outputs:
            if out[0] not in allowed:
                ctx.outputs.clear()
                raise _Failed from TransactionStateError(f"processor {proc.name} sent to {out[0]!r}, which is not one "
                                                         "of its output topics")
        task.outputs.extend((*out, record.timestamp) for out in ctx.outputs)
        ctx.outputs.clear()

    async def _commit(self, name: str, task: _Task, allow_io: bool = False) -> None:
        """Commit the task's transaction: its outputs, its changelog records, its input offsets.

        A state change that cannot be written (StateRecordError) is found as the runtime finds it: the transaction
        is replayed a record at a time, and the record whose state cannot be written is dead-lettered.
        """
        try:
            changelog = task.stores.changelog_records()
        except StateRecordError:
            records = task.pending
            task = self._reopen(name, task.ctx.task)
            for record in records:
                await self._run(task, record, allow_io)
                try:
                    changelog = task.stores.changelog_records()
                except StateRecordError as exc:
                    task = self._reopen(name, task.ctx.task)
                    self._dead_letter(task, record, exc.reason, str(exc))
                    changelog = []
                task.pending.append(record)
                self._write(name, task, changelog)
            return
        self._write(name, task, changelog)

    def _write(self, name: str, task: _Task, changelog: list[tuple[bytes, bytes | None]]) -> None:
        ctx = task.ctx
        for topic, key, value, headers, partition, timestamp in task.outputs:
            out = self._append(topic, key, value, headers, timestamp, partition)
            if topic in self._readers:
                self._queue.append(out)
        cl = changelog_topic(self.settings, name)
        for key, value in changelog:
            self._append(cl, key, value, (), self.now_ms, ctx.task)
        for position, end in self._position.items():
            if position[0] != name or position[2] != ctx.task:
                continue
            held = ctx.held.get(position[1])
            committed = held if held is not None and held < end else end
            self._committed[position] = committed
            self._done[position] = end
        self._stream_time[(name, ctx.task)] = ctx.stream_time
        task.log = [r for r in task.log if r.offset >= self._committed.get((name, r.topic, r.partition), 0)]
        task.outputs.clear()
        task.pending = []

    def flush(self) -> None:
        """Commit every open transaction (and process what the commits make visible to other processors)."""
        while True:
            self._drain_sync()
            open_tasks = [(name, task) for (name, _), task in self._tasks.items() if task.pending or task.outputs]
            if not open_tasks:
                return
            for name, task in open_tasks:
                _sync(self._commit(name, task))

    async def aflush(self) -> None:
        """:meth:`flush` for agents that await real I/O."""
        while True:
            while self._queue:
                await self._handle(self._queue.popleft(), allow_io=True)
            open_tasks = [(name, task) for (name, _), task in self._tasks.items() if task.pending or task.outputs]
            if not open_tasks:
                return
            for name, task in open_tasks:
                await self._commit(name, task, allow_io=True)

    def _dead_letter(self, task: _Task, record: TestRecord, reason: str, error: str) -> None:
        """Add ``record`` to the dead-letter topic, in the task's transaction, with the runtime's headers."""
        proc = self.processors[task.ctx.processor]
        headers = dead_letter_headers(reason, error, proc.name, record)
        task.outputs.append((proc.settings.dead_letter_topic, record.key, record.value, headers, None,
                             record.timestamp))


class _TooLarge(RecordError):
    reason = "too_large"


class _Failed(Exception):  # noqa: N818 - carries the processor's exception as __cause__
    pass


class _NeedsIO(Exception):  # noqa: N818 - pipe() met an agent awaiting real I/O
    pass


def _sync(coro: Any) -> None:
    """Run a coroutine of the driver that must finish without awaiting anything (no agent awaits real I/O).

    Raises RuntimeError if it would await: the caller must use the async form (``apipe``, ``aflush``).
    """
    try:
        coro.send(None)
    except StopIteration:
        return
    except _NeedsIO:
        raise RuntimeError("an agent awaited real I/O: use `await driver.apipe(...)`") from None
    coro.close()
    raise RuntimeError("an agent awaited real I/O: use `await driver.apipe(...)`")


@dataclass(frozen=True)
class _Replay:
    record: TestRecord
    processor: str
