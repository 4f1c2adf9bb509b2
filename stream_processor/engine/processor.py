"""The processor API, as Kafka Streams has it: ``process(record, context)`` per input record, run exactly once.

A :class:`Processor` is the unit the runtime runs: one instance per processor in a worker, called for every record
of every task it owns (a task is partition q of its input topics), in offset order per partition. What it sees of
the record's task is a :class:`ProcessorContext`: the record's metadata (``topic``, ``partition``, ``offset``,
``timestamp`` in ms since the epoch, ``key``, ``headers``), ``send`` to any topic, ``state`` (the task's
changelog-backed stores) and ``schedule`` (stream-time and wall-clock punctuation). Everything a record causes, the
records it sends, its state changes and its input offset, is committed in that task's one Kafka transaction: a
crash, a rebalance or an abort replays from the last commit with the state of that commit.

The contract a processor keeps:

- raise :class:`~stream_processor.engine.exceptions.RecordError` for a record it cannot use BEFORE changing any
  state; the record then goes to the dead-letter topic with the reason in its headers and what it sent is dropped;
- any other exception is a bug: the transaction is rolled back and replayed without the record, which is
  dead-lettered (``processing_error``), so state is exactly what it would have been without it;
- never touch Kafka itself, nor keep state outside the stores (it would not be restored, nor rolled back);
- ``process`` may be a coroutine function only through the agent API (:mod:`stream_processor.engine.agent`); a
  plain processor is synchronous, which is what makes the runtime fast.
"""

from __future__ import annotations

import enum
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, cast

import orjson

from .exceptions import DecodeError
from .state import ChangelogStore, StoreSpec, TaskStores

_module = sys.modules[__name__]

Output = tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]] | None, int | None, int | None]
"""One output record: ``(topic, key, value, headers, partition, timestamp)``; partition None: by key, as Kafka's
default partitioner does; timestamp (ms since the epoch) None: the producer's clock."""


class PunctuationType(enum.Enum):
    """When a scheduled punctuation fires (Kafka Streams' names).

    ``STREAM_TIME``: when the task's stream time (the largest record time seen, see :attr:`Processor.event_time`)
    passes each multiple of the interval; it runs right after the record that moved it, in that record's
    transaction, so a replay fires it at exactly the same place. ``WALL_CLOCK``: every interval of the worker's
    clock (checked at each commit interval), in the task's next transaction.
    """

    STREAM_TIME = "stream_time"
    WALL_CLOCK = "wall_clock"


class Punctuator:
    """A scheduled punctuation; :meth:`cancel` stops it."""

    __slots__ = ("interval_ms", "type", "callback", "next_due", "cancelled")

    def __init__(self, interval_ms: int, type_: PunctuationType, callback: Callable[[int], Any],
                 next_due: int) -> None:
        self.interval_ms = interval_ms
        self.type = type_
        self.callback = callback
        self.next_due = next_due
        self.cancelled = False

    def cancel(self) -> None:
        """Stop this punctuation."""
        self.cancelled = True


_NEVER = 1 << 62

def wall_clock_ms() -> int:
    """The engine's wall clock, ms since the epoch (the test driver replaces it with its own)."""
    return int(time.time() * 1000)


def _default(obj: Any) -> Any:
    for method in ("to_representation", "asdict", "model_dump", "to_state"):
        fn = getattr(obj, method, None)
        if fn is not None:
            return fn()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable (give bytes, str, a JSON value, a dataclass, "
                    "a Record or a pydantic model)")


def encode_value(value: Any) -> bytes | None:
    """The bytes of an output value: bytes as they are, str as UTF-8, None as None (a tombstone), anything else as
    JSON (orjson; dataclasses, :class:`~stream_processor.engine.records.Record`, pydantic models).

    Raises TypeError for a value that has no JSON form.
    """
    kind = type(value)
    if kind is bytes or value is None:
        return cast(bytes | None, value)
    if kind is str:
        return cast(str, value).encode()
    return orjson.dumps(value, default=_default)


encode_key = encode_value
"""The bytes of a record key: the same rules as :func:`encode_value`."""


def decode_json(value: bytes | None) -> Any:
    """A record value as JSON. Raises DecodeError (a RecordError: dead-lettered) for no value or not JSON."""
    if value is None:
        raise DecodeError("record has no value")
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc}") from None


class ProcessorContext:
    """One task's view of the runtime, passed to every :meth:`Processor.process` call of that task.

    Record metadata (of the record being processed; None inside a wall-clock punctuation): ``topic``,
    ``partition``, ``offset``, ``timestamp`` (the Kafka record's, ms since the epoch), ``key`` (bytes or None),
    ``headers`` (a sequence of ``(str, bytes)``). ``stream_time``: the largest record time this task has seen
    (ms). ``task``: the partition number q. ``processor``: the processor's name.
    """

    __slots__ = ("processor", "task", "topic", "partition", "offset", "timestamp", "key", "headers", "stream_time",
                 "stores", "outputs", "punctuators", "next_stream_due", "held", "refused_before", "agent_state",
                 "enforced", "committed_callbacks")

    def __init__(self, processor: str, task: int, stores: TaskStores) -> None:
        self.processor = processor
        self.task = task
        self.topic: str | None = None
        self.partition: int | None = None
        self.offset: int | None = None
        self.timestamp: int | None = None
        self.key: bytes | None = None
        self.headers: Any = ()
        self.stream_time = -1
        self.stores = stores
        self.outputs: list[Output] = []  # sent by the record being processed; the runtime takes them after it
        self.punctuators: list[Punctuator] = []
        self.next_stream_due = _NEVER  # the earliest stream-time punctuation due (fast check per record)
        self.held: dict[str, int] = {}  # input topic -> lowest offset still buffered (not yet processed) by an agent
        # input topic -> next offset processed before the last restart: a record below it that is refused again was
        # dead-lettered then (it is re-read because an agent's take() buffer held an earlier one)
        self.refused_before: dict[str, int] = {}
        self.agent_state: Any = None  # the agent API's per-task driver
        # Input topics of this task whose partition had no record when the record being processed was taken, and
        # whose wait (max_task_idle_ms) had run out: a record of theirs with an earlier timestamp may come later.
        # Empty when every input had a record to compare (the record is in timestamp order).
        self.enforced: frozenset[str] = frozenset()
        self.committed_callbacks: list[Callable[[], Any]] = []  # see on_commit

    def send(self, topic: str, value: Any, key: Any = None, headers: list[tuple[str, bytes]] | None = None,
             partition: int | None = None, timestamp: int | None = None) -> None:
        """Send one record to ``topic`` in this task's transaction (see :func:`encode_value`, :func:`encode_key`).

        The topic must be one the processor declared (its ``output_topics``, or a topic of its app). An output
        larger than the topic allows dead-letters the input record (``output_too_large``). ``timestamp`` (ms since
        the epoch): the record's Kafka timestamp; by default the input record's (a stream-time punctuation's: that of
        the record that fired it; a wall-clock punctuation's: its time), as in Kafka Streams, so that outputs do not
        depend on when they were computed.
        """
        if type(value) is not bytes:
            value = encode_value(value)
        if key is not None and type(key) is not bytes:
            key = encode_key(key)
        # the runtime appends it after the record
        self.outputs.append((topic, key, value, headers, partition, self.timestamp if timestamp is None else timestamp))

    def on_commit(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` once the transaction of the record being processed (or of this punctuation) commits;
        never if it aborts (a replay calls it again then). For counting what was committed, e.g. in a metric."""
        self.committed_callbacks.append(callback)

    def state(self, name: str = "") -> ChangelogStore:
        """The task's store ``name`` (``""``: the processor's default store).

        Raises KeyError for a store the processor did not declare in :meth:`Processor.stores`.
        """
        return self.stores.stores[name]

    def schedule(self, interval_ms: int, type: PunctuationType, callback: Callable[[int], Any]) -> Punctuator:  # noqa: A002 - Kafka Streams' name
        """Call ``callback(time_ms)`` every ``interval_ms`` of stream time or wall-clock time (see
        :class:`PunctuationType`); it may send and change state like ``process``. Call from :meth:`Processor.init`.

        Raises ValueError for an interval that is not positive.
        """
        if interval_ms <= 0:
            raise ValueError(f"punctuation interval must be positive, got {interval_ms} ms")
        if type is PunctuationType.STREAM_TIME:
            due = (self.stream_time // interval_ms + 1) * interval_ms if self.stream_time >= 0 else -1
        else:
            due = _module.wall_clock_ms() + interval_ms
        punctuator = Punctuator(interval_ms, type, callback, due)
        self.punctuators.append(punctuator)
        self._reschedule()
        return punctuator

    def _reschedule(self) -> None:
        self.next_stream_due = min((p.next_due for p in self.punctuators
                                    if p.type is PunctuationType.STREAM_TIME and not p.cancelled), default=_NEVER)

    def run(self, processor: Processor, topic: str, offset: int, timestamp: int, key: bytes | None, headers: Any,
            value: bytes | None) -> Any:
        """Process one input record in this task: its metadata set here (``partition`` is the caller's, set once per
        batch of one partition), decoded, stream time moved, processed.

        Returns what ``process`` returned (None, or an agent's awaitable to finish, after which the caller calls
        :meth:`punctuate_stream_time`). Raises what ``decode`` or ``process`` raised. The runtime and the test
        driver both process records through this.
        """
        self.topic, self.offset, self.timestamp, self.key, self.headers = topic, offset, timestamp, key, headers
        record = processor.decode(value, key, timestamp, topic)
        event_time = processor.event_time
        moment = timestamp if event_time is None else event_time(record)
        if moment > self.stream_time:
            self.stream_time = moment
        return processor.process(record, self)

    def punctuate_stream_time(self) -> None:
        """Fire every stream-time punctuation due at :attr:`stream_time` (call after each record)."""
        now = self.stream_time
        if now < self.next_stream_due:
            return
        for p in list(self.punctuators):
            if p.type is PunctuationType.STREAM_TIME and not p.cancelled and p.next_due <= now:
                fire = p.next_due >= 0  # scheduled before any record: the first record only sets the grid
                p.next_due = (now // p.interval_ms + 1) * p.interval_ms
                if fire:
                    p.callback(now)
        self._reschedule()

    def punctuate_wall_clock(self, now_ms: int) -> None:
        """Fire every wall-clock punctuation due at ``now_ms``, as the record being processed (no record metadata;
        ``timestamp`` is ``now_ms``)."""
        self.topic = self.partition = self.offset = self.key = None
        self.timestamp, self.headers, self.enforced = now_ms, (), frozenset()
        token = current_context.set(self)
        try:
            for p in list(self.punctuators):
                if p.type is PunctuationType.WALL_CLOCK and not p.cancelled and p.next_due <= now_ms:
                    p.next_due = now_ms + p.interval_ms
                    p.callback(now_ms)
        finally:
            current_context.reset(token)

    def wall_clock_due(self, now_ms: int) -> bool:
        """True if a wall-clock punctuation is due at ``now_ms``."""
        return any(p.type is PunctuationType.WALL_CLOCK and not p.cancelled and p.next_due <= now_ms
                   for p in self.punctuators)


current_context: ContextVar[ProcessorContext | None] = ContextVar("current_context", default=None)
"""The context of the record being processed in this asyncio task (None outside processing): what tables and
``topic.send`` inside an agent use."""


class Processor:
    """Per-record logic over one task's changelog-backed stores (see the module docstring for the contract).

    Subclass and implement :meth:`process`; override :meth:`decode` for another encoding than JSON, :meth:`stores`
    to keep state, :meth:`init` to schedule punctuation. ``events`` counts what the processor wants operators to
    see (the runtime exports it as ``stream_processor_processor_events_total{processor, event}``). ``settings`` is
    the processor's validated YAML entry (a :class:`~stream_processor.engine.settings.ProcessorSettings`);
    ``params`` its ``params`` section.

    ``event_time``: None (stream time follows the Kafka record timestamps) or a function of the decoded record
    giving its event time in ms, for stream-time punctuation and windows.
    """

    event_time: Callable[[Any], int] | None = None

    def __init__(self, name: str, settings: Any) -> None:
        self.name = name
        self.settings = settings
        self.params = getattr(settings, "params", None)
        self.events: Counter[str] = Counter()

    @property
    def output_topics(self) -> list[str]:
        """Every topic this processor may send to (its changelog and dead-letter topics aside)."""
        return cast(list[str], self.settings.sends_to())

    def stores(self) -> list[StoreSpec]:
        """The stores each task keeps (default: one JSON store named ``""``); all share the task's changelog."""
        return [StoreSpec()]

    def decode(self, value: bytes | None, key: bytes | None, timestamp_ms: int | None, topic: str) -> Any:
        """The record :meth:`process` takes, from one input message; by default its value as JSON.

        Raises:
            RecordError: the record cannot be used (DecodeError: not JSON); it is dead-lettered.
        """
        return decode_json(value)

    def init(self, context: ProcessorContext) -> None:
        """Called when a task opens, after its stores are restored: schedule punctuation here."""

    def register_metrics(self, registry: Any) -> None:
        """Called once by the worker with its Prometheus ``CollectorRegistry`` (not by the test driver): a processor
        may add metrics of its own there, and count what commits with :meth:`ProcessorContext.on_commit`."""

    def process(self, record: Any, context: ProcessorContext) -> Any:
        """Handle one decoded record of ``context``'s task: send with ``context.send``, keep state in
        ``context.state()``. Returns None (the agent API may return an awaitable; see the module docstring)."""
        raise NotImplementedError

    def close(self, context: ProcessorContext) -> None:
        """Called when a task closes (revoked, reopened after an abort, worker stopping); state is already
        committed or rolled back."""
