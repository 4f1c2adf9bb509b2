"""TradesProcessor, driven by the TestDriver, on the real Binance spot trades of 2024-08-08 23:54 .. 2024-08-09
00:00:01 UTC (the shipped configuration's ``trades`` entry)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from stream_processor.engine.registry import build_processor
from stream_processor.engine.settings import Settings, load_settings
from stream_processor.engine.testing import TestDriver, TestRecord
from stream_processor.market.models import BookTicker, DepthUpdate, Trade
from stream_processor.market.processors.trades import SymbolTrades, TradesProcessor
from stream_processor.market.settings import DEFAULT_CONFIG

from . import DAY_MS, SOURCE_FIELDS, Line, by_source, feed, pipe, pipe_all, reason, shipped, state_bytes

TOPIC, OUTPUT = "raw_trades", "enriched_trades"
BTC, ETH = "binance/spot/BTCUSDT", "binance/spot/ETHUSDT"
TRADE_FIELDS = {"venue", "market", "symbol", "trade_id", "price", "size", "side", "time_ms", "event_time_ms"}
INDICATOR_FIELDS = {"sma", "ema", "vwap", "momentum", "volume", "buy_volume", "sell_volume", "trade_count"}


@pytest.fixture(scope="module")
def btc_lines() -> list[Line]:
    return feed("btcusdt")


@pytest.fixture(scope="module")
def btc_trades(btc_lines: list[Line]) -> list[Line]:
    trades = [line for line in btc_lines if type(line.record) is Trade]
    assert len(trades) > 9000
    assert [t.record.time_ms for t in trades] == sorted(t.record.time_ms for t in trades)
    # The capture ends just after a UTC midnight: the VWAP session restarts inside it.
    assert trades[0].record.time_ms // DAY_MS < trades[-1].record.time_ms // DAY_MS
    return trades


@pytest.fixture(scope="module")
def eth_trades() -> list[Line]:
    trades = feed("ethusdt", kind="trades")
    assert len(trades) > 1000
    return trades


@pytest.fixture(scope="module")
def config() -> Settings:
    return load_settings(DEFAULT_CONFIG, environ={})


def _driver(config: Settings, **kwargs: Any) -> TestDriver:
    driver = TestDriver(settings=config, processors=["trades"], **kwargs)
    assert type(driver.processors["trades"]) is TradesProcessor
    return driver


COMMIT_EVERY = 500  # records per transaction in the long runs (the shipped batch_size)


@dataclasses.dataclass
class Run:
    """One uninterrupted run: the inputs, every input record with the outputs it gave, the changelog, the final
    state and the processor's events."""

    inputs: list[Line]
    results: list[tuple[TestRecord, list[TestRecord]]]
    changelog: list[TestRecord]
    table: dict[str, Any]
    events: dict[str, int]

    def docs(self, symbol: str | None = None) -> list[dict[str, Any]]:
        return [out.json() for line, (_, outs) in zip(self.inputs, self.results, strict=True) for out in outs
                if symbol in (None, line.record.symbol)]


@pytest.fixture(scope="module")
def mixed(config: Settings, btc_trades: list[Line], eth_trades: list[Line]) -> Run:
    """BTCUSDT and ETHUSDT trades of 2024-08-08 in time order on ONE partition, uninterrupted."""
    trades = sorted(btc_trades + eth_trades, key=lambda t: t.record.time_ms)
    with _driver(config, partitions={TOPIC: 1}, commit_every=COMMIT_EVERY) as driver:
        inputs = [pipe(driver, TOPIC, line) for line in trades]
        outputs = driver.read(OUTPUT)
        assert [(o.json()["source_offset"]) for o in outputs] == [r.offset for r in inputs]  # in input order
        run = Run(trades, by_source(inputs, outputs), driver.changelog("trades"), driver.table(),
                  dict(driver.processors["trades"].events))
        assert driver.dead_letters() == []
    return run


def test_build_processor_builds_the_registered_type(config: Settings) -> None:
    proc = build_processor("trades", config)
    assert type(proc) is TradesProcessor and proc.output_topic == OUTPUT


def test_output_topic_key_and_value(config: Settings, btc_trades: list[Line]) -> None:
    with _driver(config) as driver:
        # From offset 1000 on, as after a restart: the source offset is the record's own.
        inputs = [pipe(driver, TOPIC, line, offset=1000 + i) for i, line in enumerate(btc_trades[:200])]
        outputs = driver.read(OUTPUT)
        changelog = driver.changelog("trades")
        table = driver.table()
    assert len(outputs) == 200
    sizes: list[float] = []
    prices: list[float] = []
    for i, (out, record, line) in enumerate(zip(outputs, inputs, btc_trades, strict=False)):
        trade = line.record
        assert out.topic == OUTPUT
        assert out.key == b"BTCUSDT"
        doc = out.json()
        assert set(doc) == TRADE_FIELDS | INDICATOR_FIELDS | SOURCE_FIELDS
        assert {f: doc[f] for f in TRADE_FIELDS} == dataclasses.asdict(trade)
        assert (doc["source_topic"], doc["source_partition"], doc["source_offset"]) == (TOPIC, record.partition,
                                                                                       1000 + i)
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
    # Each trade wrote its symbol's state, and only that, in its own transaction.
    assert [r.key for r in changelog] == [BTC.encode()] * 200
    assert set(table) == {BTC} and isinstance(table[BTC], SymbolTrades)


def test_non_trade_records_are_invalid(config: Settings, btc_lines: list[Line]) -> None:
    others = [next(line for line in btc_lines if type(line.record) is kind) for kind in (BookTicker, DepthUpdate)]
    with _driver(config) as driver:
        for line in others:
            pipe(driver, TOPIC, line)
        dead = driver.dead_letters()
        assert [reason(r) for r in dead] == ["invalid", "invalid"]
        for record, line in zip(dead, others, strict=True):
            assert type(line.record).__name__ in record.header("error")
            assert (record.value, record.key) == (line.raw, b"BTCUSDT")
        assert driver.table() == {} and driver.changelog("trades") == [] and driver.read(OUTPUT) == []


def test_trade_on_an_earlier_utc_day_is_invalid_and_changes_nothing(
    config: Settings, btc_trades: list[Line]
) -> None:
    trades = btc_trades[-500:]  # the last 500 trades: they cross the midnight
    last_day = trades[-1].record.time_ms // DAY_MS
    assert trades[0].record.time_ms // DAY_MS < last_day
    with _driver(config) as driver:
        outputs = pipe_all(driver, TOPIC, trades, OUTPUT)
        late = next(t for t in trades if t.record.time_ms // DAY_MS < last_day)
        late = late.replace(trade_id=trades[-1].record.trade_id + 1)
        before, written = state_bytes(driver.table()[BTC]), len(driver.changelog("trades"))
        pipe(driver, TOPIC, late)
        [dead] = driver.dead_letters()
        assert reason(dead) == "invalid" and str(late.record.trade_id) in dead.header("error")
        assert state_bytes(driver.table()[BTC]) == before
        assert len(driver.changelog("trades")) == written and driver.read(OUTPUT) == []
        # The next good trade continues as if the rejected one never came.
        nxt = trades[-1].replace(trade_id=late.record.trade_id + 1)
        pipe(driver, TOPIC, nxt)
        [doc] = driver.values(OUTPUT)
    assert doc["trade_count"] == outputs[-1][1][0]["trade_count"] + 1 == len(trades) + 1


def test_vwap_restarts_at_utc_midnight(mixed: Run) -> None:
    trades = [line.record for line in mixed.inputs if line.record.symbol == "BTCUSDT"]
    docs = mixed.docs("BTCUSDT")
    first = next(i for i, t in enumerate(trades) if t.time_ms // DAY_MS != trades[0].time_ms // DAY_MS)
    assert docs[first]["vwap"] == trades[first].price
    assert docs[first - 1]["vwap"] != trades[first - 1].price


@pytest.mark.parametrize("commit_every", [7, 997])
def test_restart_from_changelog_gives_byte_identical_outputs(config: Settings, mixed: Run, commit_every: int) -> None:
    trades = mixed.inputs  # two symbols in one partition
    first_day = trades[0].record.time_ms // DAY_MS
    midnight = next(i for i, t in enumerate(trades) if t.record.time_ms // DAY_MS != first_day)
    crashes = {len(trades) // 3, 2 * len(trades) // 3, midnight + 5}  # the last: in the new VWAP session
    with _driver(config, partitions={TOPIC: 1}, commit_every=commit_every) as driver:
        for i, line in enumerate(trades):
            if i in crashes:
                # Crash: the open transaction aborts; the next owner rebuilds the state from the changelog, reads
                # again from the last committed offset and goes on.
                driver.restart()
            pipe(driver, TOPIC, line)
        outputs = driver.read(OUTPUT)
        assert driver.dead_letters() == []
        before = driver.state("trades")[0]
        driver.restart()
        restored = driver.state("trades")[0]
    assert restored.keys() == before.keys() == {BTC, ETH}
    assert all(restored[k] is not before[k] and state_bytes(restored[k]) == state_bytes(before[k]) for k in before)
    uninterrupted = [out for _, outs in mixed.results for out in outs]
    assert len(outputs) == len(uninterrupted) == len(trades)
    mismatched = [i for i, (a, b) in enumerate(zip(outputs, uninterrupted, strict=True))
                  if (a.topic, a.partition, a.key, a.value) != (b.topic, b.partition, b.key, b.value)]
    assert mismatched == []


def test_buy_plus_sell_volume_is_volume_once_warm(mixed: Run) -> None:
    btc_trades = [line.record for line in mixed.inputs if line.record.symbol == "BTCUSDT"]
    docs = mixed.docs("BTCUSDT")
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


def test_trade_count_increments_per_symbol(mixed: Run) -> None:
    assert {line.record.symbol for line in mixed.inputs} == {"BTCUSDT", "ETHUSDT"}
    seen: dict[str, int] = {}
    for line, (_, outs) in zip(mixed.inputs, mixed.results, strict=True):
        [out] = outs  # one output per trade
        seen[line.record.symbol] = seen.get(line.record.symbol, 0) + 1
        doc = out.json()
        assert out.key == line.record.symbol.encode() and doc["symbol"] == line.record.symbol
        assert doc["trade_count"] == seen[line.record.symbol]
    expected = {s: sum(1 for line in mixed.inputs if line.record.symbol == s) for s in ("BTCUSDT", "ETHUSDT")}
    assert seen == expected and min(seen.values()) > 6000
    assert {k.rpartition("/")[2]: v.to_state()["trades"] for k, v in mixed.table.items()} == seen
    assert {r.key for r in mixed.changelog} == {BTC.encode(), ETH.encode()}
    assert mixed.events.get("duplicate_trade", 0) == 0


def test_state_is_kept_per_venue_market_and_symbol(config: Settings, btc_trades: list[Line]) -> None:
    spot = btc_trades[:50]
    usdm = [t.replace(market="usdm", trade_id=t.record.trade_id + 10**9) for t in btc_trades[:30]]
    with _driver(config) as driver:
        docs = [doc for _, out in pipe_all(driver, TOPIC, spot + usdm, OUTPUT) for doc in out]
        assert set(driver.table()) == {BTC, "binance/usdm/BTCUSDT"}
    assert len(docs) == 80
    assert docs[-1]["trade_count"] == 30 and docs[-1]["market"] == "usdm" and docs[49]["trade_count"] == 50


def test_re_sent_trades_are_dropped_and_a_price_jump_is_refused(config: Settings, btc_trades: list[Line]) -> None:
    with _driver(config) as driver:
        pipe_all(driver, TOPIC, btc_trades[:500], OUTPUT)
        proc = driver.processors["trades"]
        before, written = state_bytes(driver.table()[BTC]), len(driver.changelog("trades"))
        pipe(driver, TOPIC, btc_trades[123])  # re-sent: no output
        assert driver.read(OUTPUT) == [] and driver.dead_letters() == []
        assert proc.events["duplicate_trade"] == 1
        jump = btc_trades[500].replace(price=btc_trades[499].record.price * 1.51)
        pipe(driver, TOPIC, jump)
        [dead] = driver.dead_letters()
        assert reason(dead) == "invalid" and "max_price_jump 0.5" in dead.header("error")
        assert driver.read(OUTPUT) == []
        assert state_bytes(driver.table()[BTC]) == before and len(driver.changelog("trades")) == written
        pipe(driver, TOPIC, btc_trades[500])
        [doc] = driver.values(OUTPUT)
    assert doc["trade_count"] == 501


def test_window_lengths_come_from_the_settings(btc_trades: list[Line]) -> None:
    with TestDriver(settings=shipped("trades", sma_length=3, volume_window=5)) as driver:
        docs = [doc for _, out in pipe_all(driver, TOPIC, btc_trades[:10], OUTPUT) for doc in out]
    assert [d["sma"] is None for d in docs[:4]] == [True, True, False, False]
    assert [d["volume"] is None for d in docs[:6]] == [True] * 4 + [False] * 2
