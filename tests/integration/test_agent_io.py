"""An agent that awaits real I/O, on the real broker: it never holds a transaction past the transaction timeout.

The runtime lets one record's I/O take at most half of ``kafka.transaction_timeout_ms``
(:class:`~stream_processor.engine.exceptions.AgentTimeoutError` past it: the transaction is aborted and retried,
counted by the partition's circuit breaker and shown on ``/health``), and commits what is done once a
transaction's I/O has used half the timeout, re-reading the rest of the fetch. Without that, a fetch of many
slow records would keep one transaction open until the broker aborted it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from stream_processor import App
from stream_processor.engine.topics import ensure_topics, required_topics
from stream_processor.engine.worker import Worker
from tests.helpers import isolated_settings, read_topic, wait_for

TIMEOUT_MS = 2_000  # transaction timeout: one record may await 1 s; a transaction commits after 1 s of awaits


def slow_app(bootstrap: str) -> tuple[App, str, str]:
    base = isolated_settings(bootstrap).model_dump()
    run = uuid.uuid4().hex[:8]
    source, sink = f"io-in-{run}", f"io-out-{run}"
    kafka = {**base["kafka"], "transaction_timeout_ms": TIMEOUT_MS}
    app = App(f"io-{run}", settings={"kafka": kafka, "monitoring": base["monitoring"],
                                     "topics": {source: {"partitions": 1}, sink: {"partitions": 1}},
                                     "circuit_breaker": {"failures": 2, "backoff_ms": 200, "max_backoff_ms": 400}})

    @app.agent(source, sink=[sink])
    async def slow(stream: Any) -> Any:
        async for value in stream:
            await asyncio.sleep(value["sleep"])  # the I/O under test (an HTTP call, say), not a wait
            yield {"id": value["id"]}

    return app, source, sink


async def produce(bootstrap: str, topic: str, values: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send(topic, orjson.dumps(value), key=b"k")
        await producer.flush()
    finally:
        await producer.stop()


async def test_many_slow_records_commit_in_time_and_come_out_exactly_once(kafka_bootstrap: str) -> None:
    app, source, sink = slow_app(kafka_bootstrap)
    await ensure_topics(app.settings, required_topics(app.settings))
    # 40 records of 0.1 s each, fetched together: 4 s of I/O, twice the transaction timeout.
    await produce(kafka_bootstrap, source, [{"id": i, "sleep": 0.1} for i in range(40)])
    worker = Worker(app.settings, app=app)
    task = asyncio.create_task(worker.run())
    runner = worker.runners[0]
    try:
        async def done() -> bool:
            assert not task.done(), task.exception()
            return runner.stats.messages_processed >= 40

        await wait_for(done, timeout=60, message=lambda: f"40 records processed ({runner.stats.messages_processed})")
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, timeout=30)
    ids = [orjson.loads(r.value)["id"] for r in await read_topic(kafka_bootstrap, sink)]
    assert ids == list(range(40))
    aborted = worker.metrics.commits.labels(runner.name, "aborted")._value.get()  # noqa: SLF001
    committed = worker.metrics.commits.labels(runner.name, "committed")._value.get()  # noqa: SLF001
    assert aborted == 0
    assert committed >= 4  # a commit at least every ~1 s of awaits, not one for the whole fetch


async def test_a_record_whose_io_outlasts_its_budget_is_retried_and_shown_on_health(kafka_bootstrap: str) -> None:
    app, source, sink = slow_app(kafka_bootstrap)
    await ensure_topics(app.settings, required_topics(app.settings))
    await produce(kafka_bootstrap, source, [{"id": 0, "sleep": 0.01}, {"id": 1, "sleep": 1.5}])
    worker = Worker(app.settings, app=app)
    task = asyncio.create_task(worker.run())
    runner = worker.runners[0]
    try:
        async def circuit_open() -> bool:
            assert not task.done(), task.exception()
            return runner.health()["problems"] != []

        await wait_for(circuit_open, timeout=60, message=lambda: f"a problem on /health ({runner.health()})")
        health = runner.health()
        partition = next(iter(health["partitions"].values()))
        assert "AgentTimeoutError" in partition["last_error"]
        assert health["circuit_state"] != "closed"
        assert "agent slow awaited I/O for more than 1.0 s" in partition["last_error"]
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, timeout=30)
    # Record 0 may be committed; record 1 never is: nothing of it is visible.
    ids = [orjson.loads(r.value)["id"] for r in await read_topic(kafka_bootstrap, sink)]
    assert 1 not in ids and ids in ([], [0])
