"""Tables and windowed tables through the TestDriver: defaults, tombstones, in-place changes, ownership, windows
and their expiry, records as values, versioned values with migration."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from stream_processor.engine.exceptions import StateRestoreError
from stream_processor.engine.records import Record
from stream_processor.engine.topics import changelog_topic
from tests.unit.engine.support import T0, make_app, reasons

# ---- plain tables -------------------------------------------------------------------------------------


def profiles_app() -> Any:
    app = make_app()
    counts = app.Table("counts", default=int)
    profiles = app.Table("profiles", default=dict)
    strict = app.Table("strict")  # no default: a missing key is a KeyError

    @app.agent("events", sink=["out"])
    async def track(stream):
        async for event in stream:
            op, user = event["op"], event.get("user")
            if op == "peek":
                yield {"count": counts[user], "known": user in counts, "size": len(counts),
                       "users": sorted(counts)}
            elif op == "strict":
                yield strict[user]
            elif op == "del":
                del profiles[user]
            elif op == "tag":
                if user not in profiles:
                    profiles[user] = {"tags": []}
                profiles[user]["tags"].append(event["tag"])  # in place, not assigned back
                counts[user] += 1
            elif op == "int-key":
                counts[event["n"]] = event["n"] * 2

    return app


def test_a_missing_key_reads_the_default_without_storing_it(drive) -> None:
    driver = drive(profiles_app())
    driver.pipe("events", {"op": "tag", "user": "ann", "tag": "a"})
    driver.pipe("events", {"op": "peek", "user": "bob"})
    assert driver.values("out") == [{"count": 0, "known": False, "size": 1, "users": ["ann"]}]
    assert driver.table("counts") == {"ann": 1}
    assert {r.key for r in driver.changelog("track")} == {b"\x01counts\x00ann", b"\x01profiles\x00ann"}


def test_a_missing_key_without_default_is_a_key_error(drive) -> None:
    driver = drive(profiles_app())
    driver.pipe("events", {"op": "strict", "user": "ann"})
    assert reasons(driver)[0][0] == "processing_error"
    assert "KeyError('ann')" in driver.dead_letters()[0].header("error")


def test_keys_that_are_not_str_are_stored_as_json(drive) -> None:
    driver = drive(profiles_app())
    driver.pipe("events", {"op": "int-key", "n": 7})
    assert driver.table("counts") == {7: 14}
    assert [(r.key, r.value) for r in driver.changelog("track")] == [(b"\x01counts\x00\x027", b"14")]


def test_a_value_changed_in_place_is_written_and_survives_a_restart(drive) -> None:
    driver = drive(profiles_app())
    driver.pipe("events", {"op": "tag", "user": "ann", "tag": "a"})
    driver.pipe("events", {"op": "tag", "user": "ann", "tag": "b"})
    snapshots = [orjson.loads(r.value) for r in driver.changelog("track") if r.key == b"\x01profiles\x00ann"]
    assert snapshots == [{"tags": ["a"]}, {"tags": ["a", "b"]}]
    driver.restart()
    driver.pipe("events", {"op": "tag", "user": "ann", "tag": "c"})
    assert driver.table("profiles") == {"ann": {"tags": ["a", "b", "c"]}}
    assert driver.table("counts") == {"ann": 3}


def test_delete_is_a_tombstone_and_stays_deleted_after_restart(drive) -> None:
    driver = drive(profiles_app())
    driver.pipe("events", {"op": "tag", "user": "ann", "tag": "a"})
    driver.pipe("events", {"op": "del", "user": "ann"})
    last = driver.changelog("track")[-1]
    assert (last.key, last.value) == (b"\x01profiles\x00ann", None)
    assert driver.table("profiles") == {}
    driver.restart()
    driver.pipe("events", {"op": "peek", "user": "ann"})
    assert driver.table("profiles") == {}
    assert driver.table("counts") == {"ann": 1}  # the other table kept its key
    driver.pipe("events", {"op": "del", "user": "ann"})  # deleting a missing key: KeyError, like a dict
    assert reasons(driver)[0][0] == "processing_error"


def test_a_table_outside_an_agent_reads_what_this_process_holds_and_refuses_writes() -> None:
    app = make_app()
    table = app.Table("t", default=int)
    windowed = app.Table("w", default=int).tumbling(10)
    assert table["k"] == 0 and len(table) == 0  # no task of it open here: nothing held, the default read
    with pytest.raises(RuntimeError, match="outside an agent"):
        table["k"] = 1
    with pytest.raises(RuntimeError, match="outside an agent"):
        del table["k"]
    with pytest.raises(RuntimeError):
        windowed["k"] += 1


def test_a_table_another_agent_owns_is_refused_while_processing(drive) -> None:
    app = make_app()
    table = app.Table("t", default=int)

    @app.agent("src", tables=[])  # declares none: the table is not its own
    async def intruder(stream):
        async for _ in stream:
            table["k"] += 1

    driver = drive(app)
    driver.pipe("src", 1)
    assert "not a table of agent 'intruder'" in driver.dead_letters()[0].header("error")



def test_a_table_name_is_declared_once_and_must_be_usable() -> None:
    app = make_app()
    app.Table("t")
    with pytest.raises(ValueError, match="already declared"):
        app.Table("t")
    with pytest.raises(ValueError, match="non-empty"):
        app.Table("")
    with pytest.raises(ValueError, match="without NUL"):
        app.Table("a\x00b")



# ---- records as values ---------------------------------------------------------------------------------


class PageStats(Record):
    page: str
    count: int = 0
    last: Click | None = None


class Click(Record):
    page: str
    ms: int


def stats_app() -> Any:
    app = make_app()
    stats = app.Table("stats", default=dict).hopping(10, 5, expires=10, expire_by="stream_time")
    last = app.Table("last")

    @app.agent("clicks", sink=["out"])
    async def track(stream):
        async for click in stream:
            page = click["page"]
            current = stats[page].current() or PageStats(page)  # a Record after a restart too
            stats[page] = PageStats(page, current.count + 1, Click(page, click["ms"]))
            previous = last.get(page)
            last[page] = [Click(page, click["ms"]), {"n": current.count}]
            yield {"count": stats[page].current().count, "last_ms": stats[page].current().last.ms,
                   "previous_ms": None if previous is None else previous[0].ms}

    return app


def test_a_record_kept_in_a_table_is_a_record_after_a_restart(drive) -> None:
    driver = drive(stats_app())
    driver.pipe("clicks", {"page": "p", "ms": 5}, key="p", timestamp=T0)
    driver.restart()
    driver.pipe("clicks", {"page": "p", "ms": 7}, key="p", timestamp=T0 + 1_000)
    assert driver.values("out") == [{"count": 1, "last_ms": 5, "previous_ms": None},
                                    {"count": 2, "last_ms": 7, "previous_ms": 5}]
    values = list(driver.table("stats").values())
    assert values and all(type(v) is PageStats and type(v.last) is Click for v in values)
    assert driver.table("last")["p"] == [Click("p", 7), {"n": 1}]
    stored = [orjson.loads(r.value) for r in driver.changelog("track") if r.key.startswith(b"\x01stats")]
    assert stored[-1]["__faust"] == {"ns": f"{__name__}.PageStats"}  # the class is written with the value


# ---- versioned values and migration -------------------------------------------------------------------


class BalanceV1:
    """The old code: balances in dollars, layout version 1."""

    STATE_VERSION = 1

    def __init__(self, dollars: float = 0.0) -> None:
        self.dollars = dollars

    def to_state(self) -> dict[str, Any]:
        return {"dollars": self.dollars}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BalanceV1:
        return cls(state["dollars"])

    def add(self, cents: int) -> None:
        self.dollars += cents / 100


class BalanceV2:
    """The new code: cents, layout version 2, migrates version 1 (and refuses anything else)."""

    STATE_VERSION = 2
    migrated: list[int] = []

    def __init__(self, cents: int = 0) -> None:
        self.cents = cents

    def to_state(self) -> dict[str, Any]:
        return {"cents": self.cents}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BalanceV2:
        return cls(state["cents"])

    @classmethod
    def migrate(cls, state: Any, version: int) -> Any:
        cls.migrated.append(version)
        if version != 1:
            raise ValueError(f"no migration from version {version}")
        return {"cents": round(state["dollars"] * 100)}

    def add(self, cents: int) -> None:
        self.cents += cents


def balances_app(value_type: type, on_error: str = "reset") -> Any:
    app = make_app()
    balances = app.Table("balances", default=value_type, value_type=value_type, on_error=on_error)

    @app.agent("payments", sink=["balances_out"])
    async def book(stream):
        async for payment in stream:
            balance = balances[payment["account"]]
            balance.add(payment["cents"])
            balances[payment["account"]] = balance
            yield {"account": payment["account"], "state": balance.to_state()}

    return app


def upgraded(drive: Any, old: Any, value_type: type, on_error: str = "reset",
             extra: list[tuple[bytes, bytes | None]] = ()) -> Any:
    """A driver of the new code whose changelog is the old driver's (plus ``extra`` records), as after a deploy."""
    new = drive(balances_app(value_type, on_error))
    topic = changelog_topic(new.settings, "book")
    for record in old.changelog("book"):
        new.pipe(topic, record.value, key=record.key, partition=record.partition)
    for key, value in extra:
        new.pipe(topic, value, key=key, partition=0)
    return new


def test_snapshots_carry_their_layout_version(drive) -> None:
    old = drive(balances_app(BalanceV1))
    old.pipe("payments", {"account": "a", "cents": 150})
    assert [orjson.loads(r.value) for r in old.changelog("book")] == [{"v": 1, "state": {"dollars": 1.5}}]


def test_an_old_version_snapshot_is_migrated_on_restore(drive) -> None:
    BalanceV2.migrated.clear()
    old = drive(balances_app(BalanceV1))
    old.pipe("payments", {"account": "a", "cents": 150})
    old.pipe("payments", {"account": "b", "cents": 5})
    new = upgraded(drive, old, BalanceV2)
    new.pipe("payments", {"account": "a", "cents": 1})
    assert new.values("balances_out") == [{"account": "a", "state": {"cents": 151}}]
    assert {k: v.cents for k, v in new.table("balances").items()} == {"a": 151, "b": 5}
    assert BalanceV2.migrated == [1, 1]
    # What the new code writes is version 2.
    assert orjson.loads(new.changelog("book")[-1].value) == {"v": 2, "state": {"cents": 151}}


def test_an_unreadable_snapshot_resets_its_key_with_on_error_reset(drive) -> None:
    old = drive(balances_app(BalanceV1))
    old.pipe("payments", {"account": "a", "cents": 150})
    future = orjson.dumps({"v": 3, "state": {"micros": 1}})
    new = upgraded(drive, old, BalanceV2, extra=[(b"\x01balances\x00b", future),
                                                 (b"\x01balances\x00c", b"not json")])
    new.pipe("payments", {"account": "b", "cents": 7})
    new.pipe("payments", {"account": "c", "cents": 8})
    assert [v["state"] for v in new.values("balances_out")] == [{"cents": 7}, {"cents": 8}]  # from empty state
    assert new.table("balances")["a"].cents == 150  # the readable key is kept


def test_an_unreadable_snapshot_fails_the_restore_with_on_error_fail(drive) -> None:
    old = drive(balances_app(BalanceV1))
    old.pipe("payments", {"account": "a", "cents": 150})
    new = upgraded(drive, old, BalanceV2, on_error="fail",
                   extra=[(b"\x01balances\x00b", orjson.dumps({"v": 3, "state": {}}))])
    with pytest.raises(StateRestoreError, match="'balances'.*'b'.*version 3, newer than this code's 2"):
        new.pipe("payments", {"account": "a", "cents": 1})
    assert new.values("balances_out") == []


def test_an_unversioned_snapshot_is_version_zero(drive) -> None:
    BalanceV2.migrated.clear()
    new = drive(balances_app(BalanceV2))
    topic = changelog_topic(new.settings, "book")
    new.pipe(topic, orjson.dumps({"dollars": 2.0}), key=b"\x01balances\x00a", partition=0)
    new.pipe("payments", {"account": "a", "cents": 1})
    assert BalanceV2.migrated == [0]  # offered to migrate as version 0, which it refuses: reset
    assert new.values("balances_out") == [{"account": "a", "state": {"cents": 1}}]


def test_the_yaml_state_errors_setting_makes_an_unreadable_snapshot_fail(drive) -> None:
    app = make_app(stream_processors={"book": {"state_errors": "fail"}})
    balances = app.Table("balances", default=BalanceV2, value_type=BalanceV2)

    @app.agent("payments")
    async def book(stream):
        async for payment in stream:
            balances[payment["account"]].add(1)

    driver = drive(app)
    topic = changelog_topic(driver.settings, "book")
    driver.pipe(topic, b"not json", key=b"\x01balances\x00a", partition=0)
    with pytest.raises(StateRestoreError):
        driver.pipe("payments", {"account": "a"})


# ---- outside a record ----------------------------------------------------------------------------------------------


def test_a_timer_reads_the_partitions_this_process_holds_and_cannot_write(drive: Any) -> None:
    app = make_app(topics={"src": {"partitions": 2}})
    counts = app.Table("counts", default=int)

    @app.agent("src")
    async def count(stream):
        async for value in stream:
            counts[value] += 1

    driver = drive(app)
    for key in ("a", "b", "a"):
        driver.pipe("src", key, key=key)
    driver.flush()
    # Read as a timer does (no record being processed): both tasks' partitions, as they hold them now.
    assert dict(counts.items()) == {"a": 2, "b": 1} and len(counts) == 2 and "a" in counts
    assert counts["never"] == 0 and "never" not in counts  # a default read is not written back
    with pytest.raises(RuntimeError, match="written outside an agent's record"):
        counts["a"] = 5
    driver.close()
    assert dict(counts.items()) == {}  # its tasks closed: this process holds no partition of it
