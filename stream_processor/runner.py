"""The consume-process-produce loop of one processor: batches in, checkpoints committed every interval.

One :class:`ProcessorRunner` owns one consumer in the processor's group (``read_committed``, no auto
commit) and, for each assigned input partition, a :class:`~stream_processor.checkpoint.Checkpoint`
(its producer) and a :class:`~stream_processor.state.ChangelogStore`. The hot path works a fetched
batch at a time: decode, process and append every output to the partition's record batches, with no
network wait; every ``commit_interval_ms`` all open checkpoints commit concurrently, which hands the
batches to the producers and waits for their acknowledgements before the offsets go in.

Opening a partition is one move, used on every assignment and after every error: start a producer with
the partition's ``transactional.id`` (which fences any zombie and waits until its last transaction is
committed or aborted), bring the state up to date from the changelog under ``read_committed``, and seek
to the offset that state reflects (the changelog's offset marker under exactly_once, else the group's
committed offset). A partition kept across a rebalance is reopened the same way, except that its clean
store is kept and only the changelog written after its own last commit is read: another member may have
owned it in between, and the group's committed offset alone may not show that member's last commit yet.
A broker error while opening is retried for :data:`~stream_processor.retry.RETRY_S` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ProducerFenced

from .checkpoint import Checkpoint, CheckpointState, transactional_id
from .exceptions import RecordError
from .metrics import Metrics
from .processors.base import Processor
from .retry import with_retry
from .settings import ProcessorSettings, Settings
from .state import restore

log = logging.getLogger(__name__)

# Output records are small JSON documents; larger producer batches cut per-request overhead.
PRODUCER_BATCH_BYTES = 512 * 1024
# The throughput shown on /health is averaged over this many seconds of commits.
THROUGHPUT_WINDOW_S = 10.0


def changelog_topic(settings: Settings, name: str) -> str:
    """The compacted changelog topic of processor ``name``'s state."""
    return f"{settings.app_id}-{name}-state-changelog"


class RunnerStats:
    """Counters shown on ``/health``: processed and failed records, latency and recent throughput."""

    def __init__(self) -> None:
        self.messages_processed = 0
        self.messages_failed = 0
        self.processing_latency_ms = 0.0
        self._commits: deque[tuple[float, int]] = deque()

    def on_commit(self, count: int, latency_ms: float | None) -> None:
        now = time.monotonic()
        self.messages_processed += count
        self._commits.append((now, count))
        while self._commits and now - self._commits[0][0] > THROUGHPUT_WINDOW_S:
            self._commits.popleft()
        if latency_ms is not None:
            self.processing_latency_ms = latency_ms

    def throughput_per_second(self) -> float:
        now = time.monotonic()
        recent = [(t, n) for t, n in self._commits if now - t <= THROUGHPUT_WINDOW_S]
        if len(recent) < 2:
            return 0.0
        span = max(now - recent[0][0], 1e-3)
        return sum(n for _, n in recent[1:]) / span

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages_processed": self.messages_processed,
            "messages_failed": self.messages_failed,
            "processing_latency_ms": round(self.processing_latency_ms, 3),
            "throughput_per_second": round(self.throughput_per_second(), 1),
        }


class _Listener(ConsumerRebalanceListener):
    def __init__(self, runner: ProcessorRunner) -> None:
        self.runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.runner.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.runner.on_assigned(assigned)


class ProcessorRunner:
    """Runs one processor exactly once (or at least once) over its input topics.

    ``state`` is one of ``starting``, ``rebalancing``, ``running``, ``stopping``, ``stopped``, ``failed``;
    ``ready`` is True once partitions are assigned and their state is restored.
    """

    def __init__(self, processor: Processor, settings: Settings, metrics: Metrics) -> None:
        self.processor = processor
        self.name = processor.name
        self.settings = settings
        self.psettings: ProcessorSettings = processor.settings
        self.metrics = metrics
        self.transactional = self.psettings.processing_mode == "exactly_once"
        self.changelog = changelog_topic(settings, self.name)
        self.stats = RunnerStats()
        self.state = "starting"
        self.ready = False
        self.checkpoints: dict[TopicPartition, Checkpoint] = {}
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._restore_consumer: AIOKafkaConsumer | None = None
        self._batch_started: dict[TopicPartition, int] = {}  # Kafka timestamp of first record in the txn
        self._fatal: BaseException | None = None  # an error raised where it cannot stop the loop itself

    # ---- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and join the group; partitions arrive through the rebalance listener."""
        kafka = self.settings.kafka
        common = {"bootstrap_servers": kafka.bootstrap_servers, "client_id": self.settings.processor_id}
        self._consumer = AIOKafkaConsumer(
            group_id=self.psettings.consumer_group,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=kafka.max_poll_records,
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=min(3000, kafka.session_timeout_ms // 3),
            **common,
        )
        self._restore_consumer = AIOKafkaConsumer(
            isolation_level="read_committed", enable_auto_commit=False, auto_offset_reset="earliest", **common
        )
        await with_retry(lambda _: self._restore_consumer.start(), f"processor {self.name}: connecting")
        await with_retry(lambda _: self._consumer.start(), f"processor {self.name}: connecting")
        self._consumer.subscribe(self.psettings.input_topics, listener=_Listener(self))
        self.state = "rebalancing"

    async def run(self) -> None:
        """Consume, process and commit until :meth:`stop`."""
        assert self._consumer is not None
        consumer = self._consumer
        interval = self.settings.kafka.commit_interval_ms / 1000
        max_records = self.settings.kafka.max_poll_records
        next_commit = time.monotonic() + interval
        try:
            while not self._stopping.is_set():
                if self._fatal is not None:
                    raise self._fatal
                timeout_ms = max(1, int((next_commit - time.monotonic()) * 1000))
                batches = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
                async with self._lock:
                    if batches:
                        await self._process(batches)
                    if time.monotonic() >= next_commit:
                        await self._commit_all()
                        next_commit = time.monotonic() + interval
        except asyncio.CancelledError:
            raise
        except Exception:
            self.state = "failed"
            log.exception("processor %s failed", self.name)
            raise

    def request_stop(self) -> None:
        """Make :meth:`run` return after its current batch (within one commit interval)."""
        self._stopping.set()
        self.state = "stopping"

    async def stop(self) -> None:
        """Commit what is processed, close every producer and leave the group (after :meth:`run` ended)."""
        self.request_stop()
        async with self._lock:
            await self._commit_all()
            for cp in list(self.checkpoints.values()):
                await cp.close()
            self.checkpoints.clear()
        if self._consumer is not None:
            await self._consumer.stop()
        if self._restore_consumer is not None:
            await self._restore_consumer.stop()
        self.ready = False
        self.state = "stopped"

    # ---- rebalance ---------------------------------------------------------------------------------
    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Commit everything processed so far before the group moves partitions."""
        self.ready = False
        self.state = "rebalancing"
        async with self._lock:
            await self._commit_all(reopen=False)

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """Close partitions no longer ours; (re)open every assigned one: fence, catch up the state, seek."""
        assert self._consumer is not None
        try:
            async with self._lock:
                for tp in [tp for tp in self.checkpoints if tp not in assigned]:
                    await _close_quietly(self.checkpoints.pop(tp))
                self._consumer.resume(*assigned)  # partitions paused after being fenced
                for tp in sorted(assigned):
                    previous = self.checkpoints.pop(tp, None)
                    if previous is not None:
                        await _close_quietly(previous)
                    self.checkpoints[tp] = await self._open_with_retry(tp, previous)
                self.metrics.assigned_partitions.labels(self.name).set(len(self.checkpoints))
                self.state = "running"
                self.ready = True
        except Exception as exc:  # noqa: BLE001 - aiokafka only logs listener errors; make the loop raise it
            self._fatal = exc
            raise
        generation = self._consumer._coordinator.generation  # noqa: SLF001 - for the log (the chaos harness counts it)
        log.info("processor %s assigned %s (generation %s)", self.name,
                 sorted((tp.topic, tp.partition) for tp in assigned), generation)

    async def _open_with_retry(self, tp: TopicPartition, previous: Checkpoint | None = None) -> Checkpoint:
        """:meth:`_open_partition`, retried while the broker fails (after a failure, the state is rebuilt whole)."""
        return await with_retry(
            lambda attempt: self._open_partition(tp, previous if attempt == 0 else None),
            f"processor {self.name}: opening {tp}",
        )

    async def _open_partition(self, tp: TopicPartition, previous: Checkpoint | None = None) -> Checkpoint:
        """Fence, bring the state up to date, seek; ``previous`` is our own clean checkpoint of ``tp``, if any."""
        assert self._consumer is not None and self._restore_consumer is not None
        kafka = self.settings.kafka
        group = self.psettings.consumer_group
        options: dict[str, Any] = {
            "bootstrap_servers": kafka.bootstrap_servers,
            "client_id": f"{self.settings.processor_id}-{tp.topic}-{tp.partition}",
            "max_batch_size": PRODUCER_BATCH_BYTES,
            "acks": "all",
            "enable_idempotence": True,
            # A transaction's first AddPartitionsToTxn often meets CONCURRENT_TRANSACTIONS while the previous
            # commit's markers are written; the Java client retries that after 20 ms, not 100 ms.
            "retry_backoff_ms": 20,
        }
        if self.transactional:
            options["transactional_id"] = transactional_id(self.settings.app_id, group, tp)
            options["transaction_timeout_ms"] = kafka.transaction_timeout_ms
        producer = AIOKafkaProducer(**options)
        try:
            # InitProducerId: fences the previous owner of this transactional.id and completes or aborts its
            # open transaction, so the changelog and offsets read below are final.
            await producer.start()
            keep = (
                previous is not None and self.transactional and previous.store is not None
                and not previous.store.dirty and previous.changelog_position is not None
                and previous.state is not CheckpointState.OPEN
            )
            if keep:
                assert previous is not None
                store, changelog_from = previous.store, previous.changelog_position
            else:
                store, changelog_from = self.processor.new_store(), None
            assert store is not None
            restored = await restore(
                store, self._restore_consumer, TopicPartition(self.changelog, tp.partition), changelog_from
            )
            self.metrics.restored_records.labels(self.name).inc(restored.applied)
            # Under exactly_once the offset marker is committed with the state it describes; the group's
            # committed offset is the fallback (at_least_once, or a changelog written before markers).
            committed = restored.offset if self.transactional else None
            if committed is None:
                committed = await self._consumer.committed(tp)
            start = committed
            if start is None:
                start = (await self._consumer.beginning_offsets([tp]))[tp]
        except BaseException:
            await producer.stop()
            raise
        self._consumer.seek(tp, start)
        cp = Checkpoint(
            tp,
            group_id=group,
            producer=producer,
            consumer=self._consumer,
            store=store,
            changelog_topic=self.changelog,
            transactional=self.transactional,
        )
        try:
            await cp.prepare([*self.psettings.output_topics, self.psettings.dead_letter_topic, self.changelog])
        except BaseException:
            await producer.stop()
            raise
        cp.committed_offset = committed
        cp.position = start
        cp.changelog_position = restored.end  # the store reflects every changelog record before this offset
        log.debug("opened %s at offset %s: %d keys, %d changelog records read from %s", tp, committed,
                  len(store.data), restored.applied, changelog_from)
        return cp

    # ---- hot path ----------------------------------------------------------------------------------
    async def _process(self, batches: dict[TopicPartition, list[Any]]) -> None:
        started = time.perf_counter()
        for tp, messages in batches.items():
            cp = self.checkpoints.get(tp)
            if cp is None or not messages:
                continue  # fetched before a rebalance took the partition away, or fenced
            try:
                if not cp.is_open:
                    await cp.begin()
                    self._batch_started[tp] = messages[0].timestamp
                await self._process_partition(cp, messages)
            except Exception as exc:  # noqa: BLE001 - any Kafka error aborts this partition's transaction
                await self._recover(tp, exc)
        self.metrics.batch_seconds.labels(self.name).observe(time.perf_counter() - started)

    async def _process_partition(self, cp: Checkpoint, messages: list[Any]) -> None:
        """Process one partition's fetched records in offset order, ``batch_size`` at a time.

        Under exactly_once, outputs stay in the checkpoint's record batches until the commit hands them to the
        producer: aiokafka lets one batch per partition wait in its queue, so handing over a batch per chunk made
        the loop wait a produce round trip per chunk (the bench measured 28.6k trades/s that way, 34.6k/s
        without), and nothing is visible before the commit anyway. Under at_least_once each chunk's outputs are
        handed over at once, so they are visible without waiting for the commit.
        """
        if messages[0].offset < cp.position:
            # Records fetched before a seek (rebalance, recovery) may still arrive: never process twice.
            messages = [m for m in messages if m.offset >= cp.position]
        step = self.psettings.batch_size
        for start in range(0, len(messages), step):
            chunk = messages[start : start + step]
            self._process_chunk(cp, chunk)
            if not self.transactional:
                await cp.flush()
            cp.position = chunk[-1].offset + 1
            cp.store_offset(cp.position, len(chunk))

    def _process_chunk(self, cp: Checkpoint, messages: list[Any]) -> None:
        tp = cp.tp
        topic, partition = tp.topic, tp.partition
        process = self.processor.process
        decode = self.processor.decode
        store = cp.store
        append = cp.append
        outputs = cp.pending_outputs
        for msg in messages:
            try:
                record = decode(msg.value, msg.key)
                results = process(record, store, topic, partition, msg.offset)
            except RecordError as exc:
                self._dead_letter(cp, msg, exc.reason, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - a processor bug must not stop the partition
                log.exception("processor %s failed on %s@%d", self.name, tp, msg.offset)
                self._dead_letter(cp, msg, "processing_error", repr(exc))
                continue
            for out_topic, key, value in results:
                append(out_topic, value, key)
                outputs[out_topic] += 1

    def _dead_letter(self, cp: Checkpoint, msg: Any, reason: str, error: str) -> None:
        headers = [
            ("reason", reason.encode()),
            ("error", error.encode()[:1000]),
            ("processor", self.name.encode()),
            ("source_topic", msg.topic.encode()),
            ("source_partition", str(msg.partition).encode()),
            ("source_offset", str(msg.offset).encode()),
        ]
        cp.append(self.psettings.dead_letter_topic, msg.value or b"", key=msg.key, headers=headers)
        cp.pending_outputs[self.psettings.dead_letter_topic] += 1
        cp.pending_failed += 1

    async def _commit_all(self, reopen: bool = True) -> None:
        """Commit every open checkpoint concurrently; a failed one is aborted and (if ``reopen``) reopened."""
        open_cps = [cp for cp in self.checkpoints.values() if cp.is_open]
        if not open_cps:
            return
        started = time.perf_counter()
        results = await asyncio.gather(*(self._commit_one(cp) for cp in open_cps), return_exceptions=True)
        self.metrics.commit_seconds.labels(self.name).observe(time.perf_counter() - started)
        for cp, result in zip(open_cps, results, strict=True):
            if isinstance(result, BaseException):
                self.metrics.commits.labels(self.name, "aborted").inc()
                if reopen:
                    await self._recover(cp.tp, result)
                else:
                    self.checkpoints.pop(cp.tp, None)
                    await _close_quietly(cp)

    async def _commit_one(self, cp: Checkpoint) -> None:
        outputs, failed = Counter(cp.pending_outputs), cp.pending_failed
        count = await cp.commit()
        now_ms = time.time() * 1000
        first_ts = self._batch_started.pop(cp.tp, None)
        latency_ms = now_ms - first_ts if first_ts is not None and first_ts > 0 else None
        self.metrics.commits.labels(self.name, "committed").inc()
        self.metrics.messages_in.labels(self.name).inc(count)
        for topic, n in outputs.items():
            self.metrics.messages_out.labels(self.name, topic).inc(n)
        if failed:
            self.metrics.messages_failed.labels(self.name, "dead_letter").inc(failed)
            self.stats.messages_failed += failed
        if latency_ms is not None:
            self.metrics.processing_latency.labels(self.name).observe(latency_ms / 1000)
        self.stats.on_commit(count, latency_ms)
        assert self._consumer is not None
        lso = self._consumer.last_stable_offset(cp.tp)
        if lso is not None and cp.committed_offset is not None:
            self.metrics.consumer_lag.labels(self.name, cp.tp.topic, str(cp.tp.partition)).set(
                max(0, lso - cp.committed_offset)
            )

    async def _recover(self, tp: TopicPartition, exc: BaseException) -> None:
        """Abort ``tp``'s transaction and start it over from its last commit, with state to match."""
        cp = self.checkpoints.pop(tp, None)
        self._batch_started.pop(tp, None)
        if cp is None:
            return
        if isinstance(exc, ProducerFenced) or cp.fenced:
            # A newer owner took q (the group is moving it away from us), or the broker aborted a transaction
            # that outlived transaction_timeout_ms. Reopening here could fence the rightful owner, so stop
            # fetching q and rejoin the group, as Kafka Streams does: the assignment decides who opens q.
            log.warning("processor %s: %s was fenced (%r); pausing it and rejoining the group", self.name, tp, exc)
            await _close_quietly(cp)
            assert self._consumer is not None
            if tp in self._consumer.assignment():
                self._consumer.pause(tp)
            self._consumer._coordinator.request_rejoin()  # noqa: SLF001 - aiokafka has no public enforce_rebalance
            return
        log.warning("processor %s: aborting %s after %r; rewinding to offset %s", self.name, tp, exc,
                    cp.committed_offset)
        await _close_quietly(cp)
        self.checkpoints[tp] = await self._open_with_retry(tp)


async def _close_quietly(cp: Checkpoint) -> None:
    try:
        await cp.close()
    except Exception:  # noqa: BLE001 - the producer is gone either way; its successor fences it
        log.debug("closing %s failed", cp.tp, exc_info=True)
