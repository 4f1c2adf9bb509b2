"""The three example apps of ``examples/`` on the real broker, fed real Binance spot data.

Each example runs as its users run it: its own ``make_app`` and ``config.yaml`` (read here and changed only to make
the run isolated: topics, app id and dead-letter topic renamed for this run, the test broker, ports 0), in an
in-process :class:`~stream_processor.engine.worker.Worker`, exactly once. What it wrote, read back under
``read_committed``, is checked two ways:

- against the broker-less :class:`~stream_processor.engine.testing.TestDriver` running the same app over the same
  input records (same partitions, offsets, keys and timestamps): the multisets of ``(partition, key, value)`` must be
  equal, for ``big_trades`` and ``trade_counts``, whose outputs only depend on each partition's record order. The
  join of ``trades_with_book`` depends on how the worker interleaves its two inputs (and on how far the order book
  processor running beside it is ahead), which the driver cannot reproduce, so it is checked against the order-book
  records read back from the broker instead;
- against what the example means, computed here from the raw records themselves: the big trades are exactly the
  trades above the threshold given in the YAML; each window count is the trade's rank in its symbol's minute and
  the last one of each window is the number of trades in it, expired windows are deleted from the changelog; each
  joined trade carries the mid and spread of a book of its symbol that the order book processor had written before,
  the books a symbol's trades see only move forward, and the table ends holding each symbol's last book.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from itertools import pairwise
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

import examples.big_trades.app as big_trades_example
import examples.trade_counts.app as trade_counts_example
import examples.trades_with_book.app as trades_with_book_example
from stream_processor.engine.app import App
from stream_processor.engine.kafka_internals import force_metadata_update
from stream_processor.engine.settings import ENV_OVERRIDES, ProcessorSettings
from stream_processor.engine.table import _skey
from stream_processor.engine.testing import TestDriver
from stream_processor.engine.topics import changelog_topic
from stream_processor.engine.windows import window_store_key
from stream_processor.engine.worker import Worker
from stream_processor.market.replay import replay
from tests.conftest import FEEDS, ROOT
from tests.helpers import read_topic, wait_for

# Real Binance spot captures: the full 2024-08-08 files of ../shared/data (5.8 minutes of each symbol), and the
# repo's own sample (their first 20,000 lines: 3.3 minutes, with the REST depth snapshot the books start from).
DAY1 = [FEEDS / "spot" / f"{sym}_20240808.gz" for sym in ("btcusdt", "ethusdt")]
DAY1_TRADES = 9_757 + 6_106
SAMPLE = sorted((ROOT / "data" / "sample").glob("*.gz"))
SAMPLE_TRADES = 3_589 + 3_223
TIMEOUT = 60.0


@pytest.fixture(autouse=True)
def _no_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings are exactly the document built here (no KAFKA_BOOTSTRAP_SERVERS, ports... from outside)."""
    for name in ENV_OVERRIDES:
        monkeypatch.delenv(name, raising=False)


def example_app(example: str, module: ModuleType, bootstrap: str,
                params: dict[str, dict[str, Any]] | None = None) -> tuple[App, dict[str, str]]:
    """The example's app on ``bootstrap`` with its ``config.yaml``, every topic and the app id renamed for this run
    (and ``params`` per entry set); returns it and the topic names ``{name in config.yaml: name in this run}``."""
    doc = yaml.safe_load((ROOT / "examples" / example / "config.yaml").read_text())
    run = uuid.uuid4().hex[:8]
    rename = {topic: f"{topic}-{run}" for topic in doc["topics"]}
    doc["app_id"] = f"{doc['app_id']}-{run}"
    doc["kafka"]["bootstrap_servers"] = [bootstrap]
    doc["topics"] = {rename[t]: spec for t, spec in doc["topics"].items()}
    doc["replay"]["topics"] = {kind: rename[t] for kind, t in doc["replay"]["topics"].items()}
    for name, entry in doc["stream_processors"].items():
        for key in ("input_topics", "output_topics"):
            if key in entry:
                entry[key] = [rename[t] for t in entry[key]]
        entry["dead_letter_topic"] = rename[entry.get("dead_letter_topic", "dead_letter")]
        if params and name in params:
            entry.setdefault("params", {}).update(params[name])
    doc["monitoring"].update(host="127.0.0.1", metrics_port=0, health_check_port=0)
    return module.make_app(doc, topics=rename), rename


@contextlib.asynccontextmanager
async def running(app: App) -> AsyncIterator[asyncio.Task[None]]:
    """A worker of ``app``, ready (every partition assigned, state restored) when this enters; stopped on exit."""
    worker = Worker(app.settings, app=app)
    task = asyncio.create_task(worker.run())

    async def ready() -> bool:
        assert not task.done(), task.exception()
        return worker.starting is None and all(r.ready for r in worker.runners)

    try:
        await wait_for(ready, TIMEOUT)
        yield task
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, timeout=60)


async def next_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """Per partition of ``topic``: the offset after its last committed record (0 when empty). Under exactly-once a
    transactional topic ends with a commit marker, so this is read, not taken from the end offsets."""
    last: dict[TopicPartition, int] = {}
    for rec in await read_topic(bootstrap, topic):
        tp = TopicPartition(topic, rec.partition)
        last[tp] = max(last.get(tp, 0), rec.offset + 1)
    return last


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    """Per partition of a non-transactional ``topic``: its end offset."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await force_metadata_update(consumer)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def drained(bootstrap: str, proc: ProcessorSettings, targets: dict[TopicPartition, int],
                  worker: asyncio.Task[None]) -> None:
    """Wait until ``proc``'s consumer group has committed every input offset of ``targets``: each of its input
    records is processed and its outputs are committed (the outputs go in the transaction of the offsets)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        async def done() -> bool:
            assert not worker.done(), worker.exception()
            committed = await admin.list_consumer_group_offsets(proc.consumer_group)
            return all(committed[tp].offset >= n if tp in committed else n == 0 for tp, n in targets.items())

        await wait_for(done, TIMEOUT)
    finally:
        await admin.close()


def driver_outputs(app: App, inputs: list[Any], out: str,
                   table: str | None = None) -> tuple[Counter[tuple[int, Any, Any]], dict[Any, Any]]:
    """What the broker-less TestDriver writes to ``out`` when it runs ``app`` over ``inputs`` (records read from
    the broker, each piped at its own partition and offset), as a multiset of ``(partition, key, value)``, and the
    contents of its table ``table`` at the end."""
    driver = TestDriver(app)
    try:
        for rec in inputs:
            driver.pipe(rec.topic, rec.value, rec.key, timestamp=rec.timestamp, headers=list(rec.headers or ()),
                        partition=rec.partition, offset=rec.offset)
        assert driver.dead_letters() == []
        contents = driver.table(table) if table is not None else {}
        return Counter((r.partition, r.key, r.value) for r in driver.all(out)), contents
    finally:
        driver.close()


def raw_trade(rec: Any) -> dict[str, Any]:
    """A replayed Binance trade (a combined-stream envelope), read here without the engine's decoder."""
    data = orjson.loads(rec.value)["data"]
    return {"symbol": data["s"], "trade_id": data["t"], "price": float(data["p"]), "size": float(data["q"]),
            "time_ms": data["T"], "side": "sell" if data["m"] else "buy", "key": rec.key,
            "partition": rec.partition, "offset": rec.offset}


def final_changelog(records: list[Any]) -> dict[bytes, bytes | None]:
    """The last value of each key of a changelog (None: deleted), offset markers left out."""
    last: dict[bytes, bytes | None] = {}
    for rec in sorted(records, key=lambda r: (r.partition, r.offset)):
        if rec.key is not None and not rec.key.startswith(b"\x00"):
            last[rec.key] = rec.value
    return last


# ---- big_trades ------------------------------------------------------------------------------------------------

THRESHOLD = 5_000.0  # set in the YAML's params, below the config's 10,000


async def test_big_trades_are_the_trades_above_the_yaml_threshold(kafka_bootstrap, shared_data):
    app, topics = example_app("big_trades", big_trades_example, kafka_bootstrap,
                              params={"big_trades": {"min_notional": THRESHOLD}})
    settings = app.settings
    proc = settings.stream_processors["big_trades"]
    raw, out = topics["raw_trades"], topics["big_trades"]
    assert proc.input_topics == [raw] and proc.output_topics == [out]

    counts = await replay(settings, DAY1, kinds={"trades"}, progress=False)
    assert counts[raw] == DAY1_TRADES
    async with running(app) as worker:
        await drained(kafka_bootstrap, proc, await end_offsets(kafka_bootstrap, raw), worker)

    inputs = await read_topic(kafka_bootstrap, raw, "read_uncommitted")
    outputs = await read_topic(kafka_bootstrap, out)
    assert len(inputs) == DAY1_TRADES
    assert await read_topic(kafka_bootstrap, proc.dead_letter_topic) == []

    # The same app without a broker writes the same records.
    expected, _ = driver_outputs(app, inputs, out)
    assert Counter((r.partition, r.key, r.value) for r in outputs) == expected

    # Exactly the trades above the YAML's threshold, each once, keyed by symbol on its input's partition.
    trades = {(t["symbol"], t["trade_id"]): t for t in map(raw_trade, inputs)}
    notional = {k: t["price"] * t["size"] for k, t in trades.items()}
    big = {k for k, n in notional.items() if n > THRESHOLD}
    values = [orjson.loads(r.value) for r in outputs]
    got = [(v["symbol"], v["trade_id"]) for v in values]
    assert len(got) == len(set(got)) and set(got) == big
    default = big_trades_example.BigTradesParams().min_notional
    assert 0 < len(big) < len(trades) and sum(n > default for n in notional.values()) < len(big)  # the YAML's
    for rec, v in zip(outputs, values, strict=True):
        t = trades[(v["symbol"], v["trade_id"])]
        assert v["notional"] == v["price"] * v["size"] > THRESHOLD
        assert (v["price"], v["size"], v["side"], v["time_ms"]) == (t["price"], t["size"], t["side"], t["time_ms"])
        assert (rec.key, rec.partition) == (t["key"], t["partition"]) and rec.key == v["symbol"].encode()
    assert {v["symbol"] for v in values} == {"BTCUSDT", "ETHUSDT"}


# ---- trade_counts ----------------------------------------------------------------------------------------------


async def test_trade_counts_count_each_minute_of_trade_time(kafka_bootstrap, shared_data):
    app, topics = example_app("trade_counts", trade_counts_example, kafka_bootstrap)
    settings = app.settings
    proc = settings.stream_processors["trade_counts"]
    raw, out = topics["raw_trades"], topics["trade_counts"]

    counts = await replay(settings, DAY1, kinds={"trades"}, progress=False)
    assert counts[raw] == DAY1_TRADES
    async with running(app) as worker:
        await drained(kafka_bootstrap, proc, await end_offsets(kafka_bootstrap, raw), worker)

    inputs = await read_topic(kafka_bootstrap, raw, "read_uncommitted")
    outputs = await read_topic(kafka_bootstrap, out)
    changelog = await read_topic(kafka_bootstrap, changelog_topic(settings, "trade_counts"))
    assert await read_topic(kafka_bootstrap, proc.dead_letter_topic) == []
    assert len(inputs) == len(outputs) == DAY1_TRADES

    expected, driver_counts = driver_outputs(app, inputs, out, table="trade_counts")
    assert Counter((r.partition, r.key, r.value) for r in outputs) == expected

    # The running value of each trade's window, computed here in each partition's offset order, with the table's
    # rules: windows [start, start + 60 s) of trade time; a window whose end + expiry is at or before the latest
    # trade time seen in the partition reads as empty (0) and is deleted at the next commit.
    size_ms = int(trade_counts_example.WINDOW_S * 1000)
    expires_ms = int(trade_counts_example.EXPIRES_S * 1000)
    latest: dict[int, int] = defaultdict(lambda: -1)
    running_count: dict[tuple[str, int], int] = defaultdict(int)
    running_volume: dict[tuple[str, int], float] = defaultdict(float)
    want: dict[tuple[str, int], tuple[int, int, float]] = {}
    for t in sorted(map(raw_trade, inputs), key=lambda t: (t["partition"], t["offset"])):
        start = t["time_ms"] - t["time_ms"] % size_ms
        window = (f"binance/spot/{t['symbol']}", start)
        latest[t["partition"]] = max(latest[t["partition"]], t["time_ms"])
        running_count[window] += 1
        running_volume[window] += t["size"]
        if start + size_ms + expires_ms <= latest[t["partition"]]:
            want[(t["symbol"], t["trade_id"])] = (start, 0, 0.0)  # late for an expired window
        else:
            want[(t["symbol"], t["trade_id"])] = (start, running_count[window], running_volume[window])
    values = [orjson.loads(r.value) for r in outputs]
    got = {(v["symbol"], v["trade_id"]): (v["window_start_ms"], v["trades"], v["volume"]) for v in values}
    assert got == want
    assert all(v["window_start_ms"] <= v["time_ms"] < v["window_end_ms"] == v["window_start_ms"] + size_ms
               for v in values)

    # The last value of each window is the number of trades in it: they add up to every trade.
    last: dict[tuple[str, int], int] = {}
    for v in values:
        window = (v["symbol"], v["window_start_ms"])
        last[window] = max(last.get(window, 0), v["trades"])
    assert sum(last.values()) == len(inputs)
    per_symbol = Counter(t["symbol"] for t in map(raw_trade, inputs))
    for symbol, n in per_symbol.items():
        assert sum(c for (s, _), c in last.items() if s == symbol) == n
        assert sum(1 for s, _ in last if s == symbol) >= 6  # 5.8 minutes of trades: six windows or more

    # The changelog ends holding exactly the windows not yet expired, with their final counts; the expired ones
    # (each symbol's first minute: its partition saw trades more than 6 minutes after its start) were deleted by a
    # tombstone.
    final = final_changelog(changelog)
    prefix = b"\x01trade_counts\x00"
    kept = {k[len(prefix):].decode(): orjson.loads(v) for k, v in final.items() if k.startswith(prefix) and v}
    deleted = {k[len(prefix):].decode() for k, v in final.items() if k.startswith(prefix) and v is None}
    horizon = {p: t - size_ms - expires_ms for p, t in latest.items()}
    partition_of = {f"binance/spot/{t['symbol']}": t["partition"] for t in map(raw_trade, inputs)}
    def store_key(key: str, start: int) -> str:  # Faust's window key, (key, (start, end)) in seconds
        return window_store_key(key, start / 1000, size_ms / 1000)

    live = {store_key(key, start): running_count[(key, start)] for key, start in running_count
            if start > horizon[partition_of[key]]}
    assert kept == live == {_skey(k): v for k, v in driver_counts.items()}
    expired = {(key, start) for key, start in running_count if store_key(key, start) not in live}
    assert deleted == {store_key(key, start) for key, start in expired}
    assert {key for key, _ in expired} == {"binance/spot/BTCUSDT", "binance/spot/ETHUSDT"}


# ---- trades_with_book ------------------------------------------------------------------------------------------

HEAD_LINES = 2_000  # of each sample file in the first phase: its depth snapshot, diffs after it, ~300 trades


def split_sample(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    """The sample files cut in two: their first HEAD_LINES lines, and the rest (the feed format is line based)."""
    heads, tails = [], []
    for path in SAMPLE:
        with gzip.open(path, "rb") as f:
            lines = f.readlines()
        heads.append(tmp_path / f"{path.stem}.head")
        heads[-1].write_bytes(b"".join(lines[:HEAD_LINES]))
        tails.append(tmp_path / f"{path.stem}.tail")
        tails[-1].write_bytes(b"".join(lines[HEAD_LINES:]))
    return heads, tails


async def test_trades_with_book_join_each_trade_with_a_book_written_before(kafka_bootstrap, tmp_path):
    app, topics = example_app("trades_with_book", trades_with_book_example, kafka_bootstrap)
    settings = app.settings
    book_proc = settings.stream_processors["orderbook"]
    join_proc = settings.stream_processors["trades_with_book"]
    raw_trades, raw_books = topics["raw_trades"], topics["raw_orderbook"]
    books_topic, out = topics["enriched_orderbook"], topics["trades_with_book"]
    assert book_proc.input_topics == [raw_books] and book_proc.output_topics == [books_topic]
    assert join_proc.input_topics == [raw_trades, books_topic] and join_proc.output_topics == [out]
    heads, tails = split_sample(tmp_path)

    async def publish_and_drain(files: list[Path], worker: asyncio.Task[None]) -> None:
        await replay(settings, files, kinds={"trades", "orderbook"}, progress=False)
        await drained(kafka_bootstrap, book_proc, await end_offsets(kafka_bootstrap, raw_books), worker)
        targets = {**await end_offsets(kafka_bootstrap, raw_trades), **await next_offsets(kafka_bootstrap, books_topic)}
        await drained(kafka_bootstrap, join_proc, targets, worker)

    # The worker runs first, and the replay publishes trades and depth as they came: the join sees each book once
    # the order book processor beside it has committed it, as it would live. The first phase (the head of each
    # file) gives each symbol a book; in the second every trade must find one.
    async with running(app) as worker:
        await publish_and_drain(heads, worker)
        phase1 = {(t["symbol"], t["trade_id"])
                  for t in map(raw_trade, await read_topic(kafka_bootstrap, raw_trades, "read_uncommitted"))}
        phase1_books = await read_topic(kafka_bootstrap, books_topic)
        await publish_and_drain(tails, worker)

    trades = {(t["symbol"], t["trade_id"]): t
              for t in map(raw_trade, await read_topic(kafka_bootstrap, raw_trades, "read_uncommitted"))}
    book_records = await read_topic(kafka_bootstrap, books_topic)
    outputs = await read_topic(kafka_bootstrap, out)
    changelog = await read_topic(kafka_bootstrap, changelog_topic(settings, "trades_with_book"))
    assert len(trades) == SAMPLE_TRADES and 0 < len(phase1) < SAMPLE_TRADES
    assert await read_topic(kafka_bootstrap, join_proc.dead_letter_topic) == []

    books: dict[tuple[str, int], Any] = {}  # (symbol, update_id) -> its enriched_orderbook record
    for rec in book_records:
        book = orjson.loads(rec.value)
        assert (book["symbol"], book["update_id"]) not in books
        assert book["state"] == "ok"  # this tape's books are never crossed, locked or incomplete
        books[(book["symbol"], book["update_id"])] = rec
    assert len(books) > 2_000
    last_phase1_book: dict[str, int] = {}  # symbol -> offset of its last book of the first phase
    for rec in phase1_books:
        symbol = orjson.loads(rec.value)["symbol"]
        last_phase1_book[symbol] = max(last_phase1_book.get(symbol, -1), rec.offset)
    assert set(last_phase1_book) == {"BTCUSDT", "ETHUSDT"}

    # Each trade at most once; each joined one with the values of the book it names: a book of its symbol, on its
    # partition, that the order book processor had written before the join wrote the trade.
    values = [orjson.loads(r.value) for r in outputs]
    joined = [(v["symbol"], v["trade_id"]) for v in values]
    assert len(joined) == len(set(joined)) and set(joined) <= set(trades)
    used: dict[str, list[tuple[int, int]]] = defaultdict(list)  # symbol -> (trade offset, book offset)
    for rec, v in zip(outputs, values, strict=True):
        t = trades[(v["symbol"], v["trade_id"])]
        assert (rec.key, rec.partition) == (t["key"], t["partition"])
        assert (v["price"], v["size"], v["side"], v["time_ms"]) == (t["price"], t["size"], t["side"], t["time_ms"])
        book_rec = books[(v["symbol"], v["book_update_id"])]
        book = orjson.loads(book_rec.value)
        assert book_rec.partition == rec.partition and book_rec.timestamp <= rec.timestamp
        assert (v["mid"], v["spread_bps"], v["best_bid"], v["best_ask"], v["book_state"]) == (
            book["mid"], book["spread_bps"], book["best_bid"], book["best_ask"], book["state"])
        assert v["distance_bps"] == (v["price"] - book["mid"]) / book["mid"] * 10_000
        age = None if book["event_time_ms"] is None else v["time_ms"] - book["event_time_ms"]
        assert v["book_age_ms"] == age
        used[v["symbol"]].append((t["offset"], book_rec.offset))
        if (v["symbol"], v["trade_id"]) not in phase1:  # the table held the last first-phase book, or a later one
            assert book_rec.offset >= last_phase1_book[v["symbol"]]

    # Per symbol, the trades skipped (no book yet) are the first ones, all of the first phase; after them every
    # trade is joined, and the books the trades see, in trade order, only move forward.
    assert set(trades) - set(joined) <= phase1
    for symbol in ("BTCUSDT", "ETHUSDT"):
        pairs = sorted(used[symbol])
        offsets = sorted(t["offset"] for t in trades.values() if t["symbol"] == symbol)
        assert [o for o, _ in pairs] == [o for o in offsets if o >= pairs[0][0]]
        assert all(a[1] <= b[1] for a, b in pairwise(pairs))

    # The table ends holding each symbol's last book.
    prefix = b"\x01latest_book\x00"
    table = {k[len(prefix):].decode(): orjson.loads(v) for k, v in final_changelog(changelog).items()
             if k.startswith(prefix) and v is not None}
    last_books: dict[str, dict[str, Any]] = {}
    for rec in sorted(book_records, key=lambda r: (r.partition, r.offset)):
        book = orjson.loads(rec.value)
        last_books[f"{book['venue']}/{book['market']}/{book['symbol']}"] = {
            f: book[f] for f in trades_with_book_example.BOOK_FIELDS}
    assert table == last_books
