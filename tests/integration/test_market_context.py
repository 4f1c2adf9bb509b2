"""Volume profiles and SMC context end to end on the real broker, against a batch recomputation.

Real trades (the Tardis capture of Binance USD-M BTCUSDT, 2 hours) build 1m and 5m klines whose enriched records carry
the symbol's volume profile and the SMC context of both intervals; each closed kline's context also goes to the
context topic, which the trades processor joins (co-partitioned with the trades: same partition count); real venue
klines (FTX BTC-PERP 1m, 2,000 of them) feed a second klines processor. Read back under read_committed:

- every volume profile (levels and summary) equals an exact recomputation from the trades: the trades of its UTC day
  on its partition before the one that closed its kline, binned with decimal arithmetic, sizes summed in order;
- every enriched kline's ``smc`` equals a batch run of the detectors over the enriched klines' candles, and every
  context record equals its kline's;
- every enriched trade's ``smc`` is, per interval, the newest context record stored strictly before the trade's Kafka
  timestamp whose kline closed before the trade's time, re-measured from the trade's price, and none is flagged
  ``smc_stale`` (the trades' task waited for the klines processor, which ran in the same worker);
- every output record conforms to its topic's JSON Schema.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import math
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from stream_processor.engine.settings import Settings, load_settings
from stream_processor.engine.topics import ensure_topics, required_topics
from stream_processor.engine.worker import Worker
from stream_processor.market.context import project
from stream_processor.market.settings import DEFAULT_CONFIG, interval_ms
from stream_processor.market.smc.detector import SmcDetector
from tests.eos.harness import committed_offsets, partition_ends
from tests.helpers import end_offsets, read_topic, schemas_of, wait_for, wait_until_settled
from tests.unit.market.test_volume_profile import _brute_value_area

PARTITIONS = 4
WIDTH = "5"  # BTCUSDT's bin width, USDT: no merge on a 2-hour range, so the sums are exact
KLINES = 2_000  # FTX 1m klines


def _settings(bootstrap: str, run: str) -> Settings:
    t = {name: f"{name}-{run}" for name in ("raw_trades", "raw_klines", "ctx", "vp", "enriched_trades",
                                               "enriched_klines", "signals", "venue_klines", "venue_signals", "dlq")}
    doc = {
        "app_id": f"ctx-{run}",
        "kafka": {"bootstrap_servers": [bootstrap]},
        "topics": {name: {"partitions": PARTITIONS} for name in t.values()},
        "stream_processors": {
            "klines": {
                "type": "klines", "consumer_group": f"klines-{run}", "input_topics": [t["raw_trades"]],
                "output_topics": [t["enriched_klines"], t["signals"]], "dead_letter_topic": t["dlq"],
                "event_time": {"max_past_ms": 315_576_000_000},
                "params": {"intervals": ["1m", "5m"], "smc": {"context_topic": t["ctx"]},
                           "volume_profile": {"bin_widths": {"BTCUSDT": float(WIDTH)}, "max_bins": 2000,
                                              "topic": t["vp"]}},
            },
            "trades": {
                "type": "trades", "consumer_group": f"trades-{run}", "input_topics": [t["raw_trades"], t["ctx"]],
                "output_topics": [t["enriched_trades"]], "dead_letter_topic": t["dlq"],
                "event_time": {"max_past_ms": 315_576_000_000}, "params": {"smc_context_topic": t["ctx"]},
            },
            "venue": {
                "type": "klines", "consumer_group": f"venue-{run}", "input_topics": [t["raw_klines"]],
                "output_topics": [t["venue_klines"], t["venue_signals"]], "dead_letter_topic": t["dlq"],
                "event_time": {"max_past_ms": 315_576_000_000},
                "params": {"source": "klines", "intervals": ["1m"], "max_price_jump": None,
                           "volume_profile": {"bin_width": 100.0}},
            },
        },
        "monitoring": {"host": "127.0.0.1", "metrics_port": 0, "health_check_port": 0},
    }
    base = load_settings(DEFAULT_CONFIG, environ={}).model_dump()
    return Settings.model_validate({**base, **doc, "replay": None, "kafka": {**base["kafka"], **doc["kafka"]}})


def tardis_trades(shared_data: Any) -> list[dict[str, Any]]:
    """The Tardis trades in the normalized form (prices and sizes as the capture writes them)."""
    out = []
    with gzip.open(shared_data / "trades" / "tardis-nautilus" / "tardis_trades.csv.gz", "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            ms = int(row["timestamp"]) // 1000
            out.append({"type": "trade", "venue": "binance", "market": "usdm", "symbol": row["symbol"],
                        "trade_id": int(row["id"]), "price": row["price"], "size": row["amount"],
                        "side": row["side"], "time_ms": ms})
    return out


def ftx_klines(shared_data: Any, n: int) -> list[dict[str, Any]]:
    """The first ``n`` FTX BTC-PERP 1m klines in the normalized form."""
    out = []
    path = shared_data / "klines" / "ftx-nautilus" / "btc-perp-20211231-20220201_1m.csv.gz"
    with gzip.open(path, "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            ms = int(datetime.fromisoformat(row["timestamp"]).replace(tzinfo=UTC).timestamp() * 1000)
            out.append({"type": "kline", "venue": "ftx", "market": "perp", "symbol": "BTC-PERP", "interval": "1m",
                        "open_time_ms": ms, "close_time_ms": ms + 59_999, "open": row["open"], "high": row["high"],
                        "low": row["low"], "close": row["close"], "volume": row["volume"], "is_closed": True})
            if len(out) == n:
                break
    return out


async def publish(bootstrap: str, topic: str, docs: list[dict[str, Any]]) -> None:
    """Send ``docs`` keyed by symbol, stamped now (a 2020 timestamp would let retention delete them at once)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    await producer.start()
    try:
        for doc in docs:
            await producer.send(topic, orjson.dumps(doc), key=doc["symbol"].encode())
        await producer.flush()
    finally:
        await producer.stop()


def profile_expected(trades: list[tuple[int, dict]], before: int, day_start: int) -> dict[str, Any]:
    """The profile of the trades ``(offset, doc)`` of one partition with offset < ``before`` and time in the UTC
    day starting at ``day_start``: exact decimal bins, float sizes summed in input order."""
    width = Decimal(WIDTH)
    bins: dict[int, list[float]] = {}
    for offset, doc in trades:
        if offset >= before or not day_start <= doc["time_ms"] < day_start + 86_400_000:
            continue
        b = bins.setdefault(int(Decimal(doc["price"]) // width), [0.0, 0.0, 0.0])
        size = float(doc["size"])
        b[0] += size
        b[1 if doc["side"] == "buy" else 2] += size
    if not bins:
        return {"levels": []}
    poc, low, high = _brute_value_area({k: b[0] for k, b in bins.items()}, 0.7)  # exact integer arithmetic
    return {"levels": [[float(k * width), *bins[k]] for k in sorted(bins)],
            "volume": math.fsum(b[0] for b in bins.values()), "buy_volume": math.fsum(b[1] for b in bins.values()),
            "sell_volume": math.fsum(b[2] for b in bins.values()), "poc": float(poc * width),
            "value_area_low": float(low * width), "value_area_high": float((high + 1) * width)}


def batch_contexts(klines: list[dict[str, Any]], params: Any) -> list[dict[str, Any]]:
    """Per enriched kline (in the processor's order), the ``smc`` a batch run of the detectors gives."""
    detectors: dict[str, SmcDetector] = {}
    out = []
    for k in klines:
        det = detectors.get(k["interval"])
        if det is None:
            det = detectors[k["interval"]] = SmcDetector(
                swing_length=params.swing_length, range_percent=params.range_percent,
                previous_high_low=params.previous_high_low, sessions=params.sessions)
        det.update((k["open"], k["high"], k["low"], k["close"], k["volume"], k["open_time_ms"]))
        out.append({name: {"as_of_ms": d.last_time_ms + interval_ms(name) - 1, "price": k["close"],
                           **d.context(k["close"])} for name, d in detectors.items()})
    return out


async def test_volume_profiles_and_smc_context_equal_their_batch_recomputation(kafka_bootstrap, shared_data):
    settings = _settings(kafka_bootstrap, uuid.uuid4().hex[:8])
    procs = settings.stream_processors
    raw_trades, raw_klines = procs["klines"].input_topics[0], procs["venue"].input_topics[0]
    ctx_topic, vp_topic = procs["trades"].params.smc_context_topic, procs["klines"].params.volume_profile.topic
    await ensure_topics(settings, required_topics(settings))
    trades, klines = tardis_trades(shared_data), ftx_klines(shared_data, KLINES)
    half = len(trades) // 2
    await publish(kafka_bootstrap, raw_trades, trades[:half])
    await publish(kafka_bootstrap, raw_klines, klines)

    worker = Worker(settings)
    task = asyncio.create_task(worker.run())
    try:
        # The join reads the context the trades' task has read: trades published before any kline closed carry
        # none. So the second half goes in once the first half's contexts are out, as a live feed would.
        async def first_half() -> bool:
            assert not task.done(), task.exception()
            return (await end_offsets(kafka_bootstrap, procs["trades"].output_topics[0]) >= half
                    and len(await read_topic(kafka_bootstrap, ctx_topic)) >= 50)

        await wait_for(first_half, timeout=120)
        await publish(kafka_bootstrap, raw_trades, trades[half:])

        async def drained() -> bool:
            assert not task.done(), task.exception()
            return (await end_offsets(kafka_bootstrap, procs["trades"].output_topics[0]) >= len(trades)
                    and await end_offsets(kafka_bootstrap, procs["venue"].output_topics[0]) >= KLINES)

        await wait_for(drained, timeout=180)

        def alive() -> None:
            assert not task.done(), task.exception()

        groups = {p.consumer_group: p.input_topics for p in procs.values()}
        outputs = sorted({t for p in procs.values() for t in p.sends_to()})
        await wait_until_settled(kafka_bootstrap, groups, outputs, timeout=120, alive=alive)
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, timeout=60)

    # The trades' group committed the context topic to its end: past the transaction markers the consumer skips
    # (committing only up to the last record would leave a lag of 1 per partition, and /health "stuck").
    ends = await partition_ends(kafka_bootstrap, [ctx_topic], "read_uncommitted")
    committed = await committed_offsets(kafka_bootstrap, procs["trades"].consumer_group)
    assert {tp: committed.get(tp) for tp in ends if ends[tp]} == {tp: end for tp, end in ends.items() if end}

    schema = schemas_of(settings)
    read = {topic: await read_topic(kafka_bootstrap, topic, schema=schema.get(topic)) for topic in
            (*procs["klines"].sends_to(), *procs["trades"].output_topics, *procs["venue"].sends_to())}
    assert await end_offsets(kafka_bootstrap, procs["klines"].dead_letter_topic) == 0

    # Volume profiles: the levels topic and the summaries on the enriched klines, against the trades.
    raw = await read_topic(kafka_bootstrap, raw_trades, "read_uncommitted")
    by_partition: dict[int, list[tuple[int, dict]]] = defaultdict(list)
    for rec in raw:
        by_partition[rec.partition].append((rec.offset, orjson.loads(rec.value)))
    profiles = [orjson.loads(r.value) for r in read[vp_topic]]
    assert len(profiles) >= 120  # one per closed 1m kline
    for doc in profiles:
        want = profile_expected(by_partition[doc["source_partition"]], doc["source_offset"], doc["session_start_ms"])
        got = {k: doc[k] for k in want}
        assert got == want, ({k: v for k, v in doc.items() if k != "levels"},
                             {k: (got[k], want[k]) for k in want if got[k] != want[k] and k != "levels"})
    enriched = [orjson.loads(r.value) for r in read[procs["klines"].output_topics[0]]]
    levels_at = {(d["open_time_ms"], d["source_offset"]): d for d in profiles}
    checked = 0
    for doc in enriched:
        snap = levels_at.get((doc["open_time_ms"], doc["source_offset"]))
        if doc["interval"] == "1m" and snap is not None:
            assert doc["volume_profile"] == {k: v for k, v in snap.items() if k in doc["volume_profile"]}
            checked += 1
    assert checked == len(profiles)

    # SMC context on enriched klines (both processors) against the batch run; context records against their klines.
    for name in ("klines", "venue"):
        docs = [orjson.loads(r.value) for r in read[procs[name].output_topics[0]]]
        docs.sort(key=lambda d: (d["close_time_ms"], interval_ms(d["interval"])))
        expected = batch_contexts(docs, procs[name].params.smc)
        assert [d["smc"] for d in docs] == orjson.loads(orjson.dumps(expected))
        assert any(c.get("trend") for d in docs for c in d["smc"].values()), "no BOS/CHoCH: the test shows nothing"
    contexts = [orjson.loads(r.value) for r in read[ctx_topic]]
    own = {(d["interval"], d["close_time_ms"]): d["smc"][d["interval"]] for d in enriched}
    assert len(contexts) == len(enriched)
    for rec in contexts:
        assert rec["context"] == own[(rec["interval"], rec["close_time_ms"])]
    assert {r.partition for r in read[ctx_topic]} <= {r.partition for r in raw}

    # The join: each trade's context, per interval, is the newest context record stored strictly before the trade's
    # Kafka timestamp whose kline closed before the trade's time, re-measured from its price; nothing waited out.
    versions: dict[tuple[str, str], list[tuple[int, int, Any]]] = defaultdict(list)
    for r in read[ctx_topic]:
        doc = orjson.loads(r.value)
        versions[(doc["symbol"], doc["interval"])].append((r.timestamp, doc["close_time_ms"], doc["context"]))
    joined = 0
    for rec in read[procs["trades"].output_topics[0]]:
        doc = orjson.loads(rec.value)
        expected = {}
        for (symbol, interval), kept in versions.items():
            valid = [v for v in kept if symbol == doc["symbol"] and v[0] < rec.timestamp and v[1] < doc["time_ms"]]
            if valid:
                # The newest: by timestamp, then by kline (one trade can close two klines of an interval).
                expected[interval] = project(max(valid, key=lambda v: (v[0], v[1]))[2], doc["price"])
        assert doc["smc"] == (expected or None), (rec.partition, rec.offset)
        assert doc["smc_stale"] is False
        joined += len(expected)
    assert joined > len(trades) - half  # the second half carries both intervals' context
