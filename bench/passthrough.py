"""The baseline: a pass-through transactional aiokafka pipe (consume, copy bytes, produce, commit every 100 ms).

One transactional producer per input partition (stable transactional.id), ``read_committed``, offsets in the
transaction; no decoding, no state. Two ways to produce: ``batched=False`` sends each record with
``producer.send`` (aiokafka's usual API); ``batched=True`` copies the records into aiokafka record batches
(``create_batch`` / ``send_batch``, to the sink partition of the same number), the fastest way aiokafka offers,
as the worker itself does, so the ratio against it measures what decoding, enrichment and state cost.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import OffsetAndMetadata


async def passthrough(
    bootstrap: str, source: str, sink: str, group: str, total: int, interval_ms: int = 100, batched: bool = True
) -> tuple[float, int]:
    """Copy ``total`` records from ``source`` to ``sink`` exactly once.

    Returns (seconds, records) from the first fetched batch to the last commit, every record counted.
    """
    producers: dict[TopicPartition, AIOKafkaProducer] = {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, isolation_level="read_committed",
        enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=2000,
    )

    class Listener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
            pass

        async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
            for tp in assigned:
                if tp not in producers:
                    producer = AIOKafkaProducer(
                        bootstrap_servers=bootstrap, transactional_id=f"{group}-{tp.partition}",
                        retry_backoff_ms=20, max_batch_size=512 * 1024,
                    )
                    await producer.start()
                    producers[tp] = producer

    await consumer.start()
    consumer.subscribe([source], listener=Listener())
    done = 0
    first: float | None = None
    open_txn: dict[TopicPartition, int] = {}
    futures: list[asyncio.Future[object]] = []
    next_commit = time.monotonic() + interval_ms / 1000
    try:
        while done < total:
            batches = await consumer.getmany(timeout_ms=max(1, int((next_commit - time.monotonic()) * 1000)))
            if first is None and batches:
                first = time.perf_counter()
            for tp, messages in batches.items():
                producer = producers.get(tp)
                if producer is None:  # fetched while the listener is still starting its producer: fetch again
                    consumer.seek(tp, messages[0].offset)
                    continue
                if tp not in open_txn:
                    await producer.begin_transaction()
                    open_txn[tp] = 0
                if not batched:
                    for m in messages:
                        futures.append(await producer.send(sink, m.value, key=m.key, partition=tp.partition))
                    open_txn[tp] = messages[-1].offset + 1
                    done += len(messages)
                    continue
                batch = producer.create_batch()
                for m in messages:
                    if batch.append(key=m.key, value=m.value, timestamp=None) is None:
                        futures.append(await producer.send_batch(batch, sink, partition=tp.partition))
                        batch = producer.create_batch()
                        batch.append(key=m.key, value=m.value, timestamp=None)
                futures.append(await producer.send_batch(batch, sink, partition=tp.partition))
                open_txn[tp] = messages[-1].offset + 1
                done += len(messages)
            if time.monotonic() >= next_commit or done >= total:
                await asyncio.gather(*futures)
                futures.clear()

                async def commit(tp: TopicPartition, offset: int) -> None:
                    await producers[tp].send_offsets_to_transaction({tp: OffsetAndMetadata(offset, "")}, group)
                    await producers[tp].commit_transaction()

                await asyncio.gather(*(commit(tp, off) for tp, off in open_txn.items()))
                open_txn.clear()
                next_commit = time.monotonic() + interval_ms / 1000
        assert first is not None
        return time.perf_counter() - first, total
    finally:
        await consumer.stop()
        for producer in producers.values():
            await producer.stop()
