"""A GlobalTable on the real broker: a task reads keys another partition wrote, through the worker's replica of the
table's changelog (stream_processor/engine/replicas.py), and writes only its own partition's keys.

The agent ``prices`` (topic of 2 partitions) sets ``latest[symbol]`` from ``set`` records and answers ``get``
records with what the whole table holds for the asked symbol. Sets go to partition 0, gets to partition 1: each
answer read from partition 1's task comes from the replica, fed with partition 0's committed changelog records.
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


async def test_a_global_table_is_read_whole_through_the_workers_replica(kafka_bootstrap: str) -> None:
    base = isolated_settings(kafka_bootstrap).model_dump()
    run = uuid.uuid4().hex[:8]
    source, answers = f"prices-{run}", f"answers-{run}"
    app = App(f"global-{run}", settings={"kafka": base["kafka"], "monitoring": base["monitoring"],
                                         "topics": {source: {"partitions": 2}}})
    latest = app.GlobalTable("latest", default=float)

    @app.agent(app.topic(source), sink=[answers])
    async def prices(stream: Any) -> Any:
        async for cmd in stream:
            if "set" in cmd:
                latest[cmd["set"]] = cmd["price"]
            else:
                yield {"asked": cmd["get"], "n": cmd["n"], "price": latest[cmd["get"]], "known": len(latest)}

    settings = app.settings
    await ensure_topics(settings, required_topics(settings))
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    worker = Worker(settings, app=app)
    task = asyncio.create_task(worker.run())
    try:
        for symbol, price in (("BTC", 64_000.5), ("ETH", 3_100.25)):
            await producer.send_and_wait(source, orjson.dumps({"set": symbol, "price": price}), partition=0)
        asked = 0

        async def answered() -> bool:
            """Ask again (partition 1) until an answer shows both prices set on partition 0."""
            nonlocal asked
            assert not task.done(), task.exception()
            got = [orjson.loads(r.value) for r in await read_topic(kafka_bootstrap, answers)]
            if any(a["price"] == 64_000.5 and a["known"] == 2 for a in got):
                return True
            asked += 1
            await producer.send_and_wait(source, orjson.dumps({"get": "BTC", "n": asked}), partition=1)
            return False

        await wait_for(answered, timeout=90, interval=0.5)
    finally:
        await producer.stop()
        worker.request_stop()
        await asyncio.wait_for(task, timeout=60)
    got = [orjson.loads(r.value) for r in await read_topic(kafka_bootstrap, answers)]
    # Every answer is the default (before the replica had BTC) or the committed price, with at most the two prices
    # set known: never anything else; and no get answered twice.
    assert all(a["price"] in (0.0, 64_000.5) and a["known"] in (0, 1, 2) and (a["price"] == 0.0 or a["known"] >= 1)
               for a in got), got
    asks = [a["n"] for a in got]
    assert len(asks) == len(set(asks)) and set(asks) <= set(range(1, asked + 1))  # no get answered twice
