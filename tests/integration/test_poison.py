"""No record can stall, poison or silently corrupt the pipeline: 50 kinds of bad record through the real broker.

Real Binance trades (raw_trades: the trades and klines processors), real Binance depth diffs, snapshots and
bookTickers plus a synthetic book (raw_orderbook: the order-book processor) and real FTX 1m candles (raw_klines: a
klines processor on venue klines) are produced with bad records interleaved, each next to the valid records of its
own symbol, so it shares their partition and state. One worker runs all four processors. Then, for every bad record
and every processor that reads it, it must have the outcome the README documents (a dead letter with that reason,
or dropped, or handled), and:

- the group's committed offsets reach the end of every input (the worker kept committing past every bad record);
- every output record equals, byte for byte and one for one, what the same processors give when run in this
  process over the valid records only (the records read back, at their real offsets, with the bad ones skipped):
  the valid records around a bad one are enriched exactly once and correctly;
- every key's state in the changelog equals that run's final state: state is as if the bad record never came;
- every dead-letter copy fits its topic, and one too large was truncated with headers saying so.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream_processor.engine.settings import Settings
from stream_processor.engine.state import OFFSET_KEY
from stream_processor.engine.topics import changelog_topic, ensure_topics, required_topics
from stream_processor.engine.worker import Worker
from stream_processor.market.serde.feed import iter_feed, record_symbol, stream_kind
from tests.conftest import FEEDS, SHARED_DATA
from tests.helpers import (
    driver_run,
    isolated_settings,
    read_topic,
    schemas_of,
    unwrap_state,
    wait_for,
    wait_until_settled,
)

TRADES_PER_SYMBOL = 1500
BOOK_MESSAGES = 2500
CANDLES = 400
PROCESSORS = ["trades", "klines", "orderbook", "venue_klines"]
ON_TOPIC = {"trades": ["trades", "klines"], "orderbook": ["orderbook"], "klines": ["venue_klines"]}
NOW_MS = int(time.time() * 1000)


@dataclass
class Bad:
    """One bad record: where it goes, what it is, and its outcome per processor ("dlq:<reason>", "dropped",
    "valid": the processor must treat it as a valid record)."""

    kind: str
    family: str  # trades | orderbook | klines
    key: bytes | None
    value: bytes | None
    outcome: str  # for every processor reading the family, unless overridden
    per_processor: dict[str, str] = field(default_factory=dict)
    compress: bool = False
    truncated: bool = False  # its dead-letter copy must be truncated
    shift_ms: int | None = None  # a trade timed this much after the valid trade before it (set when placed)
    placed: tuple[str, int, int] | None = None  # (topic, partition, offset) once produced

    def outcome_for(self, processor: str) -> str:
        return self.per_processor.get(processor, self.outcome)


# ---- the valid input -----------------------------------------------------------------------------------
def real_trades() -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = defaultdict(list)
    for sym in ("btcusdt", "ethusdt"):
        for _, raw in iter_feed(FEEDS / "spot" / f"{sym}_20240808.gz"):
            if stream_kind(raw) == "trades" and len(out[sym.upper()]) < TRADES_PER_SYMBOL:
                out[sym.upper()].append(raw)
    return out


def real_book() -> list[tuple[bytes, bytes]]:
    out, symbol = [], None
    for _, raw in iter_feed(FEEDS / "spot" / "btcusdt_20240808.gz"):
        symbol = record_symbol(raw) or symbol
        if stream_kind(raw) == "orderbook":
            out.append((symbol.encode(), raw))  # type: ignore[union-attr]
            if len(out) >= BOOK_MESSAGES:
                break
    return out


def ftx_candles() -> list[bytes]:
    path = SHARED_DATA / "klines" / "ftx-nautilus" / "btc-perp-20211231-20220201_1m.csv.gz"
    out = []
    with gzip.open(path, "rt") as f:
        next(f)
        for line in f:
            ts, o, h, low, c, v = line.strip().split(",")
            t = int(time.mktime(time.strptime(ts[:19], "%Y-%m-%d %H:%M:%S")) - time.timezone) * 1000
            out.append(orjson.dumps({
                "type": "kline", "venue": "ftx", "symbol": "BTC-PERP", "interval": "1m", "open_time_ms": t,
                "close_time_ms": t + 59_999, "open": o, "high": h, "low": low, "close": c, "volume": v,
                "is_closed": True, "event_time_ms": t + 60_000}))
            if len(out) >= CANDLES:
                break
    return out


def synthetic_book(n_diffs: int = 600, levels: int = 150) -> list[tuple[bytes, bytes]]:
    """A book with no snapshot for 600 diffs of 150 levels per side (the buffer must stay bounded), then one."""
    out = []
    for i in range(n_diffs):
        bids = [[f"{0.5 - j * 1e-4:.4f}", f"{100 + i}"] for j in range(levels)]
        asks = [[f"{0.51 + j * 1e-4:.4f}", f"{100 + i}"] for j in range(levels)]
        out.append(orjson.dumps({"e": "depthUpdate", "E": NOW_MS, "s": "XRPUSDT", "U": 1000 + 2 * i,
                                 "u": 1001 + 2 * i, "b": bids, "a": asks}))
    last = 1001 + 2 * (n_diffs - 1)
    snapshot = {"lastUpdateId": last - 10, "bids": [["0.5000", "10"], ["0.4999", "5"]],
                "asks": [["0.5100", "10"], ["0.5101", "5"]]}
    out.append(orjson.dumps(snapshot))
    out.append(orjson.dumps({"e": "depthUpdate", "E": NOW_MS, "s": "XRPUSDT", "U": last + 1, "u": last + 2,
                             "b": [["0.5000", "11"]], "a": []}))
    return [(b"XRPUSDT", raw) for raw in out]


# ---- the bad records -----------------------------------------------------------------------------------
def _trade(base: dict[str, Any], **changes: Any) -> bytes:
    doc = dict(base)
    doc.update(changes)
    for k in [k for k, v in changes.items() if v is _DROP]:
        del doc[k]
    return orjson.dumps(doc)


_DROP = object()


def bad_records(btc: dict[str, Any], last_id: int) -> list[Bad]:
    """The bad records, built around one real BTCUSDT trade ``btc`` (a bare Binance trade).

    The ones that need an id of their own get ids just above the tape's ``last_id`` (a far-off id would move the
    dedup window past the tape's ids, which is how the window is meant to work).
    """
    t = btc["T"]
    unique = iter(range(last_id + 1000, last_id + 2000))

    def trade(**changes: Any) -> bytes:
        changes.setdefault("t", next(unique))
        return _trade(btc, **changes)

    k = b"BTCUSDT"
    kline = {"e": "kline", "E": t, "s": "BTCUSDT", "k": {"t": t - t % 60_000, "T": t - t % 60_000 + 59_999,
             "s": "BTCUSDT", "i": "1m", "o": "1", "c": "1", "h": "1", "l": "1", "v": "1", "n": 1, "x": True,
             "q": "1"}}
    depth = {"e": "depthUpdate", "E": NOW_MS, "s": "BTCUSDT", "U": 1, "u": 2, "b": [["61000.0", "1"]], "a": []}
    ticker = {"u": 1, "s": "BTCUSDT", "b": "61000.0", "B": "1.0", "a": "61001.0", "A": "1.0"}
    later = 1_672_531_200_000  # 2023-01-01: after every valid candle, so only the fault named refuses it
    candle = {"type": "kline", "venue": "ftx", "symbol": "BTC-PERP", "interval": "1m", "open_time_ms": later,
              "close_time_ms": later + 59_999, "event_time_ms": later + 60_000, "open": "46000", "high": "46100",
              "low": "45900", "close": "46050",
              "volume": "10", "is_closed": True}

    def ck(**changes: Any) -> bytes:
        return orjson.dumps({**candle, **changes})

    und, inv = "dlq:undecodable", "dlq:invalid"
    return [
        # -- not a JSON object --------------------------------------------------------------------
        Bad("not JSON", "trades", k, b"\xff\xfe not json", und),
        Bad("truncated JSON", "trades", k, trade()[:40], und),
        Bad("empty value", "trades", k, b"", und),
        Bad("tombstone (null value)", "trades", k, None, und),
        Bad("binary", "trades", k, bytes(range(256)) * 4, und),
        Bad("10k-deep nesting", "trades", k, b"[" * 10_000 + b"]" * 10_000, und),
        Bad("NaN literal", "trades", k, trade().replace(b'"p":', b'"p":NaN,"x0":'), und),
        Bad("Infinity literal", "trades", k, trade().replace(b'"p":', b'"p":Infinity,"x0":'), und),
        Bad("number beyond double (1e400)", "trades", k, trade().replace(b'"p":', b'"p":1e400,"x0":'), und),
        Bad("lone surrogate", "trades", k, trade(s="\\ud800").replace(b"\\\\ud800", b"\\ud800"), und),
        Bad("JSON array", "trades", k, b"[1,2,3]", inv),
        Bad("JSON string", "trades", k, b'"BTCUSDT"', inv),
        # -- too large: 1 MB not JSON (its dead-letter copy must be truncated), 5 MB compressed -------
        Bad("1 MB non-JSON value", "trades", k, b"x" * 1_048_400, und, truncated=True),
        Bad("5 MB value compressed to a few KB", "trades", k,
            b'{"e":"trade","pad":"' + b"A" * 5_000_000 + b'"}', "dlq:too_large", compress=True, truncated=True),
        # -- wrong values -----------------------------------------------------------------------------------
        Bad("price 'NaN' string", "trades", k, trade(p="NaN"), inv),
        Bad("price true", "trades", k, trade(p=True), inv),
        Bad("price 1e300", "trades", k, trade(p=1e300), inv),
        Bad("price 0", "trades", k, trade(p="0"), inv),
        Bad("negative size", "trades", k, trade(q="-1"), inv),
        Bad("price 1e9 (sanity band)", "trades", k, trade(p="1000000000.0"), inv),
        Bad("trade id 12.7", "trades", k, trade(t=12.7), inv),
        Bad("trade id 1e20", "trades", k, trade(t=1e20), inv),
        Bad("trade id as a huge int", "trades", k, trade(t=2**64 - 1), inv),
        Bad("T 1e20", "trades", k, trade(T=1e20), inv),
        Bad("T in nanoseconds", "trades", k, trade(T=t * 1_000_000), inv),
        Bad("T in year 2100", "trades", k, trade(T=4_102_444_800_000), inv),
        Bad("T in seconds", "trades", k, trade(T=t // 1000), inv),
        Bad("T null", "trades", k, trade(T=None), inv),
        Bad("missing field p", "trades", k, trade(p=_DROP), inv),
        Bad("missing field m", "trades", k, trade(m=_DROP), inv),
        Bad("wrong type: p a list", "trades", k, trade(p=[1, 2]), inv),
        Bad("wrong type: s a number", "trades", k, trade(s=123), inv),
        Bad("odd unicode symbol (RTL mark)", "trades", b"BTC\xe2\x80\xaeUSDT", trade(s="BTC\u202eUSDT"), inv),
        Bad("NUL in symbol", "trades", b"BTC\x00USDT", trade(s="BTC\u0000USDT"), inv),
        Bad("wrong event type", "trades", k, trade(e="outboundAccountPosition"), inv),
        Bad("a kline on the trades topic", "trades", k, orjson.dumps(kline), inv),
        Bad("a depth diff on the trades topic", "trades", k, orjson.dumps(depth), inv),
        Bad("null key", "trades", None, trade(), inv),
        Bad("key of another symbol", "trades", b"ETHUSDT", trade(), inv),
        Bad("2 KB key", "trades", b"K" * 2048, trade(), inv),
        Bad("trade of an earlier UTC day", "trades", k, trade(), inv, shift_ms=-86_400_000,
            per_processor={"klines": "dlq:late"}),
        Bad("late trade (5 min before the watermark)", "trades", k, trade(), "valid", shift_ms=-300_000,
            per_processor={"klines": "dlq:late"}),
        Bad("duplicate trade id (re-sent trade)", "trades", k, orjson.dumps(btc), "dropped"),
        Bad("extra fields", "trades", k, trade(extra={"nested": [1, 2]}, Z="ignored"), "valid", shift_ms=0),
        # -- order book ---------------------------------------------------------------------------------------
        Bad("depth u 1e20", "orderbook", k, orjson.dumps({**depth, "u": 1e20}), inv),
        Bad("depth level price 'abc'", "orderbook", k, orjson.dumps({**depth, "b": [["abc", "1"]]}), inv),
        Bad("depth level of three items", "orderbook", k, orjson.dumps({**depth, "b": [["1", "1", "1"]]}), inv),
        Bad("depth U > u", "orderbook", k, orjson.dumps({**depth, "U": 5, "u": 2}), inv),
        Bad("bookTicker bid true", "orderbook", k, orjson.dumps({**ticker, "b": True}), inv),
        Bad("a trade on the order-book topic", "orderbook", k, orjson.dumps(btc), inv),
        # -- venue klines -------------------------------------------------------------------------------------
        Bad("kline open above high", "klines", b"BTC-PERP", ck(open="47000"), inv),
        Bad("kline close below low", "klines", b"BTC-PERP", ck(close="45000"), inv),
        Bad("kline close_time < open_time", "klines", b"BTC-PERP", ck(close_time_ms=later - 60_000), inv),
        Bad("kline interval 7x", "klines", b"BTC-PERP", ck(interval="7x"), inv),
        Bad("kline not after the last one", "klines", b"BTC-PERP", ck(open_time_ms=1_640_991_660_000,
            close_time_ms=1_640_991_719_999, event_time_ms=1_640_991_720_000), inv),
        Bad("kline close 1e9 (sanity band)", "klines", b"BTC-PERP", ck(high="1000000000", close="1000000000"), inv),
        Bad("a trade on the klines topic", "klines", b"BTCUSDT", orjson.dumps(btc), inv),
    ]


def _settings(bootstrap: str) -> Settings:
    base = isolated_settings(bootstrap, processors=["trades", "klines", "orderbook"])
    doc = base.model_dump()
    raw_klines = base.replay.topics["klines"]
    venue = dict(doc["stream_processors"]["klines"])
    venue.update(enabled=True, consumer_group=f"venue-{base.app_id}", input_topics=[raw_klines],
                 output_topics=[f"venue-klines-{base.app_id}", f"venue-smc-{base.app_id}"],
                 params={**venue["params"], "source": "klines", "alerts": []})
    doc["stream_processors"]["venue_klines"] = venue
    # The state is compared record by record with a broker-less run's: the order book's delta log depends on where
    # commits fall, its full snapshots do not (tests/unit/market/orderbook/test_state_encoding.py covers the log).
    doc["stream_processors"]["orderbook"]["params"]["state_encoding"] = "full"
    return Settings.model_validate(doc)


async def _produce(bootstrap: str, settings: Settings, sends: list[tuple[str, bytes | None, bytes | None, Bad | None]]
                   ) -> list[Any]:
    plain = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                             max_request_size=16_000_000, linger_ms=2)
    gz = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="gzip",
                          max_request_size=16_000_000)
    await plain.start()
    await gz.start()
    try:
        metas = []
        topics = settings.replay.topics
        for family, key, value, bad in sends:
            producer = gz if bad is not None and bad.compress else plain
            if bad is not None and (bad.compress or len(value or b"") > 100_000):
                meta = await producer.send_and_wait(topics[family], value, key=key)  # type: ignore[index]
            else:
                meta = await producer.send(topics[family], value, key=key)  # type: ignore[index]
            metas.append(meta)
        return [await m if isinstance(m, asyncio.Future) else m for m in metas]
    finally:
        await plain.stop()
        await gz.stop()


async def _expected(bootstrap: str, settings: Settings, name: str, skip: set[tuple[str, int, int]]
                    ) -> tuple[Counter[tuple[str, bytes | None, bytes]], dict[tuple[int, str], Any]]:
    """The outputs and final states of processor ``name`` run by the TestDriver over its inputs without the
    ``skip`` records (which are the only ones it may dead-letter)."""
    driver = await driver_run(bootstrap, settings, [name], skip)
    assert driver.dead_letters() == [], [r.header("error") for r in driver.dead_letters()][:3]
    outputs: Counter[tuple[str, bytes | None, bytes]] = Counter()
    for topic in settings.stream_processors[name].output_topics:
        outputs.update((topic, r.key, r.value) for r in driver.all(topic))
    states = {(p, key): orjson.loads(orjson.dumps(obj.to_state())) for p, data in driver.state(name).items()
              for key, obj in data.items()}
    return outputs, states


async def _changelog_states(bootstrap: str, settings: Settings, name: str) -> dict[tuple[int, str], Any]:
    states: dict[tuple[int, str], Any] = {}
    for rec in await read_topic(bootstrap, changelog_topic(settings, name)):
        if rec.key.startswith(OFFSET_KEY):
            continue
        if rec.value is None:
            states.pop((rec.partition, rec.key.decode()), None)
        else:
            states[(rec.partition, rec.key.decode())] = unwrap_state(orjson.loads(rec.value))
    return states


async def _health(port: int | None) -> tuple[int, dict[str, Any]] | None:
    """``/health``'s status and document on ``port``, or None before the worker serves it."""
    if port is None:
        return None
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/health") as resp:
            return resp.status, await resp.json()


@pytest.mark.slow  # 6-13 s on the 2-core machine
async def test_bad_records_never_stall_poison_or_corrupt(kafka_bootstrap: str, shared_data: Any) -> None:
    settings = _settings(kafka_bootstrap)
    trades = real_trades()
    btc = orjson.loads(trades["BTCUSDT"][100])["data"]
    bads = bad_records(btc, max(orjson.loads(r)["data"]["t"] for r in trades["BTCUSDT"]))
    assert len(bads) >= 50 and len({b.kind for b in bads}) == len(bads)
    # The valid records, with the bad ones spread among their own symbol's records (same partition and state).
    by_family: dict[str, list[Bad]] = defaultdict(list)
    for bad in bads:
        by_family[bad.family].append(bad)
    sends: list[tuple[str, bytes | None, bytes | None, Bad | None]] = []
    streams = {
        "trades": [("trades", b"BTCUSDT", v) for v in trades["BTCUSDT"]],
        "orderbook": [("orderbook", key, v) for key, v in real_book()],
        "klines": [("klines", b"BTC-PERP", v) for v in ftx_candles()],
    }
    for family, valid in streams.items():
        bad_here = by_family[family]
        step = (len(valid) - 200) // (len(bad_here) + 1)
        at = {200 + (j + 1) * step: bad for j, bad in enumerate(bad_here)}  # after 200 valid records, spread out
        for i, item in enumerate(valid):
            sends.append((*item, None))
            if i in at:
                bad = at[i]
                if bad.shift_ms is not None:  # timed against the valid trade just before it
                    before = orjson.loads(item[2])["data"]
                    doc = orjson.loads(bad.value)  # type: ignore[arg-type]
                    doc["T"] = doc["E"] = before["T"] + bad.shift_ms
                    bad.value = orjson.dumps(doc)
                sends.append((family, bad.key, bad.value, bad))
    sends.extend(("trades", b"ETHUSDT", v, None) for v in trades["ETHUSDT"])
    sends.extend(("orderbook", key, v, None) for key, v in synthetic_book())
    assert sum(1 for s in sends if s[3] is not None) == len(bads)

    await ensure_topics(settings, required_topics(settings))
    metas = await _produce(kafka_bootstrap, settings, sends)
    for (_, _, _, bad), meta in zip(sends, metas, strict=True):
        if bad is not None:
            bad.placed = (meta.topic, meta.partition, meta.offset)

    worker = Worker(settings)
    task = asyncio.create_task(worker.run())
    try:
        def alive() -> None:
            assert not task.done(), task.exception()

        # The group's committed offsets reach the end of every input, and no output transaction is left open.
        procs = [settings.stream_processors[name] for name in PROCESSORS]
        await wait_until_settled(kafka_bootstrap, {p.consumer_group: p.input_topics for p in procs},
                                 {t for p in procs for t in (*p.output_topics, p.dead_letter_topic)},
                                 timeout=180, alive=alive)
        answers: list[Any] = []

        async def healthy() -> bool:
            alive()
            answers[:] = [await _health(worker.health_port)]
            return answers[0] is not None and answers[0][0] == 200

        await wait_for(healthy, timeout=30, message=lambda: f"/health 200 once drained (last answer: {answers})")
        health = answers[0][1]
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, timeout=60)
    assert health["problems"] == []

    # Every bad record has its outcome, per processor; nothing else is dead-lettered.
    dead = settings.stream_processors["trades"].dead_letter_topic
    dlq = await read_topic(kafka_bootstrap, dead, schema="dead_letter")
    got: dict[tuple[str, str, int, int], list[Any]] = defaultdict(list)
    for rec in dlq:
        h = {k: v.decode() for k, v in rec.headers}
        got[(h["processor"], h["source_topic"], int(h["source_partition"]), int(h["source_offset"]))].append(rec)
    want: dict[tuple[str, str, int, int], str] = {}
    skip: dict[str, set[tuple[str, int, int]]] = defaultdict(set)
    for bad in bads:
        assert bad.placed is not None
        for proc in ON_TOPIC[bad.family]:
            outcome = bad.outcome_for(proc)
            if outcome != "valid":
                skip[proc].add(bad.placed)
            if outcome.startswith("dlq:"):
                want[(proc, *bad.placed)] = outcome[4:]
    wrong = []
    for where, reason in want.items():
        recs = got.get(where, [])
        reasons = [dict(r.headers)["reason"].decode() for r in recs]
        if reasons != [reason]:
            kind = next(b.kind for b in bads if b.placed == where[1:])
            wrong.append(f"{kind} ({where[0]}): dead letters {reasons}, want [{reason!r}]")
    unexpected = sorted(set(got) - set(want))
    assert not wrong, "\n".join(wrong)
    assert not unexpected, [(w, [dict(r.headers)["error"] for r in got[w]]) for w in unexpected]
    limit = 1_048_576
    for bad in bads:
        for proc in ON_TOPIC[bad.family]:
            for rec in got.get((proc, *bad.placed), []):  # type: ignore[misc]
                headers = dict(rec.headers)
                size = len(rec.value or b"") + len(rec.key or b"") + sum(len(k) + len(v) for k, v in rec.headers)
                assert size < limit
                assert ("value_truncated" in headers) is bad.truncated, bad.kind
                if bad.truncated:
                    assert int(headers["value_truncated"]) == len(bad.value or b"")
                if bad.key is not None and len(bad.key) > 1024:
                    assert rec.key == bad.key[:1024] and int(headers["key_truncated"]) == len(bad.key)

    # Outputs and state equal a run of the same processors over the valid records only.
    for name in PROCESSORS:
        psettings = settings.stream_processors[name]
        expected, states = await _expected(kafka_bootstrap, settings, name, skip[name])
        outputs: Counter[tuple[str, bytes | None, bytes]] = Counter()
        for topic in psettings.output_topics:
            outputs.update((topic, r.key, r.value)
                           for r in await read_topic(kafka_bootstrap, topic, schema=schemas_of(settings).get(topic)))
        if outputs != expected:
            def where(v: bytes) -> tuple[int, int]:
                doc = orjson.loads(v)
                return doc.get("source_partition") or -1, doc.get("source_offset") or -1

            extra = sorted((*where(v), v[:300]) for t, _, v in (outputs - expected).elements())
            gone = sorted((*where(v), v[:300]) for t, _, v in (expected - outputs).elements())
            raise AssertionError(f"{name}: {len(extra)} unexpected outputs, {len(gone)} missing; first unexpected "
                                 f"{extra[:2]}; first missing {gone[:2]}")
        assert sum(expected.values()) > 0, name
        changelog = await _changelog_states(kafka_bootstrap, settings, name)
        assert changelog == states, f"{name}: state differs from a run without the bad records"
    assert worker.runners[0].processor.events["duplicate_trade"] == 1


@pytest.mark.parametrize("size", [600])
def test_the_synthetic_book_is_what_the_issue_measured(size: int) -> None:
    book = synthetic_book(size)
    assert len(book) == size + 2
    assert sum(len(v) for _, v in book[:size]) > 1_048_576  # more than a changelog record can hold, buffered whole
