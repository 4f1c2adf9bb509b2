"""TradesProcessor on the real Binance spot trades of 2024-08-08 23:54 .. 2024-08-09 00:00:01 UTC."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_processor.engine.exceptions import InvalidRecordError, RecordError
from stream_processor.market.models import BookTicker, DepthUpdate, MarketRecord, Trade
from stream_processor.market.processors import build_processor
from stream_processor.market.processors.trades import SymbolTrades, TradesProcessor
from stream_processor.market.serde.decode import decode
from stream_processor.market.serde.feed import iter_feed
from stream_processor.engine.settings import DEFAULT_CONFIG, ProcessorSettings, load_settings
from stream_processor.engine.state import ChangelogStore

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_DATA = Path(os.environ.get("SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SPOT = SHARED_DATA / "feeds" / "binance-hftbacktest" / "spot"
DAY_MS = 86_400_000
TOPIC, PARTITION = "raw_trades", 3

BTC, ETH = "binance/spot/BTCUSDT", "binance/spot/ETHUSDT"
TRADE_FIELDS = {"venue", "market", "symbol", "trade_id", "price", "size", "side", "time_ms", "event_time_ms"}
INDICATOR_FIELDS = {"sma", "ema", "vwap", "momentum", "volume", "buy_volume", "sell_volume", "trade_count"}
SOURCE_FIELDS = {"source_topic", "source_partition", "source_offset"}


def _records(name: str) -> list[MarketRecord]:
    path = SPOT / name
    if not path.is_file():
        pytest.fail(f"shared market data missing: {path}")
    out = []
    for _, raw in iter_feed(path):
        try:
            out.append(decode(raw))
        except InvalidRecordError:
            continue  # the REST depth snapshot line has no symbol without a key
    return out


@pytest.fixture(scope="module")
def btc_records() -> list[MarketRecord]:
    return _records("btcusdt_20240808.gz")


@pytest.fixture(scope="module")
def btc_trades(btc_records: list[MarketRecord]) -> list[Trade]:
    trades = [r for r in btc_records if type(r) is Trade]
    assert len(trades) > 9000
    assert [t.time_ms for t in trades] == sorted(t.time_ms for t in trades)
    # The capture ends just after a UTC midnight: the VWAP session restarts inside it.
    assert trades[0].time_ms // DAY_MS < trades[-1].time_ms // DAY_MS
    return trades


@pytest.fixture(scope="module")
def eth_trades() -> list[Trade]:
    trades = [r for r in _records("ethusdt_20240808.gz") if type(r) is Trade]
    assert len(trades) > 1000
    return trades


@pytest.fixture(scope="module")
def psettings() -> ProcessorSettings:
    return load_settings(DEFAULT_CONFIG, environ={}).stream_processors["trades"]


@pytest.fixture
def processor(psettings: ProcessorSettings) -> TradesProcessor:
    proc = build_processor("trades", psettings)
    assert type(proc) is TradesProcessor
    return proc


def _run(proc: TradesProcessor, store: ChangelogStore, trades: list[Trade], first_offset: int = 0) -> list[Any]:
    out = []
    for i, trade in enumerate(trades):
        out.extend(proc.process(trade, store, TOPIC, PARTITION, first_offset + i))
    return out


def test_output_topic_key_and_value(processor: TradesProcessor, btc_trades: list[Trade]) -> None:
    store = processor.new_store()
    outputs = _run(processor, store, btc_trades[:200], first_offset=1000)
    assert len(outputs) == 200
    sizes: list[float] = []
    prices: list[float] = []
    for i, ((topic, key, value), trade) in enumerate(zip(outputs, btc_trades, strict=False)):
        assert topic == "enriched_trades"
        assert key == b"BTCUSDT"
        doc = orjson.loads(value)
        assert set(doc) == TRADE_FIELDS | INDICATOR_FIELDS | SOURCE_FIELDS
        assert {f: doc[f] for f in TRADE_FIELDS} == dataclasses.asdict(trade)
        assert (doc["source_topic"], doc["source_partition"], doc["source_offset"]) == (TOPIC, PARTITION, 1000 + i)
        assert doc["trade_count"] == i + 1
        prices.append(trade.price)
        sizes.append(trade.size)
        # Warm-up: None until the window is full, a number from then on.
        assert (doc["sma"] is None) == (i < 19)
        assert (doc["momentum"] is None) == (i < 20)
        assert (doc["volume"] is None) == (i < 99)
        assert doc["vwap"] is not None
        if i == 0:
            assert doc["vwap"] == trade.price
        if i >= 19:
            assert doc["sma"] == pytest.approx(math.fsum(prices[-20:]) / 20, rel=1e-12)
        if i >= 20:
            assert doc["momentum"] == pytest.approx(prices[-1] / prices[-21] - 1, rel=1e-9, abs=1e-15)
        if i >= 99:
            assert doc["volume"] == pytest.approx(math.fsum(sizes[-100:]), rel=1e-12)
    assert store.dirty == {BTC}
    assert isinstance(store.get(BTC), SymbolTrades)


def test_non_trade_records_are_invalid(processor: TradesProcessor, btc_records: list[MarketRecord]) -> None:
    others = [next(r for r in btc_records if type(r) is kind) for kind in (BookTicker, DepthUpdate)]
    store = processor.new_store()
    for record in others:
        with pytest.raises(InvalidRecordError) as info:
            processor.process(record, store, TOPIC, PARTITION, 0)
        assert type(record).__name__ in str(info.value)
        assert isinstance(info.value, RecordError) and info.value.reason == "invalid"
    assert store.data == {} and store.dirty == set()


def test_trade_on_an_earlier_utc_day_is_invalid_and_changes_nothing(
    processor: TradesProcessor, btc_trades: list[Trade]
) -> None:
    store = processor.new_store()
    outputs = _run(processor, store, btc_trades)
    last_day = btc_trades[-1].time_ms // DAY_MS
    late = next(t for t in btc_trades if t.time_ms // DAY_MS < last_day)
    late = dataclasses.replace(late, trade_id=btc_trades[-1].trade_id + 1)
    list(store.changelog_records())  # checkpoint: nothing dirty
    before = orjson.dumps(store.get(BTC).to_state())
    with pytest.raises(InvalidRecordError) as info:
        processor.process(late, store, TOPIC, PARTITION, len(btc_trades))
    assert str(late.trade_id) in str(info.value)
    assert orjson.dumps(store.get(BTC).to_state()) == before
    assert store.dirty == set()
    # The next good trade continues as if the rejected one never came.
    nxt = dataclasses.replace(btc_trades[-1], trade_id=late.trade_id + 1)
    doc = orjson.loads(processor.process(nxt, store, TOPIC, PARTITION, len(btc_trades) + 1)[0][2])
    assert doc["trade_count"] == orjson.loads(outputs[-1][2])["trade_count"] + 1 == len(btc_trades) + 1


def test_vwap_restarts_at_utc_midnight(processor: TradesProcessor, btc_trades: list[Trade]) -> None:
    store = processor.new_store()
    docs = [orjson.loads(v) for _, _, v in _run(processor, store, btc_trades)]
    first = next(i for i, t in enumerate(btc_trades) if t.time_ms // DAY_MS != btc_trades[0].time_ms // DAY_MS)
    assert docs[first]["vwap"] == btc_trades[first].price
    assert docs[first - 1]["vwap"] != btc_trades[first - 1].price


@pytest.mark.parametrize("checkpoint_every", [7, 997])
def test_restart_from_changelog_gives_byte_identical_outputs(
    processor: TradesProcessor, btc_trades: list[Trade], eth_trades: list[Trade], checkpoint_every: int
) -> None:
    trades = sorted(btc_trades + eth_trades, key=lambda t: t.time_ms)  # two symbols in one partition
    uninterrupted = _run(processor, processor.new_store(), trades)

    half = len(trades) // 2
    store = processor.new_store()
    changelog: list[tuple[bytes, bytes]] = []  # the changelog partition, as written at each checkpoint
    outputs: list[Any] = []
    for start in range(0, half, checkpoint_every):
        outputs.extend(_run(processor, store, trades[start:min(start + checkpoint_every, half)], start))
        changelog.extend(store.changelog_records())
    # Crash; the next owner rebuilds the state from the changelog (as bytes, like Kafka) and goes on.
    restored = processor.new_store()
    for key, value in changelog:
        restored.load(bytes(key), bytes(value))
    assert restored.data.keys() == store.data.keys() == {BTC, ETH}
    assert all(restored.get(k) is not store.get(k) for k in store.data)
    outputs.extend(_run(processor, restored, trades[half:], half))

    assert len(outputs) == len(uninterrupted) == len(trades)
    mismatched = [i for i, (a, b) in enumerate(zip(outputs, uninterrupted, strict=True)) if a != b]
    assert mismatched == []


def test_buy_plus_sell_volume_is_volume_once_warm(processor: TradesProcessor, btc_trades: list[Trade]) -> None:
    docs = [orjson.loads(v) for _, _, v in _run(processor, processor.new_store(), btc_trades)]
    warm = [d for d in docs if d["volume"] is not None]
    assert len(warm) == len(docs) - 99
    for d in docs[:99]:
        assert d["volume"] is None and d["buy_volume"] is None and d["sell_volume"] is None
    for d in warm:
        assert d["buy_volume"] >= 0.0 and d["sell_volume"] >= 0.0
        assert math.isclose(d["buy_volume"] + d["sell_volume"], d["volume"], rel_tol=1e-9)
    # Both sides actually trade in this window: neither sum is identically zero.
    assert any(d["buy_volume"] > 0 for d in warm) and any(d["sell_volume"] > 0 for d in warm)
    # The aggressor split follows the trade's side.
    sides = [t.side for t in btc_trades]
    sizes = [t.size for t in btc_trades]
    i = len(docs) - 1
    window = range(i - 99, i + 1)
    assert docs[i]["buy_volume"] == pytest.approx(math.fsum(sizes[j] for j in window if sides[j] == "buy"), rel=1e-12)
    assert docs[i]["sell_volume"] == pytest.approx(
        math.fsum(sizes[j] for j in window if sides[j] == "sell"), rel=1e-12
    )


def test_trade_count_increments_per_symbol(
    processor: TradesProcessor, btc_trades: list[Trade], eth_trades: list[Trade]
) -> None:
    trades = sorted(btc_trades[:3000] + eth_trades[:3000], key=lambda t: t.time_ms)
    assert {t.symbol for t in trades} == {"BTCUSDT", "ETHUSDT"}
    store = processor.new_store()
    seen: dict[str, int] = {}
    for offset, trade in enumerate(trades):
        [(topic, key, value)] = processor.process(trade, store, TOPIC, PARTITION, offset)
        seen[trade.symbol] = seen.get(trade.symbol, 0) + 1
        doc = orjson.loads(value)
        assert key == trade.symbol.encode() and doc["symbol"] == trade.symbol
        assert doc["trade_count"] == seen[trade.symbol]
    assert seen == {"BTCUSDT": 3000, "ETHUSDT": 3000}
    assert {k.rpartition("/")[2]: store.get(k).to_state()["trades"] for k in store.data} == seen
    assert store.dirty == {BTC, ETH}


def test_state_is_kept_per_venue_market_and_symbol(processor: TradesProcessor, btc_trades: list[Trade]) -> None:
    store = processor.new_store()
    spot = btc_trades[:50]
    usdm = [dataclasses.replace(t, market="usdm", trade_id=t.trade_id + 10**9) for t in btc_trades[:30]]
    docs = [orjson.loads(v) for t in spot + usdm for _, _, v in processor.process(t, store, TOPIC, PARTITION, 0)]
    assert set(store.data) == {BTC, "binance/usdm/BTCUSDT"}
    assert docs[-1]["trade_count"] == 30 and docs[-1]["market"] == "usdm" and docs[49]["trade_count"] == 50


def test_re_sent_trades_are_dropped_and_a_price_jump_is_refused(
    processor: TradesProcessor, btc_trades: list[Trade]
) -> None:
    store = processor.new_store()
    _run(processor, store, btc_trades[:500])
    list(store.changelog_records())
    before = orjson.dumps(store.get(BTC).to_state())
    assert processor.process(btc_trades[123], store, TOPIC, PARTITION, 500) == []  # re-sent: no output
    assert processor.events["duplicate_trade"] == 1
    jump = dataclasses.replace(btc_trades[500], price=btc_trades[499].price * 1.51)
    with pytest.raises(InvalidRecordError, match="max_price_jump 0.5"):
        processor.process(jump, store, TOPIC, PARTITION, 501)
    assert orjson.dumps(store.get(BTC).to_state()) == before and store.dirty == set()
    doc = orjson.loads(processor.process(btc_trades[500], store, TOPIC, PARTITION, 502)[0][2])
    assert doc["trade_count"] == 501


def test_window_lengths_come_from_the_settings(psettings: ProcessorSettings, btc_trades: list[Trade]) -> None:
    short = psettings.model_copy(
        update={"params": psettings.params.model_copy(update={"sma_length": 3, "volume_window": 5})}
    )
    proc = TradesProcessor("trades", short)
    docs = [orjson.loads(v) for _, _, v in _run(proc, proc.new_store(), btc_trades[:10])]
    assert [d["sma"] is None for d in docs[:4]] == [True, True, False, False]
    assert [d["volume"] is None for d in docs[:6]] == [True] * 4 + [False] * 2
