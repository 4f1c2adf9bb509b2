"""Trades per second, exactly once: our ``exactly_once`` trades processor against a Quix Streams application.

Issue 11 asks for exactly_once throughput at least 3x Quix Streams' exactly-once on the same workload; this bench
measures both in one run and prints the ratio. Quix Streams is not a project dependency: it runs from its own
venv, made once with

    $(scripts/find-python.sh) -m venv .cache/quix-venv
    .cache/quix-venv/bin/pip install -r bench/quix-requirements.txt

(quixstreams and its dependencies, plus the pins of requirements.txt that our decoder and indicators need; pydantic
at the newest 2.13 that quixstreams allows). Then, from the repo root, with the project's venv:

    .venv/bin/python bench/quix_trades.py [--copies 2] [--rounds 3] [--timeout 600]

Starts a throwaway real broker (tests/broker.py, or ``TEST_KAFKA_BOOTSTRAP``) and publishes the input of
bench/trades_throughput.py with its ``publish_input``: the real Binance spot trades of ../shared (34,419 trades)
``--copies`` times under the symbol aliases ``SYM.i``, keyed by alias, on one 8-partition topic. Then, per round,
interleaved, each contender reads that whole input from offset 0 with a fresh consumer group and writes its own
8-partition sink:

- ``exactly_once``: our worker with the built-in ``trades`` processor, in this process
  (bench/trades_throughput.py's ``run_worker``), committing every 100 ms (its config);
- ``quix_exactly_once``: a Quix Streams ``Application(processing_guarantee="exactly-once",
  auto_offset_reset="earliest")`` run as a subprocess with ``.cache/quix-venv/bin/python`` (this file with
  ``--quix-child``), so Quix's dependencies never enter our venv. Everything else is Quix's default, as a new user
  gets it: ``commit_interval=5.0`` s and ``commit_every=0`` (a checkpoint = one Kafka transaction every 5 s), the
  RocksDB state store with its changelog topic (``use_changelog_topics=True``), JSON (orjson) state values, one
  transactional producer (librdkafka, via confluent-kafka) and ``loglevel="INFO"`` (to the child's log file).

The Quix app does our per-record work: ``sdf.apply(enrich, stateful=True, metadata=True)`` gets the raw value
(``value_deserializer="bytes"``), decodes and checks it with our ``decode_checked`` (orjson, the Binance
normalizer, the key and event-time checks), reads the symbol's state from Quix's State (``state.get``; Quix keys
it by the message key, the symbol), runs our :class:`SymbolTrades` ``check``/``update`` on it (SMA, EMA, session
VWAP, momentum, rolling and aggressor volumes, trade count, the dedup window and the price band, with the params of
the worker's config), writes the state back (``state.set``), and returns ours's output document (the same fields,
source topic/partition/offset from Quix's ``message_context()``), ``orjson.dumps``-ed; a dropped duplicate is
filtered out; ``sdf.to_topic(sink)`` produces it keyed by the message key (the symbol). So both run the same
arithmetic, and the bench checks it: every Quix output is compared with the enrichment recomputed here by
:class:`SymbolTrades` from the input.

Why this is fair, and where it is not the same: importing our logic (rather than reimplementing it) guarantees the
same computation. The difference is the state model, and that is Quix's: its State holds serialized values, so
every ``state.get`` deserializes and every ``state.set`` serializes the symbol's whole state (the SMA, momentum and
three volume windows: 341 floats, ~2.3 KB of JSON) for every record, where our worker keeps live objects and
snapshots each dirty key once per commit. Our own ``to_state``/``from_state`` (a generic, validating walk meant for
restores, ~390 us a record) would have charged Quix for our code, so the child stores a flat JSON list of the
objects' fields instead (:func:`pack`/:class:`Unpacker`, rebuilding the objects slot by slot: some 10-20 us a
record in all)
and the JSON (de)serialization Quix does itself (orjson) is what remains. A Quix user hand-writing the indicators
over a dict would pay about the same per record: the windows must be in the state either way.

Timing: from the first record processed to the commit of the last input offset, every record counted, for both.
Ours is ``run_worker``'s own (the runner notes its first processed batch). The Quix child reports when it
processed its first record; this process polls the group's committed offsets of the input topic every 20 ms (Quix
commits them inside its transaction with ``send_offsets_to_transaction``, so they appear when the outputs become
visible to read_committed consumers), then waits until every sink partition's last stable offset reaches its end
(no open transaction) and reports that extra time. Both ends are wall-clock times on this machine. The measure
includes what each default commit interval costs at the end: 100 ms for ours, up to 5 s for Quix, whose last
checkpoint waits out its interval; Quix's rate from its first commit to its last is printed too.

The Quix child also reports its processing alone (its first to its last record, before any commit). Before the
first round one empty transaction makes the fresh broker create its group and transaction logs, so that no
contender's first commit waits for them.

After each Quix run the sink is read under read_committed: its record count must equal the input's (exactly once:
no loss, no duplicate), each input (partition, offset) must appear once, each key must be its record's symbol, and
every value must equal ours's enrichment of that input.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402 - in both venvs

from stream_processor.market.dedup import TradeIdWindow  # noqa: E402
from stream_processor.market.indicators.ema import EMA  # noqa: E402
from stream_processor.market.indicators.momentum import Momentum  # noqa: E402
from stream_processor.market.indicators.rolling_sum import RollingSum  # noqa: E402
from stream_processor.market.indicators.sma import SMA  # noqa: E402
from stream_processor.market.indicators.vwap import VWAP  # noqa: E402
from stream_processor.market.models import Trade  # noqa: E402
from stream_processor.market.processors.trades import SymbolTrades  # noqa: E402
from stream_processor.market.settings import TradesParams  # noqa: E402

QUIX_PYTHON = ROOT / ".cache" / "quix-venv" / "bin" / "python"
PARTITIONS = 8
POLL_S = 0.02  # how often the driver reads the Quix group's committed offsets
VENV_HELP = ("make it with: $(scripts/find-python.sh) -m venv .cache/quix-venv && "
             ".cache/quix-venv/bin/pip install -r bench/quix-requirements.txt")


# --------------------------------------------------------------------------------------------------------------
# The per-record work, shared by the Quix child and the driver's check
# --------------------------------------------------------------------------------------------------------------

def enrichment(state: SymbolTrades | None, trade: Trade, params: TradesParams) -> tuple[SymbolTrades, dict | None]:
    """The state after ``trade`` and ours's indicator fields for it (None: a duplicate, dropped), as
    TradesProcessor.process does; raises InvalidRecordError where ours would dead-letter."""
    if state is None:
        state = SymbolTrades(params)
        return state, state.update(trade)
    ids = state.ids
    if ids is not None and ids.seen(trade.trade_id):
        return state, None
    state.check(trade, params.max_price_jump)
    return state, state.update(trade)


def document(fields: dict, trade: Trade, topic: str, partition: int, offset: int) -> dict:
    """Ours's output document: the indicator ``fields``, the trade and its source."""
    fields.update(venue=trade.venue, market=trade.market, symbol=trade.symbol, trade_id=trade.trade_id,
                  price=trade.price, size=trade.size, side=trade.side, time_ms=trade.time_ms,
                  event_time_ms=trade.event_time_ms, source_topic=topic, source_partition=partition,
                  source_offset=offset)
    return fields


def _rs_pack(r: RollingSum) -> list:
    return [list(r._window), r._sum, r._comp, r._value]


def pack(st: SymbolTrades) -> list:
    """A symbol's state as a flat JSON-safe list of its objects' fields (what the child keeps in Quix's State)."""
    sma, ema, vw, mom, ids = st.sma, st.ema, st.vwap, st.momentum, st.ids
    return [sma._value, _rs_pack(sma._sum), ema._value, ema._count, ema._seed_sum, ema._seed_comp,
            vw._day, vw._pv_sum, vw._pv_comp, vw._vol_sum, vw._vol_comp, vw._value,
            list(mom._window), mom._value, _rs_pack(st.volume), _rs_pack(st.buy_volume),
            _rs_pack(st.sell_volume), st.trades, st.last_price,
            None if ids is None else [ids._floor, ids._largest, ids._runs]]


class Unpacker:
    """Rebuilds a :class:`SymbolTrades` from :func:`pack`'s list, slot by slot (no validation, no copies: the list
    comes fresh from the state store's deserializer)."""

    def __init__(self, params: TradesParams) -> None:
        self.params = params
        self.ema = EMA(params.ema_length)  # its derived constants
        self.max_runs = TradeIdWindow().max_runs if params.dedup_window else 0

    @staticmethod
    def _rs(v: list, n: int) -> RollingSum:
        r = object.__new__(RollingSum)
        r.length, r._window, r._sum, r._comp, r._value = n, deque(v[0], n), v[1], v[2], v[3]
        return r

    def __call__(self, v: list) -> SymbolTrades:
        p, new, rs = self.params, object.__new__, self._rs
        st = new(SymbolTrades)
        sma = st.sma = new(SMA)
        sma.length, sma._value, sma._sum = p.sma_length, v[0], rs(v[1], p.sma_length)
        t = self.ema
        ema = st.ema = new(EMA)
        ema.length, ema._alpha, ema._beta, ema._norm = t.length, t._alpha, t._beta, t._norm
        ema._value, ema._count, ema._seed_sum, ema._seed_comp = v[2], v[3], v[4], v[5]
        vw = st.vwap = new(VWAP)
        vw._day, vw._pv_sum, vw._pv_comp, vw._vol_sum, vw._vol_comp, vw._value = v[6:12]
        mom = st.momentum = new(Momentum)
        mom.length, mom._window, mom._value = p.momentum_length, deque(v[12], p.momentum_length + 1), v[13]
        n = p.volume_window
        st.volume, st.buy_volume, st.sell_volume = rs(v[14], n), rs(v[15], n), rs(v[16], n)
        st.trades, st.last_price = v[17], v[18]
        if v[19] is None:
            st.ids = None
        else:
            ids = st.ids = new(TradeIdWindow)
            ids.window, ids.max_runs = p.dedup_window, self.max_runs
            ids._floor, ids._largest, ids._runs = v[19]
        return st


# --------------------------------------------------------------------------------------------------------------
# The Quix Streams application (run in a subprocess: ``.cache/quix-venv/bin/python bench/quix_trades.py
# --quix-child ...``)
# --------------------------------------------------------------------------------------------------------------

def emit(**fields: object) -> None:
    """One JSON line to the driver on stdout."""
    sys.__stdout__.write(orjson.dumps(fields).decode() + "\n")
    sys.__stdout__.flush()


def run_child(args: argparse.Namespace) -> None:
    import confluent_kafka
    import quixstreams
    from quixstreams import Application, message_context

    from stream_processor.market.processors.base import decode_checked
    from stream_processor.market.settings import EventTimeSettings

    params = TradesParams.model_validate_json(args.params)
    window = EventTimeSettings.model_validate_json(args.event_time)
    unpack = Unpacker(params)
    app = Application(broker_address=args.bootstrap, consumer_group=args.group, auto_offset_reset="earliest",
                      processing_guarantee="exactly-once", state_dir=args.state_dir)
    emit(event="versions", quixstreams=quixstreams.__version__, confluent_kafka=confluent_kafka.__version__,
         librdkafka=confluent_kafka.libversion()[0], commit_interval=app.config.commit_interval,
         commit_every=app.config.commit_every, processing_guarantee=app.config.processing_guarantee)
    source = app.topic(args.source, key_deserializer="bytes", value_deserializer="bytes")
    sink = app.topic(args.sink, key_serializer="bytes", value_serializer="bytes")
    total, seen = args.total, 0

    def enrich(value: bytes, key: bytes, timestamp: int, _headers: Any, state: Any) -> bytes | None:
        nonlocal seen
        trade = decode_checked(value, key, timestamp, window)
        if type(trade) is not Trade:
            raise TypeError(f"trades only, got {type(trade).__name__}")
        stored = state.get("trades")
        st, fields = enrichment(None if stored is None else unpack(stored), trade, params)
        seen += 1
        if seen == 1:
            emit(event="first", t=time.time())
        elif seen == total:
            emit(event="done", t=time.time())
        if fields is None:
            return None
        state.set("trades", pack(st))
        ctx = message_context()
        return orjson.dumps(document(fields, trade, ctx.topic, ctx.partition, ctx.offset))

    sdf = app.dataframe(source)
    sdf = sdf.apply(enrich, stateful=True, metadata=True)
    sdf = sdf.filter(lambda value: value is not None)
    sdf.to_topic(sink)
    emit(event="started", t=time.time())
    app.run()


# --------------------------------------------------------------------------------------------------------------
# The driver (the project's venv)
# --------------------------------------------------------------------------------------------------------------

def quix_versions() -> str:
    """The versions in the Quix venv and the Application defaults this bench leaves alone."""
    code = ("import inspect, quixstreams, confluent_kafka, orjson; "
            "d = inspect.signature(quixstreams.Application).parameters; "
            "print(quixstreams.__version__, confluent_kafka.__version__, confluent_kafka.libversion()[0], "
            "orjson.__version__, d['commit_interval'].default, d['commit_every'].default)")
    done = subprocess.run([str(QUIX_PYTHON), "-c", code], capture_output=True, text=True, timeout=120, check=True)
    quix, ck, rdk, oj, interval, every = done.stdout.split()
    return (f"quixstreams {quix} (confluent-kafka {ck}, librdkafka {rdk}, orjson {oj}); Quix defaults kept: "
            f"commit_interval {interval} s, commit_every {every}")


def expected_outputs(inputs: list[Any], params: TradesParams, window: Any) -> dict[tuple[int, int], dict | None]:
    """Ours's output document for each input (partition, offset), None for a dropped duplicate, recomputed here from
    the input in offset order (a symbol's records are all on one partition)."""
    from stream_processor.market.processors.base import decode_checked

    states: dict[str, SymbolTrades] = {}
    out: dict[tuple[int, int], dict | None] = {}
    for rec in sorted(inputs, key=lambda r: (r.partition, r.offset)):
        trade = decode_checked(rec.value, rec.key, rec.timestamp, window)
        key = f"{trade.venue}/{trade.market}/{trade.symbol}"
        states[key], fields = enrichment(states.get(key), trade, params)
        out[(rec.partition, rec.offset)] = (None if fields is None else
                                           document(fields, trade, rec.topic, rec.partition, rec.offset))
    return out


async def committed_input(admin: Any, group: str, topic: str) -> int:
    """The sum of ``group``'s committed offsets on ``topic`` (0 while it has none)."""
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except Exception:  # the group is not there yet, its coordinator is loading...
        return 0
    return sum(max(meta.offset, 0) for tp, meta in offsets.items() if tp.topic == topic)


async def run_ours(bootstrap: str, source: str, total: int) -> dict:
    """One run of our worker: bench/trades_throughput.py's ``run_worker`` (first batch processed to last commit)."""
    from bench.trades_throughput import run_worker

    seconds, n, commit_s = await run_worker(bootstrap, "exactly_once", source, total)
    return {"seconds": seconds, "records": n, "commit_s": commit_s}


async def warm_up(bootstrap: str, topic: str) -> None:
    """Make the broker create its internal topics (``__consumer_offsets``, ``__transaction_state``) before anything
    is timed: on a fresh broker the first group and the first transaction wait for them, seconds in which the
    first contender would keep processing behind a commit that cannot finish. One empty transaction that commits
    an offset of ``topic`` for a throwaway group does it (no record is written)."""
    from aiokafka import AIOKafkaProducer, TopicPartition

    run = uuid.uuid4().hex[:6]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"bench-warm-up-{run}")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_offsets_to_transaction({TopicPartition(topic, 0): 0}, f"bench-warm-up-{run}")
    finally:
        await producer.stop()


async def run_quix(bootstrap: str, source: str, total: int, settings: Any, expected: dict, timeout: float,
                   logdir: Path) -> dict:
    """One Quix run: launch the child, time its commits, stop it, check its sink."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    from stream_processor.engine.settings import TopicSettings
    from stream_processor.engine.topics import ensure_topics
    from tests.helpers import isolated_settings, read_topic

    run = uuid.uuid4().hex[:6]
    group, sink = f"bench-quix-{run}", f"bench-quix-out-{run}"
    await ensure_topics(isolated_settings(bootstrap), {sink: TopicSettings(partitions=PARTITIONS)})
    trades = settings.stream_processors["trades"]
    state_dir = tempfile.mkdtemp(prefix="quix-state-")
    log_path = logdir / f"quix-{run}.log"
    cmd = [str(QUIX_PYTHON), str(Path(__file__).resolve()), "--quix-child", "--bootstrap", bootstrap,
           "--group", group, "--source", source, "--sink", sink, "--total", str(total), "--state-dir", state_dir,
           "--params", trades.params.model_dump_json(), "--event-time", trades.event_time.model_dump_json()]
    log = open(log_path, "wb")
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, stderr=log, cwd=ROOT)
    marks: dict[str, Any] = {}

    async def read_marks() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            try:
                msg = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            marks[msg["event"]] = msg

    reader = asyncio.create_task(read_marks())
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    committed_view = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed")
    uncommitted_view = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await admin.start()
    await committed_view.start()
    await uncommitted_view.start()
    result: dict[str, Any] = {"group": group, "sink": sink, "log": log_path}
    tps = [TopicPartition(sink, p) for p in range(PARTITIONS)]
    try:
        for view in (committed_view, uncommitted_view):  # their metadata of the sink, before anything is timed
            await view.end_offsets(tps)
        launched = time.monotonic()
        first_at = first_count = None
        while True:
            committed = await committed_input(admin, group, source)
            now, wall = time.perf_counter(), time.time()
            if first_at is None and committed:
                first_at, first_count = now, committed
            if committed >= total:
                break
            if proc.returncode is not None:
                raise RuntimeError(f"the Quix app exited with {proc.returncode} ({committed}/{total} committed); "
                                   f"see {log_path}")
            if time.monotonic() - launched > timeout:
                raise TimeoutError(f"quix: {committed}/{total} input offsets committed after {timeout:.0f} s")
            await asyncio.sleep(POLL_S)
        result.update(seconds=now - first_at, records=total - first_count, first_count=first_count,
                      startup=time.monotonic() - launched - (now - first_at))
        while True:  # every sink record visible: no partition's last stable offset behind its end
            stable, ends = await committed_view.end_offsets(tps), await uncommitted_view.end_offsets(tps)
            if stable == ends:
                break
            await asyncio.sleep(0.005)
        result["visible_after"] = time.perf_counter() - now
    finally:
        await admin.close()
        await committed_view.stop()
        await uncommitted_view.stop()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                result["stop"] = "did not stop within 60 s of SIGTERM: killed"
        reader.cancel()
        log.close()
        shutil.rmtree(state_dir, ignore_errors=True)
    result["marks"] = marks
    if "first" in marks:
        result["end_to_end"] = wall - marks["first"]["t"]
        if "done" in marks:
            result["processing"] = marks["done"]["t"] - marks["first"]["t"]
    result["check"] = check_sink(await read_topic(bootstrap, sink), total, expected)
    result["problems"] = [ln for ln in log_path.read_text(errors="replace").splitlines()
                          if re.search(r"\b(ERROR|CRITICAL|Traceback)\b", ln)]
    return result


def check_sink(records: list[Any], total: int, expected: dict) -> dict:
    """Counts of the Quix sink (read_committed) against the input and ours's enrichment."""
    sources: set[tuple[int, int]] = set()
    differ = bad_keys = 0
    example = None
    for rec in records:
        doc = orjson.loads(rec.value)
        where = (doc["source_partition"], doc["source_offset"])
        sources.add(where)
        if rec.key != doc["symbol"].encode():
            bad_keys += 1
        if expected.get(where) != doc:
            differ += 1
            example = example or (where, doc, expected.get(where))
    outputs = sum(v is not None for v in expected.values())
    return {"records": len(records), "inputs": total, "outputs_expected": outputs,
            "duplicates": len(records) - len(sources), "missing": outputs - len(sources & expected.keys()),
            "differ": differ, "bad_keys": bad_keys, "example": example}


async def main(args: argparse.Namespace) -> None:
    import logging

    from bench.trades_throughput import publish_input, worker_settings
    from tests.broker import broker
    from tests.helpers import read_topic

    if not QUIX_PYTHON.exists():
        sys.exit(f"no {QUIX_PYTHON.relative_to(ROOT)}: {VENV_HELP}")
    logging.basicConfig(level=logging.WARNING)
    # aiokafka retries these by itself (a new topic's leader not elected yet, the restore of ours's changelog)
    logging.getLogger("aiokafka.consumer.fetcher").setLevel(logging.CRITICAL)
    print(f"{quix_versions()}; processing_guarantee exactly-once; Python {sys.version.split()[0]}", flush=True)
    logdir = Path(tempfile.mkdtemp(prefix="quix-bench-logs-"))
    with broker() as bootstrap:
        source = f"bench-trades-{uuid.uuid4().hex[:6]}"
        total = await publish_input(bootstrap, source, args.copies)
        print(f"input: {total} real trades ({args.copies} copies x 34,419) on {PARTITIONS} partitions", flush=True)
        await warm_up(bootstrap, source)
        settings = worker_settings(bootstrap, "exactly_once", source)
        trades = settings.stream_processors["trades"]
        expected = expected_outputs(await read_topic(bootstrap, source, "read_uncommitted"), trades.params,
                                    trades.event_time)
        rates: dict[str, list[float]] = {"exactly_once": [], "quix_exactly_once": []}
        for i in range(args.rounds):
            o = await run_ours(bootstrap, source, total)
            rates["exactly_once"].append(o["records"] / o["seconds"])
            print(f"round {i + 1} {'exactly_once':>17}: {o['records']} records in {o['seconds']:.2f} s = "
                  f"{o['records'] / o['seconds']:,.0f}/s (first processed to last committed; a task's commit took "
                  f"{o['commit_s'] * 1000:.0f} ms on average)", flush=True)
            r = await run_quix(bootstrap, source, total, settings, expected, args.timeout, logdir)
            c = r["check"]
            line = f"round {i + 1} {'quix_exactly_once':>17}: "
            if "end_to_end" in r:
                rates["quix_exactly_once"].append(total / r["end_to_end"])
                line += (f"{total} records in {r['end_to_end']:.2f} s = {total / r['end_to_end']:,.0f}/s (first "
                         "processed to last committed; ")
            else:
                line += "(no first-record time from the child; "
            line += (f"first commit to last {r['records'] / r['seconds']:,.0f}/s; first commit held "
                     f"{r['first_count']}, {r['startup']:.1f} s after launch; all visible "
                     f"{r['visible_after'] * 1000:.0f} ms after the last commit")
            if "processing" in r:
                line += f"; processing alone {total / r['processing']:,.0f}/s by its own count"
            print(line + ")", flush=True)
            print(f"  quix sink {r['sink']} (read_committed): {c['records']} records for {c['inputs']} inputs "
                  f"({c['outputs_expected']} expected outputs): {c['duplicates']} duplicates, {c['missing']} "
                  f"missing, {c['differ']} differ from our enrichment, {c['bad_keys']} keys not the symbol",
                  flush=True)
            if c["example"]:
                print(f"  first difference at (partition, offset) {c['example'][0]}: quix {c['example'][1]}, "
                      f"ours {c['example'][2]}")
            if r.get("stop"):
                print(f"  {r['stop']}")
            if r["problems"]:
                print(f"  {len(r['problems'])} error lines in {r['log']}, first: {r['problems'][:3]}")
        med = {name: statistics.median(v) for name, v in rates.items() if v}
        for name, rate in med.items():
            print(f"median {name:>17}: {rate:,.0f} records/s (first processed to last committed)")
        if len(med) == 2:
            print(f"exactly_once / quix_exactly_once = {med['exactly_once'] / med['quix_exactly_once']:.2f}")
    print(f"Quix app logs: {logdir}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0, help="per Quix run, from its launch (s)")
    child = parser.add_argument_group("the Quix app subprocess (internal)")
    child.add_argument("--quix-child", action="store_true")
    for opt in ("--bootstrap", "--group", "--source", "--sink", "--state-dir", "--params", "--event-time"):
        child.add_argument(opt)
    child.add_argument("--total", type=int, default=0)
    return parser.parse_args()


if __name__ == "__main__":
    options = parse()
    if options.quix_child:
        run_child(options)
    else:
        asyncio.run(main(options))
