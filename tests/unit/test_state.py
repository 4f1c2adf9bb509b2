"""ChangelogStore: dirty tracking, JSON changelog records, and rebuilding a store from another's changelog."""

from __future__ import annotations

import orjson
import pytest

from stream_processor.market.models import Trade
from stream_processor.market.processors.trades import SymbolTrades
from stream_processor.engine.settings import TradesParams
from stream_processor.engine.state import ChangelogStore

PARAMS = TradesParams(sma_length=3, ema_length=3, momentum_length=2, volume_window=4)
DAY_MS = 86_400_000
T0 = 1_723_161_255_342  # 2024-08-08 23:54:15.342 UTC


def _trade(symbol: str, i: int, price: float, size: float, side: str, time_ms: int) -> Trade:
    return Trade("binance", symbol, 1000 + i, price, size, side, time_ms, time_ms + 1)


def _fed(symbol: str, n: int, *, start: float = 100.0, cross_midnight: bool = False) -> SymbolTrades:
    obj = SymbolTrades(PARAMS)
    for i in range(n):
        t = T0 + i * 1000 + (DAY_MS if cross_midnight and i >= n // 2 else 0)
        obj.update(_trade(symbol, i, start + 0.25 * (i % 7) - 0.1 * i, 0.001 * (i + 1), "buy" if i % 3 else "sell", t))
    return obj


def _store() -> ChangelogStore:
    return ChangelogStore(SymbolTrades.from_state)


def test_new_store_is_empty() -> None:
    store = _store()
    assert store.get("BTCUSDT") is None
    assert store.data == {} and store.dirty == set()
    assert list(store.changelog_records()) == []


def test_put_marks_dirty_and_get_returns_the_live_object() -> None:
    store = _store()
    obj = _fed("BTCUSDT", 5)
    store.put("BTCUSDT", obj)
    assert store.get("BTCUSDT") is obj
    assert store.dirty == {"BTCUSDT"}


def test_changelog_records_are_json_of_dirty_keys_and_clear_the_dirty_set() -> None:
    store = _store()
    btc, eth = _fed("BTCUSDT", 6), _fed("ETHUSDT", 9, start=3000.0)
    store.put("BTCUSDT", btc)
    store.put("ETHUSDT", eth)
    records = list(store.changelog_records())
    assert store.dirty == set()
    assert sorted(k for k, _ in records) == [b"BTCUSDT", b"ETHUSDT"]
    for key, value in records:
        assert isinstance(key, bytes) and isinstance(value, bytes)
        assert orjson.loads(value) == store.get(key.decode()).to_state()
    # Nothing changed since: no records.
    assert list(store.changelog_records()) == []


def test_only_keys_marked_dirty_are_written_with_their_current_state() -> None:
    store = _store()
    btc, eth = _fed("BTCUSDT", 6), _fed("ETHUSDT", 9, start=3000.0)
    store.put("BTCUSDT", btc)
    store.put("ETHUSDT", eth)
    list(store.changelog_records())
    eth.update(_trade("ETHUSDT", 50, 3001.5, 0.2, "sell", T0 + 60_000))
    store.mark_dirty("ETHUSDT")
    records = list(store.changelog_records())
    assert [k for k, _ in records] == [b"ETHUSDT"]
    state = orjson.loads(records[0][1])
    assert state == eth.to_state()
    assert state["trades"] == 10
    assert store.dirty == set()


def test_mark_dirty_once_per_key_writes_one_record() -> None:
    store = _store()
    store.put("BTCUSDT", _fed("BTCUSDT", 3))
    store.mark_dirty("BTCUSDT")
    store.mark_dirty("BTCUSDT")
    assert len(list(store.changelog_records())) == 1


def test_load_applies_a_record_and_a_none_value_deletes() -> None:
    source = _fed("BTCUSDT", 7)
    store = _store()
    store.load(b"BTCUSDT", orjson.dumps(source.to_state()))
    loaded = store.get("BTCUSDT")
    assert isinstance(loaded, SymbolTrades)
    assert loaded is not source
    assert loaded.to_state() == source.to_state()
    assert store.dirty == set()  # restoring is not a change to write back
    # A later record for the same key replaces the earlier one (compaction semantics).
    newer = _fed("BTCUSDT", 12)
    store.load(b"BTCUSDT", orjson.dumps(newer.to_state()))
    assert store.get("BTCUSDT").to_state() == newer.to_state()
    store.load(b"BTCUSDT", None)
    assert store.get("BTCUSDT") is None
    assert "BTCUSDT" not in store.data
    store.load(b"BTCUSDT", None)  # deleting a missing key is not an error
    assert store.data == {}


def test_load_of_bad_json_raises() -> None:
    with pytest.raises(orjson.JSONDecodeError):
        _store().load(b"BTCUSDT", b"{not json")


@pytest.mark.parametrize("cross_midnight", [False, True])
def test_store_rebuilt_from_changelog_equals_the_original(cross_midnight: bool) -> None:
    original = _store()
    changelog: list[tuple[bytes, bytes | None]] = []
    objs = {
        "BTCUSDT": _fed("BTCUSDT", 11, cross_midnight=cross_midnight),
        "ETHUSDT": _fed("ETHUSDT", 2, start=3000.0),  # still warming up: None values in its state
        "SOLUSDT": _fed("SOLUSDT", 30, start=150.0, cross_midnight=cross_midnight),
    }
    for key, obj in objs.items():
        original.put(key, obj)
    changelog.extend(original.changelog_records())
    # Later checkpoints: one key changes, another is deleted (tombstone).
    objs["BTCUSDT"].update(_trade("BTCUSDT", 99, 101.0, 0.5, "buy", T0 + 2 * DAY_MS))
    original.mark_dirty("BTCUSDT")
    changelog.extend(original.changelog_records())
    del original.data["SOLUSDT"]
    changelog.append((b"SOLUSDT", None))

    rebuilt = _store()
    for key, value in changelog:
        rebuilt.load(key, value)

    assert rebuilt.data.keys() == original.data.keys() == {"BTCUSDT", "ETHUSDT"}
    for key, obj in original.data.items():
        assert rebuilt.get(key).to_state() == obj.to_state()
    assert rebuilt.get("BTCUSDT").to_state()["trades"] == 12


def test_rebuilt_state_continues_with_identical_outputs() -> None:
    original = _store()
    original.put("BTCUSDT", _fed("BTCUSDT", 10, cross_midnight=True))
    rebuilt = _store()
    for key, value in original.changelog_records():
        rebuilt.load(key, value)
    a, b = original.get("BTCUSDT"), rebuilt.get("BTCUSDT")
    for i in range(20):
        trade = _trade("BTCUSDT", 200 + i, 99.0 + 0.37 * (i % 5), 0.003 * (i + 1), "sell" if i % 2 else "buy",
                       T0 + DAY_MS + 60_000 + i)
        assert orjson.dumps(a.update(trade)) == orjson.dumps(b.update(trade))
    assert a.to_state() == b.to_state()
