"""Tables and windows as Faust defines them, each program run under faust-streaming 0.15.3's own
``agent.test_context()`` and under the TestDriver with the same source (only the ``import`` line differs), and the
outputs and tables compared: durations, the window arithmetic, ``now()/current()/value()/delta()`` on replayed old
data (faust-streaming's ``examples/windowing/tumbling.py`` and ``hopping.py``), ``relative_to_field`` in seconds
with a ``Model.field`` reference, ``relative_to_now``, ``on_window_close``, ``SetTable`` and two agents sharing it
(``examples/tableofset.py``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import types
from typing import Any

import orjson
import pytest

from stream_processor.engine.records import Record
from stream_processor.engine.testing import TestDriver
from tests.unit.engine.support import KAFKA

T_OLD = 1_600_000_003  # seconds: replayed data from 2020, not on a window boundary


def load(name: str, import_line: str, source: str, app: Any) -> types.ModuleType:
    """``source`` (a Faust program's body, after its ``app = ...`` line) as module ``name`` with ``app`` given."""
    module = types.ModuleType(name)
    module.app = app
    module.rows = []
    exec(compile(import_line + "\n" + source, f"<{name}>", "exec", dont_inherit=True), module.__dict__)  # noqa: S102
    return module


def faust_app(app_id: str) -> Any:
    import faust

    return faust.App(app_id, broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False,
                     topic_partitions=1)


def our_app(app_id: str) -> Any:
    import stream_processor

    return stream_processor.App(app_id, settings={"kafka": KAFKA})


class Member(Record):
    name: str


class Stamp(Record):
    at: float


def win(start: float, size: float = 10.0) -> tuple[float, float]:
    """A window as Faust writes it: ``(start, start + size - 0.1)``."""
    return float(start), float(start) + size - 0.1


Input = tuple[str, bytes, bytes | None, float]  # (topic, value, key, timestamp in seconds)


def run_faust(source: str, agents: list[str], inputs: list[Input]) -> types.ModuleType:
    """The program under faust's test_context: each agent's test wrapper on its own topic, inputs in order."""
    module = load("faust_tables_faust", "import faust", source, faust_app("faust-tables"))

    async def main() -> None:
        wrappers = {}
        for name in agents:
            agent = getattr(module, name)
            wrapper = agent.test_context(channel=agent.channel)
            wrappers[agent.channel.get_topic_name()] = await wrapper.__aenter__()
        try:
            for topic, value, key, ts in inputs:
                await wrappers[topic].put(value, key=key, timestamp=ts, partition=0)
        finally:
            for wrapper in wrappers.values():
                await wrapper.__aexit__(None, None, None)

    asyncio.run(asyncio.wait_for(main(), timeout=60))
    return module


def run_ours(source: str, inputs: list[Input], *, share: bool = False) -> tuple[types.ModuleType, TestDriver]:
    """The program under the TestDriver (closed by the caller)."""
    app = our_app("faust-tables")
    if not hasattr(app, "SetTable"):  # until App has it: the method set_table.set_table_method gives
        from stream_processor.engine.set_table import set_table_method

        app.SetTable = types.MethodType(set_table_method, app)
    if "on_window_close" not in inspect.signature(app.Table).parameters:  # until App.Table passes Faust's options
        from stream_processor.engine.table import table_method

        app.Table = types.MethodType(table_method, app)
    module = load("faust_tables_ours", "import stream_processor as faust", source, app)
    if share:
        share_tables(module.app)
    driver = TestDriver(module.app)
    for topic, value, key, ts in inputs:
        driver.pipe(topic, value, key=key, timestamp=round(ts * 1000))
    driver.flush()
    return module, driver


def share_tables(app: Any) -> None:
    """What App.finalize does once it registers agents sharing a table together (see shared_tables)."""
    from stream_processor.engine.app import AgentSettings
    from stream_processor.engine.shared_tables import finalize_agents

    finalize_agents(app, app._register_agent, AgentSettings)  # noqa: SLF001
    app._finalized = True  # noqa: SLF001


# ---- durations and the window arithmetic ---------------------------------------------------------------------


def test_window_arithmetic_is_fausts() -> None:
    from faust.windows import HoppingWindow as FaustHopping

    from stream_processor.engine.windows import HoppingWindow

    times = [0.0, 0.05, 4.99, 5.0, 9.9, 9.95, 10.0, 12.3, 1_600_000_003.0, 1_600_000_009.95, 1_600_000_010.0]
    for size, step in [(10, 10), (10, 5), (6, 3), (10, 3), (60, 20)]:
        ours, theirs = HoppingWindow(size, step, 7), FaustHopping(size, step, expires=7)
        for t in times:
            for end in (t - 17.1, t - 16.9, t - 7.1, t - 7.0, t - 0.1, t):  # the cleanup at t: which ends are stale
                assert (end <= ours.stale_before(t)) == theirs.stale(end, t), (size, step, t, end)
            assert ours.ranges(t) == theirs.ranges(t), (size, step, t)
            assert ours.current(t) == theirs.current(t), (size, step, t)
            assert ours.earliest(t) == theirs.earliest(t), (size, step, t)
            assert ours.delta(t, 30) == theirs.delta(t, 30), (size, step, t)
    assert HoppingWindow(10, 5).ranges(12.0) == [(5.0, 14.9), (10.0, 19.9)]


def test_window_durations_take_timedelta_seconds_and_strings() -> None:
    from stream_processor.engine.windows import HoppingWindow, TumblingWindow

    forms = [TumblingWindow(10, expires=600), TumblingWindow(10.0, expires=dt.timedelta(minutes=10)),
             TumblingWindow("10s", expires="10m"), TumblingWindow(dt.timedelta(seconds=10), expires="9m60s")]
    assert {(w.size, w.step, w.expires) for w in forms} == {(10.0, 10.0, 600.0)}
    hopping = HoppingWindow("1m", "20s", expires="1h")
    assert (hopping.size, hopping.step, hopping.expires) == (60.0, 20.0, 3600.0)
    assert TumblingWindow(10).expires == 0.0  # Faust: no expiry unless asked
    with pytest.raises(ValueError, match="whole seconds"):
        TumblingWindow("500ms")
    with pytest.raises(ValueError, match="step <= size"):
        HoppingWindow(10, 20)
    with pytest.raises(ValueError, match="not a duration"):
        TumblingWindow("ten seconds")
    app = our_app("durations")
    table = app.Table("t", default=int)
    assert table.tumbling("10s", expires=dt.timedelta(minutes=1)).window.expires == 60.0
    assert table.hopping(dt.timedelta(seconds=10), 5.0).window.step == 5.0


# ---- the windowing examples on replayed old data ----------------------------------------------------------------

# examples/windowing/tumbling.py (faust-streaming), its agent and table; print() lines kept as values in ``rows``.
TUMBLING = '''
from datetime import timedelta


class Model(faust.Record, serializer='json'):
    random: float


TOPIC = 'tumbling_topic'

tumbling_topic = app.topic(TOPIC, value_type=Model)
tumbling_table = app.Table(
    'tumbling_table',
    default=int).tumbling(10, expires=timedelta(minutes=10))


@app.agent(tumbling_topic)
async def print_windowed_events(stream):
    async for _ in stream: # noqa
        tumbling_table['counter'] += 1

        value = tumbling_table['counter']

        rows.append((value.now(), value.current(), value.value(), value.delta(30)))
'''

# examples/windowing/hopping.py (faust-streaming), the same way.
HOPPING = '''
from datetime import timedelta


class Model(faust.Record, serializer='json'):
    random: float


TOPIC = 'hopping_topic'

hopping_topic = app.topic(TOPIC, value_type=Model)
hopping_table = app.Table(
    'hopping_table',
    default=int).hopping(10, 5, expires=timedelta(minutes=10))


@app.agent(hopping_topic)
async def print_windowed_events(stream):
    async for _ in stream: # noqa
        hopping_table['counter'] += 1
        value = hopping_table['counter']
        rows.append((value.now(), value.current(), value.value(), value.delta(30)))
'''


def every_2s(topic: str, n: int = 30) -> list[Input]:
    """The examples' timer: a Model every 2 seconds, here replayed from ``T_OLD`` (years before the wall clock)."""
    return [(topic, orjson.dumps({"random": round(i / n, 2)}), None, T_OLD + 2.0 * i) for i in range(n)]


@pytest.mark.parametrize(("source", "topic", "table"), [(TUMBLING, "tumbling_topic", "tumbling_table"),
                                                         (HOPPING, "hopping_topic", "hopping_table")])
def test_the_windowing_examples_give_fausts_values_on_replayed_old_data(source: str, topic: str, table: str) -> None:
    inputs = every_2s(topic)
    faust_run = run_faust(source, ["print_windowed_events"], inputs)
    ours, driver = run_ours(source, inputs)
    with driver:
        assert driver.dead_letters() == []
        assert len(faust_run.rows) == len(ours.rows) == 30
        assert ours.rows == faust_run.rows  # now(), current(), value(), delta(30): every row
        assert driver.table(table) == dict(getattr(faust_run, table).table.data.items())
    # The examples' comments: now() follows the stream (not the wall clock, years later), delta(30) starts at 0.
    assert {r[0] for r in ours.rows} != {0} and ours.rows[0][3] == 0
    assert [r[0] for r in ours.rows] == [r[1] for r in ours.rows]


# ---- relative_to_field, relative_to_now --------------------------------------------------------------------------

READINGS = '''
class Reading(faust.Record):
    sensor: str
    at: float
    value: float


readings = app.topic('readings', value_type=Reading)
per_window = app.Table('per_window', default=int).tumbling(10, expires=3600).relative_to_field(Reading.at)
by_now = app.Table('by_now', default=int).tumbling(10, expires=60).relative_to_now()


@app.agent(readings)
async def count(stream):
    async for reading in stream:
        per_window[reading.sensor] += 1
        by_now[reading.sensor] += 1
        w = per_window[reading.sensor]
        rows.append((w.value(), w.current(), w.now(), by_now[reading.sensor].value()))
'''


def readings(times: list[float], kafka_ts: float = T_OLD) -> list[Input]:
    return [("readings", orjson.dumps({"sensor": "s1", "at": t, "value": 1.0}), b"s1", kafka_ts + i)
            for i, t in enumerate(times)]


def test_relative_to_field_takes_seconds_as_faust_does() -> None:
    # 12 readings whose own time (seconds) puts them 4/3/3/2 in 10-second windows; Kafka timestamps elsewhere.
    times = [100.0, 101.5, 104.0, 109.9, 110.0, 115.0, 119.0, 120.0, 121.0, 125.0, 130.0, 139.0]
    inputs = readings(times)
    faust_run = run_faust(READINGS, ["count"], inputs)
    ours, driver = run_ours(READINGS, inputs)
    with driver:
        assert driver.dead_letters() == []
        assert ours.rows == faust_run.rows
        for table in ("per_window", "by_now"):
            assert driver.table(table) == dict(getattr(faust_run, table).table.data.items()), table
        counts = driver.table("per_window")
        by_now = driver.table("by_now")
    assert list(counts.values()) == [4, 3, 3, 2]
    assert list(counts) == [("s1", win(s)) for s in (100, 110, 120, 130)]
    # value() follows the field, current() the Kafka timestamp (no such window: the default), as Faust's.
    assert [r[0] for r in ours.rows] == [1, 2, 3, 4, 1, 2, 3, 1, 2, 3, 1, 2]
    assert {r[1] for r in ours.rows} == {0}
    # relative_to_now in a record is Faust's _relative_now: the partition's latest window end, so from the epoch
    # window on it never leaves it (Faust's own behaviour, kept).
    assert [r[3] for r in ours.rows] == list(range(1, 13))
    assert by_now == {("s1", win(0)): 12}


def test_relative_to_field_refuses_milliseconds_loudly(drive: Any) -> None:
    ours, driver = run_ours(READINGS, readings([1_600_000_000_000.0]))
    with driver:
        letters = driver.dead_letters()
        assert len(letters) == 1
        assert "not seconds since the epoch" in (letters[0].header("error") or "")
        assert driver.table("per_window") == {}


def test_relative_to_field_takes_datetimes_iso_strings_and_functions(drive: Any) -> None:
    app = our_app("fields")
    at_dt = app.Table("at_dt", default=int).tumbling(10).relative_to_field("when")
    by_fn = app.Table("by_fn", default=int).tumbling(10).relative_to_field(lambda v: v["ms"] / 1000)
    fixed = app.Table("fixed", default=int).tumbling(10).relative_to(dt.datetime.fromtimestamp(55.0, dt.UTC))
    by_event = app.Table("by_event", default=int).tumbling(10).relative_to(lambda e: e.message.timestamp - 60)
    by_ref = app.Table("by_ref", default=int).tumbling(10).relative_to(Stamp.at)  # a Model field reference
    duck = types.SimpleNamespace(field="at")  # Faust's FieldDescriptor, duck-typed by its .field
    by_duck = app.Table("by_duck", default=int).tumbling(10).relative_to_field(duck)
    with pytest.raises(TypeError, match="not a field"):
        app.Table("bad", default=int).tumbling(10).relative_to_field(5)
    with pytest.raises(TypeError, match="Relative cannot be type"):
        app.Table("bad2", default=int).tumbling(10).relative_to(5)

    @app.agent("in")
    async def agent(stream: Any) -> Any:
        async for v in stream:
            at_dt[v["k"]] += 1
            by_fn[v["k"]] += 1
            fixed[v["k"]] += 1
            by_event[v["k"]] += 1
            by_ref[v["k"]] += 1
            by_duck[v["k"]] += 1

    driver = drive(app)
    driver.pipe("in", {"k": "a", "when": "1970-01-01T00:00:21+00:00", "ms": 33_000, "at": 44.5},
                timestamp=T_OLD * 1000)
    assert driver.dead_letters() == []
    assert driver.table("by_ref") == driver.table("by_duck") == {("a", win(40)): 1}
    assert driver.table("at_dt") == {("a", win(20)): 1}
    assert driver.table("by_fn") == {("a", win(30)): 1}
    assert driver.table("fixed") == {("a", win(50)): 1}
    assert driver.table("by_event") == {("a", win((T_OLD - 60) // 10 * 10)): 1}


# ---- on_window_close --------------------------------------------------------------------------------------------

CLOSING = '''
class RawModel(faust.Record):
    value: float


source = app.topic('raw-event', value_type=RawModel)
closed_topic = app.topic('closed')


def window_processor(key, events):
    rows.append((key, list(events)))


tumbling_table = (
    app.Table('tumbling_table', default=list, on_window_close=window_processor)
    .tumbling(10, expires=5)
)


@app.agent(source)
async def print_windowed_events(stream):
    async for event in stream:
        value_list = tumbling_table['events'].value()
        value_list.append(event.value)
        tumbling_table['events'] = value_list
'''


def closing_app(callback: Any, expire_by: str = "stream_time") -> Any:
    from stream_processor.engine.table import Table

    app = our_app("closing")
    table = app.tables["w"] = Table("w", default=int, on_window_close=callback)
    windows = table.tumbling(10, expires=5, expire_by=expire_by)

    @app.agent("clicks", sink=["out"])
    async def count(stream: Any) -> Any:
        async for click in stream:
            windows[click["page"]] += 1
            yield {"page": click["page"], "n": windows[click["page"]].current()}

    return app


def test_on_window_close_runs_as_stream_time_passes_in_that_records_transaction(drive: Any) -> None:
    closed: list[tuple[Any, Any]] = []

    async def on_close(key: Any, value: Any) -> None:
        closed.append((key, value))
        await app.topics["out"].send(key=key[0], value={"closed": key[1][0], "count": value})

    app = closing_app(on_close)
    driver = drive(app)
    start = 1_600_000_000.0  # a window boundary
    t0 = int(start * 1000)
    for ms, page in [(0, "a"), (1_000, "b"), (2_000, "a"), (12_000, "a"), (14_999, "b")]:
        driver.pipe("clicks", {"page": page}, key="k", timestamp=t0 + ms)
    assert closed == []  # [0 s, 10 s) expires when the table's time reaches 0 + size 10 + expires 5 = 15 s
    driver.pipe("clicks", {"page": "a"}, key="k", timestamp=t0 + 15_000)
    assert closed == [(("a", win(start)), 2), (("b", win(start)), 1)]
    sent = [r for r in driver.read("out") if "closed" in (r.json() or {})]
    assert [r.json() for r in sent] == [{"closed": start, "count": 2}, {"closed": start, "count": 1}]
    assert {r.timestamp for r in sent} == {t0 + 15_000}  # in the transaction of the record that moved the time
    assert driver.table("w") == {("a", win(start + 10)): 2, ("b", win(start + 10)): 1}
    # A restart restores the windows and the times: nothing closes twice, a late record reads the default and its
    # write is dropped.
    driver.restart()
    driver.pipe("clicks", {"page": "a"}, key="k", timestamp=t0 + 3_000)
    assert len(closed) == 2
    assert driver.read("out")[-1].json() == {"page": "a", "n": 0}
    driver.pipe("clicks", {"page": "a"}, key="k", timestamp=t0 + 36_000)  # 36 - 15 = 21: [10 s, 20 s) closes
    assert closed[2:] == [(("a", win(start + 10)), 2), (("b", win(start + 10)), 1)]
    assert driver.table("w") == {("a", win(start + 30)): 1}


def test_on_window_close_gets_what_faust_passes() -> None:
    """Faust closes windows from a wall-clock timer (``_del_old_keys``), which test_context does not run: it is
    called here by hand; ours at the first cleanup of the driver's wall clock. Replayed old data: every window is
    stale at both, both close the same windows with the same values in the same order, and keep none."""
    inputs = [("raw-event", orjson.dumps({"value": float(i)}), None, T_OLD + 4.0 * i) for i in range(8)]
    faust_run = run_faust(CLOSING, ["print_windowed_events"], inputs)
    asyncio.run(faust_run.tumbling_table.table._del_old_keys())  # noqa: SLF001
    ours, driver = run_ours(CLOSING, inputs)
    with driver:
        assert ours.rows == []  # nothing closes as records come: the cleanup is a wall-clock timer, as Faust's
        driver.advance_time(30_000)  # table_cleanup_interval: Faust's default 30 s
        assert driver.dead_letters() == []
        assert driver.table("tumbling_table") == {} == dict(faust_run.tumbling_table.table.data)
    assert ours.rows == faust_run.rows
    assert [k[1][0] - T_OLD for k, _ in ours.rows] == [-3.0, 7.0, 17.0, 27.0]
    assert [len(v) for _, v in ours.rows] == [2, 3, 2, 1]


def test_the_wall_clock_cleanup_is_fausts_in_one_transaction(drive: Any) -> None:
    """``expire_by="wall_clock"`` (the default): windows close at the cleanup of the wall clock, at Faust's
    horizon (the start of the window containing ``now - expires``), their on_window_close outputs and tombstones in
    that punctuation's transaction; a late write re-creates a closed window, which the next cleanup deletes without
    calling on_window_close again (Faust's last_closed_window); a restart keeps that memory."""
    closed: list[tuple[Any, Any]] = []

    async def on_close(key: Any, value: Any) -> None:
        closed.append((key, value))
        await app.topics["out"].send(key=key[0], value={"closed": key[1][0], "count": value})

    app = closing_app(on_close, expire_by="wall_clock")
    app.conf.table_cleanup_interval = 5.0  # as windowed_aggregation.py sets it: every 5 s of the wall clock
    driver = drive(app)
    start = driver.now_ms // 10_000 * 10  # a window boundary (s) just before the clock
    t0 = start * 1000
    for ms, page in [(0, "a"), (1_000, "b"), (2_000, "a"), (12_000, "a"), (25_000, "b")]:
        driver.pipe("clicks", {"page": page}, key="k", timestamp=t0 + ms)
    assert closed == []  # records never close windows: only the cleanup does
    assert len(driver.table("w")) == 4
    now = t0 + 24_000  # now - expires 5 s = 19 s: stale before 10 s, so [0 s, 10 s) closes, [10 s, 20 s) stays
    driver.advance_time(now - driver.now_ms)
    assert closed == [(("a", win(start)), 2), (("b", win(start)), 1)]
    sent = [r for r in driver.read("out") if "closed" in (r.json() or {})]
    assert [r.json() for r in sent] == [{"closed": start, "count": 2}, {"closed": start, "count": 1}]
    assert {r.timestamp for r in sent} == {now}  # the punctuation's time
    assert driver.table("w") == {("a", win(start + 10)): 1, ("b", win(start + 20)): 1}
    driver.restart()
    driver.pipe("clicks", {"page": "a"}, key="k", timestamp=t0 + 3_000)  # late: re-creates [0 s, 10 s)
    assert ("a", win(start)) in driver.table("w")
    driver.advance_time(30_000)  # now 54 s: stale before 40 s, every window closes
    assert closed[2:] == [(("a", win(start + 10)), 1), (("b", win(start + 20)), 1)]  # not [0 s, 10 s) again
    assert driver.table("w") == {}


def test_a_window_callback_awaiting_io_fails_loudly(drive: Any) -> None:
    class Later:  # an awaitable that does not complete at once, as real I/O
        def __await__(self) -> Any:
            yield None

    async def on_close(key: Any, value: Any) -> None:
        await Later()

    driver = drive(closing_app(on_close))
    driver.pipe("clicks", {"page": "a"}, key="k", timestamp=1_000_000)
    driver.pipe("clicks", {"page": "a"}, key="k", timestamp=1_100_000)
    assert "awaited real I/O" in (driver.dead_letters()[0].header("error") or "")


# ---- SetTable, two agents sharing a table -----------------------------------------------------------------------

# examples/tableofset.py (faust-streaming): two agents on two topics, one SetTable.
TABLE_OF_SET = '''
table = app.SetTable(
    'people', value_type=str,
)

joining_topic = app.topic('people_joining2', key_type=str, value_type=str)
leaving_topic = app.topic('people_leaving2', key_type=str, value_type=str)


@app.agent(joining_topic)
async def join(stream):
    async for key, name in stream.items():
        table[key].add(name)
        rows.append(f'TABLE CUR: {table[key]!r}')
        rows.append(table.as_ansitable(key='location', value='people', sort=True))


@app.agent(leaving_topic)
async def leave(stream):
    async for key, name in stream.items():
        table[key].discard(name)
        rows.append(f'TABLE CUR: {table[key]!r}')
'''


def people() -> list[Input]:
    moves = [("people_joining2", "paris", "ann"), ("people_joining2", "paris", "bob"),
             ("people_joining2", "rome", "cid"), ("people_leaving2", "paris", "ann"),
             ("people_joining2", "rome", "dee"), ("people_leaving2", "rome", "zed"),
             ("people_leaving2", "rome", "cid"), ("people_joining2", "paris", "ann")]
    return [(topic, orjson.dumps(name), city.encode(), T_OLD + i) for i, (topic, city, name) in enumerate(moves)]


def test_two_agents_share_a_set_table_as_faust() -> None:
    faust_run = run_faust(TABLE_OF_SET, ["join", "leave"], people())
    ours, driver = run_ours(TABLE_OF_SET, people(), share=True)
    with driver:
        assert driver.dead_letters() == []
        assert ours.rows == faust_run.rows
        faust_table = {k: set(v) for k, v in faust_run.table.data.items()}
        assert driver.table("people") == faust_table == {"paris": {"bob", "ann"}, "rome": {"dee"}}
        # Restored from the changelog: still sets, the same ones; one processor runs both agents.
        driver.restart()
        assert driver.table("people") == faust_table
        assert all(type(v).__name__ == "ChangeloggedSet" for v in driver.table("people").values())
        assert list(driver.processors) == ["join__leave"]


def test_a_shared_tables_partition_is_one_store_across_agents(drive: Any) -> None:
    """Both agents' records of partition q change store q, each in its own record's transaction."""
    app = our_app("shared")
    totals = app.Table("totals", default=int)

    @app.agent("deposits", sink=["receipts"])
    async def deposit(stream: Any) -> Any:
        async for v in stream:
            totals[v["acct"]] += v["amount"]
            yield {"acct": v["acct"], "deposited": v["amount"]}

    @app.agent("withdrawals", sink=["balances"])
    async def withdraw(stream: Any) -> Any:
        async for v in stream:
            totals[v["acct"]] -= v["amount"]
            yield {"acct": v["acct"], "balance": totals[v["acct"]]}

    share_tables(app)
    driver = drive(app, partitions={"deposits": 4, "withdrawals": 4})
    ms = T_OLD * 1000
    for acct in ("a", "b", "c", "d", "e"):
        driver.pipe("deposits", {"acct": acct, "amount": 100}, key=acct, timestamp=ms)
        driver.pipe("withdrawals", {"acct": acct, "amount": 30}, key=acct, timestamp=ms + 1)
        driver.pipe("deposits", {"acct": acct, "amount": 5}, key=acct, timestamp=ms + 2)
        ms += 10
    assert [v["balance"] for v in driver.values("balances")] == [70] * 5  # each agent yields to its own sinks
    assert len(driver.values("receipts")) == 10
    assert driver.table("totals") == dict.fromkeys("abcde", 75)
    state = driver.state("deposit__withdraw", "totals")
    assert sum(len(s) for s in state.values()) == 5 and len(state) == 4  # one store per partition, keys spread
    driver.restart()
    driver.pipe("withdrawals", {"acct": "a", "amount": 75}, key="a", timestamp=ms)
    assert driver.values("balances")[-1] == {"acct": "a", "balance": 0}


def test_shared_groups_link_agents_through_chains_of_tables() -> None:
    from stream_processor.engine.shared_tables import group_name, shared_groups

    app = our_app("groups")
    t1, t2, t3 = (app.Table(n, default=int) for n in ("t1", "t2", "t3"))

    @app.agent("a")
    async def one(stream: Any) -> Any:
        async for v in stream:
            t1[v] += 1

    @app.agent("b")
    async def two(stream: Any) -> Any:
        async for v in stream:
            t3[v] += 1

    @app.agent("c")
    async def three(stream: Any) -> Any:
        async for v in stream:
            t1[v] += t2[v]

    @app.agent("d")
    async def four(stream: Any) -> Any:
        async for v in stream:
            t2[v] += 1

    groups = shared_groups(list(app.agents.values()))
    assert [group_name(g) for g in groups] == ["one__three__four", "two"]


def test_set_table_values_and_refusals(drive: Any) -> None:
    from stream_processor.engine.set_table import SetTable

    with pytest.raises(NotImplementedError, match="start_manager"):
        SetTable("s", start_manager=True)
    app = our_app("sets")
    members = app.tables["members"] = SetTable("members")
    windowed = SetTable("recent").tumbling(10)
    app.tables["recent"] = windowed.table

    @app.agent("ops", sink=["out"])
    async def ops(stream: Any) -> Any:
        async for op in stream:
            s = members[op["k"]]
            if op["op"] == "add":
                s.add(Member(op["who"]) if op.get("record") else op["who"])
            elif op["op"] == "update":
                s.update(op["who"])
            elif op["op"] == "keep":
                s.intersection_update(op["who"])
            windowed[op["k"]].add(len(s))
            yield {"k": op["k"], "sorted": sorted(map(str, members[op["k"]])), "has_ann": "ann" in members[op["k"]]}

    driver = drive(app)
    driver.pipe("ops", {"k": "x", "op": "add", "who": "ann"}, timestamp=T_OLD * 1000)
    driver.pipe("ops", {"k": "x", "op": "add", "who": "bob", "record": True}, timestamp=T_OLD * 1000)
    driver.pipe("ops", {"k": "x", "op": "update", "who": ["cid", "dee"]}, timestamp=T_OLD * 1000)
    driver.restart()
    driver.pipe("ops", {"k": "x", "op": "keep", "who": ["ann", "cid"]}, timestamp=T_OLD * 1000 + 1)
    assert driver.values("out")[-1] == {"k": "x", "sorted": ["ann", "cid"], "has_ann": True}
    assert driver.table("members") == {"x": {"ann", "cid"}}
    assert driver.table("recent") == {("x", win(T_OLD // 10 * 10)): {1, 2, 4}}




# ---- expire_by="stream_time": expiry, restarts, late records (the opt-in deterministic expiry) -------------


def expiring_app() -> Any:
    app = our_app("expiring")
    tumbling = app.Table("tumbling", default=int).tumbling(10, expires=20, expire_by="stream_time")
    forever = app.Table("forever", default=int).tumbling("10s")  # no expires: kept, as Faust keeps them

    @app.agent("clicks", sink=["out"])
    async def count(stream: Any) -> Any:
        async for click in stream:
            tumbling[click["page"]] += 1
            forever[click["page"]] += 1
            window = tumbling[click["page"]]
            yield {"current": window.current(), "now": window.now(), "previous": window.delta(10)}

    return app


START = 1_600_000_000.0  # a window boundary, in seconds


def click(driver: TestDriver, at: float) -> None:
    driver.pipe("clicks", {"page": "p"}, key="p", timestamp=round((START + at) * 1000))


def test_expired_windows_are_tombstoned_and_read_as_the_default(drive: Any) -> None:
    driver = drive(expiring_app())
    click(driver, 0)
    click(driver, 10)
    assert driver.table("tumbling") == {("p", win(START)): 1, ("p", win(START + 10)): 1}
    # 40 s: [0, 10 s) started 40 s ago, past size + expires (30 s); [10 s, 20 s) 30 s ago: just expired too.
    click(driver, 40)
    assert driver.table("tumbling") == {("p", win(START + 40)): 1}
    tombstones = {r.key for r in driver.changelog("count") if r.value is None}
    assert {b"\x01tumbling\x00\x02" + orjson.dumps(["p", list(win(START + s))]) for s in (0, 10)} == tombstones
    assert driver.values("out")[-1] == {"current": 1, "now": 1, "previous": 0}
    assert len(driver.table("forever")) == 3  # no expires: nothing expires


def test_windows_and_their_times_survive_a_restart(drive: Any) -> None:
    def run(restart: bool) -> tuple[list[Any], dict[Any, Any]]:
        driver = drive(expiring_app())
        click(driver, 0)
        click(driver, 45)
        if restart:
            driver.restart()
        click(driver, 1)  # late: its window expired at 30 s; reads the default, its write dropped
        click(driver, 46)
        return driver.values("out"), driver.table("tumbling")

    assert run(True) == run(False) == (
        [{"current": 1, "now": 1, "previous": 0}, {"current": 1, "now": 1, "previous": 0},
         {"current": 0, "now": 1, "previous": 0}, {"current": 2, "now": 2, "previous": 0}],
        {("p", win(START + 40)): 2})


# ---- GlobalTable ------------------------------------------------------------------------------------------------


def replicate(driver: TestDriver, table: Any) -> None:
    """What the worker does for a global table: feed its replica every committed changelog record."""
    from stream_processor.engine.topics import changelog_topic

    for name in driver.processors:
        for r in driver.all(changelog_topic(driver.settings, name)):
            table.replica.feed(name, r.partition, r.offset, r.key, r.value)


def global_app() -> tuple[Any, Any]:
    from stream_processor.engine.global_table import global_table_method

    app = our_app("global")
    prices = global_table_method(app, "prices", default=float)

    @app.agent("ticks")
    async def record_price(stream: Any) -> Any:
        async for tick in stream:
            prices[tick["symbol"]] = tick["price"]

    @app.agent("orders", sink=["fills"])
    async def fill(stream: Any) -> Any:
        async for order in stream:
            yield {"order": order["id"], "price": prices[order["symbol"]], "known": sorted(prices),
                   "n": len(prices)}

    share_tables(app)  # App.finalize with shared_tables (a global table links no agents)
    return app, prices


def test_a_global_table_is_read_whole_and_written_in_ones_own_partition(drive: Any) -> None:
    app, prices = global_app()
    driver = drive(app, partitions={"ticks": 3, "orders": 2})
    symbols = ["BTC", "ETH", "SOL", "XRP"]
    for i, symbol in enumerate(symbols):
        driver.pipe("ticks", {"symbol": symbol, "price": 10.0 * (i + 1)}, key=symbol)
    ticks = driver.state("record_price", "prices")
    assert len([q for q, s in ticks.items() if s]) > 1  # the keys live in several partitions
    replicate(driver, prices)
    driver.pipe("orders", {"id": 2, "symbol": "ETH"}, key="o2")
    assert driver.values("fills") == [{"order": 2, "price": 20.0, "known": sorted(symbols), "n": 4}]
    # Outside a record (a timer, a web view): reads of every partition from the replica; writes refused.
    assert dict(prices.items()) == {s: 10.0 * (i + 1) for i, s in enumerate(symbols)}
    assert "SOL" in prices and prices["nope"] == 0.0
    with pytest.raises(RuntimeError, match="written only by an agent"):
        prices["BTC"] = 1.0
    replicas = {source: dict(store.items()) for source, store in prices.replica.stores.items()}
    replicate(driver, prices)  # feeding again changes nothing (by offset)
    assert {source: dict(store.items()) for source, store in prices.replica.stores.items()} == replicas
    # A task's own partition: its own writes, then committed and replicated.
    driver.pipe("ticks", {"symbol": "BTC", "price": 11.0}, key="BTC")
    replicate(driver, prices)
    assert prices["BTC"] == 11.0


def test_a_global_table_key_held_by_another_partition_is_not_written_twice(drive: Any) -> None:
    app, prices = global_app()
    driver = drive(app, partitions={"ticks": 3, "orders": 2})
    home = driver.pipe("ticks", {"symbol": "BTC", "price": 1.0}, key="BTC").partition
    replicate(driver, prices)
    # The same key from another partition (a tick keyed otherwise): refused, dead-lettered.
    driver.pipe("ticks", {"symbol": "BTC", "price": 2.0}, partition=(home + 1) % 3)
    letters = driver.dead_letters()
    assert len(letters) == 1 and "held by partition" in (letters[0].header("error") or "")
    replicate(driver, prices)
    assert prices["BTC"] == 1.0


def test_window_store_key_is_the_key_the_table_writes(drive: Any) -> None:
    from stream_processor.engine.windows import window_store_key

    driver = drive(expiring_app())
    click(driver, 3)
    keys = {r.key for r in driver.changelog("count") if r.key and r.key.startswith(b"\x01tumbling\x00")}
    assert keys == {b"\x01tumbling\x00" + window_store_key("p", START, 10).encode()}


# ---- key_index=True: keys/items/values/len of a windowed table ----------------------------------------------------

KEY_INDEX = '''
class Click(faust.Record):
    page: str


clicks = app.topic('clicks', value_type=Click)
views = app.Table('views', default=int).tumbling(10, expires=3600, key_index=True).relative_to_stream()


@app.agent(clicks)
async def count(stream):
    async for event in stream.events():
        page = event.value.page
        views[page] += 1
        rows.append(('items', sorted(views.items())))
        rows.append(('values', sorted(views.values())))
        rows.append(('now', sorted(views.items().now())))
        rows.append(('current', sorted(views.items().current())))
        rows.append(('delta', sorted(views.items().delta(10))))
        rows.append(('keys', sorted(views.keys()), len(views), 'a' in list(views)))
        if page == 'gone':
            del views['gone']
'''


def test_a_key_index_gives_fausts_keys_items_and_values() -> None:
    pages = ["a", "b", "a", "gone", "c", "a", "b", "b", "c", "a"]
    inputs = [("clicks", orjson.dumps({"page": p}), None, T_OLD + 4.0 * i) for i, p in enumerate(pages)]
    faust_run = run_faust(KEY_INDEX, ["count"], inputs)
    ours, driver = run_ours(KEY_INDEX, inputs)
    with driver:
        assert driver.dead_letters() == []
        assert driver.table("views-key_index") == {"a": 1, "b": 1, "c": 1}  # 'gone' deleted from the index too
    assert len(ours.rows) == 6 * len(pages)
    assert ours.rows == faust_run.rows


def test_windowed_keys_without_a_key_index_are_refused() -> None:
    from stream_processor.engine.table import Table

    windows = Table("plain", default=int).tumbling(10)
    for read in (lambda: list(windows.keys()), lambda: list(windows.items()), lambda: list(windows),
                 lambda: len(windows)):
        with pytest.raises(NotImplementedError, match="key_index=True"):
            read()
