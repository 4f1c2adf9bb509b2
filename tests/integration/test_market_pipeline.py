"""End to end on the real broker: real Binance trades and depth replayed through the order-book and klines processors.

Every output record read back under read_committed must equal, byte for byte, what the same processors give when
run in batch in this process over the records read back from the raw topics (same partitions, offsets and order):
no loss, no duplicate, no difference. The order book must also agree with every bookTicker at the same update id.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
import pytest

from stream_processor.engine.settings import Settings
from stream_processor.engine.worker import Worker
from stream_processor.market.processors.klines import pattern_events
from stream_processor.market.replay import replay
from tests.conftest import FEEDS
from tests.helpers import (
    driver_run,
    end_offsets,
    isolated_settings,
    read_topic,
    schemas_of,
    wait_for,
    wait_until_settled,
)

FILES = [FEEDS / "spot" / f"{sym}_{day}.gz" for sym in ("btcusdt", "ethusdt") for day in ("20240808", "20240809")]
PROCESSORS = ["orderbook", "klines"]


async def batch_outputs(bootstrap: str, settings: Settings) -> tuple[Counter[tuple[str, bytes, bytes]], dict]:
    """What the processors write for the raw topics' records, computed in this process by the TestDriver."""
    driver = await driver_run(bootstrap, settings, PROCESSORS)
    expected: Counter[tuple[str, bytes, bytes]] = Counter()
    for name in PROCESSORS:
        for topic in settings.stream_processors[name].output_topics:
            expected.update((topic, r.key, r.value) for r in driver.all(topic))
    books = {sym: book for part in driver.state("orderbook").values() for sym, book in part.items()}
    return expected, books


def still_running(task: asyncio.Task[None]) -> None:
    """AssertionError, with its error, once the worker's task has ended (it runs until stopped)."""
    assert not task.done(), task.exception()


@pytest.mark.slow  # 28-50 s on the 2-core machine
async def test_real_books_and_klines_through_the_broker_equal_the_batch_run(kafka_bootstrap, shared_data):
    settings = isolated_settings(kafka_bootstrap, processors=PROCESSORS)
    counts = await replay(settings, FILES, kinds={"trades", "orderbook"}, progress=False)
    assert sum(counts.values()) > 170_000
    expected, books = await batch_outputs(kafka_bootstrap, settings)
    per_topic = Counter(t for t, _, _ in expected.elements())
    out_topics = sorted({t for name in PROCESSORS for t in settings.stream_processors[name].output_topics})

    worker = Worker(settings)
    task = asyncio.create_task(worker.run())
    try:
        async def drained() -> bool:
            still_running(task)
            for topic, n in per_topic.items():
                if await end_offsets(kafka_bootstrap, topic) < n:
                    return False
            return True

        await wait_for(drained, timeout=240, message=lambda: f"every expected output committed ({dict(per_topic)})")
        # Every input committed and no output transaction open: nothing more comes, a duplicate would be there.
        procs = [settings.stream_processors[name] for name in PROCESSORS]
        await wait_until_settled(kafka_bootstrap, {p.consumer_group: p.input_topics for p in procs}, out_topics,
                                 timeout=60, alive=lambda: still_running(task))
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, timeout=60)

    got: Counter[tuple[str, bytes, bytes]] = Counter()
    schema = schemas_of(settings)  # every output record conforms to its topic's schema
    assert set(out_topics) & set(schema), schema
    for topic in out_topics:
        got.update((topic, r.key, r.value) for r in await read_topic(kafka_bootstrap, topic, schema=schema.get(topic)))
    assert got == expected
    dead = settings.stream_processors["klines"].dead_letter_topic
    assert await end_offsets(kafka_bootstrap, dead) == 0
    # What the outputs hold: both books in sync and checked against the tickers; 1m and 5m klines; SMC events.
    assert per_topic[settings.stream_processors["orderbook"].output_topics[0]] > 12_000
    for book in books.values():
        assert book.counts["gaps"] == 0 and book.counts["mismatches"] == 0 and book.counts["matches"] > 1_000
    klines_topic = settings.stream_processors["klines"].output_topics[0]
    assert per_topic[klines_topic] >= 2 * (10 + 2)  # two symbols, ~11 minutes: 1m and 5m klines
    # Each SMC signal names its pattern in headers, and the pattern counter holds exactly the committed signals.
    signals = await read_topic(kafka_bootstrap, settings.stream_processors["klines"].output_topics[1],
                               schema="smc_signals")
    by_pattern: Counter[tuple[str, str]] = Counter()
    for r in signals:
        value, headers = orjson.loads(r.value), dict(r.headers)
        assert (headers["pattern"].decode(), headers["interval"].decode()) == (value["type"], value["interval"])
        by_pattern[(value["type"], value["interval"])] += 1
    counted = {(s.labels["type"], s.labels["interval"]): s.value
               for family in pattern_events(worker.metrics.registry).collect() for s in family.samples
               if s.name.endswith("_total") and s.labels["processor"] == "klines"}
    assert sum(by_pattern.values()) >= 8 and counted == by_pattern
