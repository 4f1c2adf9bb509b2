"""Trades per second through one worker: exactly_once, at_least_once, and a pass-through transactional pipe.

Usage: ``python bench/trades_throughput.py [--copies 8] [--rounds 3]`` (or ``make bench``).

Starts a throwaway real broker (or uses ``TEST_KAFKA_BOOTSTRAP``) and publishes one input topic (8
partitions): the real Binance spot trades of ../shared (BTCUSDT and ETHUSDT, 2024-08-08/09, 34,419
trades) ``--copies`` times, copy i under the symbol aliases ``BTCUSDT.i`` and ``ETHUSDT.i`` so that the
keys spread over the partitions like a many-symbol feed. Then, per round, each contender reads that same
input with its own consumer group and output topic:

- ``exactly_once`` and ``at_least_once``: the worker with the full trades enrichment (in this process), the
  built-in ``trades`` processor (processor API);
- ``agent_exactly_once``: the same enrichment written as a user agent with a Table (bench/trades_agent.py);
- ``passthrough_send`` and ``passthrough_batch``: consume, copy bytes, produce, commit every 100 ms,
  transactional (bench/passthrough.py), producing record by record (``send``) or in record batches.

Each is timed from the first fetched batch it processes to the commit of the last input offset, every record
counted (group join, producer start and restore excluded; the first transactions, slower on new producers,
included). Prints one line per run, the median per contender, and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import logging
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.partitioner import DefaultPartitioner  # noqa: E402

from bench.passthrough import passthrough  # noqa: E402
from stream_processor.engine.settings import Settings, TopicSettings  # noqa: E402
from stream_processor.engine.topics import ensure_topics  # noqa: E402
from stream_processor.engine.worker import Worker  # noqa: E402
from stream_processor.market.serde.feed import iter_feed, record_symbol, stream_kind  # noqa: E402
from tests.broker import broker  # noqa: E402
from tests.helpers import isolated_settings  # noqa: E402

FEEDS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "feeds" / "binance-hftbacktest" / "spot"
FILES = [FEEDS / f"{sym}_{day}.gz" for sym in ("btcusdt", "ethusdt") for day in ("20240808", "20240809")]
PARTITIONS = 8
_PARTITIONER = DefaultPartitioner()
CONTENDERS = ("exactly_once", "agent_exactly_once", "at_least_once", "passthrough_send", "passthrough_batch")


def real_trades() -> list[tuple[str, bytes]]:
    """(symbol, raw Binance trade message) of the four spot files, in file order."""
    out = []
    for path in FILES:
        for _, raw in iter_feed(path):
            if stream_kind(raw) == "trades":
                out.append((record_symbol(raw), raw))
    return out


def aliased(symbol: str, raw: bytes, alias: str) -> bytes:
    """The raw Binance trade ``raw`` of ``symbol`` with the symbol renamed ``alias`` (its Kafka key too)."""
    return raw.replace(f'"s":"{symbol}"'.encode(), f'"s":"{alias}"'.encode(), 1)


def steady_alias(symbol: str, n: int, trades: int) -> str:
    """The alias of the ``n``-th trade published from a tape of ``trades`` trades, cycling 8 aliases per copy: the
    keys spread over the partitions like a many-symbol feed."""
    return f"{symbol}.{(n // trades) * 8 + n % 8}"


def partition_alias(symbol: str, n: int, trades: int, partitions: int = PARTITIONS) -> str:
    """The alias of the ``n``-th trade published from a tape of ``trades`` trades, chosen so that trade ``n`` goes to
    partition ``n % partitions`` (Kafka's default partitioner): every partition gets a steady share of the input at
    all times, as a failover or latency measurement needs. The aliases are new on every pass over the tape, so
    that no trade id repeats under one alias (the dedup window would drop it)."""
    return _alias_for(symbol, n // trades, n % partitions, partitions)


@functools.cache
def _alias_for(symbol: str, lap: int, partition: int, partitions: int) -> str:
    every = list(range(partitions))
    for k in itertools.count():
        alias = f"{symbol}.{lap}.{k}"
        if _PARTITIONER(alias.encode(), every, every) == partition:
            return alias
    raise AssertionError("unreachable")


async def assign_from_start(consumer: Any, topic: str) -> None:
    """Assign every partition of ``topic`` to ``consumer`` (metadata refreshed: the topic may be new), from the
    beginning."""
    await consumer._client.force_metadata_update()  # noqa: SLF001 - a topic this consumer has not seen yet
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)


async def publish_input(bootstrap: str, topic: str, copies: int) -> int:
    """Publish the trades ``copies`` times under symbol aliases; returns the number of records."""
    settings = isolated_settings(bootstrap)
    await ensure_topics(settings, {topic: TopicSettings(partitions=PARTITIONS)})
    trades = real_trades()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=512 * 1024)
    await producer.start()
    try:
        futures = []
        for i in range(copies):
            for symbol, raw in trades:
                alias = f"{symbol}.{i}"
                futures.append(await producer.send(topic, aliased(symbol, raw, alias), key=alias.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return copies * len(trades)


def worker_settings(bootstrap: str, mode: str, source: str) -> Settings:
    doc = isolated_settings(bootstrap, mode, processors=["trades"]).model_dump()
    doc["topics"][source] = {"partitions": PARTITIONS}
    doc["stream_processors"]["trades"]["input_topics"] = [source]
    return Settings.model_validate(doc)


def agent_app(bootstrap: str, source: str) -> Any:
    """The enrichment as an agent app reading ``source``, with its own group, sink and app id."""
    from bench.trades_agent import make_app

    base = isolated_settings(bootstrap).model_dump()
    run = uuid.uuid4().hex[:6]
    sink = f"bench-agent-out-{run}"
    doc = {"app_id": f"bench-agent-{run}", "kafka": base["kafka"], "monitoring": base["monitoring"],
           "topics": {source: {"partitions": PARTITIONS}, sink: {"partitions": PARTITIONS}}}
    return make_app(doc, source, sink)


async def run_worker(bootstrap: str, mode: str, source: str, total: int) -> tuple[float, int, float]:
    """(seconds from the first batch processed to the last commit, records, mean seconds of one task's commit)."""
    if mode == "agent_exactly_once":
        app = agent_app(bootstrap, source)
        worker = Worker(app.settings, app=app)
    else:
        worker = Worker(worker_settings(bootstrap, mode, source))
    task = asyncio.create_task(worker.run())
    stats = worker.runners[0].stats
    deadline = time.monotonic() + 600
    while stats.messages_processed < total:
        if task.done():
            task.result()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{mode}: {stats.messages_processed}/{total} after 600 s")
        await asyncio.sleep(0.002)
    assert stats.first_batch_at is not None
    seconds = time.perf_counter() - stats.first_batch_at
    worker.request_stop()
    await task
    samples = next(m.samples for m in worker.metrics.commit_seconds.collect())
    commit_sum = sum(s.value for s in samples if s.name.endswith("_sum"))
    commits = sum(s.value for s in samples if s.name.endswith("_count"))
    return seconds, total, commit_sum / max(commits, 1)


async def main(copies: int, rounds: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    with broker() as bootstrap:
        source = f"bench-trades-{uuid.uuid4().hex[:6]}"
        total = await publish_input(bootstrap, source, copies)
        print(f"input: {total} real trades ({copies} copies x 34,419) on {PARTITIONS} partitions")
        rates: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        for i in range(rounds):
            for name in rates:
                note = ""
                if name.startswith("passthrough"):
                    run = uuid.uuid4().hex[:6]
                    sink = f"bench-copy-{run}"
                    await ensure_topics(isolated_settings(bootstrap), {sink: TopicSettings(partitions=PARTITIONS)})
                    seconds, n = await passthrough(bootstrap, source, sink, f"bench-pipe-{run}", total,
                                                   batched=name == "passthrough_batch")
                else:
                    seconds, n, commit_s = await run_worker(bootstrap, name, source, total)
                    note = f" (a task's commit took {commit_s * 1000:.0f} ms on average, processing went on)"
                rates[name].append(n / seconds)
                print(f"round {i + 1} {name:>17}: {n} records in {seconds:.2f} s = {n / seconds:,.0f}/s{note}",
                      flush=True)
        med = {name: statistics.median(r) for name, r in rates.items()}
        for name, rate in med.items():
            print(f"median {name:>17}: {rate:,.0f} records/s")
        eos = med["exactly_once"]
        print(f"agent_exactly_once / exactly_once = {med['agent_exactly_once'] / eos:.2f}")
        print(f"exactly_once / passthrough_send = {eos / med['passthrough_send']:.2f}; "
              f"exactly_once / passthrough_batch = {eos / med['passthrough_batch']:.2f}; "
              f"exactly_once / at_least_once = {eos / med['at_least_once']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.copies, args.rounds))
