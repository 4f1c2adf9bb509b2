"""How a task processes its records: in timestamp order, in runs of one partition, ``batch_size`` at a time, with
poison isolated (a part of :class:`~stream_processor.engine.task.Task`; see that module for the rules).

No record may stall a task or change state when it is dead-lettered:

- a record the processor refuses (:class:`~stream_processor.engine.exceptions.RecordError`, raised before it changes
  anything), an input above ``max_input_bytes``, and an undecodable one go to the dead-letter topic in the same
  transaction (:mod:`~stream_processor.engine.collector`);
- a record whose processing raised anything else, or whose output is refused, may have changed state half-way: it
  is marked as poison and :class:`Rollback` is raised; the task's owner aborts and reopens the task (state from the
  changelog) and the replay dead-letters that record instead of processing it, so state is exactly what it would be
  without it (a processing error is first replayed in *check* mode, since an earlier record of the transaction may
  have broken the state it tripped on);
- in check mode each record's state changes are encoded as it is processed, and a record whose state cannot be
  written is the poison; in *isolate* mode (a commit the broker refused for a record) the task commits small
  transactions, then one per record, and a record whose own transaction is refused is dead-lettered by reference.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
    UnsupportedForMessageFormatError,
)

from .collector import Refused
from .exceptions import AgentTimeoutError, RecordError, StateRecordError
from .partition_group import PROGRESS_HEADER, Run
from .processor import current_context

if TYPE_CHECKING:
    from .checkpoint import Checkpoint
    from .partition_group import PartitionGroup
    from .processor import ProcessorContext
    from .state import TaskStores
    from .task import TaskEnv

log = logging.getLogger(__name__)

#: Isolate mode commits this many records per transaction, then one per record in a chunk the broker refused.
ISOLATE_CHUNK = 64
#: Errors with which the broker refuses one record (not the connection): retrying the same transaction cannot help.
RECORD_REFUSALS = (MessageSizeTooLargeError, RecordListTooLargeError, RecordTooLargeError, CorruptRecordException,
                   InvalidTimestampError, UnsupportedForMessageFormatError)
#: A task's next transaction holds at most about this many input records while its previous one commits; past it
#: the task waits for that commit (a slow broker slows the worker instead of growing its memory).
PIPELINE_MAX_RECORDS = 50_000
#: A partition with more records buffered than this is paused until its task has taken them (a task waiting for
#: another input keeps fetching only up to here).
MAX_BUFFERED = 10_000


class Rollback(Exception):  # noqa: N818 - a control-flow signal, not an error of its own
    """Abort the task's transaction and replay it: a record was marked as poison (its cause is ``__cause__``)."""


class AgentAwaitsIO(BaseException):  # noqa: N818 - a signal through the task's error handling, not an error
    """An agent awaited real I/O while the task was run without an event loop (``TaskEnv.allow_io`` False: the test
    driver's synchronous calls)."""


class Processing:
    """The processing half of :class:`~stream_processor.engine.task.Task` (its attributes are the task's)."""

    env: TaskEnv
    checkpoint: Checkpoint | None
    context: ProcessorContext | None
    stores: TaskStores | None
    group: PartitionGroup
    poison: dict[TopicPartition, dict[int, tuple[str, str, bool]]]
    check_until: dict[TopicPartition, int] | None
    isolate_until: tuple[dict[TopicPartition, int], int] | None
    inflight: asyncio.Task[Any] | None
    commit_now: bool

    def _stamp(self, records: list[Any]) -> None:
        raise NotImplementedError

    async def wait_inflight(self) -> None:
        raise NotImplementedError

    async def commit_inline(self, between_batches: bool = False) -> int:
        raise NotImplementedError

    async def process(self, limit: int | None = None, force: bool = False) -> int:
        """Process the buffered records, in timestamp order, as far as the inputs allow (at most ``limit``).

        Returns the records taken. Raises Rollback (a record was marked as poison), AgentTimeoutError, or what the
        producer raised; the owner then aborts and reopens the task (:class:`TaskManager`). ``force``: go on without
        empty partitions at once (the test driver, once nothing else can happen).
        """
        taken = 0
        cp = self.checkpoint
        while cp is not None and not self.commit_now and (limit is None or taken < limit):
            if cp.pending_count >= PIPELINE_MAX_RECORDS and self.inflight is not None:
                await self.wait_inflight()  # a slow commit: bound what the next transaction holds
            run = self.group.next_run(self.env.clock_ms(), None if limit is None else limit - taken, force)
            if run is None:
                break
            taken += len(run.records)
            if not cp.is_open:
                await cp.begin()
            if self.isolate_until is not None:
                await self._process_isolated(run)
            else:
                await self._process_run(run)
        return taken

    async def _process_run(self, run: Run) -> None:
        """Process one run of an input partition's records in offset order, ``batch_size`` at a time.

        Under exactly_once, outputs stay in the checkpoint's record batches until the commit hands them to the
        producer: aiokafka lets one batch per partition wait in its queue, so handing over a batch per chunk made
        the loop wait a produce round trip per chunk, and nothing is visible before the commit anyway. Under
        at_least_once each chunk's outputs are handed over at once, so they are visible without waiting for the
        commit.
        """
        cp = self.checkpoint
        assert cp is not None
        tp, messages = run.tp, run.records
        check = self.check_until is not None
        step = self.env.psettings.batch_size
        for start in range(0, len(messages), step):
            chunk = messages[start : start + step]
            done = await self._process_chunk(tp, chunk, run.enforced, check)
            if done < len(chunk):  # an agent's I/O used half the transaction timeout: commit what is done
                self.group.unread(tp, [*chunk[done:], *messages[start + step :]])
                chunk = chunk[:done]
                self.commit_now = True
            if chunk:
                if not self.env.transactional:
                    await cp.flush()
                cp.positions[tp] = chunk[-1].offset + 1
                cp.store_offset(tp, cp.positions[tp], len(chunk))
                self._stamp(chunk)
            if self.commit_now:
                return
        if check and self.check_until is not None and all(
                cp.positions[p] >= end for p, end in self.check_until.items()):
            self.check_until = None
            log.info("processor %s: %s left check mode at %s", self.env.name, self, dict(cp.positions))

    async def _process_isolated(self, run: Run) -> None:
        """Isolate mode: a transaction per :data:`ISOLATE_CHUNK` records; in a chunk the broker refuses, one per
        record; a record whose own transaction is refused is dead-lettered by reference."""
        cp = self.checkpoint
        assert cp is not None and self.isolate_until is not None
        until, step = self.isolate_until
        tp, messages = run.tp, run.records
        i = 0
        while i < len(messages):
            chunk = messages[i : i + step]
            if not cp.is_open:
                await cp.begin()
            await self._process_chunk(tp, chunk, run.enforced, check=True)
            cp.positions[tp] = chunk[-1].offset + 1
            cp.store_offset(tp, cp.positions[tp], len(chunk))
            self._stamp(chunk)
            try:
                await self.commit_inline()
            except RECORD_REFUSALS as exc:
                if len(chunk) == 1:
                    self.mark_poison(tp, chunk[0].offset, "uncommittable", repr(exc), by_reference=True)
                else:  # replay this chunk a record at a time
                    self.isolate_until = ({**until, tp: cp.positions[tp]}, 1)
                raise Rollback from exc
            i += len(chunk)
            if all(cp.positions[p] >= end for p, end in until.items()):
                self.isolate_until = None
                log.info("processor %s: %s left isolate mode at %s", self.env.name, self, dict(cp.positions))
                if messages[i:]:
                    await cp.begin()
                    await self._process_run(Run(tp, messages[i:], run.enforced))
                return

    async def _process_chunk(self, tp: TopicPartition, messages: list[Any], enforced: frozenset[str],
                             check: bool = False) -> int:
        """Decode, process and append the outputs of ``messages``; ``check``: encode each record's state changes.

        Returns how many were processed: all, or fewer when an agent's I/O used half the transaction timeout (the
        rest is to be committed first). Raises Rollback after marking a record as poison (a processing error, an
        output refused, a state change that cannot be written); the caller aborts and replays the transaction.
        """
        topic = tp.topic
        env = self.env
        processor = env.processor
        ctx, stores, cp = self.context, self.stores, self.checkpoint
        assert ctx is not None and stores is not None and cp is not None
        collector = env.collector
        run = ctx.run
        outputs = ctx.outputs
        max_input = env.psettings.max_input_bytes
        poison = self.poison.get(tp)
        refused_before = ctx.refused_before.get(topic, -1)
        ctx.partition = tp.partition
        ctx.enforced = enforced
        token = current_context.set(ctx)
        try:
            for i, msg in enumerate(messages):
                offset = msg.offset
                if poison and offset in poison:
                    reason, error, by_reference = poison[offset]
                    if offset >= refused_before:
                        collector.dead_letter(cp, msg, reason, error, omit_value=by_reference)
                    continue
                headers = msg.headers
                if headers and any(name == PROGRESS_HEADER for name, _ in headers):
                    continue  # another task's progress: time passing on this partition, not a record
                value = msg.value
                if value is not None and len(value) > max_input:
                    if offset >= refused_before:
                        collector.dead_letter(cp, msg, "too_large", f"value of {len(value)} bytes is above "
                                                                    f"max_input_bytes ({max_input})")
                    continue
                if check:
                    before = stores.take_dirty()
                waited = False
                try:
                    pending = run(processor, topic, offset, msg.timestamp, msg.key, headers, value)
                    if pending is not None:  # an agent awaiting I/O
                        if not env.allow_io:
                            pending.close()
                            raise AgentAwaitsIO
                        await self._await_agent(pending)
                        waited = time.monotonic() - cp.opened_at > env.agent_budget_s
                    if ctx.stream_time >= ctx.next_stream_due:
                        ctx.punctuate_stream_time()
                except RecordError as exc:
                    outputs.clear()
                    if check:
                        stores.merge_dirty(before)
                    if offset >= refused_before:  # else dead-lettered before a restart
                        collector.dead_letter(cp, msg, exc.reason, str(exc))
                    continue
                except AgentTimeoutError:
                    outputs.clear()
                    raise
                except Exception as exc:  # noqa: BLE001 - a processor bug must not stop the partition
                    outputs.clear()
                    if not env.allow_io and isinstance(exc, RuntimeError) and "no running event loop" in str(exc):
                        raise AgentAwaitsIO from exc  # the agent awaited I/O outside a loop
                    self._processing_failed(tp, offset, exc, check)
                if outputs:
                    try:
                        collector.emit(cp, outputs)
                    except Refused as refused:
                        self.mark_poison(tp, offset, refused.reason, refused.error)
                        raise Rollback from refused
                if ctx.committed_callbacks:
                    cp.pending_callbacks.extend(ctx.committed_callbacks)
                    ctx.committed_callbacks.clear()
                if check:
                    try:
                        stores.check_dirty(env.limits.get(env.changelog))
                    except StateRecordError as exc:
                        self.mark_poison(tp, offset, exc.reason, str(exc))
                        raise Rollback from exc
                    stores.merge_dirty(before)
                if waited and not check:
                    return i + 1
        finally:
            current_context.reset(token)
        return len(messages)

    def _processing_failed(self, tp: TopicPartition, offset: int, exc: Exception, check: bool) -> None:
        """A processor raised something other than a RecordError on ``tp``@``offset``: raise Rollback.

        Out of check mode, an earlier record of this transaction may have broken the state this one tripped on: the
        replay runs in check mode up to here first, which finds such a record; this one is blamed only if it fails
        again there.
        """
        if not check:
            log.warning("processor %s failed on %s@%d (%r); replaying in check mode", self.env.name, tp, offset, exc)
            until = self.check_until if self.check_until is not None else {}
            until[tp] = max(until.get(tp, 0), offset + 1)
            self.check_until = until
            raise Rollback from exc
        log.exception("processor %s failed on %s@%d", self.env.name, tp, offset)
        self.mark_poison(tp, offset, "processing_error", repr(exc))
        raise Rollback from exc

    async def _await_agent(self, pending: Any) -> None:
        """Run an agent's await of real I/O to the end, within half the transaction timeout.

        Raises AgentTimeoutError past it: the transaction would be aborted by the broker anyway.
        """
        budget = self.env.agent_budget_s
        try:
            async with asyncio.timeout(budget):
                await pending
        except TimeoutError:
            raise AgentTimeoutError(f"agent {self.env.name} awaited I/O for more than {budget:.1f} s on one record "
                                    "(half of kafka.transaction_timeout_ms)") from None

    def mark_poison(self, tp: TopicPartition, offset: int, reason: str, error: str, by_reference: bool = False) -> None:
        """Remember ``tp``@``offset`` as poison: the replay dead-letters it instead of processing it."""
        log.warning("processor %s: %s@%d is poison (%s: %s); its transaction is replayed without it", self.env.name,
                    tp, offset, reason, error[:300])
        self.poison.setdefault(tp, {})[offset] = (reason, error, by_reference)
