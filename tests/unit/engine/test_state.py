"""ChangelogStore and TaskStores: dirty tracking, JSON changelog records, named stores, layout versions and their
migration (the snapshot base), records kept as records, the store versioned by timestamp, and rebuilding stores from
a changelog (``restore``, against a fake consumer)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from stream_processor.engine import restore as restore_module
from stream_processor.engine import versioned as versioned_module
from stream_processor.engine.exceptions import StateRecordError, StateRestoreError
from stream_processor.engine.records import Record
from stream_processor.engine.snapshot import Snapshot
from stream_processor.engine.state import (
    META_KEY,
    OFFSET_KEY,
    STORE_PREFIX,
    ChangelogStore,
    StoreSpec,
    TaskStores,
    VersionedRecord,
    VersionedStore,
    offset_marker,
    restore,
)
from stream_processor.market.models import Trade
from stream_processor.market.processors.trades import SymbolTrades
from stream_processor.market.settings import TradesParams

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


def test_load_of_bad_json_resets_the_key_by_default() -> None:
    store = _store()
    store.load(b"BTCUSDT", orjson.dumps(_fed("BTCUSDT", 3).to_state()))
    store.load(b"ETHUSDT", orjson.dumps(_fed("ETHUSDT", 3).to_state()))
    store.load(b"BTCUSDT", b"{not json")
    assert "BTCUSDT" not in store.data  # the key starts from empty state ...
    assert "ETHUSDT" in store.data  # ... and only that key
    assert store.resets == 1
    assert store.dirty == set()


def test_load_of_bad_json_raises_when_the_store_fails_on_errors() -> None:
    store = ChangelogStore(StoreSpec(from_state=SymbolTrades.from_state, on_error="fail"))
    with pytest.raises(StateRestoreError, match="BTCUSDT") as info:
        store.load(b"BTCUSDT", b"{not json")
    assert isinstance(info.value.__cause__, orjson.JSONDecodeError)
    assert store.resets == 0


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


# ---- named stores sharing one changelog (TaskStores) ------------------------------------------------


def _task_stores() -> TaskStores:
    return TaskStores([StoreSpec(from_state=SymbolTrades.from_state), StoreSpec(name="seen")])


def test_named_stores_prefix_their_keys_and_the_default_store_does_not() -> None:
    stores = _task_stores()
    assert not stores.dirty
    btc = _fed("BTCUSDT", 4)
    stores[""].put("BTCUSDT", btc)
    stores["seen"].put("BTCUSDT", [1, 2])
    assert stores.dirty
    records = dict(stores.changelog_records())
    assert set(records) == {b"BTCUSDT", STORE_PREFIX + b"seen\x00BTCUSDT"}
    assert orjson.loads(records[b"BTCUSDT"]) == btc.to_state()
    assert records[STORE_PREFIX + b"seen\x00BTCUSDT"] == b"[1,2]"
    assert not stores.dirty
    assert stores.keys() == 2


def test_task_stores_route_changelog_records_back_to_their_store() -> None:
    source = _task_stores()
    source[""].put("BTCUSDT", _fed("BTCUSDT", 4))
    source["seen"].put("ETHUSDT", {"ids": [7]})
    source["seen"].put("gone", 1)
    changelog = source.changelog_records()
    source["seen"].delete("gone")
    changelog += source.changelog_records()
    assert changelog[-1] == (STORE_PREFIX + b"seen\x00gone", None)  # a delete is a tombstone
    changelog.append((STORE_PREFIX + b"dropped\x00x", b"1"))  # a store this code no longer has: skipped

    rebuilt = _task_stores()
    for key, value in changelog:
        rebuilt.load(key, value)
    assert rebuilt[""].get("BTCUSDT").to_state() == source[""].get("BTCUSDT").to_state()
    assert rebuilt["seen"].data == {"ETHUSDT": {"ids": [7]}}
    assert not rebuilt.dirty and rebuilt.resets == 0


def test_a_failed_encoding_leaves_every_dirty_set_as_it_was() -> None:
    stores = _task_stores()
    stores["seen"].put("ok", 1)
    stores["seen"].put("bad", object())
    with pytest.raises(StateRecordError) as info:
        stores.changelog_records()
    assert (info.value.key, info.value.reason) == ("bad", "state_unserializable")
    assert stores["seen"].dirty == {"ok", "bad"}


def test_a_record_above_the_limit_is_state_too_large() -> None:
    stores = _task_stores()
    stores["seen"].put("big", "x" * 100)
    with pytest.raises(StateRecordError) as info:
        stores.changelog_records(limit=50)
    assert info.value.reason == "state_too_large"
    assert len(stores.changelog_records(limit=200)) == 1


def test_versioned_snapshots_and_their_migration() -> None:
    migrated: list[tuple[Any, int]] = []

    def migrate(state: Any, version: int) -> Any:
        migrated.append((state, version))
        return {"n": state["count"]}

    spec = StoreSpec(name="c", version=2, migrate=migrate)
    store = ChangelogStore(spec)
    store.put("k", {"n": 5})
    [(key, value)] = list(store.changelog_records())
    assert (key, orjson.loads(value)) == (STORE_PREFIX + b"c\x00k", {"v": 2, "state": {"n": 5}})
    store.load(b"old", orjson.dumps({"v": 1, "state": {"count": 3}}))
    store.load(b"bare", orjson.dumps({"count": 4}))  # written before versions: version 0
    store.load(b"same", value)
    assert store.data == {"k": {"n": 5}, "old": {"n": 3}, "bare": {"n": 4}, "same": {"n": 5}}
    assert migrated == [({"count": 3}, 1), ({"count": 4}, 0)]


def test_expire_runs_before_each_commit() -> None:
    def expire(store: ChangelogStore) -> None:
        for key in [k for k in store.data if k.startswith("old")]:
            store.delete(key)

    stores = TaskStores([StoreSpec(name="w", expire=expire)])
    stores["w"].put("old-1", 1)
    stores["w"].put("new-1", 2)
    records = stores.changelog_records()
    assert sorted(records, key=lambda r: r[0]) == [(STORE_PREFIX + b"w\x00new-1", b"2"),
                                                    (STORE_PREFIX + b"w\x00old-1", None)]
    assert stores["w"].data == {"new-1": 2}


# ---- restore() from a changelog partition ---------------------------------------------------------------


class FakeChangelogConsumer:
    """The calls ``restore`` makes of a group-less consumer, over one in-memory partition."""

    def __init__(self, records: list[tuple[bytes | None, bytes | None]]) -> None:
        self.records = [SimpleNamespace(offset=i, key=k, value=v) for i, (k, v) in enumerate(records)]
        self.assigned: list[TopicPartition] = []
        self.pos = 0

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = list(tps)

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.pos = 0

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.pos = offset

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.records) for tp in tps}

    async def position(self, tp: TopicPartition) -> int:
        return self.pos

    async def getmany(self, tp: TopicPartition, timeout_ms: int, max_records: int) -> dict[TopicPartition, list]:
        batch = self.records[self.pos : self.pos + 2]  # small fetches: restore must loop
        self.pos += len(batch)
        return {tp: batch}


CHANGELOG_TP = TopicPartition("app-trades-state-changelog", 3)


async def test_restore_rebuilds_every_store_and_reads_the_offset_markers() -> None:
    source = _task_stores()
    source[""].put("BTCUSDT", _fed("BTCUSDT", 5))
    source["seen"].put("x", 1)
    records = source.changelog_records()
    records.append(offset_marker("raw_trades", 41))
    source["seen"].delete("x")
    records += source.changelog_records()
    records.append(offset_marker("raw_trades", 57))
    records.append(offset_marker("raw_klines", 9))
    consumer = FakeChangelogConsumer(records)

    stores = _task_stores()
    stores["seen"].put("stale", 1)  # a full restore starts from empty stores
    restored = await restore(stores, consumer, CHANGELOG_TP)  # type: ignore[arg-type]
    assert restored.applied == 3  # two states and a tombstone; the markers are not state
    assert restored.offsets == {"raw_trades": 57, "raw_klines": 9}
    assert restored.end == len(records)
    assert restored.offset("raw_trades", only_input=False) == 57
    assert restored.offset("raw_orderbook", only_input=True) is None
    assert stores[""].get("BTCUSDT").to_state() == source[""].get("BTCUSDT").to_state()
    assert stores["seen"].data == {}
    assert consumer.assigned == []  # left unassigned


async def test_restore_from_an_offset_applies_only_what_came_after() -> None:
    records = [(b"a", b"1"), (b"b", b"2"), (b"a", b"3"), (b"c", None)]
    stores = TaskStores([StoreSpec()])
    stores[""].put("kept", 0)
    stores[""].put("c", 9)
    restored = await restore(stores, FakeChangelogConsumer(records), CHANGELOG_TP, start=2)  # type: ignore[arg-type]
    assert restored.applied == 2
    assert stores[""].data == {"kept": 0, "a": 3}  # kept what it had, applied offsets 2 and 3
    assert not stores.dirty  # what was dirty is set aside, not written again


async def test_a_legacy_marker_counts_only_for_a_single_input() -> None:
    legacy = (OFFSET_KEY, orjson.dumps({"offset": 12}))
    restored = await restore(TaskStores([StoreSpec()]), FakeChangelogConsumer([legacy]), CHANGELOG_TP)  # type: ignore[arg-type]
    assert restored.offsets == {None: 12}
    assert restored.offset("raw_trades", only_input=True) == 12
    assert restored.offset("raw_trades", only_input=False) is None


# ---- restore() decodes only the last record of each key, with the same result ------------------------------------


def _restore_each(stores: TaskStores, records: list[tuple[bytes | None, bytes | None]], start: int | None
                  ) -> tuple[int, dict[str | None, int], dict[str, int], int]:
    """What restore did before it kept only each key's last record: every record applied in order. Returns
    ``(applied, offsets, positions, stream_time)``."""
    if start is None:
        stores.clear()
    else:
        stores.take_dirty()
    applied, offsets, positions, stream_time = 0, {}, {}, -1
    for key, value in records[start or 0:]:
        if key is not None and key.startswith(OFFSET_KEY):
            topic = None if key == OFFSET_KEY else key[len(OFFSET_KEY) + 1:].decode()
            marker = orjson.loads(value)  # type: ignore[arg-type]
            offsets[topic] = marker["offset"]
            if topic is not None:
                positions[topic] = marker.get("position", marker["offset"])
            stream_time = max(stream_time, marker.get("stream_time", -1))
            continue
        stores.load(key, value)  # type: ignore[arg-type]
        applied += 1
    return applied, offsets, positions, stream_time


def _random_changelog(rng: Any, n: int) -> list[tuple[bytes | None, bytes | None]]:
    """``n`` changelog records of two stores: updates, tombstones and re-creations of a few keys, metadata records,
    a record of a store that no longer exists, and offset markers (legacy and per topic)."""
    records: list[tuple[bytes | None, bytes | None]] = []
    for i in range(n):
        kind = rng.random()
        if kind < 0.08:
            topic = rng.choice(["raw_trades", "raw_klines", None])
            if topic is None:
                records.append((OFFSET_KEY, orjson.dumps({"offset": i})))
            else:
                records.append(offset_marker(topic, i, i + rng.randrange(3), rng.randrange(-1, 10_000)))
        elif kind < 0.12:
            records.append((b"\x00meta:w", orjson.dumps({rng.choice(["latest", "other"]): i})))
        elif kind < 0.14:
            records.append((STORE_PREFIX + b"gone\x00k", b"1"))
        else:
            key = f"k{rng.randrange(12)}".encode()
            if rng.random() < 0.5:
                key = STORE_PREFIX + b"w\x00" + key
            records.append((key, None if rng.random() < 0.2 else orjson.dumps([i, key.decode()])))
    return records


def _json_stores() -> TaskStores:
    return TaskStores([StoreSpec(), StoreSpec(name="w", keep_meta=("latest", "other"))])


def _contents(stores: TaskStores) -> list[Any]:
    """Everything a restore leaves in the stores, keys in their dict order."""
    return [(name, list(store.data.items()), dict(store.meta), store.resets, store.dirty)
            for name, store in stores.stores.items()]


@pytest.mark.parametrize("seed", range(40))
async def test_restore_leaves_the_stores_as_applying_every_record_would(seed: int, monkeypatch: Any) -> None:
    import random


    rng = random.Random(seed)
    records = _random_changelog(rng, rng.randrange(1, 300))
    if seed % 4 == 3:  # the undecoded records are applied a few keys at a time
        monkeypatch.setattr(restore_module, "RESTORE_MAX_PENDING", 3)
    start = None if seed % 2 else rng.randrange(len(records) + 1)

    def prepared() -> TaskStores:  # an incremental restore starts from a store with keys of its own
        stores = _json_stores()
        for i in range(5):
            stores[""].put(f"k{i * 2}", ["before", i])
            stores["w"].put(f"k{i * 3}", ["before", i])
        stores["w"].meta["latest"] = -5
        stores.changelog_records()
        stores[""].put("k1", ["dirty"])
        return stores

    expected = prepared()
    applied, offsets, positions, stream_time = _restore_each(expected, records, start)
    stores = prepared()
    restored = await restore(stores, FakeChangelogConsumer(records), CHANGELOG_TP, start)  # type: ignore[arg-type]
    assert _contents(stores) == _contents(expected)
    assert (restored.applied, restored.offsets, restored.positions, restored.stream_time) == (
        applied, offsets, positions, stream_time)
    assert restored.end == len(records)


async def test_restore_decodes_only_the_last_record_of_each_key() -> None:
    decoded: list[Any] = []

    def from_state(state: Any) -> Any:
        decoded.append(state)
        return state

    records: list[tuple[bytes | None, bytes | None]] = []
    for i in range(1_000):
        records.append((f"key-{i % 10}".encode(), orjson.dumps(i)))
        if i % 100 == 99:
            records.append(offset_marker("raw_trades", i + 1))
    records.append((b"key-3", None))
    stores = TaskStores([StoreSpec(from_state=from_state)])
    restored = await restore(stores, FakeChangelogConsumer(records), CHANGELOG_TP)  # type: ignore[arg-type]
    assert restored.applied == 1_001  # every state record read counts, as before
    assert restored.offsets == {"raw_trades": 1_000}
    assert sorted(decoded) == [990, 991, 992, 994, 995, 996, 997, 998, 999]  # key-3 ends deleted: not decoded
    assert list(stores[""].data) == [f"key-{i}" for i in range(10) if i != 3]


async def test_restore_of_real_trades_state_matches_every_record_applied() -> None:
    source = _task_stores()
    records: list[tuple[bytes | None, bytes | None]] = []
    btc, eth = SymbolTrades(PARAMS), SymbolTrades(PARAMS)
    for i in range(60):
        obj, symbol = (btc, "BTCUSDT") if i % 3 else (eth, "ETHUSDT")
        obj.update(_trade(symbol, i, 100.0 + 0.5 * (i % 5), 0.01 * (i + 1), "buy" if i % 2 else "sell", T0 + i))
        source[""].put(symbol, obj)
        records += source.changelog_records()
        records.append(offset_marker("raw_trades", i + 1))
    expected = _task_stores()
    _restore_each(expected, records, None)
    stores = _task_stores()
    await restore(stores, FakeChangelogConsumer(records), CHANGELOG_TP)  # type: ignore[arg-type]
    assert list(stores[""].data) == list(expected[""].data) == ["ETHUSDT", "BTCUSDT"]
    for symbol in ("BTCUSDT", "ETHUSDT"):
        assert stores[""].get(symbol).to_state() == expected[""].get(symbol).to_state() == \
            (btc if symbol == "BTCUSDT" else eth).to_state()


async def test_a_superseded_unreadable_snapshot_is_skipped_as_compaction_would_remove_it() -> None:
    records: list[tuple[bytes | None, bytes | None]] = [(b"a", b"not json"), (b"a", b"1"), (b"b", b"2")]
    stores = TaskStores([StoreSpec(on_error="fail")])
    await restore(stores, FakeChangelogConsumer(records), CHANGELOG_TP)  # type: ignore[arg-type]
    assert stores[""].data == {"a": 1, "b": 2}
    assert stores.resets == 0
    # The last snapshot of a key is still read: one this code cannot read fails (or resets) as before.
    with pytest.raises(StateRestoreError):
        await restore(stores, FakeChangelogConsumer([*records, (b"b", b"{")]), CHANGELOG_TP)  # type: ignore[arg-type]
    stores = TaskStores([StoreSpec()], on_error="reset")
    await restore(stores, FakeChangelogConsumer([*records, (b"b", b"{")]), CHANGELOG_TP)  # type: ignore[arg-type]
    assert stores[""].data == {"a": 1} and stores.resets == 1  # b's last snapshot is unreadable: b starts empty


# ---- one snapshot base, one version in the store's envelope, migration -----------------------------------


def _counter_v1() -> type[Snapshot]:
    class Counter(Snapshot):
        """The old code: count and total of the values added, layout 1 keeps them as one pair."""

        __slots__ = ("pair",)
        STATE_VERSION = 1

        def __init__(self) -> None:
            self.pair = [0, 0.0]

        def add(self, x: float) -> float:
            self.pair = [self.pair[0] + 1, self.pair[1] + x]
            return self.pair[1] / self.pair[0]

    return Counter


def _counter_v2(migrated: list[tuple[Any, int]]) -> type[Snapshot]:
    class Counter(Snapshot):
        """The new code: the same counter, layout 2 keeps count and total apart; migrates layout 1."""

        __slots__ = ("count", "total")
        STATE_VERSION = 2

        def __init__(self) -> None:
            self.count, self.total = 0, 0.0

        def add(self, x: float) -> float:
            self.count += 1
            self.total += x
            return self.total / self.count

        @classmethod
        def migrate(cls, state: Any, version: int) -> Any:
            migrated.append((state, version))
            if version != 1:
                return super().migrate(state, version)
            count, total = state["pair"]
            return {"count": count, "total": total}

    return Counter


async def test_a_changelog_written_by_v1_code_is_restored_by_v2_code_through_its_migration() -> None:
    counter_v1 = _counter_v1()
    v1 = TaskStores([StoreSpec(value_type=counter_v1)])
    store = v1[""]
    records: list[tuple[bytes | None, bytes | None]] = []
    values = [1.5, 2.25, -0.5, 4.0, 3.125, 0.75]
    for i, x in enumerate(values * 3):
        key = f"k{i % 4}"
        counter = store.get(key)
        if counter is None:
            counter = counter_v1()
            store.put(key, counter)
        counter.add(x)  # type: ignore[attr-defined]
        store.mark_dirty(key)
        if i % 5 == 4:
            records += v1.changelog_records()
            records.append(offset_marker("raw", i + 1))
    records += v1.changelog_records()
    assert {orjson.loads(v)["v"] for k, v in records if k is not None and k[:1] != b"\x00"} == {1}  # type: ignore
    migrated: list[tuple[Any, int]] = []
    v2 = TaskStores([StoreSpec(value_type=_counter_v2(migrated))], on_error="fail")
    await restore(v2, FakeChangelogConsumer(records), CHANGELOG_TP)  # type: ignore[arg-type]
    assert sorted(v for _, v in migrated) == [1, 1, 1, 1]  # once per key: the last record of each
    assert [type(obj).STATE_VERSION for obj in v2[""].data.values()] == [2, 2, 2, 2]
    for key in ("k0", "k1", "k2", "k3"):  # the restored objects continue exactly as the old ones do
        old, new = store.get(key), v2[""].get(key)
        assert [old.add(x) for x in values] == [new.add(x) for x in values]  # type: ignore[union-attr]
        assert new.to_state() == {"count": old.pair[0], "total": old.pair[1]}  # type: ignore[union-attr]
        v2[""].mark_dirty(key)
    written = dict(v2.changelog_records())
    assert orjson.loads(written[b"k0"]) == {"v": 2, "state": v2[""].get("k0").to_state()}  # type: ignore


def test_a_layout_newer_than_the_code_or_without_migration_follows_on_error() -> None:
    migrated: list[tuple[Any, int]] = []
    counter = _counter_v2(migrated)
    for value, reason in ((orjson.dumps({"v": 3, "state": {"count": 1, "total": 1.0}}), "newer than this code's 2"),
                          (orjson.dumps({"count": 1, "total": 1.0}), "no migration from layout version 0")):
        stores = TaskStores([StoreSpec(value_type=counter)], on_error="reset")
        stores.load(b"k", value)
        assert stores[""].get("k") is None and stores.resets == 1
        failing = TaskStores([StoreSpec(value_type=counter)], on_error="fail")
        with pytest.raises(StateRestoreError, match=reason):
            failing.load(b"k", value)
    assert [v for _, v in migrated] == [0, 0]  # a newer layout never reaches migrate


def test_a_spec_takes_version_migration_and_from_state_from_its_value_type() -> None:
    counter = _counter_v1()
    spec = StoreSpec(value_type=counter)
    assert (spec.version, spec.from_state, spec.migrate) == (1, counter.from_state, counter.migrate)
    explicit = StoreSpec(value_type=counter, version=7, from_state=dict)
    assert (explicit.version, explicit.from_state) == (7, dict)


# ---- a Record in a JSON store stays a Record --------------------------------------------------------------


class Visit(Record):
    page: str
    n: int = 0


class Session(Record):
    user: str
    last: Visit | None = None
    pages: list = dataclasses.field(default_factory=list)


def test_a_record_in_a_json_store_comes_back_as_that_record() -> None:
    store = ChangelogStore(StoreSpec(name="t"))
    session = Session("ann", Visit("/a", 2), [Visit("/b"), {"plain": 1}])
    store.put("ann", session)
    store.put("n", {"count": 3, "visit": Visit("/c", 1)})
    store.put("plain", [1, "x", {"y": None}])
    records = store.changelog_records()
    doc = orjson.loads(dict(records)[STORE_PREFIX + b"t\x00ann"])
    assert doc["__faust"] == {"ns": f"{__name__}.Session"} and doc["last"]["__faust"] == {"ns": f"{__name__}.Visit"}
    restored = TaskStores([StoreSpec(name="t")])
    for key, value in records:
        restored.load(key, value)
    back = restored["t"]
    assert back.get("ann") == session and type(back.get("ann")) is Session
    assert type(back.get("ann").last) is Visit and back.get("ann").pages == [Visit("/b"), {"plain": 1}]
    assert back.get("n") == {"count": 3, "visit": Visit("/c", 1)} and back.get("plain") == [1, "x", {"y": None}]


def test_a_record_of_a_class_this_program_does_not_have_follows_on_error() -> None:
    value = orjson.dumps({"page": "/a", "__faust": {"ns": "no_such_module.Visit"}})
    stores = TaskStores([StoreSpec(name="t")], on_error="reset")
    stores.load(STORE_PREFIX + b"t\x00k", value)
    assert stores["t"].get("k") is None and stores.resets == 1
    not_a_record = orjson.dumps({"__faust": {"ns": "collections.OrderedDict"}})
    with pytest.raises(StateRestoreError, match="no Record class"):
        TaskStores([StoreSpec(name="t")], on_error="fail").load(STORE_PREFIX + b"t\x00k", not_a_record)


# ---- the store versioned by timestamp ---------------------------------------------------------------------


def _versioned(history_ms: int = 1_000, on_error: str = "reset") -> TaskStores:
    return TaskStores([StoreSpec(name="v", history_ms=history_ms)], on_error)


def test_a_versioned_store_answers_as_of_a_timestamp() -> None:
    store = _versioned()["v"]
    assert isinstance(store, VersionedStore) and store.get("k", 100) is None
    for t, value in ((100, "a"), (300, "c"), (200, "b")):  # out of order: the versions are sorted
        assert store.put("k", value, t)
    assert store.get("k", 99) is None
    assert store.get("k", 100) == VersionedRecord("a", 100) and store.get("k", 199) == VersionedRecord("a", 100)
    assert store.get("k", 250) == VersionedRecord("b", 200) and store.get("k") == VersionedRecord("c", 300)
    assert store.versions("k") == [VersionedRecord("a", 100), VersionedRecord("b", 200), VersionedRecord("c", 300)]
    store.put("k", "B", 200)  # the same timestamp: replaced
    assert store.get("k", 200) == VersionedRecord("B", 200) and len(store.versions("k")) == 3
    assert store.scan("k") == ["k"] and store.scan("x") == [] and len(store) == 1 and "k" in store
    store.put("k2", "z", 100)
    store.put("j", "z", 100)
    assert store.scan("k") == ["k", "k2"] and store.scan("") == ["j", "k", "k2"]  # a new key: scanned again
    store.delete("k2")
    assert store.scan("k") == ["k"] and store.get("k2") is None
    with pytest.raises(ValueError, match="timestamp"):
        store.put("k", "d", -1)
    with pytest.raises(ValueError, match="None"):
        store.put("k", None, 400)
    with pytest.raises(TypeError):
        store.mark_dirty("k")


def test_each_put_writes_one_changelog_record_and_expired_versions_are_tombstoned() -> None:
    stores = _versioned(history_ms=1_000)
    store = stores["v"]
    tombstones = []
    for t in range(0, 1_500, 100):
        store.put("k", {"t": t}, t)
        store.put("other", {"t": t}, t)
        records = stores.changelog_records()
        puts = [k for k, v in records if k.startswith(STORE_PREFIX) and v is not None]
        assert sorted(puts) == [STORE_PREFIX + f"v\x00{key}\x00{t}".encode() for key in ("k", "other")]
        assert (META_KEY + b"v", orjson.dumps({"observed": t})) in records
        tombstones += [k for k, v in records if v is None]
    # Newest 1,400: cutoff 400, the version valid then (from 400) and every later one kept; the older ones were
    # tombstoned as they expired.
    assert [v.timestamp for v in store.versions("k")] == list(range(400, 1_500, 100))
    assert sorted(tombstones) == sorted(STORE_PREFIX + f"v\x00{key}\x00{t}".encode() for key in ("k", "other")
                                        for t in range(0, 400, 100))
    assert store.get("k", 399) is None and store.get("k", 450) == VersionedRecord({"t": 400}, 400)
    assert not store.put("k", {"t": 300}, 300)  # older than the version valid at the cutoff: not stored
    assert stores.changelog_records() == []


def test_expiry_follows_the_newest_timestamp_of_the_whole_store_and_lookups_never_see_expired_versions() -> None:
    stores = _versioned(history_ms=1_000)
    store = stores["v"]
    store.put("quiet", "a", 100)
    store.put("quiet", "b", 200)
    store.put("busy", "x", 5_000)  # cutoff 4,000: "quiet" keeps only "b" (valid at the cutoff)
    assert store.get("quiet", 150) is None and store.get("quiet", 4_500) == VersionedRecord("b", 200)
    assert store.versions("quiet") == [VersionedRecord("b", 200)]
    records = dict(stores.changelog_records())  # the commit drops it: a tombstone
    assert records[STORE_PREFIX + b"v\x00quiet\x00100"] is None and store.data["quiet"].times == [200]


async def test_a_versioned_store_restores_exactly_from_its_changelog() -> None:
    stores = _versioned(history_ms=500)
    store = stores["v"]
    records: list[tuple[bytes | None, bytes | None]] = []
    for i in range(60):
        t = 1_000 + 37 * i + (i % 3) * 50  # not in order
        store.put(f"k{i % 4}", {"i": i}, t)
        if i % 7 == 6:
            records += stores.changelog_records()
            records.append(offset_marker("raw", i + 1))
        if i == 30:
            store.delete("k3")
    records += stores.changelog_records()
    restored = _versioned(history_ms=500, on_error="fail")
    await restore(restored, FakeChangelogConsumer(records), CHANGELOG_TP)  # type: ignore[arg-type]
    again = restored["v"]
    assert isinstance(again, VersionedStore) and again.observed == store.observed
    assert again.data == store.data and again.scan("k") == store.scan("k")
    for key in ("k0", "k1", "k2", "k3"):
        for t in range(900, 3_500, 13):
            assert again.get(key, t) == store.get(key, t)


def test_a_versioned_lookup_costs_a_binary_search() -> None:
    store = _versioned(history_ms=10**9)["v"]
    for t in range(100_000):
        store.put("k", t, t)
    calls = 0
    original = versioned_module.bisect_right

    def counting(*args: Any, **kwargs: Any) -> int:
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)

    versioned_module.bisect_right = counting  # type: ignore[assignment]
    try:
        assert store.get("k", 54_321) == VersionedRecord(54_321, 54_321)
    finally:
        versioned_module.bisect_right = original  # type: ignore[assignment]
    assert calls <= 2  # the version and the expiry floor: O(log n) each, no scan of the 100,000 versions
