"""Stores on disk (``store: rocksdb://``): the same reads and changelog records as the in-memory store for the same
operations, the same state restored from a changelog, and the checkpoint of a clean close (trusted) versus a crash
(wiped and restored)."""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from pydantic import ValidationError

from stream_processor.engine.records import Record
from stream_processor.engine.rocksdb_store import RocksStore, TaskFiles, store_root, task_files
from stream_processor.engine.settings import ProcessorSettings
from stream_processor.engine.state import StoreSpec, TaskStores, offset_marker, restore

TP = TopicPartition("app-counts-changelog", 0)


class Reading(Record):
    sensor: str
    value: float


class FakeChangelog:
    """The calls ``restore`` makes of a group-less consumer, over one in-memory changelog partition."""

    def __init__(self, records: list[tuple[bytes, bytes | None]], begin: int = 0) -> None:
        self.records = [SimpleNamespace(offset=i, key=k, value=v) for i, (k, v) in enumerate(records)]
        self.begin = begin
        self.pos = 0

    def assign(self, tps: list[TopicPartition]) -> None:
        pass

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.pos = self.begin

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.pos = offset

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.records) for tp in tps}

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.begin for tp in tps}

    async def position(self, tp: TopicPartition) -> int:
        return self.pos

    async def getmany(self, tp: TopicPartition, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        batch = self.records[self.pos : self.pos + 3]
        self.pos += len(batch)
        return {tp: batch}


SPECS = [StoreSpec(), StoreSpec(name="counts"), StoreSpec(name="latest", keep_meta=("latest",))]


@pytest.fixture
def files(tmp_path: Path) -> Iterator[TaskFiles]:
    made = TaskFiles(tmp_path / "db")
    yield made
    made.close()


def _value(rng: random.Random) -> Any:
    kind = rng.randrange(4)
    if kind == 0:
        return rng.randrange(100)
    if kind == 1:
        return {"n": rng.randrange(5), "tags": ["a", "é"]}
    if kind == 2:
        return Reading(sensor=f"s{rng.randrange(3)}", value=rng.random())
    return None


def _contents(stores: TaskStores) -> dict[str, dict[str, Any]]:
    return {name: dict(store.items()) for name, store in stores.stores.items()}


def _run(stores: TaskStores, seed: int, changelog: list[tuple[bytes, bytes | None]]) -> list[Any]:
    """A random sequence of the processor API's calls and commits; returns every read."""
    rng = random.Random(seed)
    reads: list[Any] = []
    keys = [f"k{i}" for i in range(12)] + ["ü-key", "\x02[1,2]"]
    for _ in range(400):
        store = stores[rng.choice(list(stores.stores))]
        key = rng.choice(keys)
        op = rng.randrange(9)
        if op <= 2:
            store.put(key, _value(rng))
        elif op == 3:
            store.delete(key)
        elif op == 4:
            obj = store.get(key)
            if isinstance(obj, dict):
                obj["n"] = obj.get("n", 0) + 1  # changed in place, then marked dirty (as a Table does)
                store.mark_dirty(key)
            reads.append(copy.deepcopy(obj))  # as read now (the in-memory store's object may change later)
        elif op == 5:
            reads.append((key in store, len(store), sorted(store.keys())))
        elif op == 6:
            store.meta["latest"] = rng.randrange(1000)
        elif op == 7:
            reads.append(copy.deepcopy(sorted(store.items(), key=lambda item: item[0])))
        else:
            records = stores.changelog_records()
            changelog.extend(sorted(records, key=lambda r: r[0]))
            changelog.append(offset_marker("counts", len(changelog) + 1))
    return reads


@pytest.mark.parametrize("seed", range(6))
def test_the_same_operations_give_the_same_reads_and_changelog_records(seed: int, files: TaskFiles) -> None:
    memory, disk = TaskStores(SPECS), TaskStores(SPECS, files=files)
    assert isinstance(disk["counts"], RocksStore)
    memory_log: list[tuple[bytes, bytes | None]] = []
    disk_log: list[tuple[bytes, bytes | None]] = []
    assert _run(disk, seed, disk_log) == _run(memory, seed, memory_log)
    assert disk_log == memory_log
    assert _contents(disk) == _contents(memory)
    assert disk.keys() == memory.keys() > 0


@pytest.mark.parametrize("seed", range(4))
async def test_restore_from_a_changelog_gives_the_in_memory_store_s_state(seed: int, files: TaskFiles) -> None:
    log: list[tuple[bytes, bytes | None]] = []
    _run(TaskStores(SPECS), seed, log)
    memory, disk = TaskStores(SPECS), TaskStores(SPECS, files=files)
    disk["counts"].put("stale", 1)  # a restore from the beginning starts from empty stores
    disk.changelog_records()
    a = await restore(memory, FakeChangelog(log), TP)  # type: ignore[arg-type]
    b = await restore(disk, FakeChangelog(log), TP)  # type: ignore[arg-type]
    assert (b.applied, b.offsets, b.end) == (a.applied, a.offsets, a.end)
    assert _contents(disk) == _contents(memory)
    assert "stale" not in disk["counts"]
    assert disk["latest"].meta == memory["latest"].meta
    assert isinstance(next(v for v in _all_values(disk) if isinstance(v, Record)), Reading)


def _all_values(stores: TaskStores) -> list[Any]:
    return [v for store in stores.stores.values() for _, v in store.items()]


async def test_a_clean_close_s_checkpoint_is_trusted_and_only_what_follows_is_read(tmp_path: Path) -> None:
    log: list[tuple[bytes, bytes | None]] = []
    first = TaskStores(SPECS, files=TaskFiles(tmp_path / "db"))
    await restore(first, FakeChangelog(log), TP)  # type: ignore[arg-type]
    first["counts"].put("a", 1)
    first["latest"].put("w", 2)
    first["latest"].meta["latest"] = 77
    log.extend(first.changelog_records())
    checkpoint = len(log)
    first.close(checkpoint)  # every write committed: a clean close
    log.append((b"\x01counts\x00b", b"5"))  # written by another owner afterwards
    again = TaskStores(SPECS, files=TaskFiles(tmp_path / "db"))
    restored = await restore(again, FakeChangelog(log), TP)  # type: ignore[arg-type]
    assert restored.applied == 1  # only the record after the checkpoint
    assert dict(again["counts"].items()) == {"a": 1, "b": 5}
    assert again["latest"].meta == {"latest": 77}  # the windowed table's latest time came back from the files
    # The checkpoint was taken: a crash now (no clean close) means a wipe and a full restore next time.
    again["counts"].put("uncommitted", 9)
    again.changelog_records()  # sealed (written to RocksDB) but its transaction never commits
    third = TaskStores(SPECS, files=TaskFiles(tmp_path / "db"))
    restored = await restore(third, FakeChangelog(log), TP)  # type: ignore[arg-type]
    assert restored.applied == len(log)
    assert dict(third["counts"].items()) == {"a": 1, "b": 5}
    third.close()


async def test_a_crash_after_the_rocksdb_write_leaves_nothing_the_changelog_lacks(tmp_path: Path) -> None:
    log: list[tuple[bytes, bytes | None]] = [(b"\x01counts\x00a", b"1")]
    first = TaskStores(SPECS, files=TaskFiles(tmp_path / "db"))
    await restore(first, FakeChangelog(log), TP)  # type: ignore[arg-type]
    first["counts"].put("a", 2)
    first["counts"].put("lost", 3)
    first.changelog_records()  # the seal wrote RocksDB; the process dies before the commit (no close)
    # A new owner in this process (the handle is taken over, as after a kill -9 and restart it is reopened).
    second = TaskStores(SPECS, files=TaskFiles(tmp_path / "db"))
    await restore(second, FakeChangelog(log), TP)  # type: ignore[arg-type]
    assert dict(second["counts"].items()) == {"a": 1}
    first.close(len(log))  # stale (its handle was taken over): closes nothing, writes no checkpoint
    assert dict(second["counts"].items()) == {"a": 1}
    second.close()  # not a clean close either
    third = TaskStores(SPECS, files=TaskFiles(tmp_path / "db"))
    restored = await restore(third, FakeChangelog(log), TP)  # type: ignore[arg-type]
    assert restored.applied == len(log)  # no checkpoint: wiped, everything read
    third.close()


async def test_a_checkpoint_outside_the_changelog_is_not_trusted(tmp_path: Path) -> None:
    first = TaskStores(SPECS, files=TaskFiles(tmp_path / "db"))
    first["counts"].put("old", 1)
    first.changelog_records()
    first.close(50)  # the changelog topic was re-created since: it has 1 record
    second = TaskStores(SPECS, files=TaskFiles(tmp_path / "db"))
    restored = await restore(second, FakeChangelog([(b"\x01counts\x00new", b"2")]), TP)  # type: ignore[arg-type]
    assert restored.applied == 1
    assert dict(second["counts"].items()) == {"new": 2}
    second.close(3)
    third = TaskStores(SPECS, files=TaskFiles(tmp_path / "db"))
    log = [(b"\x01counts\x00new", b"2")] * 5
    restored = await restore(third, FakeChangelog(log, begin=4), TP)  # type: ignore[arg-type]
    assert restored.applied == 1  # records below the checkpoint were deleted: from the log start, wiped
    third.close()


async def test_an_unreadable_snapshot_resets_its_key_as_in_memory(files: TaskFiles) -> None:
    log: list[tuple[bytes, bytes | None]] = [(b"\x01counts\x00bad", b"{not json"), (b"\x01counts\x00ok", b"1")]
    memory, disk = TaskStores(SPECS), TaskStores(SPECS, files=files)
    await restore(memory, FakeChangelog(log), TP)  # type: ignore[arg-type]
    await restore(disk, FakeChangelog(log), TP)  # type: ignore[arg-type]
    assert _contents(disk) == _contents(memory) == {"": {}, "counts": {"ok": 1}, "latest": {}}
    assert disk.resets == memory.resets == 1


def test_the_store_setting_and_where_the_files_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def settings(store: str) -> ProcessorSettings:
        return ProcessorSettings(type="t", consumer_group="g", input_topics=["in"], store=store)

    assert settings("rocksdb://").store == "rocksdb://"
    assert ProcessorSettings(type="t", consumer_group="g", input_topics=["in"]).store == "memory://"
    with pytest.raises(ValidationError, match="must be 'memory://' or 'rocksdb://'"):
        settings("redis://localhost")
    monkeypatch.chdir(tmp_path)
    assert store_root("rocksdb://", "app") == tmp_path / "app-data" / "rocksdb"
    assert store_root("rocksdb:///var/state", "app") == Path("/var/state")
    assert store_root("memory://", "app") is None
    made = task_files("rocksdb://", "app", "app-counts-changelog", 3)
    assert made is not None and made.path == tmp_path / "app-data" / "rocksdb" / "app-counts-changelog" / "3"
    assert task_files("memory://", "app", "x", 0) is None


# ---- a Faust-style table agent under the TestDriver (the Task code the worker runs) ------------------------------


def _table_app(store: str) -> Any:
    from tests.unit.engine.support import make_app

    app = make_app(stream_processors={"track": {"store": store}})
    counts = app.Table("counts", default=int)
    profiles = app.Table("profiles", default=dict)

    @app.agent("events", sink=["out"])
    async def track(stream: Any) -> Any:
        async for event in stream:
            user = event["user"]
            if event["op"] == "del":
                del profiles[user]
            else:
                profiles[user].setdefault("tags", []).append(event["op"])  # changed in place
                counts[user] += 1
            yield {"user": user, "count": counts[user], "known": user in profiles, "size": len(counts)}

    return app


def _drive_table_app(drive: Any, store: str) -> tuple[list[Any], dict[str, Any], dict[str, Any], list[Any]]:
    driver = drive(_table_app(store))
    rng = random.Random(3)
    for n in range(300):
        user = f"u{rng.randrange(20)}"
        driver.pipe("events", {"op": "del" if rng.random() < 0.1 else f"t{n % 3}", "user": user}, user.encode())
        if n % 70 == 69:
            driver.restart()  # tasks closed and reopened: restored from the changelog (on disk: its checkpoint)
    changelog = [(r.key, r.value) for r in driver.changelog("track")]
    return driver.values("out"), driver.table("counts"), driver.table("profiles"), changelog


def test_a_table_agent_gives_the_same_outputs_tables_and_changelog_on_disk(drive: Any, tmp_path: Path) -> None:
    """Needs Task to build its stores with ``task_files`` (stream_processor/engine/task.py)."""
    memory = _drive_table_app(drive, "memory://")
    disk = _drive_table_app(drive, f"rocksdb://{tmp_path}")
    assert disk[0] == memory[0] and len(memory[0]) >= 270  # a del of an unknown user is dead-lettered
    assert disk[1:3] == memory[1:3] and memory[1]
    assert sorted(disk[3], key=repr) == sorted(memory[3], key=repr)
    databases = [p.name for p in (tmp_path / "t-track-state-changelog").iterdir()]
    assert databases and all(name.isdigit() for name in databases)


def test_keys_iterate_sorted_on_disk_in_insertion_order_in_memory(files: TaskFiles) -> None:
    memory, disk = TaskStores(SPECS), TaskStores(SPECS, files=files)
    for stores in (memory, disk):
        for key in ("b", "é", "a"):
            stores["counts"].put(key, 1)
        stores.changelog_records()
        stores["counts"].put("c", 2)  # not yet committed: merged into the order
    assert memory["counts"].keys() == ["b", "é", "a", "c"]
    assert disk["counts"].keys() == ["a", "b", "c", "é"]  # as Faust's RocksDB store: by key (code point)
