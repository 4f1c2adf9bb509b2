"""The commit pipeline: every ``commit_interval_ms`` each open task's transaction is sealed and committed in the
background, while the loop goes on processing into the task's next transaction (see
:mod:`stream_processor.engine.checkpoint`).

A task whose commit is still in flight when the next is due commits as soon as it lands (:attr:`CommitPipeline.due`);
a commit that fails aborts and reopens its task (:meth:`TaskManager.recover`), dropping what was processed after it.
What a commit did is counted once it lands (:meth:`CommitPipeline.committed`): metrics, latency, throughput, the
task's circuit breaker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np

from . import processor as _processor
from .checkpoint import Sealed
from .metrics import Metrics
from .observe import RunnerStats
from .purge import purger_for
from .task import Task
from .task_manager import TaskManager

log = logging.getLogger(__name__)


class CommitPipeline:
    """Seals and commits a processor's tasks (see the module docstring); counts what landed in ``metrics`` and
    ``stats``."""

    def __init__(self, manager: TaskManager, metrics: Metrics, stats: RunnerStats) -> None:
        self.manager = manager
        self.metrics = metrics
        self.stats = stats
        self.name = manager.env.name
        self.due = False  # a commit is due for tasks whose previous one was still in flight
        env = manager.env
        env.on_committed = self.committed
        env.on_commit_failed = self._aborted
        self.purger = purger_for(env.settings, env.psettings.input_topics)  # repartition inputs (engine/purge.py)

    @property
    def in_flight(self) -> bool:
        return any(t.inflight is not None for t in self.manager.tasks.values())

    def launch(self, task: Task) -> None:
        """Seal ``task``'s open transaction and commit it in the background. Raises what sealing raised (a state
        record that cannot be written)."""
        sealed, stamps = task.seal()
        task.inflight = asyncio.create_task(task.complete(sealed, stamps))

    async def harvest(self, wait: bool = False, reopen: bool = True) -> None:
        """Collect the background commits that have landed (``wait``: all of them); a failed one aborts its task,
        which is reopened if ``reopen``."""
        tasks = [t for t in self.manager.tasks.values() if t.inflight is not None]
        if wait and tasks:
            await asyncio.wait([t.inflight for t in tasks if t.inflight is not None])
        for task in tasks:
            inflight = task.inflight
            if inflight is None or not inflight.done():
                continue
            task.inflight = None
            exc = None if inflight.cancelled() else inflight.exception()
            if exc is not None:
                await self.failed(task, exc, reopen)

    async def failed(self, task: Task, exc: BaseException, reopen: bool) -> None:
        """``task``'s transaction failed: recover it, or (``reopen`` False: a rebalance or a stop) close it."""
        if reopen:
            await self.manager.recover(task, exc)
        else:
            await self.manager.close(task)

    async def commit_all(self, reopen: bool = True, wait: bool = False, punctuate: bool = True) -> None:
        """Seal every open transaction and commit it in the background; a task whose previous commit is still in
        flight commits once that lands (:attr:`due`). ``punctuate``: fire the wall-clock punctuations due first.
        ``wait``: return only when every commit has landed (a rebalance, a stop)."""
        if punctuate and reopen:
            await self.manager.punctuate_wall_clock(_processor.wall_clock_ms())
        if wait:
            await self.harvest(wait=True, reopen=reopen)
        self.due = False
        for task in list(self.manager.open_tasks.values()):
            task.commit_now = False
            cp = task.checkpoint
            if cp is None or not cp.is_open:
                continue
            if task.inflight is not None:
                self.due = True
                continue
            try:
                self.launch(task)
            except Exception as exc:  # noqa: BLE001 - a state record that cannot be written (check mode)
                await self.failed(task, exc, reopen)
        if wait:
            await self.harvest(wait=True, reopen=reopen)
        if self.purger is not None:
            await self.purger.maybe_purge()

    @property
    def commit_now(self) -> bool:
        """True when a task asked to commit before the interval (an agent's I/O used half the transaction
        timeout)."""
        return any(t.commit_now for t in self.manager.tasks.values())

    # ---- accounting ------------------------------------------------------------------------------------------------
    def committed(self, task: Task, sealed: Sealed, stamps: list[list[int]], seconds: float) -> None:
        """Count a commit that landed: metrics, the latency of its records, throughput, the task's health."""
        metrics, name = self.metrics, self.name
        metrics.commit_seconds.labels(name).observe(seconds)
        now = time.time()
        latencies_ms = None
        if stamps:
            times = np.concatenate([np.asarray(s, dtype=np.float64) for s in stamps])
            latencies_ms = np.maximum(now * 1000 - times[times > 0], 0.0)
            metrics.processing_latency.observe_many(name, latencies_ms / 1000)
        if self.purger is not None:
            self.purger.note(sealed.offsets)
        metrics.commits.labels(name, "committed").inc()
        metrics.last_commit.labels(name).set(now)
        count = sealed.count
        metrics.messages_in.labels(name).inc(count)
        for topic, n in sealed.outputs.items():
            metrics.messages_out.labels(name, topic).inc(n)
        for reason, n in sealed.failed.items():
            metrics.messages_failed.labels(name, reason).inc(n)
            self.stats.messages_failed += n
        self.stats.on_commit(count, latencies_ms)
        self.manager.breaker.on_success(task.health, time.monotonic())

    def _aborted(self, task: Any) -> None:
        self.metrics.commits.labels(self.name, "aborted").inc()
