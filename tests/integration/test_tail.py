"""``stream-processor tail`` on a transactional topic, where every commit leaves a marker at the end."""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaProducer

from stream_processor.engine.settings import TopicSettings
from stream_processor.engine.tail import tail_topic
from stream_processor.engine.topics import ensure_topics
from tests.helpers import isolated_settings


async def test_tail_returns_the_last_records_despite_commit_markers(kafka_bootstrap: str) -> None:
    settings = isolated_settings(kafka_bootstrap)
    topic = f"tail-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, {topic: TopicSettings(partitions=1)})
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"tail-{topic}")
    await producer.start()
    try:
        for i in range(5):  # one record per transaction: data and markers alternate
            async with producer.transaction():
                await producer.send_and_wait(topic, b'{"n": %d}' % i, key=b"k")
        await producer.begin_transaction()  # an aborted record at the end takes an offset too
        await producer.send_and_wait(topic, b'{"n": 99}', key=b"k")
        await producer.abort_transaction()
    finally:
        await producer.stop()
    assert [r["value"] for r in await tail_topic(settings, topic, 1)] == [{"n": 4}]
    assert [r["value"]["n"] for r in await tail_topic(settings, topic, 3)] == [2, 3, 4]
