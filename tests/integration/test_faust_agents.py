"""Agents as channels on the real broker (faust-streaming's ``examples/advanced/rpc.py`` and ``word_count.py``
patterns): ``ask``/``join`` from outside the worker and from inside another agent, answered through the app's reply
topic; ``send`` to an agent without a topic from inside another agent, exactly once."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from stream_processor import App
from stream_processor.engine import channels
from stream_processor.engine.topics import ensure_topics, required_topics
from stream_processor.engine.worker import Worker
from tests.helpers import isolated_settings, read_topic, wait_for
from tests.integration.test_agent_io import produce


async def topic_names(bootstrap: str) -> set[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return set(await consumer.topics())
    finally:
        await consumer.stop()


def rpc_app(bootstrap: str) -> tuple[App, dict[str, str]]:
    base = isolated_settings(bootstrap).model_dump()
    run = uuid.uuid4().hex[:8]
    names = {"pow": f"rpc-pow-{run}", "mul": f"rpc-mul-{run}", "out": f"rpc-out-{run}", "posts": f"posts-{run}"}
    app = App(f"rpc-{run}", settings={"kafka": base["kafka"], "monitoring": base["monitoring"],
                                      "topics": {n: {"partitions": 2} for n in names.values()}},
              reply_create_topic=True)
    counts = app.Table("word_counts", default=int)

    @app.agent(names["pow"], sink=[names["out"]])
    async def pow_(stream: Any) -> Any:
        async for value in stream:
            yield await mul.ask(value=value ** 2)  # a request from inside an agent: real I/O, at least once

    @app.agent(names["mul"])
    async def mul(stream: Any) -> Any:
        async for value in stream:
            yield value * 100.0

    @app.agent(app.topic(names["posts"], value_type=str))
    async def shuffle_words(posts: Any) -> None:
        async for post in posts:
            for word in post.split():
                await count_words.send(key=word, value=word)  # in this record's transaction

    @app.agent(value_type=str)
    async def count_words(words: Any) -> None:
        async for word in words:
            counts[word] += 1

    return app, names


async def test_ask_join_and_agent_send_on_the_broker(kafka_bootstrap: str) -> None:
    app, names = rpc_app(kafka_bootstrap)
    await ensure_topics(app.settings, required_topics(app.settings))
    worker = Worker(app.settings, app=app)
    task = asyncio.create_task(worker.run())
    try:
        reply_topic = channels.reply_topic_name(app)

        async def reply_topic_created() -> bool:  # the worker creates the topics the app declared
            assert not task.done(), task.exception()
            return reply_topic in await topic_names(kafka_bootstrap)

        await wait_for(reply_topic_created, timeout=60, message=f"{reply_topic} created by the worker")
        mul = app.agents["mul"]
        assert await asyncio.wait_for(mul.ask(3.0), timeout=60) == 300.0  # from outside: the worker answers
        assert await asyncio.wait_for(mul.join([1.0, 2.0, 4.0]), timeout=60) == [100.0, 200.0, 400.0]
        await produce(kafka_bootstrap, names["pow"], [2.0, 3.0])  # type: ignore[list-item]
        await produce(kafka_bootstrap, names["posts"], ["the quick the", "fox the"])  # type: ignore[list-item]

        async def answered() -> list[Any]:
            assert not task.done(), task.exception()
            values = sorted(orjson.loads(r.value) for r in await read_topic(kafka_bootstrap, names["out"]))
            return values if len(values) == 2 else []

        assert await wait_for(answered, timeout=60, message="pow's two answers") == [400.0, 900.0]

        counted = app.agents["count_words"].channel.name

        async def words_counted() -> bool:
            return len(await read_topic(kafka_bootstrap, counted)) == 5

        await wait_for(words_counted, timeout=60, message="5 words sent to count_words")
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, timeout=30)
        await channels.close_replies(app)
        await app.close()
    words = [r.value for r in await read_topic(kafka_bootstrap, counted)]
    assert sorted(words) == sorted(app.agents["count_words"].channel.encode_value(w)
                                   for w in ("the", "quick", "the", "fox", "the"))  # no duplicate
