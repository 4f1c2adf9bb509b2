"""Agents and streams as Faust has them, under the TestDriver: async sinks, events and ``current_event()``,
``take(within=...)`` with any duration, ``through``/``echo``/``add_processor``/``forward``, ``group_by`` on a field
reference, and agents used as channels (``@app.agent()`` without a topic, ``send``, ``cast``, ``ask``, ``map``,
``join``, ``kvmap``). Where the wire format matters (ask's request and reply), faust-streaming 0.15.3's own models
read what we write."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import orjson
import pytest

from stream_processor.engine import App, Record, channels
from stream_processor.engine.events import current_event
from stream_processor.engine.stream import Stream
from tests.unit.engine.support import KAFKA, T0, make_app, reasons

# ---- sinks ----------------------------------------------------------------------------------------------------------


def test_an_async_sink_is_awaited_and_a_plain_one_called(drive) -> None:
    app = make_app()
    awaited: list[Any] = []
    called: list[Any] = []
    audit = app.topic("audit")

    async def async_sink(value: Any) -> None:
        await audit.send(key="a", value={"seen": value})  # completes at once: in the record's transaction
        awaited.append(value)

    @app.agent("src", sink=[async_sink, called.append])
    async def double(stream):
        async for value in stream:
            yield value * 2

    driver = drive(app)
    driver.pipe("src", 1, key="k")
    driver.pipe("src", 5, key="k")
    assert awaited == [2, 10] and called == [2, 10]
    assert driver.values("audit") == [{"seen": 2}, {"seen": 10}]


async def test_an_async_sink_awaiting_real_io_finishes_before_the_next_value(drive) -> None:
    app = make_app()
    order: list[str] = []

    async def slow_sink(value: Any) -> None:
        order.append(f"sink start {value}")
        await asyncio.sleep(0.001)
        order.append(f"sink end {value}")

    @app.agent("src", sink=[slow_sink])
    async def agent(stream):
        async for value in stream:
            order.append(f"agent {value}")
            yield value

    driver = drive(app)
    await driver.apipe("src", 1)
    await driver.apipe("src", 2)
    assert order == ["agent 1", "sink start 1", "sink end 1", "agent 2", "sink start 2", "sink end 2"]


def test_an_async_sink_that_raises_fails_the_record(drive) -> None:
    app = make_app()

    async def failing(value: Any) -> None:
        raise RuntimeError("sink broke")

    @app.agent("src", sink=["out", failing])
    async def agent(stream):
        async for value in stream:
            yield value

    driver = drive(app)
    driver.pipe("src", 1)
    assert driver.values("out") == []  # rolled back with the record
    assert reasons(driver) == [("processing_error", b"1")]


def test_a_sink_of_an_unknown_kind_is_refused_at_declaration() -> None:
    app = make_app()
    with pytest.raises(TypeError, match="sink 42 is not a topic, an agent or a function"):
        @app.agent("src", sink=[42])
        async def agent(stream):
            async for value in stream:
                yield value


# ---- events ---------------------------------------------------------------------------------------------------------


def test_events_carry_the_message_with_faust_units(drive) -> None:
    app = make_app()
    seen: list[tuple[Any, ...]] = []

    @app.agent(app.topic("src", key_type=str))
    async def agent(stream):
        async for event in stream.events():
            m = event.message
            now = current_event()
            assert now is not None and now.message.offset == m.offset
            seen.append((event.key, event.value, m.topic, m.partition, m.offset, m.timestamp, m.key, m.value,
                         m.headers, m.tp, event.headers))

    driver = drive(app)
    driver.pipe("src", {"x": 1}, key="k1", timestamp=T0 + 500, headers=[("h", b"1")])
    driver.pipe("src", {"x": 2}, key="k1", timestamp=T0 + 1500)
    assert seen == [
        ("k1", {"x": 1}, "src", 0, 0, (T0 + 500) / 1000, b"k1", b'{"x":1}', [("h", b"1")], ("src", 0),
         {"h": b"1"}),
        ("k1", {"x": 2}, "src", 0, 1, (T0 + 1500) / 1000, b"k1", b'{"x":2}', [], ("src", 0), {}),
    ]
    assert current_event() is None  # outside an agent


def test_stream_current_event_is_an_event_that_still_reads_the_context(drive) -> None:
    app = make_app()
    seen: list[Any] = []

    @app.agent("src")
    async def agent(stream):
        async for _value in stream:
            event = stream.current_event
            seen.append((event.value, event.message.timestamp, event.timestamp, event.topic, event.offset))

    driver = drive(app)
    driver.pipe("src", 7, timestamp=T0)
    assert seen == [(7, T0 / 1000, T0, "src", 0)]  # event.timestamp: the engine's ms, as before events


def test_event_forward_sends_the_original_bytes_and_send_the_decoded_value(drive) -> None:
    app = make_app()
    copies, sent = app.topic("copies"), app.topic("sent")

    @app.agent("src")
    async def agent(stream):
        async for event in stream.events():
            await event.forward(copies)
            await event.send(sent, value={"wrapped": event.value})
            if event.value == {"fail": True}:
                raise RuntimeError("after forwarding")

    driver = drive(app)
    driver.pipe("src", b'{ "a" : 1 }', key="k", headers=[("h", b"v")])
    driver.pipe("src", {"fail": True}, key="k")
    [copy] = driver.read("copies")
    assert (copy.key, copy.value, copy.headers) == (b"k", b'{ "a" : 1 }', (("h", b"v"),))  # not re-serialized
    assert [(r.key, r.json()) for r in driver.read("sent")] == [(b"k", {"wrapped": {"a": 1}})]


# ---- take, add_processor, echo, through -----------------------------------------------------------------------------


@pytest.mark.parametrize("within", [dt.timedelta(seconds=2), 2.0, "2s", "2000ms"])
def test_take_within_takes_any_faust_duration(drive, within) -> None:
    app = make_app()

    @app.agent("src", sink=["batches"])
    async def batcher(stream):
        async for batch in stream.take(3, within=within):
            yield batch

    driver = drive(app)
    driver.pipe("src", 1)
    driver.pipe("src", 2)
    driver.advance_time(1000)
    assert driver.values("batches") == []
    driver.advance_time(1100)  # 2.1 s after the first value
    assert driver.values("batches") == [[1, 2]]


def test_take_refuses_a_non_positive_within() -> None:
    for within in (dt.timedelta(0), "0s", -1.0):
        with pytest.raises(ValueError, match="take"):
            asyncio.run(anext(Stream(None, None).take(3, within=within)))


def test_add_processor_runs_sync_and_async_processors_in_order(drive) -> None:
    app = make_app()

    async def plus_one(value: int) -> int:
        return value + 1

    @app.agent("src", sink=["out"])
    async def agent(stream):
        stream.add_processor(lambda v: v * 10)
        stream.add_processor(plus_one)
        async for value in stream:
            yield value

    driver = drive(app)
    driver.pipe("src", 1)
    driver.pipe("src", 2)
    assert driver.values("out") == [11, 21]


def test_echo_sends_every_value_to_each_channel_without_a_key(drive) -> None:
    app = make_app()
    second = app.topic("second")

    @app.agent("src", sink=["out"])
    async def agent(stream):
        async for value in stream.echo("first", second):
            yield value

    driver = drive(app)
    driver.pipe("src", {"v": 1}, key="k")
    for name in ("first", "second"):
        assert [(r.key, r.json()) for r in driver.read(name)] == [(None, {"v": 1})]
    assert [(r.key, r.json()) for r in driver.read("out")] == [(b"k", {"v": 1})]


def test_manual_acks_are_refused_loudly() -> None:
    stream = Stream(None, None)
    with pytest.raises(NotImplementedError, match="exactly once"):
        stream.noack()
    with pytest.raises(NotImplementedError, match="exactly once"):
        stream.ack(None)


class Reading(Record):
    sensor: str
    value: float


def test_through_forwards_key_and_bytes_and_reads_the_through_topic(drive) -> None:
    app = make_app(topics={"src": {"partitions": 2}, "hop": {"partitions": 4}})
    hop = app.topic("hop", value_type=Reading)
    got: list[Any] = []

    @app.agent("src", sink=["out"])
    async def agent(stream):
        async for reading in stream.through(hop):
            got.append((type(reading).__name__, stream.current_event.message.topic))
            yield {"sensor": reading.sensor, "double": reading.value * 2}

    driver = drive(app)
    driver.pipe("src", b'{"sensor": "s1", "value": 1.5}', key="s1")
    [forwarded] = driver.read("hop")
    assert (forwarded.key, forwarded.value) == (b"s1", b'{"sensor": "s1", "value": 1.5}')  # as read
    assert got == [("Reading", "hop")]
    assert [(r.key, r.json()) for r in driver.read("out")] == [(b"s1", {"sensor": "s1", "double": 3.0})]
    assert sorted(app.settings.stream_processors) == ["agent", "agent-repartition"]
    assert app.settings.stream_processors["agent"].input_topics == ["hop"]


def test_through_and_group_by_together_are_refused() -> None:
    app = make_app()

    @app.agent("src")
    async def agent(stream):
        async for value in stream.through("hop").group_by(lambda v: v, name="v"):
            yield value

    with pytest.raises(ValueError, match="group_by/through is called 2 times"):
        app.finalize()


def test_group_by_takes_a_record_field_reference(drive) -> None:
    app = make_app(topics={"readings": {"partitions": 4}})
    readings = app.topic("readings", value_type=Reading)
    totals = app.Table("totals", default=float)

    @app.agent(readings)
    async def total(stream):
        async for reading in stream.group_by(Reading.sensor):
            totals[reading.sensor] += reading.value

    driver = drive(app)
    for sensor, value in (("a", 1.0), ("b", 2.0), ("a", 3.0)):
        driver.pipe("readings", {"sensor": sensor, "value": value}, key="whatever")
    assert driver.table("totals") == {"a": 4.0, "b": 2.0}
    assert [r.key for r in driver.all("t-total-sensor-repartition")] == [b"a", b"b", b"a"]


# ---- agents as channels ---------------------------------------------------------------------------------------------


def test_an_agent_without_a_topic_reads_its_own_named_as_faust_does(drive) -> None:
    app = make_app()
    counts = app.Table("word_counts", default=int)

    @app.agent(app.topic("posts", value_type=str))
    async def shuffle_words(posts):
        async for post in posts:
            for word in post.split():
                await count_words.send(key=word, value=word)
            if post == "fail here":
                raise RuntimeError("after sending")

    @app.agent(value_type=str)
    async def count_words(words):
        async for word in words:
            counts[word] += 1

    topic = f"t-{__name__}.test_an_agent_without_a_topic_reads_its_own_named_as_faust_does._locals_.count_words"
    assert count_words.channel.name == topic and count_words.channel.value_type is str
    driver = drive(app)
    posts = app.topics["posts"]
    driver.pipe("posts", posts.encode_value("the quick the"), key="p")
    driver.pipe("posts", posts.encode_value("fail here"), key="p")  # its sends are rolled back: exactly once
    assert driver.table("word_counts") == {"the": 2, "quick": 1}
    assert [(r.key, r.value) for r in driver.all(topic)] == [
        (w.encode(), count_words.channel.encode_value(w)) for w in ("the", "quick", "the")]


def test_send_and_cast_outside_an_agent_use_the_apps_producer(monkeypatch) -> None:
    app = make_app()
    sent: list[tuple[Any, ...]] = []

    @app.agent("jobs")
    async def worker(stream):
        async for _ in stream:
            pass

    async def send_outside(topic, key, value, headers, partition):
        sent.append((topic, key, value, headers, partition))

    monkeypatch.setattr(app, "send_outside", send_outside)
    asyncio.run(worker.send(key="k", value={"n": 1}, headers={"h": "v"}))
    asyncio.run(worker.cast({"n": 2}, partition=1))
    assert sent == [("jobs", b"k", b'{"n":1}', [("h", b"v")], None), ("jobs", None, b'{"n":2}', None, 1)]
    with pytest.raises(ValueError, match="only supported inside an agent"):
        asyncio.run(worker.send(value=1, timestamp=1.5))


def _rpc_app(drive, monkeypatch) -> tuple[Any, Any, Any]:
    """An app with ``mul`` (yields value * 100) whose outside sends go into a TestDriver, and whose reply consumer
    reads the driver's reply topic."""
    app = App("t", settings={"kafka": KAFKA}, reply_create_topic=True)

    @app.agent("RPC__mul", sink=["products"])
    async def mul(stream):
        async for value in stream:
            yield value * 100.0

    driver = drive(app)

    async def send_outside(topic, key, value, headers, partition):
        await driver.apipe(topic, value, key=key, headers=headers, partition=partition)

    async def fetch() -> list[bytes | None]:
        await asyncio.sleep(0)
        return [r.value for r in driver.read("t-reply")]

    monkeypatch.setattr(app, "send_outside", send_outside)
    channels.replies(app, "t-reply", fetch)
    return app, mul, driver


async def test_ask_is_answered_with_the_yielded_value_in_faust_wire_format(drive, monkeypatch) -> None:
    from faust.agents.models import ReqRepRequest, ReqRepResponse

    app, mul, driver = _rpc_app(drive, monkeypatch)
    try:
        assert await mul.ask(value=3.0, key="x", correlation_id="c-1") == 300.0
        [request] = driver.all("RPC__mul")
        faust_request = ReqRepRequest.loads(request.value, serializer="json")  # Faust reads our request
        assert (faust_request.value, faust_request.reply_to, faust_request.correlation_id) == (3.0, "t-reply", "c-1")
        [reply] = driver.all("t-reply")
        faust_reply = ReqRepResponse.loads(reply.value, serializer="json")  # and our reply
        assert (faust_reply.key, faust_reply.value, faust_reply.correlation_id) == ("x", 300.0, "c-1")
        assert orjson.loads(reply.value)["__faust"] == {"ns": "@ReqRepResponse"}
        assert driver.values("products") == [300.0]  # the sinks get the unwrapped value's result as usual
    finally:
        await channels.close_replies(app)


async def test_ask_without_a_declared_reply_topic_is_refused() -> None:
    app = make_app()

    @app.agent("RPC__mul")
    async def mul(stream):
        async for value in stream:
            yield value

    assert "t-reply" not in app.topics  # no RPC asked for: no topic more to create
    with pytest.raises(RuntimeError, match="reply_create_topic=True"):
        await mul.ask(1.0)


async def test_join_map_and_kvmap(drive, monkeypatch) -> None:
    app, mul, driver = _rpc_app(drive, monkeypatch)
    try:
        assert await mul.join([1.0, 2.0, 3.0]) == [100.0, 200.0, 300.0]
        assert sorted([v async for v in mul.map([4.0, 5.0])]) == [400.0, 500.0]
        assert sorted([v async for v in mul.kvmap([("a", 6.0), ("b", 7.0)])]) == [600.0, 700.0]
        assert await mul.kvjoin([("a", 8.0)]) == [800.0]
    finally:
        await channels.close_replies(app)


def test_a_request_from_faust_is_unwrapped_and_answered(drive) -> None:
    from faust.agents.models import ReqRepRequest

    app = App("t", settings={"kafka": KAFKA}, reply_create_topic=True)

    @app.agent("RPC__mul")
    async def mul(stream):
        async for value in stream:
            yield value * 100.0

    driver = drive(app)
    request = ReqRepRequest(value=2.5, reply_to="t-reply", correlation_id="faust-1").dumps()
    driver.pipe("RPC__mul", request, key="k")
    assert [(r.key, r.json()) for r in driver.read("t-reply")] == [
        (None, {"key": "k", "value": 250.0, "correlation_id": "faust-1", "__faust": {"ns": "@ReqRepResponse"}})]


# ---- the same source under faust-streaming's test_context -----------------------------------------------------------

FAUST_SOURCE = '''
seen = []
sunk = []


async def record_sink(value):
    await asyncio.sleep(0)
    sunk.append(value)


src = app.topic("src", key_type=str)


@app.agent(src, sink=[record_sink])
async def agent(stream):
    stream.add_processor(lambda v: {**v, "processed": True})
    async for event in stream.events():
        now = faust.current_event()
        m = event.message
        seen.append([event.key, event.value, m.topic, m.partition, m.offset, m.timestamp, m.key, m.value,
                     now.message.offset, event.headers])
        yield event.value["x"] * 2


@app.agent(value_type=str)
async def own_topic(stream):
    async for value in stream:
        yield value
'''

INPUT = [({"x": 1}, b"k1", 1_700_000_000.5, [("h", b"1")]), ({"x": 2}, b"k2", 1_700_000_001.25, None)]


async def _run_faust() -> tuple[Any, str]:
    import faust

    app = faust.App("fx", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)
    module = load_module("faust_agents_faust", "import asyncio\nimport faust\n" + FAUST_SOURCE, app)
    async with module.agent.test_context(channel=module.src) as agent:
        for value, key, ts, headers in INPUT:
            await agent.put(orjson.dumps(value), key=key, timestamp=ts, headers=headers)
    return module, module.own_topic.channel.get_topic_name()


async def _run_ours(drive, monkeypatch) -> tuple[Any, str]:
    import stream_processor

    # until the package exports it (README: `import stream_processor as faust`): faust.current_event
    monkeypatch.setattr(stream_processor, "current_event", current_event, raising=False)
    app = stream_processor.App("fx", settings={"kafka": {"bootstrap_servers": ["127.0.0.1:1"]}})
    module = load_module("faust_agents_faust", "import asyncio\nimport stream_processor as faust\n" + FAUST_SOURCE,
                         app)
    driver = drive(app, start_ms=0)
    for value, key, ts, headers in INPUT:
        await driver.apipe("src", orjson.dumps(value), key=key, timestamp=int(ts * 1000), headers=headers)
    return module, module.own_topic.channel.name


async def test_events_sinks_and_the_agents_own_topic_as_faust_test_context(drive, monkeypatch) -> None:
    faust_module, faust_topic = await asyncio.wait_for(_run_faust(), timeout=60)
    ours, our_topic = await _run_ours(drive, monkeypatch)
    assert faust_module.seen == [
        ["k1", {"x": 1}, "src", 0, 0, 1_700_000_000.5, b"k1", b'{"x":1}', 0, {"h": b"1"}],
        ["k2", {"x": 2}, "src", 0, 1, 1_700_000_001.25, b"k2", b'{"x":2}', 1, {}],
    ]
    assert ours.seen == faust_module.seen
    assert faust_module.sunk == ours.sunk == [2, 4]  # the async sink awaited, in both
    assert our_topic == faust_topic == "fx-faust_agents_faust.own_topic"


def load_module(name: str, source: str, app: Any) -> Any:
    """Execute ``source`` as a fresh module ``name`` whose ``app`` is already defined."""
    import types

    module = types.ModuleType(name)
    module.app = app
    exec(compile(source, f"<{name}>", "exec", dont_inherit=True), module.__dict__)  # noqa: S102 - the source under test
    return module


# ---- app.channel, partial agents (examples/bound_agent.py), the keyless partitioner -------------------------------


def test_a_channel_is_a_one_partition_topic_of_the_app_and_partial_agents_read_it(drive) -> None:
    """``app.channel()`` is ``<app id>-channel-<n>`` (n in declaration order), one partition; a ``functools.partial``
    agent over it, with the partial's bound channel as a sink of its own sends, runs as Faust's does."""
    import functools

    app = make_app()
    actions, passed, dead = app.channel(value_type=int), app.channel(), app.channel()
    assert [c.name for c in (actions, passed, dead)] == [f"{app.id}-channel-{i}" for i in range(3)]
    assert actions.partitions == 1
    with pytest.raises(TypeError, match="unexpected keyword"):
        app.channel(partitions=4)

    async def stage(dead_letters: Any, stream: Any) -> Any:
        async for action in stream:
            if action % 3 == 0:
                await dead_letters.send(value={"dead": action})
            else:
                yield action

    app.agent(actions, name="stage", sink=[passed])(functools.partial(stage, dead))
    driver = drive(app)
    for i in range(7):
        driver.pipe(actions.name, i)
    assert driver.values(passed.name) == [1, 2, 4, 5]
    assert driver.values(dead.name) == [{"dead": 0}, {"dead": 3}, {"dead": 6}]


def test_keyless_records_leave_the_programs_random_state_alone(drive) -> None:
    """A keyless output's partition is drawn from the engine's own generator: a program that seeds ``random``
    draws what it would draw without the engine (aiokafka's partitioner draws from the global one)."""
    import random

    app = make_app(topics={"out": {"partitions": 4}})

    @app.agent("src", sink=["out"])
    async def spread(stream):
        async for value in stream:
            yield value

    driver = drive(app)
    random.seed(5)
    expected = [random.random() for _ in range(3)]
    random.seed(5)
    for i in range(20):
        driver.pipe("src", i)  # no key: each output's partition drawn at random
    assert [random.random() for _ in range(3)] == expected
    assert len({r.partition for r in driver.read("out")}) > 1


def test_stream_enumerate_counts_the_partitions_records(drive) -> None:
    app = make_app()

    @app.agent("src", sink=["out"])
    async def numbered(stream):
        async for i, value in stream.enumerate(start=1):
            yield {"i": i, "value": value}

    driver = drive(app)
    for v in "abc":
        driver.pipe("src", v)
    assert driver.values("out") == [{"i": 1, "value": "a"}, {"i": 2, "value": "b"}, {"i": 3, "value": "c"}]


def test_a_stream_outside_an_agent_is_refused_saying_why() -> None:
    app = make_app()
    for make in (lambda: app.stream(app.topic("src")), lambda: app.topic("src").stream()):
        with pytest.raises(NotImplementedError, match=r"@app.agent\(topic\)"):
            make()
