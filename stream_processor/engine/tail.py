"""Read the last committed records of a topic (``read_committed``), for the demo and for people."""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from .settings import Settings

TAIL_MARGIN = 100  # offsets read beyond 2 x count per partition, for markers and aborted records


async def tail_topic(settings: Settings, topic: str, count: int) -> list[dict[str, Any]]:
    """The last ``count`` committed records over all partitions of ``topic``, oldest first, as dicts.

    Each dict has ``partition``, ``offset``, ``key`` and ``value`` (parsed JSON, or the text if not JSON).
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - first contact with the topic
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        for tp in tps:
            # Transaction markers (one per commit) and aborted records take offsets too: look further back.
            consumer.seek(tp, max(begins[tp], ends[tp] - 2 * count - TAIL_MARGIN))
        records = []
        remaining = {tp for tp in tps if ends[tp] > begins[tp]}
        while remaining:
            batch = await consumer.getmany(timeout_ms=1000)
            for msgs in batch.values():
                records.extend(msgs)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        records.sort(key=lambda m: m.timestamp)
        out = []
        for m in records[-count:]:
            try:
                value: Any = orjson.loads(m.value)
            except orjson.JSONDecodeError:
                value = m.value.decode(errors="replace")
            out.append({"partition": m.partition, "offset": m.offset, "key": (m.key or b"").decode(), "value": value})
        return out
    finally:
        await consumer.stop()
