"""The replay producer: publishes recorded feed files to the raw topics, keyed by symbol.

Each line of an hftbacktest-format feed (``<local_receive_time_ns> <json>``) is published unchanged
(its JSON bytes) to the raw topic of its family (``replay.topics`` in the config: trades, orderbook,
klines), keyed by its symbol. A bare REST depth snapshot names no symbol: it takes the symbol of the
file's previous message. ``speed=0`` publishes as fast as possible; ``speed=k`` paces by the recorded
receive times at k times real time.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from ..engine.settings import Settings
from ..engine.topics import ensure_topics
from .serde.feed import iter_feed, record_symbol, stream_kind

# Acknowledgements are awaited in chunks so memory stays bounded on a long file.
_ACK_CHUNK = 20_000


async def replay(
    settings: Settings,
    paths: Iterable[str | Path],
    *,
    speed: float = 0.0,
    limit: int | None = None,
    kinds: set[str] | None = None,
    progress: bool = True,
) -> Counter[str]:
    """Publish the feed files in order; returns the number of records published per topic.

    Raises OSError for an unreadable file and ValueError for a line that is not ``<ns> <json>``.
    """
    topics = settings.replay.topics
    await ensure_topics(settings, {t: settings.topic(t) for t in topics.values()})
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=512 * 1024,
        client_id=f"{settings.processor_id}-replay",
    )
    await producer.start()
    counts: Counter[str] = Counter()
    bar = tqdm(unit=" msg", disable=not progress, desc="replay", mininterval=0.5)
    pending: list[asyncio.Future[object]] = []
    try:
        sent = 0
        for path in paths:
            symbol: str | None = None
            first_ns: int | None = None
            started = time.monotonic()
            for ns, raw in iter_feed(path):
                if limit is not None and sent >= limit:
                    break
                kind = stream_kind(raw)
                symbol = record_symbol(raw) or symbol
                if kinds is not None and kind not in kinds:
                    continue
                if speed > 0:
                    first_ns = ns if first_ns is None else first_ns
                    delay = (ns - first_ns) / 1e9 / speed - (time.monotonic() - started)
                    if delay > 0:
                        await asyncio.sleep(delay)
                topic = topics[kind]  # type: ignore[index]
                pending.append(await producer.send(topic, raw, key=symbol.encode() if symbol else None))
                counts[topic] += 1
                sent += 1
                bar.update()
                if len(pending) >= _ACK_CHUNK:
                    await asyncio.gather(*pending)
                    pending.clear()
        await asyncio.gather(*pending)
    finally:
        bar.close()
        await producer.stop()
    return counts
