"""The task manager (Kafka Streams' TaskManager): a processor's assigned tasks, opened, processed and recovered.

An assignment makes a :class:`~stream_processor.engine.task.Task` of each partition number q (partition q of every
input topic). Tasks open one after another (:meth:`TaskManager.open_next`, run in the background by the worker's
loop, inline by the test driver): the rebalance never waits for a restore, and the loop processes the tasks already
open meanwhile. A task kept across a rebalance is reopened too (another member may have owned it in between), with
its clean store kept and only the changelog written since its own last commit read.

When a task fails (:meth:`TaskManager.recover`):

- a record marked as poison (:class:`~stream_processor.engine.task.Rollback`): the task is reopened at once and the
  replay dead-letters the record;
- its producer fenced (a newer owner, or the broker aborting a transaction that outlived
  ``transaction_timeout_ms``): the task is closed, its inputs paused and the group rejoined, as Kafka Streams does:
  reopening could fence the rightful owner, so the assignment decides;
- a state change that cannot be written: the task replays in check mode up to where the transaction got; a record
  the broker refused: in isolate mode;
- anything else (broker down, timeouts) counts against the task's circuit breaker
  (:mod:`stream_processor.engine.breaker`): reopened at once a few times, then paused with a doubling backoff, and
  shown on ``/health`` and in metrics.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import ProducerFenced

from .breaker import CircuitBreaker, CircuitState, TaskHealth, worst
from .exceptions import StateRecordError, StateRestoreError
from .task import ISOLATE_CHUNK, MAX_BUFFERED, RECORD_REFUSALS, Rollback, Task, TaskEnv

log = logging.getLogger(__name__)


class TaskManager:
    """The tasks of one processor's consumer (see the module docstring).

    ``env``: what the tasks share; ``breaker``: the circuit breaker policy. The caller serializes calls (the worker's
    loop holds a lock; the test driver is sequential).
    """

    def __init__(self, env: TaskEnv, breaker: CircuitBreaker) -> None:
        self.env = env
        self.breaker = breaker
        self.tasks: dict[int, Task] = {}  # every assigned task, open or not, by partition number
        self.to_open: list[int] = []  # assigned tasks still to open (after an assignment), in order
        self.keep: set[int] = set()  # of which: tasks kept across the rebalance (their clean store is kept)
        self.recoveries = 0  # tasks aborted and recovered so far

    @property
    def consumer(self) -> Any:
        return self.env.consumer

    # ---- assignment ------------------------------------------------------------------------------------------------
    async def assign(self, assigned: set[TopicPartition]) -> None:
        """Take a new assignment: close the tasks no longer ours, pause every assigned input, and queue every
        assigned task for opening (:meth:`open_next`).

        Raises RuntimeError when a partition number comes without every input topic (another member of the group
        does not use the co-partitioned assignor).
        """
        by_q: dict[int, list[TopicPartition]] = defaultdict(list)
        for tp in assigned:
            by_q[tp.partition].append(tp)
        inputs = self.env.psettings.input_topics
        for q, tps in sorted(by_q.items()):
            if len(tps) != len(inputs):
                raise RuntimeError(f"partition {q} assigned for {sorted(tp.topic for tp in tps)} only, not every "
                                   f"input {inputs}: another member of the group does not use the copartitioned "
                                   "assignor")
        for q in [q for q in self.tasks if q not in by_q]:
            await self.close(self.tasks.pop(q))
        now = time.monotonic()
        self.keep = {q for q, task in self.tasks.items() if task.is_open}
        order = {topic: i for i, topic in enumerate(inputs)}  # ties between inputs go to the first listed
        for q, tps in by_q.items():
            kept = self.tasks.get(q)
            if kept is None:
                kept = self.tasks[q] = Task(q, tuple(sorted(tps, key=lambda tp: order[tp.topic])), self.env)
                kept.health.last_commit = now
            kept.health.retry_at = None
        self.to_open = sorted(by_q)
        for q in self.to_open:
            self.tasks[q].group.clear()  # read again once reopened: another member may have owned it meanwhile
        if assigned:
            self.consumer.pause(*assigned)  # each task's inputs resume once it is open

    def revoke_all(self) -> list[Task]:
        """Forget every task (the worker leaves the group); returns them for closing."""
        tasks, self.tasks, self.to_open, self.keep = list(self.tasks.values()), {}, [], set()
        return tasks

    async def open_next(self) -> bool:
        """Open the next task queued by :meth:`assign` (reopening it if it was open); False when none is left.

        Raises StateRestoreError (a snapshot this code cannot read, its store set to fail): retrying cannot help.
        """
        while self.to_open:
            q = self.to_open[0]
            task = self.tasks.get(q)
            if task is None:
                self.to_open.pop(0)
                continue
            keep = q in self.keep
            if task.is_open:
                await self.close(task)
            if task.checkpoint is None:
                await self.try_open(task, keep)
            self.keep.discard(q)
            self.to_open.pop(0)
            return True
        return False

    @property
    def opening(self) -> set[int]:
        """Partition numbers of the tasks queued for opening (the one being opened included)."""
        return set(self.to_open)

    async def try_open(self, task: Task, keep: bool = False) -> bool:
        """Open ``task``; on failure pause its inputs and schedule the next attempt (circuit breaker)."""
        try:
            await task.open(keep)
        except StateRestoreError:
            raise  # a snapshot this code cannot read, set to fail: retrying cannot help
        except Exception as exc:  # noqa: BLE001 - broker down, coordinator moving, timeouts
            task.open_error = exc
            self._pause(task)
            delay = self.breaker.on_failure(task.health, f"opening: {exc!r}", time.monotonic(), opening=True)
            log.warning("processor %s: opening %s failed (%r); retrying in %.1f s", self.env.name, task, exc, delay)
            return False
        task.open_error = None
        task.paused.clear()
        self.consumer.resume(*[tp for tp in task.inputs if tp in self.consumer.assignment()])
        return True

    async def reopen_due(self) -> None:
        """Open the tasks whose backoff has passed."""
        now = time.monotonic()
        for task in list(self.tasks.values()):
            health = task.health
            if health.retry_at is not None and now >= health.retry_at and not task.is_open:
                self.breaker.on_attempt(health)
                await self.try_open(task)

    @property
    def retry_due(self) -> bool:
        """True when some task waits for a reopening (its backoff)."""
        return any(t.health.retry_at is not None for t in self.tasks.values())

    async def close(self, task: Task) -> None:
        """Close ``task``: let its commit in flight end first (committed or not, it is reopened from the changelog)."""
        if task.inflight is not None:
            try:
                await task.wait_inflight()
            except Exception:  # noqa: BLE001 - its failure is why it closes, or it is closing anyway
                log.debug("%s: commit in flight failed while closing", task, exc_info=True)
            task.inflight = None
        await task.close()

    def _pause(self, task: Task) -> None:
        inputs = [tp for tp in task.inputs if tp in self.consumer.assignment()]
        if inputs:
            self.consumer.pause(*inputs)

    # ---- processing ------------------------------------------------------------------------------------------------
    def add(self, batches: dict[TopicPartition, list[Any]]) -> None:
        """Hand fetched records to their tasks (records of a task that is not open are dropped: it re-reads them)."""
        tasks, opening = self.tasks, self.to_open
        for tp, records in batches.items():
            task = tasks.get(tp.partition)
            if task is not None and (not opening or tp.partition not in opening):
                task.add(tp, records)

    async def process(self, task: Task, limit: int | None = None, force: bool = False) -> int:
        """Process ``task``'s buffered records as far as its inputs allow; a failure recovers it (:meth:`recover`).
        Returns the records taken."""
        if not task.is_open or task.q in self.to_open:
            return 0
        try:
            taken = await task.process(limit, force)
        except Rollback as rollback:
            await self.recover(task, rollback.__cause__ or rollback, rollback=True)
            return 0
        except Exception as exc:  # noqa: BLE001 - any Kafka error aborts this task's transaction
            await self.recover(task, exc)
            return 0
        if len(task.inputs) > 1:
            self._backpressure(task)
        return taken

    def _backpressure(self, task: Task) -> None:
        """Pause the inputs of ``task`` with more than :data:`MAX_BUFFERED` records waiting; resume them below."""
        consumer = self.consumer
        for tp in task.inputs:
            full = task.group.buffered(tp) > MAX_BUFFERED
            if full and tp not in task.paused:
                task.paused.add(tp)
                consumer.pause(tp)
            elif not full and tp in task.paused:
                task.paused.discard(tp)
                consumer.resume(tp)

    async def punctuate_wall_clock(self, now_ms: int) -> None:
        """Fire the wall-clock punctuations due in every open task; a failing one aborts its task."""
        for task in list(self.tasks.values()):
            if not task.is_open:
                continue
            try:
                await task.punctuate_wall_clock(now_ms)
            except Exception as exc:  # noqa: BLE001 - a failing punctuation aborts the task's transaction
                log.error("processor %s: wall-clock punctuation of %s failed: %r", self.env.name, task, exc)
                await self.recover(task, exc)

    def next_deadline(self) -> float | None:
        """The earliest idle deadline a task waits for (ms of ``env.clock_ms``), or None."""
        deadlines = [d for t in self.tasks.values() if (d := t.group.next_deadline()) is not None]
        return min(deadlines, default=None)

    # ---- recovery --------------------------------------------------------------------------------------------------
    async def recover(self, task: Task, exc: BaseException, rollback: bool = False) -> None:
        """Abort ``task``'s transaction and start it over from its last commit, with state to match (see the module
        docstring). ``rollback``: a record was just marked as poison; the replay dead-letters it."""
        if not task.is_open:
            return
        self.recoveries += 1
        if isinstance(exc, ProducerFenced) or task.fenced:
            log.warning("processor %s: %s was fenced (%r); pausing it and rejoining the group", self.env.name, task,
                        exc)
            await self.close(task)
            self._pause(task)
            self.consumer.request_rejoin()
            return
        cp = task.checkpoint
        assert cp is not None
        reached = dict(cp.positions)  # how far the aborted transaction got
        committed = dict(cp.committed_offsets)
        await self.close(task)
        if rollback:
            await self.try_open(task)
            return
        if isinstance(exc, StateRecordError):
            task.check_until = reached
        elif isinstance(exc, RECORD_REFUSALS):
            task.isolate_until = (reached, ISOLATE_CHUNK)
        delay = self.breaker.on_failure(task.health, repr(exc), time.monotonic())
        if delay is None:
            log.warning("processor %s: aborting %s after %r; rewinding to %s", self.env.name, task, exc, committed)
            await self.try_open(task)
            return
        self._pause(task)
        log.error("processor %s: %s aborted %d times in a row (last: %r); circuit open, next try in %.1f s",
                  self.env.name, task, task.health.failures, exc, delay)

    # ---- views -----------------------------------------------------------------------------------------------------
    @property
    def open_tasks(self) -> dict[int, Task]:
        """The tasks open and not waiting to be reopened, by partition number."""
        opening = self.to_open
        return {q: t for q, t in self.tasks.items() if t.is_open and q not in opening}

    @property
    def circuit_state(self) -> CircuitState:
        """The worst circuit state over the assigned tasks."""
        return worst([t.health.circuit for t in self.tasks.values()])

    def health_of(self, q: int) -> TaskHealth | None:
        task = self.tasks.get(q)
        return task.health if task is not None else None
