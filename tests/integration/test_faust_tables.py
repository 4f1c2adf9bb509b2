"""Two agents sharing a table, and a windowed table closing its windows, on the real broker: the same outputs and
table as the TestDriver gives for the same records.

``deposit`` (topic ``deposits``) and ``withdraw`` (topic ``withdrawals``, 4 partitions each) share the table
``balances``: one processor (``deposit__withdraw``) reads partition q of both topics in one task, so both agents'
records of an account change the same store, each in its own record's transaction. ``withdraw`` also counts
withdrawals per account in 10-second tumbling windows expiring 5 s after their end; each window's
``on_window_close`` sends its count to ``closed`` in the transaction of the record that moved stream time.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from stream_processor import App
from stream_processor.engine.app import AgentSettings
from stream_processor.engine.shared_tables import finalize_agents
from stream_processor.engine.table import Table
from stream_processor.engine.testing import TestDriver
from stream_processor.engine.topics import ensure_topics, required_topics
from stream_processor.engine.worker import Worker
from tests.helpers import isolated_settings, read_topic, wait_for

ACCOUNTS = 23
MOVES = 600
T0_MS = 1_600_000_000_000


def bank_app(bootstrap: str) -> tuple[App, dict[str, str]]:
    base = isolated_settings(bootstrap).model_dump()
    run = uuid.uuid4().hex[:8]
    names = {n: f"{n}-{run}" for n in ("deposits", "withdrawals", "statements", "closed")}
    app = App(f"shared-{run}", settings={
        "kafka": base["kafka"], "monitoring": base["monitoring"],
        "topics": {names["deposits"]: {"partitions": 4}, names["withdrawals"]: {"partitions": 4}}})
    balances = app.Table("balances", default=int)
    closed = app.topic(names["closed"])

    async def on_close(key: Any, count: Any) -> None:
        await closed.send(key=key[0], value={"account": key[0], "window": key[1][0], "withdrawals": count})

    per_window = app.tables["per_window"] = Table("per_window", default=int, on_window_close=on_close)
    windows = per_window.tumbling(10, expires=5, expire_by="stream_time")

    @app.agent(app.topic(names["deposits"]))
    async def deposit(stream: Any) -> Any:
        async for move in stream:
            balances[move["account"]] += move["amount"]

    @app.agent(app.topic(names["withdrawals"]), sink=[names["statements"]])
    async def withdraw(stream: Any) -> Any:
        async for move in stream:
            balances[move["account"]] -= move["amount"]
            windows[move["account"]] += 1
            yield {"id": move["id"], "account": move["account"], "balance": balances[move["account"]]}

    finalize_agents(app, app._register_agent, AgentSettings)  # noqa: SLF001 - App.finalize, once it shares tables
    app._finalized = True  # noqa: SLF001
    return app, names


def moves() -> list[tuple[str, dict[str, Any], int]]:
    """(topic kind, move, timestamp ms): deposits and withdrawals of random accounts, 100 ms apart."""
    rng = random.Random(3)
    out = []
    for i in range(MOVES):
        kind = "deposits" if rng.random() < 0.5 else "withdrawals"
        out.append((kind, {"id": i, "account": f"acct-{rng.randrange(ACCOUNTS)}", "amount": rng.randint(1, 50)},
                    T0_MS + 100 * i))
    return out


async def test_two_agents_share_a_table_and_windows_close_exactly_once(kafka_bootstrap: str) -> None:
    app, names = bank_app(kafka_bootstrap)
    settings = app.settings
    assert list(settings.stream_processors) == ["deposit__withdraw"]
    await ensure_topics(settings, required_topics(settings))
    inputs = moves()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for kind, move, ts in inputs:
            await producer.send(names[kind], orjson.dumps(move), key=move["account"].encode(), timestamp_ms=ts)
        await producer.flush()
    finally:
        await producer.stop()

    worker = Worker(settings, app=app)
    task = asyncio.create_task(worker.run())
    try:
        async def done() -> bool:
            assert not task.done(), task.exception()
            return sum(r.stats.messages_processed for r in worker.runners) >= MOVES

        await wait_for(done, timeout=120)
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, timeout=60)

    statements = await read_topic(kafka_bootstrap, names["statements"])
    closed = await read_topic(kafka_bootstrap, names["closed"])
    withdrawals = [m for kind, m, _ in inputs if kind == "withdrawals"]
    assert sorted(orjson.loads(r.value)["id"] for r in statements) == sorted(m["id"] for m in withdrawals)

    # The same records through the TestDriver, at their partitions, offsets and timestamps.
    driver = TestDriver(app, commit_every=50)
    for kind in ("deposits", "withdrawals"):
        for rec in await read_topic(kafka_bootstrap, names[kind], "read_uncommitted"):
            driver.pipe(names[kind], rec.value, rec.key, timestamp=rec.timestamp, partition=rec.partition,
                        offset=rec.offset)
    assert Counter(r.value for r in statements) == Counter(r.value for r in driver.all(names["statements"]))
    broker_closed = Counter(r.value for r in closed)
    driver_closed = Counter(r.value for r in driver.all(names["closed"]))
    assert broker_closed == driver_closed, (sorted((broker_closed - driver_closed).elements())[:10],
                                            sorted((driver_closed - broker_closed).elements())[:10])
    # Every balance is the sum of its account's moves; each closed window once, with its count.
    totals: Counter[str] = Counter()
    for kind, m, _ in inputs:
        totals[m["account"]] += m["amount"] if kind == "deposits" else -m["amount"]
    assert driver.table("balances") == {a: n for a, n in totals.items()}
    windows = Counter((orjson.loads(r.value)["account"], orjson.loads(r.value)["window"]) for r in closed)
    assert closed and max(windows.values()) == 1
    driver.close()
