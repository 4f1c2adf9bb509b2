"""Read the last committed records of a topic (``read_committed``), for the demo and for people."""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from .kafka_internals import force_metadata_update
from .partition_group import is_progress
from .security import client_options
from .settings import Settings

TAIL_MARGIN = 100  # offsets read beyond 2 x count per partition, for markers and aborted records


class TopicNotFoundError(LookupError):
    """The topic does not exist on the cluster (or this client may not see it)."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic!r} does not exist")
        self.topic = topic


def _text(value: bytes | None) -> str:
    return (value or b"").decode(errors="replace")


async def tail_topic(settings: Settings, topic: str, count: int) -> list[dict[str, Any]]:
    """The last ``count`` committed records over all partitions of ``topic``, oldest first, as dicts (progress
    records, :mod:`stream_processor.engine.partition_group`, left out).

    Each dict has ``partition``, ``offset``, ``timestamp`` (ms since the epoch), ``key``, ``headers`` (name ->
    value, both text; undecodable bytes replaced, a header repeated keeps its last value) and ``value`` (parsed
    JSON, or the text if not JSON; null for a tombstone). Raises :class:`TopicNotFoundError` when the topic does
    not exist.
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    consumer = AIOKafkaConsumer(
        **client_options(settings.kafka), isolation_level="read_committed",
        enable_auto_commit=False,
    )
    try:
        await consumer.start()
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await force_metadata_update(consumer)  # first contact with the topic
            partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            raise TopicNotFoundError(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        for tp in tps:
            # Transaction markers (one per commit) and aborted records take offsets too: look further back.
            consumer.seek(tp, max(begins[tp], ends[tp] - 2 * count - TAIL_MARGIN))
        records: list[Any] = []
        remaining = {tp for tp in tps if ends[tp] > begins[tp]}
        while remaining:
            batch = await consumer.getmany(timeout_ms=1000)
            for msgs in batch.values():
                records.extend(m for m in msgs if not is_progress(m.headers))  # time passing, not a record
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        records.sort(key=lambda m: m.timestamp)
        out = []
        for m in records[-count:]:
            try:
                value: Any = None if m.value is None else orjson.loads(m.value)  # None: a tombstone
            except orjson.JSONDecodeError:
                value = _text(m.value)
            out.append({
                "partition": m.partition,
                "offset": m.offset,
                "timestamp": m.timestamp,
                "key": _text(m.key),
                "headers": {name: _text(raw) for name, raw in m.headers or ()},
                "value": value,
            })
        return out
    finally:
        await consumer.stop()
