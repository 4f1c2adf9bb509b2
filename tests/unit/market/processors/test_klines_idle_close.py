"""The klines processor's idle close (``params.idle_close_ms``), driven by the TestDriver on real trades.

ETHUSDT trades from the start of the 2024-08-08 capture until 23:55:30 UTC and then stops, while BTCUSDT (every
10th of its real trades, to keep the test fast) goes on to 00:01:30 on the same partition. ETH's 1m window
23:55 and 5m window 23:55 hold trades; nothing of ETH ever closes them, only the partition's stream time (the
latest trade time) can.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from stream_processor.engine.exceptions import ConfigError
from stream_processor.engine.settings import KeyedError
from stream_processor.engine.testing import TestDriver, TestRecord
from stream_processor.market.processors.klines import IDLE_CHECK_MS
from stream_processor.market.settings import KlinesParams, KlinesProcessorSettings

from . import Line, feed, pipe, reason, shipped, without_source

TOPIC, OUTPUT = "raw_trades", "enriched_klines"
W = 1_723_161_300_000  # 2024-08-08 23:55:00 UTC: ETH's last window (1m and 5m)
STOP = W + 30_000  # ETH's last trade is before this
END = W + 390_000  # 2024-08-09 00:01:30: BTC's last trade is before this
IDLE = 60_000  # the default idle_close_ms (the shipped configuration does not set it)
GRACE = 2_000  # the shipped configuration's grace_ms
MINUTE, FIVE = 60_000, 300_000


@pytest.fixture(scope="module")
def eth() -> list[Line]:
    return feed("ethusdt", ("20240808", "20240809"), "trades")


@pytest.fixture(scope="module")
def lines(eth: list[Line]) -> list[Line]:
    btc = [line for line in feed("btcusdt", ("20240808", "20240809"), "trades")[::10] if line.record.time_ms < END]
    eth_in = [line for line in eth if line.record.time_ms < STOP]
    assert W - 60_000 <= eth_in[0].record.time_ms < W - 30_000 and eth_in[-1].record.time_ms >= W
    merged = sorted(btc + eth_in, key=lambda line: line.record.time_ms)
    assert merged[-1].record.symbol == "BTCUSDT" and merged[-1].record.time_ms > W + FIVE + IDLE + IDLE_CHECK_MS
    return merged


@pytest.fixture(scope="module")
def late(eth: list[Line]) -> Line:
    """ETH's next real trade: in the window 23:55 (1m and 5m), after the others."""
    line = next(line for line in eth if line.record.time_ms >= STOP)
    assert line.record.time_ms < W + MINUTE
    return line


def _run(lines: list[Line], partitions: int | None = 1, **params: Any) -> tuple[TestDriver, list[TestRecord]]:
    driver = TestDriver(settings=shipped("klines", **params), commit_every=100,
                        partitions=None if partitions is None else {TOPIC: partitions})
    inputs = [pipe(driver, TOPIC, line) for line in lines]
    return driver, inputs


def _eth(records: list[TestRecord]) -> list[dict[str, Any]]:
    return [doc for doc in (r.json() for r in records) if doc["symbol"] == "ETHUSDT"]


def _windows(docs: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(doc["interval"], doc["open_time_ms"]) for doc in docs]


NORMAL = [("1m", W - MINUTE), ("5m", W - FIVE)]  # closed by ETH's own first trade at or after 23:55:02
IDLE_CLOSED = [("1m", W), ("5m", W)]


def test_an_idle_symbols_last_klines_close_by_the_partitions_stream_time(lines: list[Line], eth: list[Line]) -> None:
    driver, inputs = _run(lines)
    with driver:
        outputs = driver.read(OUTPUT)
        assert driver.dead_letters() == []
    docs = _eth(outputs)
    assert _windows(docs) == NORMAL + IDLE_CLOSED
    for doc in docs[2:]:
        end = doc["open_time_ms"] + (MINUTE if doc["interval"] == "1m" else FIVE)
        # Closed by the first record that moved stream time to the window's end + idle_close_ms, not before:
        # a BTC trade (ETH had stopped long before).
        first = next(i for i, line in enumerate(lines) if line.record.time_ms >= end + IDLE)
        assert lines[first].record.symbol == "BTCUSDT" and lines[first - 1].record.time_ms < end + IDLE
        assert (doc["source_topic"], doc["source_partition"], doc["source_offset"]) == (
            TOPIC, inputs[first].partition, inputs[first].offset)
    # The same klines, indicators and all, as when ETH's own next trade closes them.
    closer = next(line for line in eth if line.record.time_ms >= W + FIVE + GRACE)
    eth_in = [line for line in lines if line.record.symbol == "ETHUSDT"]
    with TestDriver(settings=shipped("klines"), commit_every=100) as reference:
        for line in [*eth_in, closer]:
            pipe(reference, TOPIC, line)
        expected = _eth(reference.read(OUTPUT))
    assert _windows(expected) == NORMAL + IDLE_CLOSED
    assert [without_source(doc) for doc in docs] == [without_source(doc) for doc in expected]


def test_a_trade_for_a_window_closed_idle_is_late(lines: list[Line], late: Line) -> None:
    driver, _ = _run(lines)
    with driver:
        driver.read(OUTPUT)
        written = len(driver.changelog("klines"))
        pipe(driver, TOPIC, late)
        [dead] = driver.dead_letters()
        assert reason(dead) == "late" and dead.value == late.raw
        assert f"closed window {W}" in dead.header("error")
        assert driver.read(OUTPUT) == [] and len(driver.changelog("klines")) == written


def test_a_trade_before_the_idle_close_still_counts(lines: list[Line], late: Line) -> None:
    first = next(i for i, line in enumerate(lines) if line.record.time_ms >= W + MINUTE + IDLE)
    driver, _ = _run(lines[:first])  # stream time is just short of closing ETH's 1m window 23:55
    with driver:
        pipe(driver, TOPIC, late)
        assert driver.dead_letters() == []
        assert [doc for doc in _eth(driver.read(OUTPUT)) if doc["open_time_ms"] == W] == []
        for line in lines[first:]:
            pipe(driver, TOPIC, line)
        closed = [doc for doc in _eth(driver.read(OUTPUT)) if doc["open_time_ms"] == W]
    assert _windows(closed) == IDLE_CLOSED
    assert [doc["trade_count"] for doc in closed] == [
        sum(1 for line in [*lines, late] if line.record.symbol == "ETHUSDT" and line.record.time_ms >= W)] * 2


def test_idle_close_null_turns_it_off(lines: list[Line], late: Line) -> None:
    driver, _ = _run(lines, idle_close_ms=None)
    with driver:
        pipe(driver, TOPIC, late)  # the window is still open: it is taken
        assert _windows(_eth(driver.read(OUTPUT))) == NORMAL
        assert driver.dead_letters() == []


def test_only_the_stream_time_of_the_symbols_own_partition_closes_it(lines: list[Line]) -> None:
    driver, inputs = _run(lines, partitions=None)  # the shipped 8 partitions: BTCUSDT and ETHUSDT apart
    with driver:
        assert {r.partition for r, line in zip(inputs, lines, strict=True) if line.record.symbol == "BTCUSDT"} != {
            r.partition for r, line in zip(inputs, lines, strict=True) if line.record.symbol == "ETHUSDT"}
        assert _windows(_eth(driver.read(OUTPUT))) == NORMAL


def test_the_settings_refuse_an_idle_close_below_the_grace() -> None:
    with pytest.raises(ConfigError) as info:
        shipped("klines", idle_close_ms=GRACE - 1)
    assert info.value.key == "stream_processors.klines.params.idle_close_ms"
    assert "grace_ms" in info.value.reason
    with pytest.raises(ValidationError) as error:
        KlinesProcessorSettings.model_validate({"type": "klines", "consumer_group": "g", "input_topics": [TOPIC],
                                                "output_topics": ["k", "s", "a"],
                                                "params": {"grace_ms": 5_000, "idle_close_ms": 4_999}})
    keyed = error.value.errors()[0]["ctx"]["error"]
    assert isinstance(keyed, KeyedError) and keyed.key == "idle_close_ms"
    assert error.value.errors()[0]["loc"] == ("params",)
    # At the grace, or off, is fine; the default is on.
    assert shipped("klines", idle_close_ms=GRACE).stream_processors["klines"].params.idle_close_ms == GRACE
    assert shipped("klines", idle_close_ms=None).stream_processors["klines"].params.idle_close_ms is None
    assert KlinesParams().idle_close_ms == IDLE
    assert shipped("klines").stream_processors["klines"].params.idle_close_ms == IDLE


@pytest.mark.parametrize("commit_every", [1, 100])
def test_a_restart_closes_at_the_same_record(lines: list[Line], late: Line, commit_every: int) -> None:
    """Stream time is part of what a task restores: a crash just before the record that moves it past the idle
    window (with the open transaction aborted and read again) closes the windows at that same record."""
    first = next(i for i, line in enumerate(lines) if line.record.time_ms >= W + MINUTE + IDLE)
    results = []
    for crash in (False, True):
        with TestDriver(settings=shipped("klines"), partitions={TOPIC: 1}, commit_every=commit_every) as driver:
            for i, line in enumerate(lines[: first + 1]):
                if crash and i == first:
                    driver.restart()
                pipe(driver, TOPIC, line)
            pipe(driver, TOPIC, late)
            results.append(([(r.key, r.value) for r in driver.read(OUTPUT)],
                            [(reason(r), r.value) for r in driver.dead_letters()]))
    assert results[1] == results[0]
    outputs, dead = results[0]
    assert [(doc["interval"], doc["open_time_ms"]) for doc in _eth_values(outputs)][-1] == ("1m", W)
    assert dead == [("late", late.raw)]


def _eth_values(outputs: list[tuple[bytes | None, bytes | None]]) -> list[dict[str, Any]]:
    return [doc for doc in (orjson.loads(v) for k, v in outputs if k == b"ETHUSDT")]
