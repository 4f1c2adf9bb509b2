"""Trades per second through a faust-streaming agent on a real broker, exactly_once and at_least_once.

faust-streaming is not a project dependency: it runs from its own venv, made once with

    python -m venv .cache/faust-venv && .cache/faust-venv/bin/pip install -r bench/faust-requirements.txt

(``python`` being the 3.12 of ``scripts/find-python.sh``). Then, from the repo root:

    .cache/faust-venv/bin/python bench/faust_agent.py [--copies 1] [--timeout 300] [--commit-interval 0.1]

Starts a throwaway real broker (tests/broker.py, or ``TEST_KAFKA_BOOTSTRAP``) and publishes the same input as
bench/trades_throughput.py: the real Binance spot trades of ../shared (34,419 trades) ``--copies`` times under
the symbol aliases ``SYM.i``, keyed by alias, on one 8-partition topic. Each variant then runs as one Faust
worker in its own subprocess, with a fresh app id (= consumer group, transactional id prefix, table changelog)
and its own 8-partition sink topic ``enriched-<variant>-<run>``, reading the input from offset 0:

- ``eos_per_event``: ``async for value in stream`` under ``processing_guarantee="exactly_once"``;
- ``alo_per_event``: the same under ``"at_least_once"``;
- ``eos_take500``: exactly_once, ``stream.take(500, within=0.1)`` batches, each record sent. A Faust Table
  cannot be written from a take() batch (no current event: TypeError "Cannot modify table key from outside of
  stream iteration"), so this variant's Table has ``use_partitioner=True``: the changelog partition is then the
  hash of the Table's serialized key, which Faust JSON-encodes (``"BTCUSDT.0"`` with quotes), so it is not the
  input record's partition;
- ``eos_take500_plain`` (only when named in ``--variants``): the same with a plain Table, which shows what Faust
  does when the agent raises on every batch.

Per record the agent decodes the JSON trade (orjson), updates the symbol's state in a Faust Table (count, EMA(20)
of price, session sums for VWAP) and ``await sink.send(key=..., value=...)`` an enriched JSON record. Each
variant is timed, from this process, from the first sink record visible under read_committed to the moment
both every input offset is committed by the group and every sink record is visible (``--timeout`` s at most:
a stall is reported, not waited on). The agent's own count (first to last record processed) is printed too.

Afterwards the sinks and the table changelogs are checked for transactional writes: end offset (under
read_uncommitted) against the number of data records (commit markers take offsets), and the record batches'
``isTransactional`` flag in the broker's log segments (kafka.tools.DumpLogSegments from the cached jars).
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

PARTITIONS = 8
FEEDS = ROOT.parent / "shared" / "data" / "feeds" / "binance-hftbacktest" / "spot"
FILES = [FEEDS / f"{sym}_{day}.gz" for sym in ("btcusdt", "ethusdt") for day in ("20240808", "20240809")]
# name: (processing_guarantee, take batch size or 0 for per-event, Table use_partitioner)
VARIANTS = {
    "eos_per_event": ("exactly_once", 0, False),
    "alo_per_event": ("at_least_once", 0, False),
    "eos_take500": ("exactly_once", 500, True),
}
EXTRA_VARIANTS = {"eos_take500_plain": ("exactly_once", 500, False)}
EMA_ALPHA = 2 / (20 + 1)


# --------------------------------------------------------------------------------------------------------------
# The Faust worker (run in a subprocess: ``bench/faust_agent.py --worker ...``)
# --------------------------------------------------------------------------------------------------------------

def emit(**fields: object) -> None:
    """One JSON line to the parent on stdout."""
    sys.__stdout__.write(orjson.dumps(fields).decode() + "\n")
    sys.__stdout__.flush()


def run_worker(args: argparse.Namespace) -> None:
    import faust

    app = faust.App(
        args.app_id,
        broker=f"kafka://{args.bootstrap}",
        store="memory://",
        processing_guarantee=args.guarantee,
        topic_partitions=PARTITIONS,
        topic_replication_factor=1,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=args.commit_interval,
        web_enabled=False,
        datadir=args.datadir,
    )
    source = app.topic(args.source, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", partitions=PARTITIONS)
    sink = app.topic(args.sink, key_serializer="raw", value_serializer="raw", partitions=PARTITIONS)
    # keys raw (the str alias), values json: the app's defaults
    table = app.Table("symbols", partitions=PARTITIONS, use_partitioner=args.use_partitioner)
    total = args.total
    seen = 0

    async def handle(raw: bytes) -> None:
        nonlocal seen
        data = orjson.loads(raw)["data"]
        sym = data["s"]
        price, size = float(data["p"]), float(data["q"])
        st = table.get(sym)
        if st is None:
            st = {"n": 0, "ema": price, "pv": 0.0, "v": 0.0}
        st["n"] += 1
        st["ema"] += EMA_ALPHA * (price - st["ema"])
        st["pv"] += price * size
        st["v"] += size
        table[sym] = st
        out = {"symbol": sym, "trade_id": data["t"], "time_ms": data["T"], "price": price, "size": size,
               "side": "sell" if data["m"] else "buy", "trades": st["n"], "ema": st["ema"],
               "vwap": st["pv"] / st["v"] if st["v"] else None}
        await sink.send(key=sym.encode(), value=orjson.dumps(out))
        seen += 1
        if seen == 1:
            emit(event="first", t=time.time())
        elif seen == total:
            emit(event="done", t=time.time(), seen=seen)

    if args.take:
        @app.agent(source)
        async def enrich_batches(stream):
            async for batch in stream.take(args.take, within=0.1):
                for raw in batch:
                    await handle(raw)
    else:
        @app.agent(source)
        async def enrich(stream):
            async for raw in stream:
                await handle(raw)

    @app.task
    async def ready() -> None:
        emit(event="started", t=time.time())

    faust.Worker(app, loglevel=args.loglevel, quiet=True, redirect_stdouts=False).execute_from_commandline()


# --------------------------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------------------------

def real_trades() -> list[tuple[str, bytes]]:
    """(symbol, raw Binance trade message) of the four spot files, in file order (as bench/trades_throughput)."""
    from stream_processor.market.serde.feed import iter_feed, record_symbol, stream_kind

    out = []
    for path in FILES:
        for _, raw in iter_feed(path):
            if stream_kind(raw) == "trades":
                out.append((record_symbol(raw), raw))
    return out


async def create_topics(bootstrap: str, *names: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, PARTITIONS, 1) for n in names])
    finally:
        await admin.close()


async def publish_input(bootstrap: str, topic: str, copies: int) -> int:
    from aiokafka import AIOKafkaProducer

    await create_topics(bootstrap, topic)
    trades = real_trades()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=512 * 1024)
    await producer.start()
    try:
        futures = []
        for i in range(copies):
            for symbol, raw in trades:
                alias = f"{symbol}.{i}"
                value = raw.replace(f'"s":"{symbol}"'.encode(), f'"s":"{alias}"'.encode(), 1)
                futures.append(await producer.send(topic, value, key=alias.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return copies * len(trades)


async def committed_offsets(admin, group: str) -> dict[int, int]:
    """The group's committed offset per partition (of its one input topic); {} while it has none."""
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except Exception:  # group not there yet, coordinator loading...
        return {}
    return {tp.partition: max(meta.offset, 0) for tp, meta in offsets.items()}


async def committed_total(admin, group: str) -> int:
    return sum((await committed_offsets(admin, group)).values())


async def run_variant(bootstrap: str, name: str, source: str, total: int, args: argparse.Namespace,
                      logdir: Path) -> dict:
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    guarantee, take, use_partitioner = {**VARIANTS, **EXTRA_VARIANTS}[name]
    run = uuid.uuid4().hex[:6]
    app_id, sink = f"faust-{name}-{run}", f"enriched-{name}-{run}"
    await create_topics(bootstrap, sink)
    datadir = Path(tempfile.mkdtemp(prefix="faust-data-"))
    log_path = logdir / f"{name}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--bootstrap", bootstrap, "--app-id", app_id,
           "--guarantee", guarantee, "--take", str(take), "--source", source, "--sink", sink, "--total", str(total),
           "--commit-interval", str(args.commit_interval), "--datadir", str(datadir), "--loglevel", args.loglevel,
           *(["--use-partitioner"] if use_partitioner else [])]
    log = open(log_path, "wb")
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, stderr=log, cwd=ROOT)
    marks: dict[str, float] = {}

    async def read_marks() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            try:
                msg = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            marks[msg["event"]] = msg["t"]

    reader = asyncio.create_task(read_marks())
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    result = {"name": name, "guarantee": guarantee, "take": take, "app_id": app_id, "sink": sink, "log": log_path}
    try:
        tps = [TopicPartition(sink, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        launched = time.monotonic()
        deadline = launched + args.timeout
        visible = committed = 0
        first_at = first_count = None
        last_poll = 0.0
        progress = (0, 0, launched)  # (visible, committed, when either last changed)
        while True:
            batches = await consumer.getmany(timeout_ms=20, max_records=20_000)
            visible += sum(len(b) for b in batches.values())
            now = time.monotonic()
            if first_at is None and visible:
                first_at, first_count = time.perf_counter(), visible
            if visible >= total and now - last_poll > 0.02:
                last_poll = now
                committed = await committed_total(admin, app_id)
                if committed >= total:
                    break
            elif now - last_poll > 1.0:
                last_poll = now
                committed = await committed_total(admin, app_id)
            if (visible, committed) != progress[:2]:
                progress = (visible, committed, now)
            elif committed >= total and now - progress[2] > 20:
                result["error"] = (f"stall: every input offset committed ({committed}) but only {visible}/{total} "
                                   f"sink records visible (read_committed), no progress for 20 s; agent marks "
                                   f"{sorted(marks)}")
                break
            if proc.returncode is not None:
                result["error"] = f"worker exited with {proc.returncode} (visible {visible}, committed {committed})"
                break
            if now > deadline:
                result["error"] = (f"stall: after {args.timeout:.0f} s, {visible}/{total} sink records visible "
                                   f"(read_committed), {committed}/{total} input offsets committed, "
                                   f"agent marks {sorted(marks)}")
                break
        if "error" not in result:
            seconds = time.perf_counter() - first_at
            result.update(records=total - first_count, seconds=seconds, rate=(total - first_count) / seconds,
                          startup=first_at and (time.monotonic() - launched - seconds))
        if "error" not in result and guarantee == "exactly_once":
            # While the worker still runs: every input offset is committed; are the table updates of those
            # inputs committed too? (one changelog record per input, in the input's partition)
            offsets = await committed_offsets(admin, app_id)
            counts = await topic_counts(bootstrap, f"{app_id}-symbols-changelog", levels=("read_committed",))
            result["at_done"] = (offsets, counts["read_committed"])
        if "first" in marks and "done" in marks:
            result["agent_seconds"] = marks["done"] - marks["first"]
            result["agent_rate"] = (total - 1) / result["agent_seconds"]
    finally:
        await consumer.stop()
        await admin.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                result["stop"] = "did not stop on SIGTERM within 30 s: killed"
                proc.kill()
                await proc.wait()
        reader.cancel()
        log.close()
        shutil.rmtree(datadir, ignore_errors=True)
    problems = [ln for ln in log_path.read_text(errors="replace").splitlines()
                if re.search(r"\b(ERROR|CRITICAL|Traceback|Exception)\b", ln)]
    result["problems"] = problems
    return result


async def topic_counts(bootstrap: str, topic: str, levels: tuple[str, ...] = ("read_uncommitted", "read_committed")
                       ) -> dict[str, list[int]]:
    """Per partition: end offset (read_uncommitted), data records under each isolation level of ``levels``."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    out: dict[str, list[int]] = {}
    for level in levels:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=level, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            if level == "read_uncommitted":
                out["end_offset"] = [ends[tp] for tp in tps]
            counts = dict.fromkeys(tps, 0)
            idle = 0
            while idle < 3:
                got = await consumer.getmany(timeout_ms=300, max_records=20_000)
                idle = 0 if got else idle + 1
                for tp, batch in got.items():
                    counts[tp] += len(batch)
                if all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                    break
            out[level] = [counts[tp] for tp in tps]
        finally:
            await consumer.stop()
    return out


def broker_data_dir(bootstrap: str) -> Path | None:
    """The log.dirs of the tests/broker.py broker listening at ``bootstrap`` (found by its server.properties)."""
    port = bootstrap.rpartition(":")[2]
    for props in glob.glob(os.path.join(tempfile.gettempdir(), "kafka-test-*", "server.properties")):
        text = Path(props).read_text()
        if f"PLAINTEXT://127.0.0.1:{port}," in text:
            m = re.search(r"^log\.dirs=(.*)$", text, re.M)
            return Path(m.group(1)) if m else None
    return None


def dump_batches(logdirs: Path, topic: str) -> dict[str, int]:
    """Count record batches of ``topic`` by isTransactional / isControl, via kafka.tools.DumpLogSegments."""
    files = sorted(glob.glob(str(logdirs / f"{topic}-*" / "*.log")))
    if not files or not shutil.which("java"):
        return {}
    # The jars of the release the broker runs (KAFKA_VERSION, as for tests/broker.py): .cache/kafka/<version>/libs.
    libs = subprocess.run([str(ROOT / "scripts" / "kafka.sh"), "libs"], capture_output=True, text=True,
                          check=True).stdout.strip()
    done = subprocess.run(["java", "-Xmx256m", "-cp", f"{libs}/*", "kafka.tools.DumpLogSegments", "--files",
                           ",".join(files)], capture_output=True, text=True, timeout=120)
    counts = {"batches": 0, "transactional": 0, "non_transactional": 0, "control": 0}
    for line in done.stdout.splitlines():
        if "baseOffset:" not in line:
            continue
        counts["batches"] += 1
        tx = re.search(r"isTransactional: (\w+)", line)
        ctl = re.search(r"isControl: (\w+)", line)
        if ctl and ctl.group(1) == "true":
            counts["control"] += 1
        elif tx and tx.group(1) == "true":
            counts["transactional"] += 1
        else:
            counts["non_transactional"] += 1
    return counts


async def transaction_check(bootstrap: str, result: dict) -> None:
    changelog = f"{result['app_id']}-symbols-changelog"
    if "at_done" in result:
        offsets, table_committed = result["at_done"]
        print(f"  input offsets committed per partition: {dict(sorted(offsets.items()))}")
        behind = {p: offsets.get(p, 0) - n for p, n in enumerate(table_committed) if offsets.get(p, 0) != n}
        print(f"  when all {sum(offsets.values())} input offsets were committed (worker running): "
              f"{sum(table_committed)} table changelog records committed; partitions where input committed - "
              f"changelog committed != 0: {behind or 'none'}")
    logdirs = broker_data_dir(bootstrap)
    for label, topic in (("sink", result["sink"]), ("table changelog", changelog)):
        try:
            c = await asyncio.wait_for(topic_counts(bootstrap, topic), 60)
        except Exception as exc:  # a topic the failed worker never created, ...
            print(f"  {label} {topic}: cannot read: {exc!r}")
            continue
        ends, unc, com = sum(c["end_offset"]), sum(c["read_uncommitted"]), sum(c["read_committed"])
        print(f"  {label} {topic}: end offsets {ends}, data records read_uncommitted {unc}, read_committed {com}, "
              f"offsets taken by markers {ends - unc}")
        used = [p for p in range(PARTITIONS) if c["end_offset"][p]]
        print("    per partition (p: end/uncommitted/committed): "
              + ", ".join(f"{p}: {c['end_offset'][p]}/{c['read_uncommitted'][p]}/{c['read_committed'][p]}"
                          for p in used))
        if logdirs is not None:
            b = dump_batches(logdirs, topic)
            if b:
                print(f"    DumpLogSegments: {b['batches']} batches: {b['transactional']} transactional data, "
                      f"{b['non_transactional']} non-transactional data, {b['control']} control (txn markers)")


async def main(args: argparse.Namespace) -> None:
    import aiokafka
    import faust

    from tests.broker import broker

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    # aiokafka retries these by itself right after a topic is created (leader not elected yet)
    logging.getLogger("aiokafka.consumer.fetcher").setLevel(logging.ERROR)
    names = args.variants.split(",")
    print(f"faust-streaming {faust.__version__}, aiokafka {aiokafka.__version__}, orjson {orjson.__version__}, "
          f"Python {sys.version.split()[0]}; broker_commit_interval {args.commit_interval} s", flush=True)
    logdir = Path(tempfile.mkdtemp(prefix="faust-bench-logs-"))
    results = []
    with broker() as bootstrap:
        source = f"bench-trades-{uuid.uuid4().hex[:6]}"
        total = await publish_input(bootstrap, source, args.copies)
        print(f"input: {total} real trades ({args.copies} copies x 34,419) on {PARTITIONS} partitions "
              f"(broker {bootstrap})", flush=True)
        for name in names:
            r = await run_variant(bootstrap, name, source, total, args, logdir)
            results.append(r)
            if "error" in r:
                line = f"{name:>14}: FAILED: {r['error']}"
            else:
                line = (f"{name:>14}: {r['records']} records in {r['seconds']:.2f} s = {r['rate']:,.0f}/s "
                        f"(committed+visible; startup {r['startup']:.1f} s)")
            if "agent_rate" in r:
                line += f"; agent count: {r['agent_seconds']:.2f} s = {r['agent_rate']:,.0f}/s"
            print(line, flush=True)
            if r.get("stop"):
                print(f"  {r['stop']}")
            if r["problems"]:
                print(f"  {len(r['problems'])} error lines in {r['log']}, first: {r['problems'][:3]}")
        print("transactional check (counts read after each worker was stopped with SIGTERM; sink: a topic the agent "
              "does not consume; changelog: the table's, which Faust itself writes):")
        for r in results:
            if r["guarantee"] == "exactly_once" or args.check_all:
                print(f" {r['name']}:")
                await transaction_check(bootstrap, r)
    print(f"worker logs: {logdir}")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300.0, help="per variant, from worker launch")
    parser.add_argument("--commit-interval", type=float, default=0.1,
                        help="Faust broker_commit_interval in s (ours commits every 100 ms; Faust's default 2.8)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, of {', '.join([*VARIANTS, *EXTRA_VARIANTS])}")
    parser.add_argument("--check-all", action="store_true", help="transaction check for at_least_once too")
    parser.add_argument("--loglevel", default="warning")
    worker = parser.add_argument_group("worker subprocess (internal)")
    worker.add_argument("--worker", action="store_true")
    for opt in ("--bootstrap", "--app-id", "--guarantee", "--source", "--sink", "--datadir"):
        worker.add_argument(opt)
    worker.add_argument("--take", type=int, default=0)
    worker.add_argument("--use-partitioner", action="store_true")
    worker.add_argument("--total", type=int, default=0)
    return parser.parse_args()


if __name__ == "__main__":
    options = parse()
    if options.worker:
        run_worker(options)
    else:
        asyncio.run(main(options))
