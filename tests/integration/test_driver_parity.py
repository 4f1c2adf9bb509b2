"""The TestDriver and the broker give the same results (issue 19).

Each case runs the same app (or settings) over the same input records twice: through the broker-less
:class:`~stream_processor.engine.testing.TestDriver`, and through a real worker on the broker (an in-process
:class:`~stream_processor.engine.worker.Worker`; every topic renamed for the run, the inputs published first at the
same partitions, offsets, keys, headers and timestamps, the worker started, the case settled: every group has
committed the end of its inputs and no output transaction is open, then the worker stopped and every output read
under read_committed). Every output topic and the dead-letter topic are then compared per partition, in offset order,
record by record: key, value, headers, timestamp (:func:`tests.parity.differences`). Progress records (header
``sp-progress``, engine bookkeeping) are left out on both sides. Two relaxations, each where it is stated:

- a partition that several tasks write (a one-partition dead-letter or alerts topic, an output with fewer partitions
  than the input; a re-keyed agent's repartition topic and, through it, its outputs, compared per new key) is
  compared per writer, each writer's records in offset order: how the writers' transactions interleave in it is the
  order they happened to commit in;
- the ``source_offset`` header of a dead letter whose source is a repartition topic (an intermediate topic: its
  offsets depend on where its writers' transaction markers fall).

The inputs are real Binance spot captures of 2024-08-08 (../shared/data/feeds/binance-hftbacktest/spot), read as
the replay reads them (keyed by symbol, on the raw topic of their family), stamped with their recorded receive time,
or records made here for the agents of cases 3 to 5, each with a few bad records among them; every topic is created
with ``retention.ms`` -1, since 2024 timestamps would otherwise let the broker's retention delete them. The driver
commits every record (its default) for the example agents, every 100 records elsewhere, and both ways for
trades_with_book: where the driver commits must not change an output.

Coverage (records compared; each test prints its line; the topics without their run's suffix):

================================  ====================================================================================
case                              inputs; output records compared per topic
================================  ====================================================================================
1. examples/big_trades            2,111 trades + 3 bad; big_trades 25, dead_letter 3
1. examples/trade_counts          2,111 trades + 3 bad; trade_counts 2,111, dead_letter 3
1. examples/trades_with_book      2,111 trades + 3 bad, 9,889 book messages + 2 bad; enriched_orderbook 1,027,
                                  trades_with_book 2,110, dead_letter 5 (against two driver runs)
2. trades, orderbook, klines      15,863 trades + 4 bad, 9,889 book messages + 2 bad; enriched_trades 15,863,
                                  enriched_orderbook 1,027, enriched_klines 12, smc_signals 3, smc_context 12,
                                  volume_profile 10, alerts 0, dead_letter 8
3. chaos harness's user agent     800 check records + 3 bad; eos-agent-out 800, dead letters 3
4. group_by                       600 clicks + 1 bad; repartition topic 600, session-clicks 599, dead letters 2
5. restart() with Records         480 readings in two halves; sensor-stats 480, dead letters 0
================================  ====================================================================================

43,875 input records, 24,703 output records compared.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
import yaml

import examples.big_trades.app as big_trades_example
import examples.trade_counts.app as trade_counts_example
import examples.trades_with_book.app as trades_with_book_example
from stream_processor import App, Record
from stream_processor.engine.records import decode_state
from stream_processor.engine.settings import ENV_OVERRIDES, Settings
from stream_processor.engine.testing import TestDriver
from stream_processor.engine.topics import changelog_topic
from stream_processor.market.settings import replay_settings
from tests.conftest import FEEDS, ROOT
from tests.eos import check_app
from tests.helpers import isolated_settings, read_topic
from tests.parity import (
    SHOWN,
    Input,
    Out,
    assert_same,
    broker_outputs,
    by_key,
    coverage,
    create_topics,
    dead_letter_writer,
    differences,
    driver_outputs,
    expected_offsets,
    feed_inputs,
    merged,
    outputs_of,
    parity,
    partition_of,
    pipe_all,
    publish,
    retention_off,
    run_broker,
    run_driver,
    settle,
    task_of_key,
    with_bad,
    worker_running,
)

SPOT = FEEDS / "spot"
DAY = [SPOT / "btcusdt_20240808.gz", SPOT / "ethusdt_20240808.gz"]
EXAMPLE_LINES = 6_000  # of each file: ~50 s of each symbol, its depth snapshot included (line 8)
TRADES_LINES = 200_000  # every line: all 15,863 trades of the 5.8 minutes (klines of 1 m and 5 m)
BOOK_LINES = 6_000


@pytest.fixture(autouse=True)
def _no_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings are exactly the documents built here (no KAFKA_BOOTSTRAP_SERVERS, ports... from outside)."""
    for name in ENV_OVERRIDES:
        monkeypatch.delenv(name, raising=False)


# ---- inputs --------------------------------------------------------------------------------------------------------
def trades_and_books(topics: Mapping[str, str], partitions: Mapping[str, int], trade_lines: int, book_lines: int
                     ) -> tuple[list[Input], list[Input]]:
    """The trades and the order-book messages (depth diffs, the REST snapshot, bookTickers) of both symbols'
    files: ``trade_lines`` and ``book_lines`` lines of each."""
    trades = [r for path in DAY for r in feed_inputs(path, trade_lines, topics, partitions, kinds={"trades"})]
    books = [r for path in DAY for r in feed_inputs(path, book_lines, topics, partitions, kinds={"orderbook"})]
    return trades, books


def bad_trades(trades: list[Input], duplicate: bool = False) -> list[Input]:
    """``trades`` with bad BTCUSDT trades among them: not JSON (undecodable), a trade without a price and one with
    a negative size (invalid), and with ``duplicate`` a re-sent trade (the same bytes as an earlier one: dropped by
    the processors that dedup)."""
    btc = [i for i, r in enumerate(trades) if r.key == b"BTCUSDT"]
    envelope = orjson.loads(trades[btc[100]].value or b"")
    no_price = {**envelope, "data": {k: v for k, v in envelope["data"].items() if k != "p"}}
    negative = {**envelope, "data": {**envelope["data"], "q": "-1"}}
    bad = [(btc[100], b"\xff\xfe not json"), (btc[200], orjson.dumps(no_price)), (btc[300], orjson.dumps(negative))]
    if duplicate:
        bad.append((btc[400], trades[btc[350]].value or b""))
    return with_bad(trades, bad)


def bad_books(books: list[Input]) -> list[Input]:
    """``books`` with two bad ETHUSDT messages: not JSON, and a depth diff with a price that is not a number."""
    eth = [i for i, r in enumerate(books) if r.key == b"ETHUSDT"]
    depth = next(orjson.loads(books[i].value or b"") for i in eth[500:] if b"depthUpdate" in (books[i].value or b""))
    wrong = {**depth, "data": {**depth["data"], "b": [["abc", "1"]]}}
    return with_bad(books, [(eth[300], b"{not json"), (eth[600], orjson.dumps(wrong))])


# ---- 1. the examples -----------------------------------------------------------------------------------------------
def example_app(example: str, module: ModuleType, bootstrap: str) -> tuple[App, dict[str, str]]:
    """The example's app with its ``config.yaml`` (every topic and the app id renamed for this run, retention off,
    the test broker, ports 0); returns it and the topic names ``{name in config.yaml: name in this run}``."""
    doc = yaml.safe_load((ROOT / "examples" / example / "config.yaml").read_text())
    run = uuid.uuid4().hex[:8]
    rename = {topic: f"{topic}-{run}" for topic in doc["topics"]}
    doc["app_id"] = f"{doc['app_id']}-{run}"
    doc["kafka"]["bootstrap_servers"] = [bootstrap]
    doc["topics"] = {rename[t]: spec for t, spec in doc["topics"].items()}
    doc["replay"]["topics"] = {kind: rename[t] for kind, t in doc["replay"]["topics"].items()}
    for entry in doc["stream_processors"].values():
        for key in ("input_topics", "output_topics"):
            if key in entry:
                entry[key] = [rename[t] for t in entry[key]]
        entry["dead_letter_topic"] = rename[entry.get("dead_letter_topic", "dead_letter")]
    doc["monitoring"].update(host="127.0.0.1", metrics_port=0, health_check_port=0)
    return module.make_app(retention_off(doc), topics=rename), rename


def partitions_of(settings: Settings) -> dict[str, int]:
    """Partitions per topic of the settings' ``topics`` section."""
    return {name: spec.partitions for name, spec in settings.topics.items()}


@pytest.mark.parametrize("example", ["big_trades", "trade_counts"])
async def test_a_trades_example_gives_the_same_outputs_on_the_broker(kafka_bootstrap: str, shared_data: Path,
                                                                       example: str) -> None:
    module = {"big_trades": big_trades_example, "trade_counts": trade_counts_example}[example]
    app, topics = example_app(example, module, kafka_bootstrap)
    settings = app.settings
    raw = {"trades": topics["raw_trades"], "orderbook": topics["raw_orderbook"]}
    trades, _ = trades_and_books(raw, partitions_of(settings), EXAMPLE_LINES, 0)
    dead = settings.stream_processors[example].dead_letter_topic
    got = await parity(f"examples/{example}", kafka_bootstrap, settings, app, [example], bad_trades(trades),
                       writers={dead: dead_letter_writer})
    assert sum(r.topic == topics[example] for r in got) > 0
    assert sorted(r.header("reason") or "" for r in got if r.topic == dead) == ["invalid", "invalid", "undecodable"]


@pytest.mark.slow  # 10-16 s (the driver twice, two workers one after the other)
async def test_trades_with_book_gives_the_same_join_on_the_broker(kafka_bootstrap: str, shared_data: Path) -> None:
    """The join of trades with the order-book processor's books: on the broker the order-book processor runs to the
    end of its input first, then the agent (a worker each: ``Worker(only=...)``).

    Why not both at once: the agent's task takes its two inputs in timestamp order only while both have records to
    compare. Running beside the order-book processor, its book partition is often empty and caught up (the books are
    written only when the order-book processor commits), and the task then goes on with the trades after its
    ``max_task_idle_ms`` (0 for an agent), before the books of their time: a run-dependent order. A longer
    ``max_task_idle_ms`` makes the right order likely, not certain: the wait is wall-clock time (a slow start of the
    order-book processor outlasts it), and since that processor writes no progress records, every trade after the
    book tape's last record would wait out the whole deadline. With every book committed before the agent starts, its
    order is the timestamp order of its inputs alone, on the broker as in the driver, where the inputs are piped in
    that order (:func:`tests.parity.merged`; on a tie the trade first: engine/partition_group.py gives a tie to the
    topic listed first in ``input_topics``, and the agent lists the trades first).

    The driver runs twice, committing every record and every 100: a task waiting for an input goes on without it
    only "once nothing else can happen" (engine/testing.py), and the order-book processor committing its open
    transaction is something that can happen, so where the driver commits must not change the join.
    """
    app, topics = example_app("trades_with_book", trades_with_book_example, kafka_bootstrap)
    settings = app.settings
    raw = {"trades": topics["raw_trades"], "orderbook": topics["raw_orderbook"]}
    trades, books = trades_and_books(raw, partitions_of(settings), EXAMPLE_LINES, EXAMPLE_LINES)
    inputs = merged([*bad_trades(trades), *bad_books(books)], priority=[raw["trades"], raw["orderbook"]])
    processors = ["orderbook", "trades_with_book"]
    dead = settings.stream_processors["trades_with_book"].dead_letter_topic
    assert settings.stream_processors["orderbook"].dead_letter_topic == dead

    expected = {n: run_driver(settings, app, processors, inputs, commit_every=n) for n in (1, 100)}
    await create_topics(settings, app)
    assert await publish(kafka_bootstrap, inputs) == expected_offsets(inputs)
    for name in processors:  # the books first, then the join
        async with worker_running(settings, app, only=[name]) as (_, alive):
            await settle(kafka_bootstrap, settings, [name], alive)
    got = await broker_outputs(kafka_bootstrap, outputs_of(settings, processors))
    print(coverage("examples/trades_with_book", len(inputs), outputs_of(settings, processors), got))
    found = [d for n, outputs in expected.items() for d in differences(
        f"examples/trades_with_book, driver commit_every={n}", outputs, got, writers={dead: dead_letter_writer})]
    assert not found, f"{len(found)} difference(s) between the driver and the broker:\n" + "\n".join(found[:SHOWN])
    assert sum(r.topic == topics["trades_with_book"] for r in got) > 0
    assert sum(r.topic == topics["enriched_orderbook"] for r in got) > 0
    reasons = sorted((r.header("processor") or "", r.header("reason") or "") for r in got if r.topic == dead)
    assert reasons == [("orderbook", "invalid"), ("orderbook", "undecodable"), ("trades_with_book", "invalid"),
                       ("trades_with_book", "invalid"), ("trades_with_book", "undecodable")]


# ---- 2. the built-in processors ------------------------------------------------------------------------------------
@pytest.mark.slow  # 12-19 s
async def test_the_built_in_processors_give_the_same_outputs_on_the_broker(kafka_bootstrap: str,
                                                                           shared_data: Path) -> None:
    """``trades``, ``orderbook`` and ``klines`` as the shipped config has them (topics renamed), in one worker, over
    every trade of the two files and the first order-book messages, with bad trades and bad book messages."""
    processors = ["trades", "orderbook", "klines"]
    settings = Settings.model_validate(
        retention_off(isolated_settings(kafka_bootstrap, processors=processors).model_dump()))
    replay = replay_settings(settings)
    assert replay is not None
    raw = {str(kind): topic for kind, topic in replay.topics.items()}
    trades, books = trades_and_books(raw, partitions_of(settings), TRADES_LINES, BOOK_LINES)
    inputs = [*bad_trades(trades, duplicate=True), *bad_books(books)]
    dead = settings.stream_processors["trades"].dead_letter_topic
    alerts = settings.stream_processors["klines"].output_topics[2]
    assert {settings.stream_processors[n].dead_letter_topic for n in processors} == {dead}
    assert settings.topic(alerts).partitions == 1  # every klines task writes it
    writers = {dead: dead_letter_writer, alerts: task_of_key(settings.topic(raw["trades"]).partitions)}
    got = await parity("built-in processors", kafka_bootstrap, settings, None, processors, inputs, writers,
                       commit_every=100)
    for name in processors:
        out = settings.stream_processors[name].output_topics[0]
        assert sum(r.topic == out for r in got) > 0, out
    reasons = sorted((r.header("processor") or "", r.header("reason") or "") for r in got if r.topic == dead)
    assert reasons == sorted([*[(p, reason) for p in ("klines", "trades") for reason in ("invalid", "invalid",
                                                                                          "undecodable")],
                              ("orderbook", "invalid"), ("orderbook", "undecodable")])


# ---- 3. the chaos harness's user agent -----------------------------------------------------------------------------
CHECK_RECORDS = 800
CHECK_KEYS = 20
CHECK_BASE_MS = 1_723_075_200_000  # 2024-08-08T00:00:00Z


def check_settings(bootstrap: str) -> tuple[Settings, str, str]:
    """Settings of tests/eos/check_app.py's agent as the chaos harness's YAML sets it (its own topics: 8 input
    partitions, 5 output ones, a dead-letter topic); returns them with its input and output topics."""
    check_app.app.finalize()  # registers the agent as a processor type
    run = uuid.uuid4().hex[:8]
    source, sink, dead = f"eos-agent-in-{run}", f"eos-agent-out-{run}", f"eos-agent-dlq-{run}"
    doc = {
        "app_id": f"parity-eos-{run}",
        "kafka": {"bootstrap_servers": [bootstrap]},
        "topics": {source: {"partitions": 8}, sink: {"partitions": 5}, dead: {"partitions": 1}},
        "stream_processors": {check_app.AGENT: {"consumer_group": f"parity-eos-{run}", "input_topics": [source],
                                                "output_topics": [sink], "dead_letter_topic": dead}},
        "monitoring": {"host": "127.0.0.1", "metrics_port": 0, "health_check_port": 0},
    }
    return Settings.model_validate(retention_off(doc), context={"types": check_app.app.types}), source, sink


def check_records(source: str) -> list[Input]:
    """The harness's check records (tests/eos/harness.py ``check_records``): ids 0.., keys k0..k19, values in
    [-1000, 1000], an event time ``ts`` of 10 ms per id less a lateness (2% of them past their window's expiry),
    each stamped 1 s after its id's time; with a record that is not JSON (undecodable) and two that the agent fails
    on (a JSON array, an object without ``value``: processing errors, each replayed in check mode, then
    dead-lettered)."""
    rng, late = random.Random(19), random.Random(21)
    out = []
    for i in range(CHECK_RECORDS):
        key = f"k{rng.randrange(CHECK_KEYS)}"
        lateness = late.randrange(*check_app.TOO_LATE_MS) if late.random() < 0.02 else \
            late.randrange(check_app.MAX_LATENESS_MS)
        doc = {"id": i, "key": key, "value": rng.randint(-1000, 1000), "ts": CHECK_BASE_MS + 10 * i - lateness}
        out.append(Input(source, partition_of(key.encode(), 8), key.encode(), orjson.dumps(doc), (),
                         CHECK_BASE_MS + 10 * i + 1000))
    bad = [(100, b"not json"), (300, b"[1, 2]"), (500, orjson.dumps({"id": 10_000, "key": "k1"}))]
    return with_bad(out, bad)


async def test_the_chaos_harness_agent_gives_the_same_outputs_on_the_broker(kafka_bootstrap: str) -> None:
    settings, source, sink = check_settings(kafka_bootstrap)
    dead = settings.stream_processors[check_app.AGENT].dead_letter_topic
    got = await parity("chaos harness's user agent", kafka_bootstrap, settings, check_app.app, [check_app.AGENT],
                       check_records(source), writers={sink: task_of_key(8), dead: dead_letter_writer},
                       commit_every=100)
    assert sum(r.topic == sink for r in got) == CHECK_RECORDS
    assert sorted(r.header("reason") or "" for r in got if r.topic == dead) == [
        "processing_error", "processing_error", "undecodable"]


# ---- 4. group_by: re-keyed records keep their timestamps -----------------------------------------------------------
class Click(Record):
    """A page view: ``session`` belongs to ``user``."""

    id: int
    user: str
    session: str
    page: str | None = None


CLICKS = 600
CLICK_BASE_MS = 1_723_075_200_000  # 2024-08-08T00:00:00Z, on a minute
CLICK_STEP_MS = 300  # 600 clicks over 3 minutes: three 1-minute windows


def clicks_app(bootstrap: str) -> tuple[App, dict[str, str]]:
    """Clicks keyed by user (4 partitions) re-keyed by session through the repartition topic; the body counts each
    session's clicks per 1-minute tumbling window of the record timestamps (``relative_to_stream``) and sends the
    window's running count, keyed by session. A click without a page passes the first stage (which only needs the
    session) and fails in the body (``page.upper()``): dead-lettered from the repartition topic. Returns the app and
    its topics (source, sink, repartition, dead)."""
    run = uuid.uuid4().hex[:8]
    app_id = f"parity-gb-{run}"
    names = {"source": f"clicks-{run}", "sink": f"session-clicks-{run}",
             "repartition": f"{app_id}-per_session-by_session-repartition", "dead": f"clicks-dlq-{run}"}
    doc = {
        "app_id": app_id,
        "kafka": {"bootstrap_servers": [bootstrap]},
        "topics": {names["source"]: {"partitions": 4}, names["sink"]: {"partitions": 4},
                   names["repartition"]: {"partitions": 4}, names["dead"]: {"partitions": 1}},
        "stream_processors": {"per_session": {"dead_letter_topic": names["dead"]},
                              "per_session-repartition": {"dead_letter_topic": names["dead"]}},
        "monitoring": {"host": "127.0.0.1", "metrics_port": 0, "health_check_port": 0},
    }
    app = App(app_id, settings=retention_off(doc))
    clicks = app.topic(names["source"], value_type=Click)
    windows = app.Table("clicks_per_minute", default=int).tumbling(
        60.0, expires=3600.0, expire_by="stream_time").relative_to_stream()

    @app.agent(clicks, sink=[names["sink"]])
    async def per_session(stream: Any) -> Any:
        async for click in stream.group_by("session", name="by_session"):
            windows[click.session] += 1
            ts = stream.current_event.timestamp
            yield {"id": click.id, "session": click.session, "page": click.page.upper(),
                   "window_start_ms": ts - ts % 60_000, "count": windows[click.session].current()}

    return app, names


def clicks(source: str) -> list[Input]:
    """600 clicks of 12 users (1 to 3 sessions each) over three minutes of 2024-08-08, keyed by user, each stamped
    with its time; with a click that is not JSON (dead-lettered by the first stage) and one without a page (by the
    body)."""
    rng = random.Random(4)
    sessions = {f"u{u}": [f"u{u}-s{s}" for s in range(1 + u % 3)] for u in range(12)}
    out = []
    for i in range(CLICKS):
        user = f"u{rng.randrange(12)}"
        doc = {"id": i, "user": user, "session": rng.choice(sessions[user]), "page": f"/p{rng.randrange(9)}"}
        if i == 450:
            del doc["page"]
        out.append(Input(source, partition_of(user.encode(), 4), user.encode(), orjson.dumps(doc),
                         (("app", b"web"),), CLICK_BASE_MS + CLICK_STEP_MS * i))
    return with_bad(out, [(120, b"\x00 not a click")])


async def test_group_by_keeps_each_records_timestamp_through_the_repartition_topic(kafka_bootstrap: str) -> None:
    """The body's windows are those of the clicks' own (2024) timestamps, on the broker as in the driver.

    Two relaxations, both from the repartition topic: its partitions get the records of the four first-stage tasks
    in the order their transactions committed, so each session's records (all from its user's partition, one task)
    are compared in order, sessions apart (the writer of a record of the repartition topic and of the sink is taken
    to be its key); and a dead letter from the repartition topic names its ``source_offset`` there, which depends on
    where the first stage's transaction markers fall (the driver commits every 100 records, the worker every 100
    ms), so that header alone is not compared for it.
    """
    app, names = clicks_app(kafka_bootstrap)
    settings = app.settings
    assert settings.topic(names["repartition"]).partitions == 4
    processors = ["per_session-repartition", "per_session"]  # upstream first
    inputs = clicks(names["source"])
    expected = run_driver(settings, app, processors, inputs, commit_every=100)
    got = await run_broker(kafka_bootstrap, settings, app, processors, inputs)

    def unstable(rec: Out) -> frozenset[str]:
        return frozenset({"source_offset"}) if rec.header("source_topic") == names["repartition"] else frozenset()

    print(coverage("group_by", len(inputs), outputs_of(settings, processors), got))
    assert_same("group_by", expected, got, writers={names["sink"]: by_key, names["repartition"]: by_key,
                                                     names["dead"]: dead_letter_writer},
                unstable={names["dead"]: unstable})
    # What the bug changed: every re-keyed record keeps its click's timestamp, so the counts fall in three windows.
    stamp = {orjson.loads(r.value or b"")["id"]: r.timestamp for r in inputs if r.value and r.value[:1] == b"{"}
    sunk = [(r, orjson.loads(r.value or b"")) for r in got if r.topic == names["sink"]]
    assert len(sunk) == CLICKS - 1 and all(r.timestamp == stamp[doc["id"]] for r, doc in sunk)
    assert {doc["window_start_ms"] for _, doc in sunk} == {CLICK_BASE_MS + 60_000 * w for w in range(3)}
    dead = [(r.header("processor"), r.header("reason"), r.header("source_topic"))
            for r in got if r.topic == names["dead"]]
    assert sorted(dead) == [("per_session", "processing_error", names["repartition"]),
                            ("per_session-repartition", "undecodable", names["source"])]


# ---- 5. restart() with Records in a table --------------------------------------------------------------------------
class Reading(Record):
    """A sensor's reading."""

    id: int
    sensor: str
    value: float


class Stats(Record):
    """The readings of a window so far (a Record kept in a table)."""

    count: int = 0
    total: float = 0.0
    last_id: int = -1

    def __add__(self, reading: Reading) -> Stats:
        return Stats(count=self.count + 1, total=self.total + reading.value, last_id=reading.id)  # type: ignore[call-arg]


READINGS = 480
READING_BASE_MS = 1_723_075_200_000  # 2024-08-08T00:00:00Z
READING_STEP_MS = 500  # 480 readings over 4 minutes: 60 s windows every 20 s


def stats_app(bootstrap: str) -> tuple[App, dict[str, str]]:
    """Per sensor, a hopping window (60 s every 20 s, by record timestamp) of :class:`Stats`; each reading adds
    itself to its windows (``Stats.__add__``: a Record read back from the table) and the latest window is sent."""
    run = uuid.uuid4().hex[:8]
    app_id = f"parity-rs-{run}"
    names = {"source": f"readings-{run}", "sink": f"sensor-stats-{run}", "dead": f"readings-dlq-{run}"}
    doc = {
        "app_id": app_id,
        "kafka": {"bootstrap_servers": [bootstrap]},
        "topics": {names["source"]: {"partitions": 4}, names["sink"]: {"partitions": 4},
                   names["dead"]: {"partitions": 1}},
        "stream_processors": {"sensor_stats": {"dead_letter_topic": names["dead"]}},
        "monitoring": {"host": "127.0.0.1", "metrics_port": 0, "health_check_port": 0},
    }
    app = App(app_id, settings=retention_off(doc))
    readings = app.topic(names["source"], value_type=Reading)
    stats = app.Table("sensor_stats", default=Stats).hopping(
        60.0, 20.0, expires=3600.0, expire_by="stream_time").relative_to_stream()

    @app.agent(readings, sink=[names["sink"]])
    async def sensor_stats(stream: Any) -> Any:
        async for reading in stream:
            stats[reading.sensor] += reading
            current = stats[reading.sensor].current()
            yield {"id": reading.id, "sensor": reading.sensor, "class": type(current).__name__, **current.asdict()}

    return app, names


def readings(source: str) -> list[Input]:
    """480 readings of 6 sensors over four minutes of 2024-08-08, keyed by sensor, stamped with their time."""
    rng = random.Random(5)
    out = []
    for i in range(READINGS):
        sensor = f"sensor-{rng.randrange(6)}"
        doc = {"id": i, "sensor": sensor, "value": round(rng.uniform(-50, 50), 3)}
        out.append(Input(source, partition_of(sensor.encode(), 4), sensor.encode(), orjson.dumps(doc), (),
                         READING_BASE_MS + READING_STEP_MS * i))
    return out


async def test_records_in_a_table_survive_a_restart_the_same_way(kafka_bootstrap: str) -> None:
    """Half the readings, a restart (the driver's ``restart()``; on the broker the worker is stopped and a new one
    started before the second half is published), the other half: the outputs are the same, and the windows read
    back from the changelog are still Stats (a dict would make the next reading of that window a processing error)."""
    app, names = stats_app(kafka_bootstrap)
    settings = app.settings
    inputs = readings(names["source"])
    first, second = inputs[: READINGS // 2], inputs[READINGS // 2 :]
    processors = ["sensor_stats"]
    outputs = outputs_of(settings, processors)

    with TestDriver(app, commit_every=7) as driver:  # an open transaction at the restart: aborted, then replayed
        pipe_all(driver, first)
        driver.restart()
        pipe_all(driver, second)
        table = driver.table("sensor_stats")
        expected = driver_outputs(driver, outputs)
    assert table and all(type(v) is Stats for v in table.values()), table

    await create_topics(settings, app)
    assert await publish(kafka_bootstrap, first) == expected_offsets(first)
    async with worker_running(settings, app) as (_, alive):
        await settle(kafka_bootstrap, settings, processors, alive)
    async with worker_running(settings, app) as (_, alive):  # restores the windows from the changelog
        before = Counter((r.topic, r.partition) for r in first)
        assert await publish(kafka_bootstrap, second) == expected_offsets(second, before)
        await settle(kafka_bootstrap, settings, processors, alive)
    got = await broker_outputs(kafka_bootstrap, outputs)
    print(coverage("restart() with Records", len(inputs), outputs, got))
    assert_same("restart() with Records", expected, got)
    sunk = [orjson.loads(r.value or b"") for r in got if r.topic == names["sink"]]
    assert len(sunk) == READINGS and {doc["class"] for doc in sunk} == {"Stats"}
    changelog = await read_topic(kafka_bootstrap, changelog_topic(settings, "sensor_stats"))
    windows = [decode_state(r.value) for r in changelog
               if r.key and r.key.startswith(b"\x01sensor_stats\x00") and r.value is not None]
    assert windows and all(type(w) is Stats for w in windows)

