"""OrderbookProcessor on the real Binance spot depth feed (2024-08-08 23:54 .. 08-09 00:05 UTC)."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from stream_processor.engine.exceptions import InvalidRecordError
from stream_processor.market.models import BookTicker, DepthSnapshot, DepthUpdate, MarketRecord, Trade
from stream_processor.market.processors import build_processor
from stream_processor.market.processors.orderbook import OrderbookProcessor
from stream_processor.market.serde.decode import decode
from stream_processor.market.serde.feed import iter_feed
from stream_processor.engine.settings import OrderbookProcessorSettings
from stream_processor.engine.state import ChangelogStore

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_DATA = Path(os.environ.get("SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SPOT = SHARED_DATA / "feeds" / "binance-hftbacktest" / "spot"
BTC = "binance/spot/BTCUSDT"


def _feed(symbol: str) -> list[MarketRecord]:
    out: list[MarketRecord] = []
    for day in ("20240808", "20240809"):
        path = SPOT / f"{symbol}_{day}.gz"
        if not path.is_file():
            pytest.fail(f"shared market data missing: {path}")
        for _, raw in iter_feed(path):
            record = decode(raw, symbol.upper().encode())
            if isinstance(record, DepthUpdate | DepthSnapshot | BookTicker):
                out.append(record)
    return out


@pytest.fixture(scope="module")
def btc() -> list[MarketRecord]:
    return _feed("btcusdt")


def _processor(**params: object) -> OrderbookProcessor:
    settings = OrderbookProcessorSettings(type="orderbook", consumer_group="g", input_topics=["raw_orderbook"],
                                          output_topics=["enriched_orderbook"], params=params)
    proc = build_processor("orderbook", settings)
    assert isinstance(proc, OrderbookProcessor)
    return proc


def test_every_applied_diff_emits_metrics_that_agree_with_the_tickers(btc: list[MarketRecord]) -> None:
    proc = _processor()
    store = proc.new_store()
    emitted: dict[int, dict] = {}
    outputs = 0
    for offset, record in enumerate(btc):
        out = proc.process(record, store, "raw_orderbook", 0, offset)
        outputs += len(out)
        for topic, key, value in out:
            assert (topic, key) == ("enriched_orderbook", b"BTCUSDT")
            doc = orjson.loads(value)
            emitted[doc["update_id"]] = doc
    book = store.data[BTC]
    counts = book.counts  # type: ignore[attr-defined]
    assert counts["gaps"] == 0 and counts["mismatches"] == 0 and counts["matches"] > 1000
    # One metrics record per book change once in sync, each at a new update id (6,493 diffs in the two files;
    # those buffered before the snapshot are replayed into its one record).
    assert outputs == len(emitted) > 6000
    checked = 0
    for record in btc:
        if isinstance(record, BookTicker) and record.update_id in emitted:
            doc = emitted[record.update_id]
            assert (doc["best_bid"], doc["best_bid_size"]) == (record.bid_price, record.bid_size)
            assert (doc["best_ask"], doc["best_ask_size"]) == (record.ask_price, record.ask_size)
            checked += 1
    assert checked > 1000
    last = emitted[max(emitted)]
    assert last["state"] == "ok" and last["spread"] > 0 and last["best_bid"] < last["mid"] < last["best_ask"]
    assert last["spread_bps"] == pytest.approx(last["spread"] / last["mid"] * 1e4)


def test_a_lost_diff_stops_the_metrics_until_the_next_snapshot(btc: list[MarketRecord]) -> None:
    proc = _processor()
    store = proc.new_store()
    first_snapshot = next(i for i, r in enumerate(btc) if isinstance(r, DepthSnapshot))
    later_diffs = [i for i, r in enumerate(btc) if isinstance(r, DepthUpdate) and i > first_snapshot]
    dropped = later_diffs[10]
    outputs_after_gap = 0
    for offset, record in enumerate(btc):
        if offset == dropped:
            continue
        out = proc.process(record, store, "raw_orderbook", 0, offset)
        if offset > dropped:
            outputs_after_gap += len(out)
    assert store.data[BTC].counts["gaps"] == 1  # type: ignore[attr-defined]
    assert not store.data[BTC].in_sync  # type: ignore[attr-defined]
    assert outputs_after_gap == 0  # the feed has one snapshot: nothing may be emitted after the gap
    assert proc.events == {"book_gap": 1}


def test_under_the_unsynced_policy_a_lost_diff_is_flagged_not_silent(btc: list[MarketRecord]) -> None:
    proc = _processor(resync="unsynced")
    store = proc.new_store()
    first_snapshot = next(i for i, r in enumerate(btc) if isinstance(r, DepthSnapshot))
    dropped = [i for i, r in enumerate(btc) if isinstance(r, DepthUpdate) and i > first_snapshot][10]
    states = []
    for offset, record in enumerate(btc):
        if offset == dropped:
            continue
        for _, _, value in proc.process(record, store, "raw_orderbook", 0, offset):
            doc = orjson.loads(value)
            if offset > dropped:
                states.append(doc["state"])
    assert proc.events["book_gap"] == 1
    assert len(states) > 5000 and set(states) == {"unsynced"}  # every later change emitted, flagged


def test_the_book_restored_from_its_changelog_continues_identically(btc: list[MarketRecord]) -> None:
    proc = _processor(depth_levels=200)
    store = proc.new_store()
    half = len(btc) // 2
    for offset, record in enumerate(btc[:half]):
        proc.process(record, store, "t", 0, offset)
    rebuilt = ChangelogStore(proc.state_from)
    for key, value in store.changelog_records():
        rebuilt.load(key, value)
    for offset, record in enumerate(btc[half:], start=half):
        assert proc.process(record, store, "t", 0, offset) == proc.process(record, rebuilt, "t", 0, offset)


def test_other_records_are_invalid() -> None:
    trade = Trade("binance", "BTCUSDT", 1, 1.0, 1.0, "buy", 0, 0)
    with pytest.raises(InvalidRecordError):
        _processor().process(trade, _processor().new_store(), "t", 0, 0)
