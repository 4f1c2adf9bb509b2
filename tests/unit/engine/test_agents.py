"""Agents through the TestDriver: sinks, ``topic.send``, ``stream.take`` and its held offsets, ``group_by``, the
stream helpers, ``app.filter``/``map``/``branch``, real I/O via ``apipe``, Records, errors, timers and crontabs."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from stream_processor.engine import Record
from stream_processor.engine.agent import AgentProcessor
from stream_processor.engine.exceptions import InvalidRecordError
from tests.unit.engine.support import make_app, reasons

# ---- sinks and sends ----------------------------------------------------------------------------


def test_yield_goes_to_every_sink_keyed_like_the_input(drive) -> None:
    app = make_app()
    left, right = app.topic("left"), app.topic("right")

    @app.agent("src", sink=[left, "right"])
    async def double(stream):
        async for value in stream:
            yield {"x": value["x"] * 2}

    driver = drive(app)
    driver.pipe("src", {"x": 1}, key="a")
    driver.pipe("src", {"x": 5}, key="b")
    for topic in (left, right):
        assert [(r.key, r.json()) for r in driver.read(topic.name)] == [(b"a", {"x": 2}), (b"b", {"x": 10})]
    entry = app.settings.stream_processors["double"]
    assert entry.input_topics == ["src"] and sorted(entry.output_topics) == ["left", "right"]
    assert entry.consumer_group == "t-double"


def test_a_sink_may_be_another_agent_and_a_callable(drive) -> None:
    app = make_app()
    seen: list[Any] = []

    @app.agent("second_in", sink=["final"])
    async def second(stream):
        async for value in stream:
            yield value + 1

    @app.agent("first_in", sink=[second, seen.append])
    async def first(stream):
        async for value in stream:
            yield value * 10

    driver = drive(app)
    driver.pipe("first_in", 4, key="k")
    assert driver.values("second_in") == [40]
    assert [(r.key, r.json()) for r in driver.read("final")] == [(b"k", 41)]  # chained, key kept
    assert seen == [40]


def test_await_topic_send_goes_in_the_records_transaction(drive) -> None:
    app = make_app()
    audit = app.topic("audit")

    @app.agent("src")
    async def sender(stream):
        async for value in stream:
            await audit.send(key="fixed", value={"got": value}, headers=[("h", b"1")])
            if value == "fail":
                raise RuntimeError("after the send")

    driver = drive(app)
    driver.pipe("src", {"v": 1})
    driver.pipe("src", b'"fail"')
    [record] = driver.read("audit")  # the failed record's send is rolled back with it
    assert (record.key, record.json(), record.headers) == (b"fixed", {"got": {"v": 1}}, (("h", b"1"),))
    assert reasons(driver) == [("processing_error", b'"fail"')]


def test_topic_send_outside_an_agent_goes_through_the_apps_producer(monkeypatch) -> None:
    app = make_app()
    topic = app.topic("alerts")
    sent: list[tuple[Any, ...]] = []

    async def send_outside(*args: Any) -> str:
        sent.append(args)
        return "ack"

    monkeypatch.setattr(app, "send_outside", send_outside)

    async def timer() -> Any:
        return await topic.send(key="k", value={"a": 1})

    assert asyncio.run(timer()) == "ack"
    assert sent == [("alerts", b"k", b'{"a":1}', None, None)]


# ---- stream.take and held offsets ---------------------------------------------------------------


def take_app() -> Any:
    app = make_app()

    @app.agent("src", sink=["batches"])
    async def batcher(stream):
        async for batch in stream.take(3, within=10):
            yield [v["i"] for v in batch]

    return app


def test_take_yields_full_batches_and_a_short_one_after_within(drive) -> None:
    driver = drive(take_app())
    for i in range(4):
        driver.pipe("src", {"i": i})
    assert driver.values("batches") == [[0, 1, 2]]
    driver.advance_time(9_999)
    assert driver.values("batches") == []
    # The deadline is checked by a wall-clock tick every min(within, 1 s): at the first tick past 10 s.
    driver.advance_time(1_000)
    assert driver.values("batches") == [[3]]
    driver.advance_time(60_000)
    assert driver.values("batches") == []  # nothing buffered: no empty batch


def test_records_buffered_at_a_restart_are_read_again_not_lost_nor_duplicated(drive) -> None:
    driver = drive(take_app())
    for i in range(5):
        driver.pipe("src", {"i": i})
    assert driver.values("batches") == [[0, 1, 2]]
    driver.restart()  # 3 and 4 were buffered, not committed
    assert driver.values("batches") == []
    driver.restart()  # and again: still re-read once each
    driver.pipe("src", {"i": 5})
    assert driver.values("batches") == [[3, 4, 5]]
    driver.restart()  # nothing buffered: nothing re-read
    driver.pipe("src", {"i": 6})
    driver.pipe("src", {"i": 7})
    driver.pipe("src", {"i": 8})
    assert driver.values("batches") == [[6, 7, 8]]
    assert driver.dead_letters() == []


def test_take_refuses_bad_arguments() -> None:
    app = make_app()

    @app.agent("src")
    async def bad(stream):
        async for batch in stream.take(0, within=1):
            yield batch

    with pytest.raises(ValueError, match="take needs max_ >= 1"):  # found when the app is checked
        app.finalize()


def test_a_batch_flushed_by_its_deadline_is_not_emitted_again_after_a_restart(drive) -> None:
    driver = drive(take_app())
    for i in range(4):
        driver.pipe("src", {"i": i})
    driver.advance_time(11_000)
    assert driver.values("batches") == [[0, 1, 2], [3]]
    driver.restart()
    driver.advance_time(11_000)
    assert driver.values("batches") == []


def test_a_record_dead_lettered_while_a_batch_is_held_is_dead_lettered_once(drive) -> None:
    app = make_app()

    class Item(Record):
        i: int

    items = app.topic("items", value_type=Item)

    @app.agent(items, sink=["batches"])
    async def batcher(stream):
        async for batch in stream.take(3, within=10):
            yield [v.i for v in batch]

    driver = drive(app)
    driver.pipe("items", {"i": 0})
    driver.pipe("items", {"j": 1})  # invalid: dead-lettered while 0 is buffered
    driver.restart()
    assert len(driver.dead_letters()) == 1


def failing_batch_app(error: type[Exception]) -> Any:
    app = make_app()

    @app.agent("src", sink=["batches"])
    async def batcher(stream):
        async for batch in stream.take(3, within=10):
            if 99 in batch:
                raise error("99 in the batch")
            yield batch

    return app


def test_a_refused_batch_loses_none_of_its_records(drive) -> None:
    driver = drive(failing_batch_app(InvalidRecordError))
    for value in [1, 2, 99, 3, 4, 5]:
        driver.pipe("src", value)
    driver.advance_time(10_000)  # the last batch's within deadline
    delivered = [v for batch in driver.values("batches") for v in batch]
    dead = [int(r.value) for r in driver.dead_letters()]
    assert sorted(delivered + dead) == [1, 2, 3, 4, 5, 99]


def test_records_held_by_a_batch_that_fails_are_read_again(drive) -> None:
    driver = drive(failing_batch_app(ValueError))
    for value in [1, 2, 99, 3]:
        driver.pipe("src", value)
    assert driver.values("batches") == [[1, 2, 3]]
    assert reasons(driver) == [("processing_error", b"99")]


# ---- group_by -----------------------------------------------------------------------------------


class Order(Record):
    user: str
    amount: float


def grouped_app() -> Any:
    app = make_app()
    orders = app.topic("orders", value_type=Order, partitions=4)
    totals = app.Table("totals", default=float)

    @app.agent(orders, sink=["user_totals"])
    async def total(stream):
        async for order in stream.group_by("user"):
            totals[order.user] += order.amount
            yield {"user": order.user, "total": totals[order.user]}

    return app


def test_group_by_rekeys_through_a_repartition_topic(drive) -> None:
    app = grouped_app()
    processors = app.settings.stream_processors
    repartition = "t-total-user-repartition"
    assert processors["total-repartition"].input_topics == ["orders"]
    assert processors["total-repartition"].output_topics == [repartition]
    assert processors["total"].input_topics == [repartition]
    assert processors["total"].output_topics == ["user_totals"]
    assert app.topics[repartition].partitions == 4  # as many as the input

    driver = drive(app)
    users = ["ann", "bob", "cid"]
    for i in range(9):  # keyed by order id: the orders of one user are spread over the partitions
        driver.pipe("orders", {"user": users[i % 3], "amount": 1.0 + i}, key=f"order-{i}")
    assert len({r.partition for r in driver.all("orders")}) > 1
    rekeyed = driver.all(repartition)
    assert [r.key for r in rekeyed] == [u.encode() for u in users * 3]
    partitioner = DefaultPartitioner()
    for record in rekeyed:
        assert record.partition == partitioner(record.key, [0, 1, 2, 3], [0, 1, 2, 3])
    totals = {v["user"]: v["total"] for v in driver.values("user_totals")}
    assert totals == {"ann": 1.0 + 4 + 7, "bob": 2.0 + 5 + 8, "cid": 3.0 + 6 + 9}
    assert driver.table("totals") == totals
    for record in driver.changelog("total"):  # the table is partitioned by the new key
        user = record.key.rpartition(b"\x00")[2]
        assert record.partition == partitioner(user, [0, 1, 2, 3], [0, 1, 2, 3])


def test_the_repartition_topic_gets_the_partitions_the_yaml_gives_the_input() -> None:
    app = make_app(topics={"orders": {"partitions": 4}})
    orders = app.topic("orders", value_type=Order)

    @app.agent(orders)
    async def total(stream):
        async for _ in stream.group_by("user"):
            pass

    assert app.settings.topic("t-total-user-repartition").partitions == 4


def test_group_by_state_survives_a_restart(drive) -> None:
    driver = drive(grouped_app())
    driver.pipe("orders", {"user": "ann", "amount": 2.0}, key="o1")
    driver.restart()
    driver.pipe("orders", {"user": "ann", "amount": 3.0}, key="o2")
    assert [v["total"] for v in driver.values("user_totals")] == [2.0, 5.0]


def test_group_by_with_a_lambda_needs_a_name_and_runs_once() -> None:
    app = make_app()

    @app.agent("src")
    async def unnamed(stream):
        async for _ in stream.group_by(lambda v: v["k"]):
            pass

    with pytest.raises(ValueError, match="needs name="):
        app.finalize()

    app = make_app()

    @app.agent("src")
    async def twice(stream):
        async for _ in stream.group_by("a").group_by("b"):
            pass

    with pytest.raises(ValueError, match="once only"):
        app.finalize()


# ---- stream helpers and the app's stateless agents ------------------------------------------------


def test_stream_filter_map_and_items(drive) -> None:
    app = make_app()

    @app.agent("nums", sink=["evens"])
    async def evens(stream):
        async for value in stream.filter(lambda v: v % 2 == 0):
            yield value

    @app.agent("nums", sink=["squares"])
    async def squares(stream):
        async for value in stream.map(lambda v: v * v):
            yield value

    @app.agent("nums", sink=["pairs"])
    async def pairs(stream):
        async for key, value in stream.items():
            yield {"key": key.hex() if isinstance(key, bytes) else key, "bytes": isinstance(key, bytes),
                   "value": value}

    driver = drive(app)
    for n in range(5):
        driver.pipe("nums", n, key=None if n == 0 else f"k{n}")
    driver.pipe("nums", 5, key=b"\xff")
    assert driver.values("evens") == [0, 2, 4]
    assert driver.values("squares") == [0, 1, 4, 9, 16, 25]
    pairs_out = driver.values("pairs")
    assert [(p["key"], p["bytes"], p["value"]) for p in pairs_out] == [
        (None, False, 0), ("k1", False, 1), ("k2", False, 2), ("k3", False, 3), ("k4", False, 4),
        ("ff", True, 5),  # a key that is not UTF-8 comes as bytes
    ]
    assert driver.dead_letters() == []


def test_app_filter_map_and_branch_keep_the_key(drive) -> None:
    app = make_app()
    app.filter("nums", lambda v: v % 2 == 0, "evens")
    app.map("nums", lambda v: None if v == 3 else v * 10, "tens")  # None drops the value
    app.branch("nums", {"small": lambda v: v < 2, "mid": lambda v: v < 4}, default="big")
    app.branch("nums", {"tiny": lambda v: v == 0}, name="no-default")
    assert set(app.settings.stream_processors) == {"filter-nums-evens", "map-nums-tens", "branch-nums",
                                                   "no-default"}
    driver = drive(app)
    for n in range(6):
        driver.pipe("nums", n, key=str(n))

    def out(topic: str) -> list[tuple[bytes | None, Any]]:
        return [(r.key, r.json()) for r in driver.read(topic)]

    assert out("evens") == [(b"0", 0), (b"2", 2), (b"4", 4)]
    assert out("tens") == [(b"0", 0), (b"1", 10), (b"2", 20), (b"4", 40), (b"5", 50)]
    assert out("small") == [(b"0", 0), (b"1", 1)]  # the first branch that matches, only
    assert out("mid") == [(b"2", 2), (b"3", 3)]
    assert out("big") == [(b"4", 4), (b"5", 5)]
    assert out("tiny") == [(b"0", 0)]  # no default: the others go nowhere
    assert driver.dead_letters() == []


# ---- real I/O -----------------------------------------------------------------------------------


def io_app() -> Any:
    app = make_app()
    calls = app.Table("calls", default=int)

    @app.agent("requests", sink=["responses"])
    async def fetch(stream):
        async for request in stream:
            await asyncio.sleep(0.01)  # an HTTP call, say
            calls["n"] += 1
            await asyncio.sleep(0)
            yield {"id": request["id"], "call": calls["n"]}

    return app


async def test_an_agent_awaiting_real_io_runs_through_apipe(drive) -> None:
    driver = drive(io_app())
    await driver.apipe("requests", {"id": 1})
    await driver.apipe("requests", {"id": 2})
    assert driver.values("responses") == [{"id": 1, "call": 1}, {"id": 2, "call": 2}]
    assert driver.table("calls") == {"n": 2}
    assert [(r.key, r.value) for r in driver.changelog("fetch")] == [(b"\x01calls\x00n", b"1"),
                                                                      (b"\x01calls\x00n", b"2")]
    driver.restart()
    await driver.apipe("requests", {"id": 3})
    assert driver.values("responses") == [{"id": 3, "call": 3}]


@pytest.mark.filterwarnings("ignore:coroutine 'AgentDriver._wait' was never awaited")
async def test_pipe_refuses_an_agent_that_awaits_real_io(drive) -> None:
    driver = drive(io_app())
    with pytest.raises(RuntimeError, match="apipe"):
        driver.pipe("requests", {"id": 1})
    assert driver.values("responses") == []


def test_pipe_refuses_real_io_without_a_running_loop_too(drive) -> None:
    driver = drive(io_app())
    with pytest.raises(RuntimeError, match="apipe"):
        driver.pipe("requests", {"id": 1})


# ---- Records --------------------------------------------------------------------------------------


class Trade(Record):
    symbol: str
    price: float
    size: float = 0.0


def test_records_decode_from_json_objects_and_encode_back(drive) -> None:
    app = make_app()
    trades = app.topic("trades", value_type=Trade)
    got: list[Any] = []

    @app.agent(trades, sink=["echo"])
    async def echo(stream):
        async for trade in stream:
            got.append(trade)
            yield Trade(trade.symbol, trade.price * 2)

    driver = drive(app)
    driver.pipe("trades", {"symbol": "BTC", "price": 1.5, "extra": "ignored"})
    assert got == [Trade("BTC", 1.5, 0.0)]
    ns = {"ns": f"{__name__}.Trade"}  # Faust's metadata, as a Faust worker writes it
    assert driver.values("echo") == [{"symbol": "BTC", "price": 3.0, "size": 0.0, "__faust": ns}]


@pytest.mark.parametrize(
    ("value", "reason", "words"),
    [
        ({"price": 1.0}, "invalid", "not a valid Trade"),  # a field without a default is missing
        ([1, 2], "invalid", "expected a JSON object"),
        (b"{nope", "undecodable", "not JSON"),
    ],
)
def test_a_record_that_does_not_fit_is_dead_lettered(drive, value: Any, reason: str, words: str) -> None:
    app = make_app()
    trades = app.topic("trades", value_type=Trade)

    @app.agent(trades, sink=["echo"])
    async def echo(stream):
        async for trade in stream:
            yield trade

    driver = drive(app)
    record = driver.pipe("trades", value, key="BTC")
    driver.pipe("trades", {"symbol": "ETH", "price": 2.0})  # the agent goes on
    ns = {"ns": f"{__name__}.Trade"}  # Faust's metadata, as a Faust worker writes it
    assert driver.values("echo") == [{"symbol": "ETH", "price": 2.0, "size": 0.0, "__faust": ns}]
    [letter] = driver.dead_letters()
    assert (letter.header("reason"), letter.value, letter.key) == (reason, record.value, b"BTC")
    assert words in letter.header("error")


class Quote(Record, coerce=True):
    symbol: str
    bid: float
    size: int = 0


def test_a_coercing_record_converts_its_fields_and_refuses_what_does_not_convert(drive) -> None:
    app = make_app()
    quotes = app.topic("quotes", value_type=Quote)

    @app.agent(quotes, sink=["out"])
    async def echo(stream):
        async for quote in stream:
            yield {"bid": quote.bid, "size": quote.size, "types": [type(quote.bid).__name__,
                                                                   type(quote.size).__name__]}

    driver = drive(app)
    driver.pipe("quotes", {"symbol": "BTC", "bid": "1.25", "size": "3"})
    driver.pipe("quotes", {"symbol": "BTC", "bid": "lots"})
    assert driver.values("out") == [{"bid": 1.25, "size": 3, "types": ["float", "int"]}]
    assert reasons(driver) == [("invalid", b'{"symbol":"BTC","bid":"lots"}')]
    assert len({Quote("a", 1.0), Quote("a", 1.0)}) == 1  # hashable by value


def test_a_topic_is_one_object_and_its_value_type_cannot_change() -> None:
    app = make_app()
    trades = app.topic("trades", value_type=Trade)
    assert app.topic("trades") is trades and app.topic("trades", value_type=Trade) is trades
    with pytest.raises(ValueError, match="already declared"):
        app.topic("trades", value_type=Order)


def test_a_value_type_given_after_an_untyped_declaration_is_not_ignored() -> None:
    app = make_app()
    app.filter("trades", lambda v: True, "kept")  # declares "trades" without a type
    trades = app.topic("trades", value_type=Trade)
    assert trades.value_type is Trade


# ---- errors ----------------------------------------------------------------------------------------


def test_a_processing_error_leaves_the_tables_as_if_the_record_never_came(drive) -> None:
    app = make_app()
    counts = app.Table("counts", default=int)
    last = app.Table("last", default=dict)

    @app.agent("events", sink=["out"])
    async def count(stream):
        async for event in stream:
            counts[event["k"]] += 1
            last[event["k"]]["v"] = event["v"]  # in place: a dict read from the table
            last[event["k"]] = last[event["k"]] | {"v": event["v"]}
            yield {"k": event["k"], "n": counts[event["k"]]}
            if event["v"] == "bad":
                raise ValueError("cannot handle bad")

    driver = drive(app)
    driver.pipe("events", {"k": "a", "v": 1})
    driver.pipe("events", {"k": "a", "v": "bad"})
    assert driver.table("counts") == {"a": 1}
    assert driver.table("last") == {"a": {"v": 1}}
    assert driver.values("out") == [{"k": "a", "n": 1}]  # what it yielded for the bad record is dropped
    [letter] = driver.dead_letters()
    assert letter.header("reason") == "processing_error" and "cannot handle bad" in letter.header("error")
    assert letter.header("processor") == "count"
    assert [r.value for r in driver.changelog("count")] == [b"1", b'{"v":1}']
    driver.pipe("events", {"k": "a", "v": 2})  # a fresh instance of the agent takes the next record
    assert driver.values("out") == [{"k": "a", "n": 2}]
    assert driver.table("last") == {"a": {"v": 2}}


def test_an_agent_that_returns_stops_taking_records(drive) -> None:
    app = make_app()

    @app.agent("src", sink=["out"])
    async def first_only(stream):
        async for value in stream:
            yield value
            return

    driver = drive(app)
    driver.pipe("src", 1)
    driver.pipe("src", 2)
    assert driver.values("out") == [1]
    assert driver.dead_letters() == []


def test_an_agent_must_be_async() -> None:
    app = make_app()

    with pytest.raises(TypeError, match="async def"):
        @app.agent("src")
        def plain(stream):
            return None


def test_agent_params_are_validated_by_its_model(drive) -> None:
    from pydantic import BaseModel

    class Params(BaseModel):
        factor: int = 1

    app = make_app(stream_processors={"scale": {"params": {"factor": 3}}})

    @app.agent("src", sink=["out"], params=Params)
    async def scale(stream):
        async for value in stream:
            yield value * stream.params.factor

    driver = drive(app)
    assert isinstance(driver.processors["scale"], AgentProcessor)
    driver.pipe("src", 2)
    assert driver.values("out") == [6]


def test_an_agent_disabled_in_yaml_does_not_run(drive) -> None:
    app = make_app(stream_processors={"off": {"enabled": False}, "on": {}})

    @app.agent("src", sink=["out_off"])
    async def off(stream):
        async for value in stream:
            yield value

    @app.agent("src", sink=["out_on"])
    async def on(stream):
        async for value in stream:
            yield value

    driver = drive(app)
    driver.pipe("src", 1)
    assert (driver.values("out_off"), driver.values("out_on")) == ([], [1])


def test_concurrency_other_than_one_is_refused() -> None:
    app = make_app()
    with pytest.raises(ValueError, match="concurrency must be 1"):
        app.agent("src", concurrency=2)(lambda stream: None)


# ---- timers and crontabs ------------------------------------------------------------------------------


def test_timer_registers_its_interval_and_refuses_a_non_positive_one() -> None:
    app = make_app()

    @app.timer(2.5)
    async def tick() -> None:
        pass

    [(name, delay, fun)] = app.timers
    assert (name, delay(), fun) == ("tick", 2.5, tick)
    with pytest.raises(ValueError, match="must be positive"):
        app.timer(0)
    with pytest.raises(ValueError, match="must be positive"):
        app.timer(-1.0)


def _frozen_clock(monkeypatch: pytest.MonkeyPatch, now: dt.datetime) -> None:
    """Stop the engine's wall clock (crontab reads it) at ``now``."""
    from stream_processor.engine import processor as processor_module

    monkeypatch.setattr(processor_module, "wall_clock_ms", lambda: int(now.timestamp() * 1000))


def test_crontab_delay_is_the_time_to_the_next_match(monkeypatch) -> None:
    app = make_app()
    _frozen_clock(monkeypatch, dt.datetime(2024, 1, 1, 12, 3, 30, tzinfo=dt.UTC))

    @app.crontab("*/5 * * * *")
    async def every_five() -> None:
        pass

    @app.crontab("0 9 * * *", timezone=dt.timezone(dt.timedelta(hours=2)))
    async def nine_local() -> None:
        pass

    delays = {name: delay() for name, delay, _ in app.timers}
    assert delays["every_five"] == 90.0  # 12:03:30 -> 12:05:00
    # 12:03:30 UTC is 14:03:30 at +02:00: the next 09:00 there is 18 h 56 min 30 s away.
    assert delays["nine_local"] == 18 * 3600 + 56 * 60 + 30


@pytest.mark.parametrize("expression", ["61 * * * *", "* * *", "every minute"])
def test_crontab_refuses_a_malformed_expression(expression: str) -> None:
    with pytest.raises(ValueError, match="not a cron expression"):
        make_app().crontab(expression)


async def test_run_timers_calls_them_until_stopped_and_survives_a_failing_one() -> None:
    app = make_app()
    calls: list[str] = []

    @app.timer(0.01)
    async def good() -> None:
        calls.append("good")

    @app.timer(0.01)
    async def bad() -> None:
        calls.append("bad")
        raise RuntimeError("timer bug")

    stopping = asyncio.Event()
    runner = asyncio.create_task(app.run_timers(stopping))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if calls.count("good") >= 3 and calls.count("bad") >= 3:
            break
    stopping.set()
    await asyncio.wait_for(runner, 1.0)
    assert calls.count("good") >= 3 and calls.count("bad") >= 3
    done = len(calls)
    await asyncio.sleep(0.05)
    assert len(calls) == done  # stopped
