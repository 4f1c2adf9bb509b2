"""End to end on the real broker: real Binance trades replayed, enriched exactly once, checked in batch."""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict

import aiohttp
import numpy as np
import orjson
import pandas as pd
import pandas_ta as ta
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_processor.engine.worker import Worker
from stream_processor.market.models import Trade
from stream_processor.market.replay import replay
from stream_processor.market.serde.decode import decode
from tests.conftest import FEEDS
from tests.helpers import end_offsets, isolated_settings, read_topic, wait_for

FILES = [FEEDS / "spot" / f"{sym}_{day}.gz" for sym in ("btcusdt", "ethusdt") for day in ("20240808", "20240809")]

BAD_RECORDS = [
    (b"BTCUSDT", b"\xff\xfe not json", "undecodable"),
    (b"BTCUSDT", b'{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"abc","q":"1","T":1,"m":true}', "invalid"),
    (b"BTCUSDT", b'{"u":1,"s":"BTCUSDT","b":"1.0","B":"1.0","a":"1.1","A":"1.0"}', "invalid"),
]


def reference(trades: list[Trade], params) -> pd.DataFrame:
    """The trades processor's indicators computed in batch by pandas-ta / pandas over one symbol."""
    index = pd.to_datetime([t.time_ms for t in trades], unit="ms", utc=True)
    price = pd.Series([t.price for t in trades], index=index, dtype=float)
    size = pd.Series([t.size for t in trades], index=index, dtype=float)
    buy = pd.Series([t.size if t.side == "buy" else 0.0 for t in trades], index=index, dtype=float)
    return pd.DataFrame(
        {
            "sma": ta.sma(price, params.sma_length, talib=False),
            "ema": ta.ema(price, params.ema_length, talib=False),
            "vwap": ta.vwap(high=price, low=price, close=price, volume=size, anchor="D", talib=False),
            "momentum": ta.percent_return(price, length=params.momentum_length),
            "volume": size.rolling(params.volume_window).sum(),
            "buy_volume": buy.rolling(params.volume_window).sum(),
            "sell_volume": (size - buy).rolling(params.volume_window).sum(),
        }
    ).reset_index(drop=True)


async def run_worker_until(settings, predicate, timeout: float = 180):
    """Run a worker until ``predicate(worker)`` holds; returns what it returned, then stops the worker."""
    worker = Worker(settings)
    task = asyncio.create_task(worker.run())
    try:
        async def ready() -> bool:
            assert not task.done(), task.exception()
            return await predicate(worker)

        await wait_for(ready, timeout=timeout)
        return await predicate(worker)
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, timeout=60)


async def test_real_trades_enriched_exactly_once_across_a_restart(kafka_bootstrap, shared_data):
    """Phase 1 processes the 2024-08-08 files and stops; a new worker takes the 08-09 files from the changelog."""
    settings = isolated_settings(kafka_bootstrap, processors=["trades"])
    proc = settings.stream_processors["trades"]
    raw, enriched, dead = proc.input_topics[0], proc.output_topics[0], proc.dead_letter_topic
    day1 = [f for f in FILES if "20240808" in f.name]
    day2 = [f for f in FILES if "20240809" in f.name]

    counts1 = await replay(settings, day1, kinds={"trades"}, progress=False)

    async def drained1(_: Worker) -> bool:
        return await end_offsets(kafka_bootstrap, enriched) >= counts1[raw]

    await run_worker_until(settings, drained1)

    counts2 = await replay(settings, day2, kinds={"trades"}, progress=False)
    n_trades = counts1[raw] + counts2[raw]
    assert n_trades == 9_757 + 10_147 + 6_106 + 8_409  # the trade messages of the four files
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    for key, value, _ in BAD_RECORDS:
        await producer.send_and_wait(raw, value, key=key)
    await producer.stop()

    async def drained2(worker: Worker):
        if await end_offsets(kafka_bootstrap, enriched) < n_trades or (
            await end_offsets(kafka_bootstrap, dead) < len(BAD_RECORDS)
        ):
            return None
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{worker.health_port}"
            async with http.get(f"{base}/ready") as resp:
                assert resp.status == 200
            async with http.get(f"{base}/health") as resp:
                assert resp.status == 200
                health = await resp.json()
            async with http.get(f"{base}/status") as resp:
                assert resp.status == 200
                status = await resp.json()
            async with http.get(f"http://127.0.0.1:{worker.metrics_port}/metrics") as resp:
                metrics_text = await resp.text()
        return health, status, metrics_text

    health, status, metrics_text = await run_worker_until(settings, drained2)
    restored = "stream_processor_restored_records_total{processor=\"trades\"}"
    assert restored in metrics_text and f"{restored} 0.0" not in metrics_text  # phase 2 began from the changelog

    assert health["healthy"] is True and type(health["timestamp"]) is float
    assert health["checks"]["processor_trades"]["healthy"] is True
    check = health["checks"]["processor_trades"]["details"]
    assert check["state"] == "running"
    assert check["metrics"]["messages_processed"] == counts2[raw] + len(BAD_RECORDS)  # this worker's share
    assert check["metrics"]["messages_failed"] == len(BAD_RECORDS)
    assert check["metrics"]["processing_latency_ms"] > 0  # records committed within the last minute
    out_metric = f'stream_processor_messages_out_total{{processor="trades",topic="{enriched}"}}'
    assert f"{out_metric} {float(counts2[raw])}" in metrics_text
    latency_count = re.search(r'stream_processor_processing_latency_seconds_count\{processor="trades"\} (\S+)',
                              metrics_text)
    assert latency_count is not None  # every committed record's latency, the dead-lettered ones too
    assert float(latency_count.group(1)) == counts2[raw] + len(BAD_RECORDS)
    assert "process_resident_memory_bytes" in metrics_text and "stream_processor_info{" in metrics_text
    for reason in {reason for _, _, reason in BAD_RECORDS}:
        assert f'stream_processor_messages_failed_total{{processor="trades",reason="{reason}"}}' in metrics_text

    # /status: every input partition, owned here, committed to its end, nothing waiting.
    partitions = status["processors"]["trades"]["partitions"]
    assert {(p["topic"], p["partition"]) for p in partitions} == {(raw, q) for q in range(8)}
    for p in partitions:
        assert p["owner"] == settings.processor_id and p["owned_here"] is True, p
        assert p["committed_offset"] == p["end_offset"] and p["lag"] == 0, p
        assert p["transaction"] in ("idle", "open") and p["circuit_state"] == "closed", p
        assert p["transactional_id"] and p["last_commit"] <= status["timestamp"], p
    assert status["processors"]["trades"]["group_state"] == "Stable"

    # Every input trade appears exactly once, nothing else does.
    inputs = await read_topic(kafka_bootstrap, raw)
    outputs = await read_topic(kafka_bootstrap, enriched, schema="enriched_trades")
    values = [orjson.loads(m.value) for m in outputs]
    sources = [(v["source_topic"], v["source_partition"], v["source_offset"]) for v in values]
    assert len(sources) == len(set(sources)) == n_trades
    bad_values = {value for _, value, _ in BAD_RECORDS}
    trade_inputs = [m for m in inputs if m.value not in bad_values]
    assert set(sources) == {(m.topic, m.partition, m.offset) for m in trade_inputs}

    # Dead letters carry the reason and the source; the group has committed every input offset.
    dead_letters = await read_topic(kafka_bootstrap, dead, schema="dead_letter")
    reasons = sorted(dict(m.headers)["reason"].decode() for m in dead_letters)
    assert reasons == sorted(reason for _, _, reason in BAD_RECORDS)
    assert all(dict(m.headers)["source_topic"].decode() == raw for m in dead_letters)
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=proc.consumer_group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(raw, p) for p in consumer.partitions_for_topic(raw) or ()]
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            if ends[tp]:
                assert await consumer.committed(tp) == ends[tp]
    finally:
        await consumer.stop()

    # Every value equals a batch computation of the same indicators over the same trades.
    by_offset = {(m.partition, m.offset): m for m in trade_inputs}
    per_symbol: dict[str, list[tuple[dict, Trade]]] = defaultdict(list)
    for value in sorted(values, key=lambda v: (v["source_partition"], v["source_offset"])):
        trade = decode(by_offset[(value["source_partition"], value["source_offset"])].value)
        assert isinstance(trade, Trade) and trade.trade_id == value["trade_id"]
        per_symbol[value["symbol"]].append((value, trade))
    assert set(per_symbol) == {"BTCUSDT", "ETHUSDT"}
    for symbol, rows in per_symbol.items():
        ref = reference([t for _, t in rows], proc.params)
        for column in ref.columns:
            got = np.array([np.nan if v[column] is None else v[column] for v, _ in rows], dtype=float)
            want = ref[column].to_numpy(dtype=float)
            assert np.array_equal(np.isnan(got), np.isnan(want)), f"{symbol} {column}: warm-up differs"
            ok = ~np.isnan(want)
            np.testing.assert_allclose(got[ok], want[ok], rtol=1e-9, atol=1e-12, err_msg=f"{symbol} {column}")
        assert [v["trade_count"] for v, _ in rows] == list(range(1, len(rows) + 1))
