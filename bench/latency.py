"""End-to-end latency of the trades processor at a steady input rate, as a user sees it.

Usage: ``python bench/latency.py [--rate 5000] [--seconds 60] [--mode exactly_once] [--klines | --join
[--idle-ms 5000]]``.

Starts a throwaway real broker (or uses ``TEST_KAFKA_BOOTSTRAP``), then the worker as its own process
(``python -m stream_processor worker``, the trades processor only, on a config file written for the run), waits
until its ``/ready`` answers 200, and publishes the real Binance spot trades of ../shared at ``--rate`` trades per
second for ``--seconds`` (symbols aliased ``BTCUSDT.i`` so the keys spread over the 8 partitions), paced in 10 ms
ticks. A read_committed consumer in this process (``fetch_max_wait_ms`` 5, so its own polling adds little) reads
``enriched_trades``; each output is matched to its input by the source partition and offset it carries, and its
latency is the time this process saw it minus the input record's CreateTime (the producer's timestamp, returned
with the send's metadata): both clocks are this machine's.

``--join``: the same worker also runs the klines processor (the shipped config's: 1m and 5m klines, indicators, SMC,
its context topic ``smc_context``) and the trades processor joins that context (``smc_context`` among its inputs,
``params.smc_context_topic``; see :mod:`stream_processor.market.context`), waiting up to ``--idle-ms``
(``max_task_idle_ms``, default 5000, the joining processor's default; -1: never wait) for the klines processor to
get as far as each trade: a trade is processed once the klines task of its partition has committed a context or
progress record at or past the trade's Kafka timestamp, so its latency adds the klines processor's own (processing
and a commit interval) to the trades processor's. ``--klines`` runs the klines processor beside it without the join:
the same work in the worker, no wait. The latency is still the enriched trades'; with ``--join`` the run also
prints how many carried ``smc`` and how many were flagged ``smc_stale``, and splits each trade's latency in two: until
the klines processor had committed past it (the first record of its partition of the context topic, context or
progress, stamped at or after the trade's timestamp, as this process's read_committed consumer saw it), and from then
until the enriched trade was visible.

``--worker-repo PATH`` runs the worker from another checkout (a worktree of an earlier commit: a baseline on the
same broker and input). Prints p50, p90, p99, p99.9 and max for the first 10 s of input and for the rest, the
number matched and any input never seen (after a 60 s drain), and the CPU time the worker used meanwhile (from
``/proc``: the share of a core its processing took).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import orjson
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from bench.trades_throughput import aliased, partition_alias, real_trades  # noqa: E402
from stream_processor.engine.kafka_internals import force_metadata_update  # noqa: E402
from stream_processor.engine.settings import Settings  # noqa: E402
from stream_processor.engine.topics import ensure_topics, required_topics  # noqa: E402
from stream_processor.market.settings import JOIN_IDLE_MS  # noqa: E402
from tests.broker import broker, free_port  # noqa: E402
from tests.helpers import isolated_settings  # noqa: E402

WARMUP_S = 10.0
DRAIN_S = 60.0


def percentiles(values_ms: np.ndarray) -> str:
    if values_ms.size == 0:
        return "no records"
    p50, p90, p99, p999 = np.percentile(values_ms, [50, 90, 99, 99.9])
    return (f"p50 {p50:.0f} ms, p90 {p90:.0f} ms, p99 {p99:.0f} ms, p99.9 {p999:.0f} ms, "
            f"max {values_ms.max():.0f} ms ({values_ms.size} records)")


def start_worker(settings_doc: dict, folder: Path, name: str = "worker",
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m stream_processor worker`` on ``settings_doc`` (written to ``folder``), logging to
    ``folder/<name>.log``; ``env`` adds environment overrides (``PROCESSOR_ID``, ports)."""
    config = folder / "bench-config.yaml"
    config.write_text(yaml.safe_dump(settings_doc))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), **(env or {})}
    log = open(folder / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "stream_processor", "worker", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=env["PYTHONPATH"])


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system, s) process ``pid`` has used so far, from ``/proc`` (None where there is none)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_ready(port: int, worker: subprocess.Popen, timeout: float = 120.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as resp:
                if resp.status == 200:
                    return time.monotonic() - started
        time.sleep(0.1)
    raise TimeoutError(f"/ready not 200 within {timeout:.0f} s")


def bench_settings(bootstrap: str, mode: str, klines: bool = False, join: bool = False,
                   idle_ms: int = JOIN_IDLE_MS) -> Settings:
    """The shipped config made unique on ``bootstrap``: the trades processor; with ``klines`` or ``join`` the klines
    processor too; with ``join`` the trades processor joins its SMC context topic, waiting ``idle_ms``
    (``max_task_idle_ms``) for it."""
    settings = isolated_settings(bootstrap, mode, processors=["trades", "klines"] if klines or join else ["trades"])
    if not join:
        return settings
    doc = settings.model_dump(mode="json")
    context = doc["stream_processors"]["klines"]["params"]["smc"]["context_topic"]
    trades = doc["stream_processors"]["trades"]
    trades["input_topics"] = [*trades["input_topics"], context]
    trades["params"]["smc_context_topic"] = context
    trades["max_task_idle_ms"] = idle_ms
    return Settings.model_validate(doc)


async def measure(bootstrap: str, rate: int, seconds: float, mode: str, worker_repo: Path | None = None,
                  klines: bool = False, join: bool = False, idle_ms: int = JOIN_IDLE_MS) -> None:
    settings = bench_settings(bootstrap, mode, klines, join, idle_ms)
    proc = settings.stream_processors["trades"]
    source, sink = proc.input_topics[0], proc.output_topics[0]
    await ensure_topics(settings, required_topics(settings))
    health_port = free_port()
    doc = settings.model_dump(mode="json")
    doc["monitoring"].update(health_check_port=health_port, metrics_port=free_port())
    doc.pop("replay", None)

    with tempfile.TemporaryDirectory(prefix="latency-bench-") as folder:
        env = {"PYTHONPATH": str(worker_repo)} if worker_repo is not None else None
        if worker_repo is not None:  # keys added since issue 10, which an earlier checkout refuses
            doc = json.loads(json.dumps(doc))
            for key in ("heartbeat_interval_ms", "group_instance_id"):
                doc["kafka"].pop(key, None)
            for proc in doc["stream_processors"].values():
                proc.get("params", {}).pop("state_encoding", None)
            (Path(folder) / "bench-config.yaml").unlink(missing_ok=True)
        worker = start_worker(doc, Path(folder), env=env)
        try:
            ready_s = wait_ready(health_port, worker)
            what = (f"joining the klines processor's SMC context, max_task_idle_ms {idle_ms}" if join
                    else "beside the klines processor, no join" if klines else "the trades processor alone")
            print(f"worker ready after {ready_s:.1f} s; publishing {rate} trades/s for {seconds:.0f} s "
                  f"({mode}, {settings.kafka.commit_interval_ms} ms commits; {what})")
            cpu_before, started = cpu_seconds(worker.pid), time.monotonic()
            context = getattr(settings.stream_processors["trades"].params, "smc_context_topic", None)
            created, seen, joined, cleared = await run_load(bootstrap, source, sink, rate, seconds, context)
            cpu_after, elapsed = cpu_seconds(worker.pid), time.monotonic() - started
            if cpu_before is not None and cpu_after is not None:
                print(f"worker CPU: {cpu_after - cpu_before:.1f} s in {elapsed:.1f} s "
                      f"({(cpu_after - cpu_before) / elapsed:.0%} of a core)")
        finally:
            worker.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=30)
            if worker.poll() is None:
                worker.kill()

    start = min(created.values())
    warm, steady, missing = [], [], 0
    for key, create_ms in created.items():
        visible_ms = seen.get(key)
        if visible_ms is None:
            missing += 1
            continue
        (warm if create_ms - start < WARMUP_S * 1000 else steady).append(visible_ms - create_ms)
    print(f"first {WARMUP_S:.0f} s:  {percentiles(np.asarray(warm))}")
    print(f"after that:   {percentiles(np.asarray(steady))}")
    print(f"all:          {percentiles(np.asarray(warm + steady))}")
    print(f"matched {len(seen)} of {len(created)} inputs; never seen: {missing}")
    if join:
        print(f"join: {joined['smc']} outputs carried smc, {joined['stale']} were flagged smc_stale")
        waits, rest = [], []
        for (q, offset), create_ms in created.items():
            at = cleared_at(cleared.get(q, []), create_ms)
            if at is not None and (q, offset) in seen:
                waits.append(at - create_ms)
                rest.append(seen[(q, offset)] - at)
        print(f"  until the klines processor had committed past the trade (its partition's first context or progress "
              f"record at or after the trade's timestamp visible here): {percentiles(np.asarray(waits))}")
        print(f"  from then until the enriched trade was visible: {percentiles(np.asarray(rest))}")


def cleared_at(progress: list[tuple[float, int]], timestamp: int) -> float | None:
    """The first time (ms) in ``progress`` (a partition's ``(visible ms, largest timestamp so far)``, in reading
    order) at which the largest timestamp had reached ``timestamp``; None if it never did."""
    i = bisect.bisect_left([ts for _, ts in progress], timestamp)
    return progress[i][0] if i < len(progress) else None


async def run_load(bootstrap: str, source: str, sink: str, rate: int, seconds: float, context: str | None = None
                   ) -> tuple[dict[tuple[int, int], int], dict[tuple[int, int], float], Counter[str],
                              dict[int, list[tuple[float, int]]]]:
    """Publish at ``rate`` while reading ``sink`` (and ``context``, the joined context topic, if given); returns
    {(partition, offset): CreateTime ms} of the inputs, {(partition, offset): visible ms} of the outputs seen, how
    many outputs carried ``smc`` (not null) and ``smc_stale`` true, and per context partition the times (ms) its
    largest record timestamp grew, as ``(visible ms, timestamp)`` (context and progress records alike)."""
    trades = real_trades()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=1, enable_idempotence=True,
                                max_batch_size=512 * 1024)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                              enable_auto_commit=False, fetch_max_wait_ms=5, max_poll_records=10_000)
    await producer.start()
    await reader.start()
    created: dict[tuple[int, int], int] = {}
    seen: dict[tuple[int, int], float] = {}
    joined: Counter[str] = Counter()
    cleared: dict[int, list[tuple[float, int]]] = defaultdict(list)
    total = int(rate * seconds)
    try:
        await force_metadata_update(reader)  # topics this consumer has not seen yet
        tps = [TopicPartition(topic, p) for topic in (sink, context) if topic is not None
               for p in sorted(reader.partitions_for_topic(topic) or ())]
        reader.assign(tps)
        await reader.seek_to_beginning(*tps)

        async def read() -> None:
            deadline = None
            while len(seen) < total:
                batches = await reader.getmany(timeout_ms=50)
                now_ms = time.time() * 1000
                for records in batches.values():
                    for r in records:
                        if r.topic == context:
                            marks = cleared[r.partition]
                            if not marks or r.timestamp > marks[-1][1]:
                                marks.append((now_ms, r.timestamp))
                            continue
                        v = orjson.loads(r.value)
                        seen[(v["source_partition"], v["source_offset"])] = now_ms
                        joined["smc"] += v.get("smc") is not None
                        joined["stale"] += v.get("smc_stale") is True
                if len(created) == total and deadline is None:
                    deadline = time.monotonic() + DRAIN_S
                if deadline is not None and time.monotonic() > deadline:
                    return

        def acknowledged(future: asyncio.Future) -> None:  # a callback, not a task per record: little CPU here
            if not future.cancelled() and future.exception() is None:
                meta = future.result()
                created[(meta.partition, meta.offset)] = meta.timestamp

        reading = asyncio.create_task(read())
        acks = []
        tick, per_tick = 0.01, rate / 100
        started = time.monotonic()
        sent = 0
        while sent < total:
            due = min(total, int((time.monotonic() - started) / tick * per_tick) + 1)
            while sent < due:
                symbol, raw = trades[sent % len(trades)]
                alias = partition_alias(symbol, sent, len(trades))
                future = await producer.send(source, aliased(symbol, raw, alias), key=alias.encode())
                future.add_done_callback(acknowledged)
                acks.append(future)
                sent += 1
            await asyncio.sleep(tick)
        await asyncio.gather(*acks)
        print(f"published {total} trades in {time.monotonic() - started:.1f} s")
        await reading
    finally:
        await reader.stop()
        await producer.stop()
    return created, seen, joined, cleared


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=5000, help="input trades per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to publish")
    parser.add_argument("--mode", choices=["exactly_once", "at_least_once"], default="exactly_once")
    parser.add_argument("--worker-repo", type=Path, default=None,
                        help="run the worker from this checkout (e.g. a worktree of an earlier commit, for a baseline)")
    extra = parser.add_mutually_exclusive_group()
    extra.add_argument("--join", action="store_true",
                       help="run the klines processor too and join its SMC context into the enriched trades")
    extra.add_argument("--klines", action="store_true", help="run the klines processor too, without the join")
    parser.add_argument("--idle-ms", type=int, default=JOIN_IDLE_MS,
                        help="with --join: max_task_idle_ms of the trades processor (-1: never wait)")
    args = parser.parse_args()
    if args.idle_ms < -1:
        parser.error("--idle-ms must be -1 or more")
    logging.basicConfig(level=logging.WARNING)
    with broker() as bootstrap:
        asyncio.run(measure(bootstrap, args.rate, args.seconds, args.mode, args.worker_repo, args.klines, args.join,
                            args.idle_ms))


if __name__ == "__main__":
    main()
