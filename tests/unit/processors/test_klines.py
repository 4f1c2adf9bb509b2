"""KlinesProcessor: klines from real trades, indicators, SMC signals and alerts on real candles."""

from __future__ import annotations

import dataclasses
import gzip
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_processor.engine.exceptions import InvalidRecordError
from stream_processor.market.klines.builder import KlineBuilder, LateTradeError
from stream_processor.market.klines.indicators import KLINE_INDICATOR_FIELDS, KlineIndicators
from stream_processor.market.models import BookTicker, Kline, Trade
from stream_processor.market.processors import build_processor
from stream_processor.market.processors.klines import KlinesProcessor
from stream_processor.market.serde.decode import decode
from stream_processor.market.serde.feed import iter_feed, stream_kind
from stream_processor.engine.settings import KlinesProcessorSettings
from stream_processor.market.smc.detector import SmcDetector
from stream_processor.engine.state import ChangelogStore

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_DATA = Path(os.environ.get("SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SPOT = SHARED_DATA / "feeds" / "binance-hftbacktest" / "spot"
EURUSD = SHARED_DATA / "smc_reference" / "smart-money-concepts" / "EURUSD" / "EURUSD_15M.csv.gz"
OUTPUTS = ["enriched_klines", "smc_signals", "alerts"]


def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.fail(f"shared market data missing: {path}")
    return path


@pytest.fixture(scope="module")
def btc_trades() -> list[Trade]:
    out = []
    for day in ("20240808", "20240809"):
        for _, raw in iter_feed(_need(SPOT / f"btcusdt_{day}.gz")):
            if stream_kind(raw) == "trades":
                trade = decode(raw)
                assert isinstance(trade, Trade)
                out.append(trade)
    return out


@pytest.fixture(scope="module")
def eurusd() -> list[Kline]:
    out = []
    with gzip.open(_need(EURUSD), "rt") as f:
        header = f.readline().strip().split(",")
        for line in f:
            row = dict(zip(header, line.strip().split(","), strict=True))
            t = int(datetime.strptime(row["Date"], "%Y.%m.%d %H:%M:%S").replace(tzinfo=UTC).timestamp() * 1000)
            out.append(Kline("fx", "EURUSD", "15m", t, t + 899_999, float(row["Open"]), float(row["High"]),
                             float(row["Low"]), float(row["Close"]), float(row["Tickvol"]), True))
    return out


def _processor(**params: Any) -> KlinesProcessor:
    settings = KlinesProcessorSettings(type="klines", consumer_group="g", input_topics=["raw"],
                                       output_topics=OUTPUTS, params=params)
    proc = build_processor("klines", settings)
    assert isinstance(proc, KlinesProcessor)
    return proc


def _run(proc: KlinesProcessor, records: list[Any], store: ChangelogStore | None = None) -> dict[str, list[dict]]:
    store = store or proc.new_store()
    out: dict[str, list[dict]] = {t: [] for t in OUTPUTS}
    for offset, record in enumerate(records):
        for topic, key, value in proc.process(record, store, "raw", 0, offset):
            assert key == record.symbol.encode()
            out[topic].append(orjson.loads(value))
    return out


def test_klines_built_from_real_trades_carry_their_indicators(btc_trades: list[Trade]) -> None:
    out = _run(_processor(intervals=["1m", "5m"], smc={"enabled": False}), btc_trades)
    klines = out["enriched_klines"]
    by_interval: dict[str, list[dict]] = {"1m": [], "5m": []}
    for doc in klines:
        by_interval[doc["interval"]].append(doc)
    # Reference: each interval's own builder and indicators fed the same trades.
    for name, ms in (("1m", 60_000), ("5m", 300_000)):
        builder, indicators = KlineBuilder(ms), KlineIndicators()
        expected = []
        for trade in btc_trades:
            for kline in builder.add(trade):
                expected.append({**{f: getattr(kline, f) for f in ("open", "high", "low", "close", "volume")},
                                 "open_time_ms": kline.open_time_ms, **indicators.update(kline)})
        got = [{k: doc[k] for k in expected[0]} for doc in by_interval[name]]
        assert got == expected and len(got) >= (10 if name == "1m" else 2)
    assert set(KLINE_INDICATOR_FIELDS) <= set(klines[0])
    assert out["smc_signals"] == [] and out["alerts"] == []


def test_a_trade_for_a_closed_window_is_refused_as_late(btc_trades: list[Trade]) -> None:
    proc = _processor(intervals=["1m"])
    store = proc.new_store()
    _run(proc, btc_trades[:3000], store)
    before = store.data["binance/spot/BTCUSDT"].to_state()
    with pytest.raises(LateTradeError):
        proc.process(dataclasses.replace(btc_trades[0], trade_id=1), store, "raw", 0, 0)
    assert store.data["binance/spot/BTCUSDT"].to_state() == before


def test_a_re_sent_trade_is_dropped_and_counted(btc_trades: list[Trade]) -> None:
    proc = _processor(intervals=["1m"])
    store = proc.new_store()
    _run(proc, btc_trades[:3000], store)
    before = store.data["binance/spot/BTCUSDT"].to_state()
    assert proc.process(btc_trades[2999], store, "raw", 0, 3000) == []
    assert proc.events["duplicate_trade"] == 1
    assert store.data["binance/spot/BTCUSDT"].to_state() == before
    off = _processor(intervals=["1m"], dedup_window=0)
    store = off.new_store()
    _run(off, btc_trades[:3000], store)
    off.process(btc_trades[2999], store, "raw", 0, 3000)  # counted twice: nothing remembers the id
    assert off.events["duplicate_trade"] == 0


def test_a_price_outside_the_band_is_refused_and_changes_nothing(btc_trades: list[Trade]) -> None:
    proc = _processor(intervals=["1m"])
    store = proc.new_store()
    _run(proc, btc_trades[:100], store)
    before = store.data["binance/spot/BTCUSDT"].to_state()
    for price in (btc_trades[99].price * 1.6, btc_trades[99].price * 0.4, 1e12):
        with pytest.raises(InvalidRecordError, match="max_price_jump"):
            proc.process(dataclasses.replace(btc_trades[100], price=price), store, "raw", 0, 100)
    assert store.data["binance/spot/BTCUSDT"].to_state() == before
    assert _processor(intervals=["1m"], max_price_jump=None).process(
        dataclasses.replace(btc_trades[100], price=1e12), store, "raw", 0, 100) is not None


def test_the_source_decides_what_is_accepted(btc_trades: list[Trade], eurusd: list[Kline]) -> None:
    trades = _processor()
    with pytest.raises(InvalidRecordError, match="takes trades"):
        trades.process(eurusd[0], trades.new_store(), "raw", 0, 0)
    klines = _processor(source="klines")
    with pytest.raises(InvalidRecordError, match="takes klines"):
        klines.process(btc_trades[0], klines.new_store(), "raw", 0, 0)


def test_a_venue_kline_not_after_the_last_is_refused_and_changes_nothing(eurusd: list[Kline]) -> None:
    proc = _processor(source="klines")
    store = proc.new_store()
    _run(proc, eurusd[:50], store)
    before = store.data["fx/spot/EURUSD"].to_state()
    for bad in (eurusd[10], dataclasses.replace(eurusd[50], close=eurusd[49].close * 3, high=eurusd[49].close * 3)):
        with pytest.raises(InvalidRecordError):
            proc.process(bad, store, "raw", 0, 99)
    assert store.data["fx/spot/EURUSD"].to_state() == before


def test_venue_klines_give_the_smc_detectors_events_and_the_alerts(eurusd: list[Kline]) -> None:
    candles = eurusd[:3000]
    rules = [{"name": "sweep", "event": "liquidity_swept"},
             {"name": "bull bos", "event": "bos", "direction": 1}]
    out = _run(_processor(source="klines", alerts=rules), candles)
    assert len(out["enriched_klines"]) == len(candles)
    detector = SmcDetector()
    expected = [{"symbol": "EURUSD", "interval": "15m", **event} for c in candles for event in detector.update(c)]
    assert out["smc_signals"] == expected
    kinds = {e["type"] for e in expected}
    assert {"swing_high", "swing_low", "bos", "fvg"} <= kinds
    fired = [(a["rule"], a["event"]["type"]) for a in out["alerts"]]
    sweeps = sum(1 for e in expected if e["type"] == "liquidity_swept")
    bull_bos = sum(1 for e in expected if e["type"] == "bos" and e["direction"] == 1)
    assert fired.count(("sweep", "liquidity_swept")) == sweeps
    assert fired.count(("bull bos", "bos")) == bull_bos > 0


def test_state_restored_from_the_changelog_continues_identically(eurusd: list[Kline]) -> None:
    proc = _processor(source="klines", alerts=[{"name": "sweep", "event": "liquidity_swept"}])
    store = proc.new_store()
    _run(proc, eurusd[:1500], store)
    rebuilt = ChangelogStore(proc.state_from)
    for key, value in store.changelog_records():
        rebuilt.load(key, value)
    assert _run(proc, eurusd[1500:2500], store) == _run(proc, eurusd[1500:2500], rebuilt)


def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="output_topics"):
        build_processor("k", KlinesProcessorSettings(type="klines", consumer_group="g", input_topics=["raw"],
                                                     output_topics=["enriched_klines"]))
    with pytest.raises(ValueError, match="interval"):
        KlinesProcessorSettings(type="klines", consumer_group="g", input_topics=["raw"], output_topics=OUTPUTS,
                                params={"intervals": ["7m"]})
    proc = _processor()
    with pytest.raises(InvalidRecordError):
        proc.process(BookTicker("binance", "BTCUSDT", 1, 1.0, 1.0, 2.0, 1.0), proc.new_store(), "t", 0, 0)
