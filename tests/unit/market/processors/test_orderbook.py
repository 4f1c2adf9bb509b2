"""OrderbookProcessor, driven by the TestDriver, on the real Binance spot depth feed (2024-08-08 23:54 .. 08-09
00:05 UTC)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from stream_processor.engine.testing import TestDriver, TestRecord
from stream_processor.market.models import BookTicker, DepthSnapshot, DepthUpdate, Trade
from stream_processor.market.processors.orderbook import OrderbookProcessor

from . import Line, feed, pipe, raw_of, reason, shipped

TOPIC, OUTPUT = "raw_orderbook", "enriched_orderbook"
BTC = "binance/spot/BTCUSDT"
COMMIT_EVERY = 500


@pytest.fixture(scope="module")
def btc() -> list[Line]:
    lines = feed("btcusdt", ("20240808", "20240809"), "orderbook")
    assert {type(line.record) for line in lines} == {DepthUpdate, DepthSnapshot, BookTicker}
    return lines


def _driver(commit_every: int = COMMIT_EVERY, **params: Any) -> TestDriver:
    driver = TestDriver(settings=shipped("orderbook", **params), commit_every=commit_every)
    assert isinstance(driver.processors["orderbook"], OrderbookProcessor)
    return driver


def _dropped(btc: list[Line]) -> int:
    """The index of the 11th diff after the first snapshot: the diff a gap test loses."""
    first_snapshot = next(i for i, line in enumerate(btc) if isinstance(line.record, DepthSnapshot))
    return [i for i, line in enumerate(btc) if isinstance(line.record, DepthUpdate) and i > first_snapshot][10]


@dataclasses.dataclass
class Run:
    outputs: list[TestRecord]
    book: Any
    events: dict[str, int]


@pytest.fixture(scope="module")
def run(btc: list[Line]) -> Run:
    """The whole feed through the shipped parameters, uninterrupted."""
    with _driver() as driver:
        for line in btc:
            pipe(driver, TOPIC, line)
        outputs = driver.read(OUTPUT)
        assert driver.dead_letters() == []
        return Run(outputs, driver.table()[BTC], dict(driver.processors["orderbook"].events))


@pytest.mark.slow  # 7 s: the module's whole-feed run on the 2-core machine
def test_every_applied_diff_emits_metrics_that_agree_with_the_tickers(btc: list[Line], run: Run) -> None:
    outputs, book = run.outputs, run.book
    assert run.events == {}
    emitted: dict[int, dict] = {}
    for out in outputs:
        assert (out.topic, out.key) == (OUTPUT, b"BTCUSDT")
        doc = out.json()
        emitted[doc["update_id"]] = doc
    counts = book.counts
    assert counts["gaps"] == 0 and counts["mismatches"] == 0 and counts["matches"] > 1000
    # One metrics record per book change once in sync, each at a new update id (6,493 diffs in the two files;
    # those buffered before the snapshot are replayed into its one record).
    assert len(outputs) == len(emitted) > 6000
    checked = 0
    for line in btc:
        record = line.record
        if isinstance(record, BookTicker) and record.update_id in emitted:
            doc = emitted[record.update_id]
            assert (doc["best_bid"], doc["best_bid_size"]) == (record.bid_price, record.bid_size)
            assert (doc["best_ask"], doc["best_ask_size"]) == (record.ask_price, record.ask_size)
            checked += 1
    assert checked > 1000
    last = emitted[max(emitted)]
    assert last["state"] == "ok" and last["spread"] > 0 and last["best_bid"] < last["mid"] < last["best_ask"]
    assert last["spread_bps"] == pytest.approx(last["spread"] / last["mid"] * 1e4)


def test_a_lost_diff_stops_the_metrics_until_the_next_snapshot(btc: list[Line]) -> None:
    dropped = _dropped(btc)
    with _driver() as driver:
        offsets = [pipe(driver, TOPIC, line).offset for i, line in enumerate(btc) if i != dropped]
        outputs = [out.json() for out in driver.read(OUTPUT)]
        book = driver.table()[BTC]
        assert driver.processors["orderbook"].events == {"book_gap": 1}
    after_gap = offsets[dropped]  # the offset of the record that followed the lost diff
    assert any(doc["source_offset"] < after_gap for doc in outputs)
    # The feed has one snapshot: nothing may be emitted after the gap.
    assert [doc for doc in outputs if doc["source_offset"] >= after_gap] == []
    assert book.counts["gaps"] == 1
    assert not book.in_sync


@pytest.mark.slow  # 8 s on the 2-core machine
def test_under_the_unsynced_policy_a_lost_diff_is_flagged_not_silent(btc: list[Line]) -> None:
    dropped = _dropped(btc)
    with _driver(resync="unsynced") as driver:
        offsets = [pipe(driver, TOPIC, line).offset for i, line in enumerate(btc) if i != dropped]
        outputs = [out.json() for out in driver.read(OUTPUT)]
        assert driver.processors["orderbook"].events["book_gap"] == 1
    after_gap = offsets[dropped]
    states = [doc["state"] for doc in outputs if doc["source_offset"] >= after_gap]
    snapshot = next(i for i, line in enumerate(btc) if isinstance(line.record, DepthSnapshot))
    assert {doc["state"] for doc in outputs if offsets[snapshot] <= doc["source_offset"] < after_gap} == {"ok"}
    assert len(states) > 5000 and set(states) == {"unsynced"}  # every later change emitted, flagged


@pytest.mark.slow  # 5.5 s on the 2-core machine
def test_the_book_restored_from_its_changelog_continues_identically(btc: list[Line], run: Run) -> None:
    half = len(btc) // 2
    assert half % 997
    with _driver(commit_every=997) as driver:
        for i, line in enumerate(btc):
            if i == half:  # crash: the open transaction is aborted, the book restored and its records read again
                driver.restart()
            pipe(driver, TOPIC, line)
        restarted = driver.read(OUTPUT)
        assert driver.dead_letters() == []
    assert [(r.key, r.value) for r in restarted] == [(r.key, r.value) for r in run.outputs]
    assert sum(1 for r in restarted if r.json()["source_offset"] >= half) > 1000


def test_other_records_are_invalid() -> None:
    trade = Trade("binance", "BTCUSDT", 1, 1.0, 1.0, "buy", 1_700_000_000_000, 1_700_000_000_000)
    with _driver() as driver:
        driver.pipe(TOPIC, raw_of(trade), key=b"BTCUSDT", timestamp=trade.time_ms)
        [dead] = driver.dead_letters()
        assert reason(dead) == "invalid" and "Trade" in dead.header("error")
        assert driver.table() == {} and driver.read(OUTPUT) == []
