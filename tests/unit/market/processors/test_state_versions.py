"""Versioned market snapshots (``MarketSnapshot.STATE_VERSION`` and ``migrate``, market/snapshot.py), through the
TestDriver.

Each built-in market processor writes ``{"v": STATE_VERSION, "state": ...}`` to its changelog. A snapshot written
before versions existed (the bare state: layout version 0) or by the code of df71527 (layout 1: ``kind`` and
``version`` inside every object) is migrated; a snapshot of a version this code does not know starts its key from
empty state (the event ``state_reset``) instead of failing the processor, unless the processor's ``state_errors``
is ``fail``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from stream_processor.engine.exceptions import StateRestoreError
from stream_processor.engine.state import TaskStores
from stream_processor.engine.testing import TestDriver
from stream_processor.engine.topics import changelog_topic
from stream_processor.market.models import DepthSnapshot, DepthUpdate
from stream_processor.market.snapshot import MarketSnapshot, drop_headers

from . import Line, feed, pipe, shipped, state_bytes

BTC = "binance/spot/BTCUSDT"
STATE_VERSION = MarketSnapshot.STATE_VERSION


@dataclasses.dataclass(frozen=True)
class Case:
    """A processor, its input topic and output topic, and real input whose last record gives an output."""

    name: str
    topic: str
    output: str
    lines: list[Line]


@pytest.fixture(scope="module")
def cases() -> dict[str, Case]:
    trades = feed("btcusdt", kind="trades")
    # klines: up to the trade that closes the first 1m window (past its end + the shipped 2 s grace)
    first_end = trades[0].record.time_ms // 60_000 * 60_000 + 60_000
    closing = next(i for i, line in enumerate(trades) if line.record.time_ms >= first_end + 2_000)
    book = feed("btcusdt", kind="orderbook")
    snapshot = next(i for i, line in enumerate(book) if isinstance(line.record, DepthSnapshot))
    diff = [i for i, line in enumerate(book) if isinstance(line.record, DepthUpdate) and i > snapshot][100]
    return {
        "trades": Case("trades", "raw_trades", "enriched_trades", trades[:300]),
        "klines": Case("klines", "raw_trades", "enriched_klines", trades[: closing + 1]),
        "orderbook": Case("orderbook", "raw_orderbook", "enriched_orderbook", book[: diff + 1]),
    }


def _driver(case: Case, **entry: Any) -> TestDriver:
    return TestDriver(settings=shipped(case.name, entry), commit_every=1_000)


@dataclasses.dataclass
class Reference:
    snapshot: Any  # the state as written before the last record, unversioned
    partition: int
    offset: int  # the last record's
    outputs: list[tuple[bytes | None, bytes | None]]  # what the last record gave
    after: bytes  # the state after it


def _reference(case: Case) -> Reference:
    """Run every record but the last, read the state's changelog record, then run the last."""
    with _driver(case) as driver:
        for line in case.lines[:-1]:
            pipe(driver, case.topic, line)
        driver.read(case.output)
        [record] = [r for r in driver.changelog(case.name) if r.key == BTC.encode()][-1:]
        written = orjson.loads(record.value)
        assert written.keys() == {"v", "state"} and written["v"] == STATE_VERSION  # the layout version is written
        last = pipe(driver, case.topic, case.lines[-1])
        outputs = [(r.key, r.value) for r in driver.read(case.output)]
        assert outputs  # the last record gives an output: what it shows depends on the state restored
        return Reference(written["state"], record.partition, last.offset, outputs,
                         state_bytes(driver.table()[BTC]))


def _from_changelog(case: Case, ref: Reference, value: bytes, **entry: Any) -> TestDriver:
    """A driver whose changelog holds ``value`` as the key's only snapshot."""
    driver = _driver(case, **entry)
    driver.pipe(changelog_topic(driver.settings, case.name), value, key=BTC.encode(), partition=ref.partition)
    return driver


@pytest.mark.parametrize("name", ["trades", "klines", "orderbook"])
def test_a_snapshot_written_without_a_version_is_restored(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    ref = _reference(case)
    with _from_changelog(case, ref, orjson.dumps(ref.snapshot)) as driver:  # version 0: the bare state
        record = pipe(driver, case.topic, case.lines[-1], offset=ref.offset)
        assert record.partition == ref.partition
        assert [(r.key, r.value) for r in driver.read(case.output)] == ref.outputs
        assert state_bytes(driver.table()[BTC]) == ref.after
        assert driver.dead_letters() == []


@pytest.mark.parametrize("name", ["trades", "klines", "orderbook"])
def test_a_snapshot_of_an_unknown_version_resets_the_key(cases: dict[str, Case], name: str) -> None:
    case = cases[name]
    ref = _reference(case)
    with _driver(case) as fresh:  # what the last record does to empty state
        pipe(fresh, case.topic, case.lines[-1], offset=ref.offset)
        expected = ([(r.key, r.value) for r in fresh.read(case.output)], state_bytes(fresh.table()[BTC]))
    assert expected[1] != ref.after
    unknown = orjson.dumps({"v": STATE_VERSION + 98, "state": ref.snapshot})
    with _from_changelog(case, ref, unknown) as driver:
        pipe(driver, case.topic, case.lines[-1], offset=ref.offset)
        assert ([(r.key, r.value) for r in driver.read(case.output)], state_bytes(driver.table()[BTC])) == expected
        assert driver.dead_letters() == []
    with _from_changelog(case, ref, unknown, state_errors="fail") as failing, pytest.raises(StateRestoreError,
                                                                                           match=BTC):
        pipe(failing, case.topic, case.lines[-1], offset=ref.offset)


def test_a_reset_is_counted_as_the_state_reset_event(cases: dict[str, Case]) -> None:
    case = cases["trades"]
    ref = _reference(case)
    with _from_changelog(case, ref, orjson.dumps({"v": 99, "state": ref.snapshot})) as driver:
        pipe(driver, case.topic, case.lines[-1], offset=ref.offset)
        assert driver.processors["trades"].events["state_reset"] == 1


def test_the_market_stores_migrate_version_0_and_count_what_they_drop(cases: dict[str, Case]) -> None:
    ref = _reference(cases["trades"])
    with _driver(cases["trades"]) as driver:
        stores = TaskStores(driver.processors["trades"].stores())
    bare, unknown = orjson.dumps(ref.snapshot), orjson.dumps({"v": 7, "state": ref.snapshot})
    stores.load(BTC.encode(), bare)
    store = stores[""]
    assert store.get(BTC).to_state() == ref.snapshot and stores.resets == 0
    stores.load(BTC.encode(), unknown)
    assert store.get(BTC) is None and stores.resets == 1
    assert MarketSnapshot.migrate(ref.snapshot, 0) == ref.snapshot
    with pytest.raises(ValueError, match="version 7"):
        MarketSnapshot.migrate(ref.snapshot, 7)


def test_layout_1_headers_are_checked_and_dropped() -> None:
    layout_1 = {"kind": "SymbolKlines", "version": 1, "builders": {"1m": {"kind": "KlineBuilder", "version": 2,
                                                                          "windows": [[1, 2.0]]}},
                "smc": [{"kind": "SwingDetector", "version": 1, "n": [1]}], "trends": {"1m": 1}}
    assert drop_headers(layout_1) == {"builders": {"1m": {"windows": [[1, 2.0]]}}, "smc": [{"n": [1]}],
                                      "trends": {"1m": 1}}
    # A nested state the code of df71527 refused (a KlineBuilder of its version 1) is refused still.
    old_builder = {**layout_1, "builders": {"1m": {"kind": "KlineBuilder", "version": 1, "windows": []}}}
    with pytest.raises(ValueError, match="KlineBuilder"):
        MarketSnapshot.migrate(old_builder, 1)
    # A bare "kind" without a "version" (or the reverse) is data, not a header.
    assert drop_headers({"kind": "x", "n": 1}) == {"kind": "x", "n": 1}
