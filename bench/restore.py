"""Restore time of one changelog partition of 1M records: before and after compaction, old and new restore, old and
new topic configs.

Usage: ``python bench/restore.py [--records 1000000] [--keys 10000] [--per-commit 100] [--producers 8] [--baseline]
[--old-configs] [--compaction-timeout 600]``.

Starts a throwaway real broker (or uses ``TEST_KAFKA_BOOTSTRAP``) and creates the trades processor's changelog topic
as the worker does (:func:`~stream_processor.engine.topics.ensure_topics` of its
:func:`~stream_processor.engine.topics.required_topics` entry: compacted, with
:data:`~stream_processor.engine.topics.CHANGELOG_CONFIGS`). It writes partition 0 as the runner would: ``--keys``
symbols, each a real :class:`~stream_processor.market.processors.trades.SymbolTrades` of the shipped parameters fed
one trade per update (gap-free trade ids, a random-walk price), encoded by the processor's own
:class:`~stream_processor.engine.state.TaskStores` (2.6 KB a record on average at 100 updates a key, 3.6 KB once the
100-trade windows are full); one transaction per commit interval holding ``--per-commit`` dirty keys (drawn at
random) and the input partition's offset marker, committed by transactional producers configured as the runner's,
so the partition holds a commit marker per transaction. ``--producers`` of them write at the same time (key i always
by producer i % n, so each key's records stay in order), until ``--records`` state records are written.

Then it times :func:`~stream_processor.engine.state.restore` of the partition into a fresh ``TaskStores`` of the
trades processor, with a consumer configured as the runner's restore consumer (``read_committed``, aiokafka's default
``max_partition_fetch_bytes`` of 1 MiB) and with one fetching 8 MiB, and checks every restored key against the state
written:

- (a) the partition as written: ``min.compaction.lag.ms`` holds the cleaner off until then;
- (b) after compaction, as a restore sees the partition ``segment.ms`` after the last write: the topic's own configs
  back, the next commit appended (with segment.ms set to 1 s for that append, so that it rolls the active segment as
  the 10-minute roll would), and the bench waits until the cleaner has compacted the partition (a read from an
  offset it has cleaned skips most of the offsets);
- with ``--old-configs``, (b) also for a topic created as before (``cleanup.policy=compact`` only: the broker's
  segment.bytes, 7-day segment.ms and 0.5 dirty ratio) holding the same records: its active segment stays.

``--baseline`` also times the restore this project had before (copied below: every record decoded, in order) in the
same run. Each restore of (b) runs 3 times, the best kept (they take seconds; the machine may be shared). Prints,
per restore: records read (state records and offset markers; the commit markers are skipped by
the consumer), keys restored, seconds, records/s; then how much faster the restore is than the old one.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType  # noqa: E402

from stream_processor.engine.clients import PRODUCER_BATCH_BYTES  # noqa: E402
from stream_processor.engine.registry import build_processor  # noqa: E402
from stream_processor.engine.restore import Markers  # noqa: E402
from stream_processor.engine.settings import Settings  # noqa: E402
from stream_processor.engine.state import Restored, TaskStores, offset_marker, restore  # noqa: E402
from stream_processor.engine.topics import (  # noqa: E402
    CHANGELOG_CONFIGS,
    changelog_topic,
    ensure_topics,
    required_topics,
)
from stream_processor.market.models import Trade  # noqa: E402
from stream_processor.market.processors.trades import SymbolTrades  # noqa: E402
from tests.broker import broker  # noqa: E402
from tests.helpers import isolated_settings  # noqa: E402

PROCESSOR = "trades"
PARTITION = 0
T0 = 1_723_161_255_342  # 2024-08-08 23:54:15.342 UTC: the event time of the first trade
MIB = 1024 * 1024
HOLD_MS = 7 * 24 * 3600 * 1000  # min.compaction.lag.ms while writing and timing (a): nothing is compacted


async def restore_baseline(store: TaskStores, consumer: AIOKafkaConsumer, tp: TopicPartition) -> Restored:
    """The restore this project had before: every record of the partition decoded and applied in order (a copy of
    the old loop of :func:`~stream_processor.engine.state.restore`, from the beginning)."""
    store.clear()
    consumer.assign([tp])
    try:
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        applied = 0
        markers = Markers()
        load = store.load
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=10_000)
            for record in batch.get(tp, ()):
                key = record.key
                if key is not None and key[:1] == b"\x00" and markers.read(key, record.value):
                    continue
                load(key, record.value)
                applied += 1
        return markers.restored(applied, end)
    finally:
        consumer.assign([])


class Writer:
    """The changelog partition's content: the trades processor's store, updated and encoded as the runner does.

    Its keys are dealt to ``lanes`` producers (key i to lane i % lanes), each committing its own transactions, so that
    the partition is written several transactions at a time, each key's records still in order.
    """

    def __init__(self, settings: Settings, keys: int, per_commit: int, lanes: int, seed: int = 7) -> None:
        self.processor = build_processor(PROCESSOR, settings)
        self.store = TaskStores(self.processor.stores(), settings.stream_processors[PROCESSOR].state_errors)
        self.input_topic = settings.stream_processors[PROCESSOR].input_topics[0]
        self.keys = [f"binance/spot/SYM{i:05d}USDT" for i in range(keys)]
        self.per_commit = per_commit
        self.lanes = [list(range(lane, keys, lanes)) for lane in range(lanes)]
        self.rng = random.Random(seed)
        self.price = [self.rng.uniform(1.0, 60_000.0) for _ in range(keys)]
        self.next_id = [10_000_000 * i for i in range(keys)]
        self.input_offset = 0  # the input partition's next offset (one input record per update)
        self.now = T0
        self.records = 0  # state records written
        self.markers = 0
        self.bytes = 0  # keys and values of the state records

    def _update(self, i: int) -> None:
        store = self.store[""]
        key = self.keys[i]
        state = store.get(key)
        if state is None:
            state = SymbolTrades(self.processor.params)
            store.put(key, state)
        rng = self.rng
        self.price[i] = price = round(self.price[i] * (1.0 + rng.gauss(0.0, 2e-4)), 2)
        trade_id = self.next_id[i] = self.next_id[i] + 1
        self.now += 1
        state.update(Trade("binance", key.rsplit("/", 1)[1], trade_id, price, round(rng.expovariate(50.0), 5),
                           "buy" if rng.random() < 0.5 else "sell", self.now, self.now + 1))
        store.mark_dirty(key)
        self.input_offset += 1

    def commit_records(self, lane: int, n: int) -> list[tuple[bytes, bytes | None]]:
        """One commit's changelog records: ``n`` keys of ``lane`` updated (their records), then the offset marker."""
        keys = self.lanes[lane]
        for i in self.rng.sample(keys, n) if n < len(keys) else keys:
            self._update(i)
        records = self.store.changelog_records()
        self.records += len(records)
        self.bytes += sum(len(k) + len(v or b"") for k, v in records)
        records.append(offset_marker(self.input_topic, self.input_offset, stream_time=self.now))
        self.markers += 1
        return records

    def expected(self) -> dict[str, Any]:
        return {key: obj.to_state() for key, obj in self.store[""].data.items()}


class Producers:
    """One transactional producer per lane, configured as the runner's, writing partition 0 of ``topic``."""

    def __init__(self, bootstrap: str, topic: str, lanes: int, txn_prefix: str) -> None:
        self.topic = topic
        self.producers = [AIOKafkaProducer(
            bootstrap_servers=bootstrap, client_id=f"bench-restore-{lane}", transactional_id=f"{txn_prefix}-{lane}",
            acks="all", enable_idempotence=True, max_batch_size=PRODUCER_BATCH_BYTES, retry_backoff_ms=20,
            transaction_timeout_ms=10_000,
        ) for lane in range(lanes)]

    async def start(self) -> None:
        await asyncio.gather(*(p.start() for p in self.producers))

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in self.producers))

    async def commit(self, producer: AIOKafkaProducer, records: list[tuple[bytes, bytes | None]]) -> None:
        """One transaction of ``records``, in record batches as the runner's checkpoint appends them."""
        await producer.begin_transaction()
        futures = []
        builder = producer.create_batch()
        for key, value in records:
            if builder.append(timestamp=None, key=key, value=value, headers=[]) is None:
                futures.append(await producer.send_batch(builder, self.topic, partition=PARTITION))
                builder = producer.create_batch()
                builder.append(timestamp=None, key=key, value=value, headers=[])
        futures.append(await producer.send_batch(builder, self.topic, partition=PARTITION))
        await asyncio.gather(*futures)
        await producer.commit_transaction()

    async def lane(self, producer: AIOKafkaProducer, queue: asyncio.Queue) -> None:
        """Commit the transactions of ``queue`` in order until a None."""
        while (records := await queue.get()) is not None:
            await self.commit(producer, records)


async def put(queue: asyncio.Queue, item: Any, task: asyncio.Task) -> None:
    """``queue.put(item)``, unless the ``task`` that reads it has failed: then its error."""
    while True:
        if task.done():
            task.result()
            raise RuntimeError("a producer stopped early")
        try:
            queue.put_nowait(item)
            return
        except asyncio.QueueFull:
            await asyncio.sleep(0.005)


async def write(topics: list[Producers], writer: Writer, total: int) -> float:
    """Write ``total`` state records to each of ``topics`` (the same records, the same transactions); returns the
    seconds taken. Each lane's producer commits its transactions in order while the next ones are encoded."""
    lanes = len(writer.lanes)
    queues = [[asyncio.Queue(maxsize=16) for _ in range(lanes)] for _ in topics]
    tasks = [asyncio.create_task(producers.lane(producer, queue))
             for producers, lane_queues in zip(topics, queues, strict=True)
             for producer, queue in zip(producers.producers, lane_queues, strict=True)]
    written = 0
    started = time.perf_counter()
    try:
        while written < total:
            n = min(writer.per_commit, total - written)
            lane = writer.markers % lanes
            records = writer.commit_records(lane, n)
            for t, lane_queues in enumerate(queues):
                await put(lane_queues[lane], records, tasks[t * lanes + lane])
            n = len(records) - 1  # fewer than asked when a lane has fewer keys
            written += n
            if written % 50_000 < n:
                print(f"  written {written:,}/{total:,} state records ({time.perf_counter() - started:.0f} s)",
                      end="\r", file=sys.stderr, flush=True)
            await asyncio.sleep(0)  # the producers' turn
        for t, lane_queues in enumerate(queues):
            for lane, queue in enumerate(lane_queues):
                await put(queue, None, tasks[t * lanes + lane])
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    seconds = time.perf_counter() - started
    print(file=sys.stderr)
    for producers in topics:
        print(f"wrote {producers.topic}: {writer.records:,} state records ({writer.bytes / writer.records:,.0f} bytes "
              f"each on average, {writer.bytes / MIB:,.0f} MiB) + {writer.markers:,} offset markers, in "
              f"{writer.markers:,} transactions by {lanes} producers, {seconds:.0f} s")
    return seconds


def restore_consumer(bootstrap: str, fetch_bytes: int | None) -> AIOKafkaConsumer:
    """A consumer configured as the runner's restore consumer (``fetch_bytes``: its max_partition_fetch_bytes)."""
    extra = {} if fetch_bytes is None else {"max_partition_fetch_bytes": fetch_bytes,
                                            "fetch_max_bytes": 4 * fetch_bytes}
    return AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="bench-restore", isolation_level="read_committed",
                            enable_auto_commit=False, auto_offset_reset="earliest", **extra)


async def timed_restore(bootstrap: str, settings: Settings, topic: str, expected: dict[str, Any], label: str,
                        how: Callable[..., Awaitable[Restored]], fetch_bytes: int | None, repeat: int = 1) -> float:
    """Restore partition 0 of ``topic`` into a fresh TaskStores with ``how`` (``repeat`` times: the best is kept);
    check it; print a line. Returns the seconds."""
    best = None
    for _ in range(repeat):
        processor = build_processor(PROCESSOR, settings)
        store = TaskStores(processor.stores(), settings.stream_processors[PROCESSOR].state_errors)
        consumer = restore_consumer(bootstrap, fetch_bytes)
        await consumer.start()
        try:
            tp = TopicPartition(topic, PARTITION)
            await consumer.end_offsets([tp])  # metadata and connection up before the clock starts
            counted = CountingConsumer(consumer)
            started = time.perf_counter()
            restored = await how(store, counted, tp)
            seconds = time.perf_counter() - started
        finally:
            await consumer.stop()
        if best is None or seconds < best[0]:
            best = (seconds, counted.records, restored, store)
    assert best is not None
    seconds, records, restored, store = best
    data = store[""].data
    wrong = sum(1 for key, state in expected.items() if key not in data or data[key].to_state() != state)
    check = "state equal" if not wrong and len(data) == len(expected) else f"STATE DIFFERS ({wrong} keys)"
    fetch = "1 MiB" if fetch_bytes is None else f"{fetch_bytes // MIB} MiB"
    runs = f" (best of {repeat})" if repeat > 1 else ""
    print(f"  {label:<34} fetch {fetch:>6}: read {records:>9,} records ({restored.applied:,} state, "
          f"{records - restored.applied:,} markers), {len(data):,} keys, {seconds:7.2f} s{runs}, "
          f"{records / seconds:>9,.0f} records/s; {check}", flush=True)
    return seconds


class CountingConsumer:
    """A consumer that counts the records its ``getmany`` returns (what a restore read)."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.records = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.consumer, name)

    async def getmany(self, *tps: TopicPartition, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        batch = await self.consumer.getmany(*tps, timeout_ms=timeout_ms, max_records=max_records)
        self.records += sum(len(records) for records in batch.values())
        return batch


async def compacted_at(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> bool:
    """True if the log holds under half the offsets from ``offset`` on (read_uncommitted: what the log holds; a
    hundred records read): compaction has been there."""
    consumer.seek(tp, offset)
    for _ in range(20):
        records = (await consumer.getmany(tp, timeout_ms=500, max_records=100)).get(tp)
        if records:
            return records[-1].offset - offset + 1 > 2 * len(records)
    return False


async def wait_compacted(bootstrap: str, topic: str, probes: list[int], timeout: float) -> float | None:
    """Wait until the log cleaner has compacted partition 0 of ``topic`` at every offset of ``probes`` (see
    :func:`compacted_at`); returns the seconds waited, None after ``timeout`` s."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_uncommitted",
                                enable_auto_commit=False, max_partition_fetch_bytes=256 * 1024)
    await consumer.start()
    tp = TopicPartition(topic, PARTITION)
    started = time.monotonic()
    try:
        consumer.assign([tp])
        while True:
            done = [await compacted_at(consumer, tp, p) for p in probes]
            waited = time.monotonic() - started
            if all(done):
                return waited
            if waited > timeout:
                return None
            await asyncio.sleep(2)
    finally:
        await consumer.stop()


async def topic_config(admin: AIOKafkaAdminClient, topic: str, name: str) -> str:
    """The value of config ``name`` of ``topic`` (its own, or the broker's default)."""
    for response in await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {name: None})]):
        for _, _, _, _, entries in response.resources:
            for entry in entries:
                if entry[0] == name:
                    return entry[1]
    raise LookupError(f"{topic} has no config {name}")


async def set_configs(admin: AIOKafkaAdminClient, topic: str, configs: dict[str, str]) -> None:
    """Make ``configs`` the topic's own configs (AlterConfigs replaces them all) and wait until the broker has them."""
    await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)])
    for name, value in configs.items():
        while await topic_config(admin, topic, name) != value:
            await asyncio.sleep(0.2)


async def later(admin: AIOKafkaAdminClient, topic: str, configs: dict[str, str], producers: Producers,
                marker: tuple[bytes, bytes]) -> None:
    """The topic ``segment.ms`` after the last write: ``configs`` back (no compaction hold), and the next commit
    (one offset marker) appended, which rolls the active segment if its segment.ms has passed since it began.

    With the new configs that is 10 minutes, not waited here: segment.ms is 1 s for that append. The old configs'
    segment.ms is Kafka's 7 days: their active segment stays.
    """
    roll = configs.get("segment.ms") is not None
    if roll:
        await set_configs(admin, topic, {**configs, "segment.ms": "1000"})
        await asyncio.sleep(1.5)
    await producers.commit(producers.producers[0], [marker])
    await set_configs(admin, topic, configs)


async def create_old_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """A changelog topic created as before CHANGELOG_CONFIGS: ``cleanup.policy=compact``, broker defaults otherwise."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        await admin.close()


async def restores(bootstrap: str, settings: Settings, topics: dict[str, str], expected: dict[str, Any],
                   stage: str, baseline: bool, repeat: int) -> dict[str, float]:
    times = {}
    for name, topic in topics.items():
        label = f"({stage}) {name}"
        times[f"{label} restore"] = await timed_restore(bootstrap, settings, topic, expected, f"{label}: restore",
                                                        restore, None, repeat)
        await timed_restore(bootstrap, settings, topic, expected, f"{label}: restore", restore, 8 * MIB, repeat)
        if baseline:
            times[f"{label} baseline"] = await timed_restore(bootstrap, settings, topic, expected,
                                                             f"{label}: old restore", restore_baseline, None, repeat)
    return times


async def main(records: int, keys: int, per_commit: int, lanes: int, baseline: bool, old_configs: bool,
               timeout: float) -> None:
    logging.basicConfig(level=logging.WARNING)
    with broker() as bootstrap:
        settings = isolated_settings(bootstrap, processors=[PROCESSOR])
        new = changelog_topic(settings, PROCESSOR)
        spec = required_topics(settings, [PROCESSOR])[new]
        await ensure_topics(settings, {new: spec})
        topics = {"new configs": new}
        configs = {"new configs": dict(CHANGELOG_CONFIGS)}
        if old_configs:
            topics["old configs"] = f"{new}-old"
            configs["old configs"] = {"cleanup.policy": "compact"}
            await create_old_topic(bootstrap, topics["old configs"], spec.partitions)
        print(f"changelog {new}: {spec.partitions} partitions (partition {PARTITION} written), "
              f"configs {CHANGELOG_CONFIGS}")
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        writer = Writer(settings, keys, per_commit, lanes)
        producers = {name: Producers(bootstrap, topic, lanes, f"{settings.app_id}-{topic}")
                     for name, topic in topics.items()}
        try:
            for name, topic in topics.items():  # (a) is the partition as written: no compaction before it
                await set_configs(admin, topic, {**configs[name], "min.compaction.lag.ms": str(HOLD_MS)})
            for p in producers.values():
                await p.start()
            await write(list(producers.values()), writer, records)
            expected = writer.expected()
            print("(a) as written, before compaction (held by min.compaction.lag.ms; the old configs' topic holds "
                  "the same records):")
            times = await restores(bootstrap, settings, {"new configs": new}, expected, "a", baseline, 1)
            marker = offset_marker(writer.input_topic, writer.input_offset, stream_time=writer.now)
            for name, topic in topics.items():
                end = await end_offset(bootstrap, topic)
                await later(admin, topic, configs[name], producers[name], marker)
                if name == "new configs":
                    closed = end
                    how = "the segment.ms roll"
                else:  # segments roll at segment.bytes only: the offsets of the full segments, roughly
                    segment = int(await topic_config(admin, topic, "segment.bytes"))
                    closed = int(writer.bytes // segment * segment / (writer.bytes / end))
                    how = f"its full {segment // MIB} MiB segments (segment.ms is 7 days)"
                if closed < 1_000:
                    print(f"{name}: every record is in the active segment, nothing for the cleaner")
                    continue
                probes = sorted({0, max(0, closed - 20 * keys - closed // 20)})
                waited = await wait_compacted(bootstrap, topic, probes, timeout)
                if waited is None:
                    print(f"{name}: NOT compacted at offsets {probes} after {timeout:.0f} s")
                else:
                    print(f"{name}: compacted up to {how}, offset ~{closed:,}, {waited:.0f} s after the roll")
            print("(b) after compaction:")
            times.update(await restores(bootstrap, settings, topics, expected, "b", baseline, 3))
        finally:
            for p in producers.values():
                await p.stop()
            await admin.close()
        for label, old in times.items():
            if label.endswith(" baseline"):
                now = times[label.replace(" baseline", " restore")]
                print(f"{label.replace(' baseline', '')}: old restore {old:.2f} s, restore {now:.2f} s: "
                      f"{old / now:.1f}x faster")


async def end_offset(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, PARTITION)
        return (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="state records written (default 1,000,000)")
    parser.add_argument("--keys", type=int, default=10_000, help="keys (symbols) updated (default 10,000)")
    parser.add_argument("--per-commit", type=int, default=100,
                        help="state records per transaction: the keys one commit interval dirties (default 100)")
    parser.add_argument("--producers", type=int, default=8,
                        help="transactional producers writing the partition at the same time (default 8)")
    parser.add_argument("--baseline", action="store_true", help="also time the old restore (every record decoded)")
    parser.add_argument("--old-configs", action="store_true", help="also a topic with the old configs (compact only)")
    parser.add_argument("--compaction-timeout", type=float, default=600.0, help="seconds to wait for the cleaner")
    args = parser.parse_args()
    asyncio.run(main(args.records, args.keys, args.per_commit, args.producers, args.baseline, args.old_configs,
                     args.compaction_timeout))
