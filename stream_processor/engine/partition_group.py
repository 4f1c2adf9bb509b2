"""A task's input partitions, buffered and handed out in timestamp order (Kafka Streams' PartitionGroup).

A task with one input processes its partition's records in offset order, as fetched. A task with several inputs
(partition q of each co-partitioned input topic) buffers each partition's fetched records and always takes the record
with the smallest Kafka timestamp among the partitions' next records (ties: the topic listed first in
``input_topics``), in runs: the next records of one partition up to the next record of another. So the order in
which a task sees its inputs is a function of their records and timestamps alone, not of which one was fetched
first: two runs over the same input give the same joined output, whatever the load.

That order needs a record of every partition to compare. When one has nothing buffered (KIP-353, KIP-695):

- if the broker holds records of it not fetched yet (its last stable offset is beyond the consumer's position), or
  that is not known yet, the task waits for the fetch;
- if it is caught up, the task waits up to ``max_task_idle_ms`` for it (its *idle deadline*), then goes on without
  it: *enforced processing*, for as long as it stays empty. The records taken so carry the topics they went on
  without (:attr:`Run.enforced`, given to the processor as ``ProcessorContext.enforced``): a record of those topics
  with an earlier timestamp may still come. ``max_task_idle_ms`` -1 never waits: every record taken ahead of an
  empty input is enforced.

A *progress record* (header :data:`PROGRESS_HEADER`, no key, no value) is time passing on its partition: the task
writing a topic to the input's partition number (``ProcessorSettings.copartitioned_outputs``) adds one per commit,
stamped with the largest input timestamp it has processed, so a task joining that topic knows the writer has got
that far even when it wrote nothing else (see :mod:`stream_processor.engine.task`). It is ordered like any record
and never given to the processor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from aiokafka import TopicPartition

#: Header of a progress record (see the module docstring); its value is empty.
PROGRESS_HEADER = "sp-progress"


def is_progress(headers: Any) -> bool:
    """True if a record with these headers is a progress record (headers: a sequence of ``(str, bytes)``)."""
    return bool(headers) and any(name == PROGRESS_HEADER for name, _ in headers)


class Run(NamedTuple):
    """Records of one input partition to process next, in offset order, and the topics gone on without."""

    tp: TopicPartition
    records: list[Any]
    enforced: frozenset[str]


class PartitionGroup:
    """Buffered records of one task's input partitions (see the module docstring).

    ``lag(tp)``: records of ``tp`` on the broker not fetched yet (last stable offset minus the consumer's position),
    None while unknown. ``max_idle_ms``: the task's ``max_task_idle_ms``. Times given to :meth:`next_run` are ms of
    the caller's clock (the worker's monotonic clock). ``until_forced``: an empty partition is waited for until
    :meth:`next_run` is called with ``force``, whatever ``max_idle_ms`` (the test driver forces once nothing else can
    happen, so its results do not depend on when its upstream processors commit); -1 still never waits.
    """

    __slots__ = ("inputs", "_queues", "_heads", "_priority", "_deadlines", "_lag", "_max_idle_ms", "_single", "_time",
                 "_until_forced")

    def __init__(self, inputs: Sequence[TopicPartition], max_idle_ms: int,
                 lag: Callable[[TopicPartition], int | None], until_forced: bool = False) -> None:
        self.inputs = tuple(inputs)
        self._queues: dict[TopicPartition, list[Any]] = {tp: [] for tp in self.inputs}
        self._heads: dict[TopicPartition, int] = dict.fromkeys(self.inputs, 0)  # index of each queue's next record
        self._priority = {tp: i for i, tp in enumerate(self.inputs)}
        self._deadlines: dict[TopicPartition, float] = {}
        self._lag = lag
        self._max_idle_ms = max_idle_ms
        self._single = len(self.inputs) == 1
        self._until_forced = until_forced
        self._time: dict[TopicPartition, int] = dict.fromkeys(self.inputs, -1)  # largest timestamp taken from each

    def add(self, tp: TopicPartition, records: list[Any]) -> None:
        """Buffer fetched ``records`` of ``tp`` (in offset order, after those already buffered)."""
        if not records:
            return
        queue = self._queues[tp]
        head = self._heads[tp]
        if head and head == len(queue):
            queue.clear()
            self._heads[tp] = 0
        queue.extend(records)
        self._deadlines.pop(tp, None)

    def unread(self, tp: TopicPartition, records: list[Any]) -> None:
        """Put ``records`` (the last ones taken from ``tp``, in offset order) back before its buffered ones."""
        if records:
            queue, head = self._queues[tp], self._heads[tp]
            self._queues[tp], self._heads[tp] = [*records, *queue[head:]], 0

    def clear(self) -> None:
        """Drop every buffered record (the task rewinds its inputs)."""
        for tp in self.inputs:
            self._queues[tp] = []
            self._heads[tp] = 0
            self._time[tp] = -1
        self._deadlines.clear()

    def buffered(self, tp: TopicPartition) -> int:
        """Records of ``tp`` buffered and not yet taken."""
        return len(self._queues[tp]) - self._heads[tp]

    def __len__(self) -> int:
        return sum(self.buffered(tp) for tp in self.inputs)

    def next_deadline(self) -> float | None:
        """The earliest idle deadline the group waits for (ms of the caller's clock), or None."""
        return min(self._deadlines.values(), default=None)

    def next_run(self, now_ms: float, limit: int | None = None, force: bool = False) -> Run | None:
        """Take the next records to process (at most ``limit``), or None when there are none or the task must wait.

        ``force``: treat every caught-up empty partition as past its idle deadline (the test driver, once nothing
        else can happen).
        """
        if self._single:
            tp = self.inputs[0]
            queue, head = self._queues[tp], self._heads[tp]
            if head >= len(queue):
                return None
            if limit is None or len(queue) - head <= limit:
                records = queue[head:] if head else queue
                self._queues[tp], self._heads[tp] = [], 0
            else:
                records = queue[head : head + limit]
                self._heads[tp] = head + limit
            return Run(tp, records, frozenset())
        first = self._first()
        if first is None:
            return None
        first_key, tp = first
        enforced: list[str] = []
        bound: tuple[int, int] | None = None  # the key the records taken must stay below
        for other in self.inputs:
            if other is tp:
                continue
            if self._heads[other] < len(self._queues[other]):
                key = (self._queues[other][self._heads[other]].timestamp, self._priority[other])
            else:
                # Nothing buffered: its next records come at or after its partition time (the largest timestamp it
                # has given), so a record before that does not wait for it.
                key = (self._time[other], self._priority[other])
                if first_key >= key:
                    if self._max_idle_ms >= 0 and not self._idle_past(other, now_ms, force):
                        return None
                    enforced.append(other.topic)
                    continue
                self._deadlines.pop(other, None)
            if bound is None or key < bound:
                bound = key
        queue, head = self._queues[tp], self._heads[tp]
        end = len(queue) if limit is None else min(len(queue), head + limit)
        stop = head + 1
        priority = first_key[1]
        while stop < end and (bound is None or (queue[stop].timestamp, priority) < bound):
            stop += 1
        records = queue[head:stop]
        if stop >= len(queue):
            self._queues[tp], self._heads[tp] = [], 0
        else:
            self._heads[tp] = stop
        if records[-1].timestamp > self._time[tp]:
            self._time[tp] = records[-1].timestamp
        return Run(tp, records, frozenset(enforced))

    def _first(self) -> tuple[tuple[int, int], TopicPartition] | None:
        """The key (timestamp, priority) and partition of the buffered record that comes first, or None."""
        best: tuple[tuple[int, int], TopicPartition] | None = None
        for tp in self.inputs:
            head = self._heads[tp]
            queue = self._queues[tp]
            if head < len(queue):
                key = (queue[head].timestamp, self._priority[tp])
                if best is None or key < best[0]:
                    best = (key, tp)
        return best

    def _idle_past(self, tp: TopicPartition, now_ms: float, force: bool) -> bool:
        """Whether the task may go on without empty partition ``tp`` (its idle deadline passed)."""
        lag = self._lag(tp)
        if lag is None or lag > 0:  # records on the broker not fetched yet (or not known): wait for the fetch
            self._deadlines.pop(tp, None)
            return False
        if self._until_forced:
            return force
        deadline = self._deadlines.setdefault(tp, now_ms + self._max_idle_ms)
        return force or now_ms >= deadline
