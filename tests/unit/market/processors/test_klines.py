"""KlinesProcessor, driven by the TestDriver: klines from real trades, indicators, SMC signals and alerts on real
candles."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from typing import Any

import pytest

from stream_processor.engine.exceptions import ConfigError
from stream_processor.engine.registry import build_processor
from stream_processor.engine.settings import Settings
from stream_processor.engine.testing import TestDriver
from stream_processor.market.klines.builder import KlineBuilder
from stream_processor.market.klines.indicators import KLINE_INDICATOR_FIELDS, KlineIndicators
from stream_processor.market.models import BookTicker, Kline
from stream_processor.market.processors.klines import KlinesProcessor
from stream_processor.market.smc.detector import SmcDetector

from . import SHARED_DATA, Line, feed, need, pipe, raw_of, reason, settings, state_bytes

EURUSD = SHARED_DATA / "smc_reference" / "smart-money-concepts" / "EURUSD" / "EURUSD_15M.csv.gz"
OUTPUTS = ["enriched_klines", "smc_signals", "alerts"]
TRADES, KLINES = "raw_trades", "raw_klines"
BTC, FX = "binance/spot/BTCUSDT", "fx/spot/EURUSD"


@pytest.fixture(scope="module")
def btc_trades() -> list[Line]:
    return feed("btcusdt", ("20240808", "20240809"), "trades")


@pytest.fixture(scope="module")
def eurusd() -> list[Line]:
    out = []
    with gzip.open(need(EURUSD), "rt") as f:
        header = f.readline().strip().split(",")
        for line in f:
            row = dict(zip(header, line.strip().split(","), strict=True))
            t = int(datetime.strptime(row["Date"], "%Y.%m.%d %H:%M:%S").replace(tzinfo=UTC).timestamp() * 1000)
            kline = Kline("fx", "EURUSD", "15m", t, t + 899_999, float(row["Open"]), float(row["High"]),
                          float(row["Low"]), float(row["Close"]), float(row["Tickvol"]), True)
            out.append(Line(t + 900_000, raw_of(kline), kline))  # published when it closes
    return out


def _settings(source: str = "trades", outputs: list[str] | None = None, **params: Any) -> Settings:
    return settings(klines={"type": "klines", "input_topics": [TRADES if source == "trades" else KLINES],
                            "output_topics": outputs or OUTPUTS, "params": {"source": source, **params}})


def _driver(source: str = "trades", commit_every: int = 1, **params: Any) -> TestDriver:
    driver = TestDriver(settings=_settings(source, **params), commit_every=commit_every)
    assert isinstance(driver.processors["klines"], KlinesProcessor)
    return driver


def _topic(source: str) -> str:
    return TRADES if source == "trades" else KLINES


def _run(driver: TestDriver, lines: list[Line], source: str = "trades") -> dict[str, list[dict]]:
    for line in lines:
        pipe(driver, _topic(source), line)
    out = {}
    for topic in OUTPUTS:
        records = driver.read(topic)
        assert all(r.key == lines[0].key for r in records)
        out[topic] = [r.json() for r in records]
    return out


def test_klines_built_from_real_trades_carry_their_indicators(btc_trades: list[Line]) -> None:
    with _driver(commit_every=500, intervals=["1m", "5m"], smc={"enabled": False}) as driver:
        out = _run(driver, btc_trades)
        assert driver.dead_letters() == []
    klines = out["enriched_klines"]
    by_interval: dict[str, list[dict]] = {"1m": [], "5m": []}
    for doc in klines:
        by_interval[doc["interval"]].append(doc)
    # Reference: each interval's own builder and indicators fed the same trades.
    for name, ms in (("1m", 60_000), ("5m", 300_000)):
        builder, indicators = KlineBuilder(ms), KlineIndicators()
        expected = []
        for line in btc_trades:
            for kline in builder.add(line.record):
                expected.append({**{f: getattr(kline, f) for f in ("open", "high", "low", "close", "volume")},
                                 "open_time_ms": kline.open_time_ms, **indicators.update(kline)})
        got = [{k: doc[k] for k in expected[0]} for doc in by_interval[name]]
        assert got == expected and len(got) >= (10 if name == "1m" else 2)
    assert set(KLINE_INDICATOR_FIELDS) <= set(klines[0])
    assert out["smc_signals"] == [] and out["alerts"] == []


def test_a_trade_for_a_closed_window_is_refused_as_late(btc_trades: list[Line]) -> None:
    with _driver(commit_every=500, intervals=["1m"]) as driver:
        _run(driver, btc_trades[:3000])
        before, written = state_bytes(driver.table()[BTC]), len(driver.changelog("klines"))
        late = btc_trades[0].replace(trade_id=1)
        pipe(driver, TRADES, late)
        [dead] = driver.dead_letters()
        assert reason(dead) == "late" and dead.value == late.raw
        assert "closed window" in dead.header("error")
        assert state_bytes(driver.table()[BTC]) == before and len(driver.changelog("klines")) == written


def test_a_re_sent_trade_is_dropped_and_counted(btc_trades: list[Line]) -> None:
    with _driver(commit_every=500, intervals=["1m"]) as driver:
        _run(driver, btc_trades[:3000])
        before, written = state_bytes(driver.table()[BTC]), len(driver.changelog("klines"))
        pipe(driver, TRADES, btc_trades[2999])
        assert all(driver.read(topic) == [] for topic in OUTPUTS) and driver.dead_letters() == []
        assert driver.processors["klines"].events["duplicate_trade"] == 1
        assert state_bytes(driver.table()[BTC]) == before and len(driver.changelog("klines")) == written
    with _driver(commit_every=500, intervals=["1m"], dedup_window=0) as off:
        _run(off, btc_trades[:3000])
        before = state_bytes(off.table()[BTC])
        pipe(off, TRADES, btc_trades[2999])  # counted twice: nothing remembers the id
        assert off.processors["klines"].events["duplicate_trade"] == 0
        assert off.dead_letters() == [] and state_bytes(off.table()[BTC]) != before


def test_a_price_outside_the_band_is_refused_and_changes_nothing(btc_trades: list[Line]) -> None:
    last = btc_trades[99].record.price
    bad = [btc_trades[100].replace(price=price) for price in (last * 1.6, last * 0.4, 1e12)]
    with _driver(intervals=["1m"]) as driver:
        _run(driver, btc_trades[:100])
        before, written = state_bytes(driver.table()[BTC]), len(driver.changelog("klines"))
        for line in bad:
            pipe(driver, TRADES, line)
        dead = driver.dead_letters()
        assert [reason(r) for r in dead] == ["invalid"] * 3
        assert all("max_price_jump" in r.header("error") for r in dead)
        assert state_bytes(driver.table()[BTC]) == before and len(driver.changelog("klines")) == written
    with _driver(intervals=["1m"], max_price_jump=None) as unbounded:
        _run(unbounded, btc_trades[:100])
        pipe(unbounded, TRADES, bad[2])
        assert unbounded.dead_letters() == []
        assert unbounded.table()[BTC].last_price == 1e12


def test_the_source_decides_what_is_accepted(btc_trades: list[Line], eurusd: list[Line]) -> None:
    with _driver() as trades:
        pipe(trades, TRADES, eurusd[0])
        [dead] = trades.dead_letters()
        assert reason(dead) == "invalid" and "takes trades" in dead.header("error")
    with _driver(source="klines") as klines:
        pipe(klines, KLINES, btc_trades[0])
        [dead] = klines.dead_letters()
        assert reason(dead) == "invalid" and "takes klines" in dead.header("error")
        assert klines.table() == {}


def test_a_venue_kline_not_after_the_last_is_refused_and_changes_nothing(eurusd: list[Line]) -> None:
    with _driver(source="klines") as driver:
        _run(driver, eurusd[:50], "klines")
        before, written = state_bytes(driver.table()[FX]), len(driver.changelog("klines"))
        jump = eurusd[50].replace(close=eurusd[49].record.close * 3, high=eurusd[49].record.close * 3)
        for bad in (eurusd[10], jump):
            pipe(driver, KLINES, bad)
        assert [reason(r) for r in driver.dead_letters()] == ["invalid", "invalid"]
        assert all(driver.read(topic) == [] for topic in OUTPUTS)
        assert state_bytes(driver.table()[FX]) == before and len(driver.changelog("klines")) == written


def test_venue_klines_give_the_smc_detectors_events_and_the_alerts(eurusd: list[Line]) -> None:
    candles = eurusd[:3000]
    rules = [{"name": "sweep", "event": "liquidity_swept"},
             {"name": "bull bos", "event": "bos", "direction": 1}]
    with _driver(source="klines", commit_every=500, alerts=rules) as driver:
        out = _run(driver, candles, "klines")
    assert len(out["enriched_klines"]) == len(candles)
    detector = SmcDetector()
    expected = [{"symbol": "EURUSD", "interval": "15m", **event}
                for c in candles for event in detector.update(c.record)]
    assert out["smc_signals"] == expected
    kinds = {e["type"] for e in expected}
    assert {"swing_high", "swing_low", "bos", "fvg"} <= kinds
    fired = [(a["rule"], a["event"]["type"]) for a in out["alerts"]]
    sweeps = sum(1 for e in expected if e["type"] == "liquidity_swept")
    bull_bos = sum(1 for e in expected if e["type"] == "bos" and e["direction"] == 1)
    assert fired.count(("sweep", "liquidity_swept")) == sweeps
    assert fired.count(("bull bos", "bos")) == bull_bos > 0


def test_state_restored_from_the_changelog_continues_identically(eurusd: list[Line]) -> None:
    alerts = [{"name": "sweep", "event": "liquidity_swept"}]
    outputs = []
    for crash in (False, True):
        with _driver(source="klines", commit_every=7, alerts=alerts) as driver:
            for i, line in enumerate(eurusd[:2500]):
                if crash and i == 1500:  # 1500 = 7 * 214 + 2: the open transaction is aborted and read again
                    driver.restart()
                pipe(driver, KLINES, line)
            outputs.append({t: [(r.key, r.value) for r in driver.read(t)] for t in OUTPUTS})
            assert driver.dead_letters() == []
    uninterrupted, restarted = outputs
    assert restarted == uninterrupted
    assert len(uninterrupted["enriched_klines"]) == 2500 and uninterrupted["smc_signals"]


def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="output_topics"):
        build_processor("klines", _settings(outputs=["enriched_klines"]))
    with pytest.raises(ConfigError) as info:
        _settings(intervals=["7m"])
    assert info.value.key == "stream_processors.klines.params.intervals" and "7m" in info.value.reason
    with _driver() as driver:
        ticker = BookTicker("binance", "BTCUSDT", 1, 1.0, 1.0, 2.0, 1.0)
        driver.pipe(TRADES, raw_of(ticker), key=b"BTCUSDT")
        [dead] = driver.dead_letters()
        assert reason(dead) == "invalid" and "BookTicker" in dead.header("error")
