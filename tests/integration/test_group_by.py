"""group_by on the real broker: records re-keyed through the repartition topic, counted per new key exactly once.

Orders keyed by order id (spread over the input's partitions) are re-keyed by user: the first stage sends each
one to ``<app_id>-per_user-by_user-repartition`` in its input partition's transaction, the agent's body counts
them per user in a Table partitioned by user and yields the running count. Every order must come out once with
the count it has in input order per user, and the changelog must end with each user's total.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream_processor import App, Record
from stream_processor.engine.testing import TestDriver
from stream_processor.engine.topics import changelog_topic, ensure_topics, required_topics
from stream_processor.engine.worker import Worker
from tests.helpers import isolated_settings, read_topic, unwrap_state, wait_for

ORDERS = 3000
USERS = 37


class Order(Record):
    id: int
    user: str
    amount: int


def grouped_app(bootstrap: str) -> tuple[App, str, str]:
    base = isolated_settings(bootstrap).model_dump()
    run = uuid.uuid4().hex[:8]
    source, sink = f"orders-{run}", f"per-user-{run}"
    app = App(f"gb-{run}", settings={"kafka": base["kafka"], "monitoring": base["monitoring"],
                                     "topics": {source: {"partitions": 4}, sink: {"partitions": 3}}})
    orders = app.topic(source, value_type=Order)
    counts = app.Table("orders_per_user", default=int)

    @app.agent(orders, sink=[sink])
    async def per_user(stream: Any) -> Any:
        async for order in stream.group_by("user", name="by_user"):
            counts[order.user] += 1
            yield {"id": order.id, "user": order.user, "n": counts[order.user]}

    return app, source, sink


async def test_group_by_counts_each_order_once_on_its_users_partition(kafka_bootstrap: str, monkeypatch: Any) -> None:
    from stream_processor.engine import purge

    monkeypatch.setattr(purge, "PURGE_INTERVAL_S", 3600.0)  # the repartition topic is read whole at the end
    app, source, sink = grouped_app(kafka_bootstrap)
    settings = app.settings
    repartition = f"{settings.app_id}-per_user-by_user-repartition"
    assert settings.topic(repartition).partitions == 4  # the input's
    await ensure_topics(settings, required_topics(settings))
    rng = random.Random(9)
    orders = [{"id": i, "user": f"u{rng.randrange(USERS)}", "amount": rng.randint(1, 100)} for i in range(ORDERS)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for order in orders:
            await producer.send(source, orjson.dumps(order), key=str(order["id"]).encode())
        await producer.flush()
    finally:
        await producer.stop()

    worker = Worker(settings, app=app)
    assert sorted(r.name for r in worker.runners) == ["per_user", "per_user-repartition"]
    task = asyncio.create_task(worker.run())
    try:
        async def done() -> bool:
            assert not task.done(), task.exception()
            body = next(r for r in worker.runners if r.name == "per_user")
            return body.stats.messages_processed >= ORDERS

        await wait_for(done, timeout=120)
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, timeout=60)

    out = await read_topic(kafka_bootstrap, sink)
    ids = Counter(orjson.loads(r.value)["id"] for r in out)
    assert set(ids) == set(range(ORDERS)) and max(ids.values()) == 1  # each once
    # Per user, the running counts are 1..n in the order the repartition topic holds that user's orders.
    by_user: dict[str, list[int]] = {}
    for rec in out:
        doc = orjson.loads(rec.value)
        assert rec.key == doc["user"].encode()  # keyed by the new key
        by_user.setdefault(doc["user"], []).append(doc["n"])
    totals = Counter(o["user"] for o in orders)
    assert {u: sorted(ns) for u, ns in by_user.items()} == {u: list(range(1, n + 1)) for u, n in totals.items()}
    # The repartition topic holds each order once, keyed by user, all of one user on one partition.
    moved = await read_topic(kafka_bootstrap, repartition)
    assert len(moved) == ORDERS
    assert all(len({r.partition for r in moved if r.key == u.encode()}) == 1 for u in totals)
    # The changelog ends with each user's total, in the partition of that user.
    final: dict[str, Any] = {}
    for rec in await read_topic(kafka_bootstrap, changelog_topic(settings, "per_user")):
        if rec.key.startswith(b"\x01"):
            final[rec.key.split(b"\x00", 1)[1].decode()] = unwrap_state(orjson.loads(rec.value))
    assert final == dict(totals)
    # The broker-less driver gives each order once too, with the same per-user totals (which order a user's records
    # take through the repartition topic depends on how the input partitions' transactions interleave).
    driver = TestDriver(app, commit_every=100)
    for rec in await read_topic(kafka_bootstrap, source, "read_uncommitted"):
        driver.pipe(source, rec.value, rec.key, timestamp=rec.timestamp, partition=rec.partition, offset=rec.offset)
    expected = [orjson.loads(r.value) for r in driver.all(sink)]
    assert sorted(d["id"] for d in expected) == list(range(ORDERS))
    assert driver.table("orders_per_user") == dict(totals)


async def test_replayed_old_records_stay_in_the_repartition_topic_until_read_then_are_purged(
        kafka_bootstrap: str, monkeypatch: Any) -> None:
    """Orders 30 days old (a replay) re-keyed through the repartition topic: the topic is created with
    ``retention.ms=-1`` (Kafka's 7-day time retention would delete such records, whose timestamps are the input's,
    before the second stage read them), every order is counted once, and what the second stage committed is
    purged (its low watermark reaches the end)."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    from stream_processor.engine import purge
    from stream_processor.engine.kafka_internals import ConfigResource, ConfigResourceType

    monkeypatch.setattr(purge, "PURGE_INTERVAL_S", 1.0)
    app, source, sink = grouped_app(kafka_bootstrap)
    settings = app.settings
    repartition = f"{settings.app_id}-per_user-by_user-repartition"
    await ensure_topics(settings, required_topics(settings))
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, repartition)])
        configs = {e[0]: e[1] for r in response.resources for e in r[4]}
    finally:
        await admin.close()
    assert (configs["retention.ms"], configs["cleanup.policy"]) == ("-1", "delete")
    month_ago = int(time.time() * 1000) - 30 * 86_400_000
    n = 600
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(n):
            await producer.send(source, orjson.dumps({"id": i, "user": f"u{i % USERS}", "amount": 1}),
                                key=str(i).encode(), timestamp_ms=month_ago + i)
        await producer.flush()
    finally:
        await producer.stop()
    worker = Worker(settings, app=app)
    task = asyncio.create_task(worker.run())
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await consumer.start()
    tps = [TopicPartition(repartition, p) for p in range(4)]
    try:
        async def purged() -> bool:
            assert not task.done(), task.exception()
            body = next(r for r in worker.runners if r.name == "per_user")
            if body.stats.messages_processed < n:
                return False
            low, high = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
            return sum(high.values()) > 0 and all(low[tp] >= high[tp] - 1 for tp in tps)  # -1: a commit marker

        await wait_for(purged, timeout=120)
    finally:
        await consumer.stop()
        worker.request_stop()
        await asyncio.wait_for(task, timeout=60)
    ids = Counter(orjson.loads(r.value)["id"] for r in await read_topic(kafka_bootstrap, sink))
    assert set(ids) == set(range(n)) and max(ids.values()) == 1
