"""Failover: how long a killed worker's partitions stop producing committed output before another worker takes over.

Usage: ``python bench/failover.py [--kills 3] [--rate 2000] [--workers 2] [--static] [--rolling]``.

Starts a throwaway real broker (or uses ``TEST_KAFKA_BOOTSTRAP``) and ``--workers`` worker processes of one group
(the trades processor, exactly_once, the shipped kafka settings: session and transaction timeouts as configured),
publishes real trades at ``--rate`` per second over 8 partitions, and reads ``enriched_trades`` read_committed.
The symbols are aliased so that every partition gets a steady share of the input at all times
(``partition_alias``): a partition without input would show a gap that is not the failover's. Each round waits
until every worker owns partitions, asks every worker's ``/status`` which partitions it owns,
kills one of them with SIGKILL, and measures for each partition it owned the gap in committed output: from the kill
to the first output of that partition made visible at least ``SETTLE_S`` (1 s) after it, which only a new owner can
have written (the killed worker's last commit, if in flight, lands within milliseconds). Then it starts the killed
worker again, waits for ``/ready`` and for output on every partition, and goes on. Prints each kill's gaps (max and
median over the partitions it owned), how long the restarted worker took to be ready, and whether any input was
lost or duplicated at the end.

``--static``: the workers use static membership (``GROUP_INSTANCE_ID`` = their name) and a killed worker is started
again at once, as Kubernetes restarts a pod (under the same id: a StatefulSet's pod name): it takes its partitions
back without a rebalance, and the gap is its restart.

``--rolling``: a planned rolling update after the kills, as a Deployment with ``maxSurge: 1, maxUnavailable: 0``
does it: for each worker in turn, start its replacement, wait for its ``/ready``, then SIGTERM the old one and wait
for it to exit. Every live worker's ``/ready`` is polled every 100 ms throughout; prints the fewest workers ready
at once, the time with none ready, and each partition's longest gap in committed output during the update.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402

from bench.latency import start_worker, wait_ready  # noqa: E402
from bench.trades_throughput import aliased, assign_from_start, partition_alias, real_trades  # noqa: E402
from stream_processor.engine.topics import ensure_topics, required_topics  # noqa: E402
from tests.broker import broker, free_port  # noqa: E402
from tests.helpers import isolated_settings  # noqa: E402

PARTITIONS = 8
#: Output visible this long after a kill can only come from a new owner (a commit in flight lands in milliseconds).
SETTLE_S = 1.0


class Output:
    """What the read_committed reader has seen: per input partition, the visible times of its outputs."""

    def __init__(self) -> None:
        self.times: dict[int, list[float]] = {p: [] for p in range(PARTITIONS)}
        self.sources: list[tuple[int, int]] = []

    def first_after(self, partition: int, t: float) -> float | None:
        return next((x for x in self.times[partition] if x > t), None)


def owned(port: int) -> list[int]:
    """The input partitions the worker on health ``port`` owns, from its ``/status``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as resp:
        doc = json.load(resp)
    return sorted(p["partition"] for p in doc["processors"]["trades"]["partitions"] if p["owned_here"])


async def run(bootstrap: str, kills: int, rate: int, workers: int, kafka: dict[str, int], static: bool = False,
              rolling: bool = False, keep_logs: bool = False) -> None:
    settings = isolated_settings(bootstrap, processors=["trades"], **kafka)
    proc = settings.stream_processors["trades"]
    source, sink = proc.input_topics[0], proc.output_topics[0]
    await ensure_topics(settings, required_topics(settings))
    doc = settings.model_dump(mode="json")
    doc.pop("replay", None)
    k = settings.kafka
    print(f"{workers} workers, session_timeout_ms {k.session_timeout_ms}, transaction_timeout_ms "
          f"{k.transaction_timeout_ms}, heartbeat_interval_ms {k.heartbeat_interval_ms}, {rate} trades/s"
          + (", static membership" if static else ""))
    trades = real_trades()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, enable_idempotence=True)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                              enable_auto_commit=False, fetch_max_wait_ms=5)
    await producer.start()
    await reader.start()
    out = Output()
    sent = 0
    stop = asyncio.Event()

    async def publish() -> None:
        nonlocal sent
        started = time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - started) * rate)
            while sent < due:
                symbol, raw = trades[sent % len(trades)]
                alias = partition_alias(symbol, sent, len(trades))
                await producer.send(source, aliased(symbol, raw, alias), key=alias.encode())
                sent += 1
            await asyncio.sleep(0.01)

    async def read() -> None:
        await assign_from_start(reader, sink)
        while True:
            batches = await reader.getmany(timeout_ms=50)
            now = time.monotonic()
            for records in batches.values():
                for r in records:
                    v = orjson.loads(r.value)
                    out.times[v["source_partition"]].append(now)
                    out.sources.append((v["source_partition"], v["source_offset"]))

    with tempfile.TemporaryDirectory(prefix="failover-bench-") as tmp:
        folder = tempfile.mkdtemp(prefix="failover-bench-logs-") if keep_logs else tmp
        ports = [(free_port(), free_port()) for _ in range(workers)]

        def launch(i: int, generation: int = 0) -> subprocess.Popen:
            health, metrics = ports[i]
            env = {"PROCESSOR_ID": f"bench-worker-{i}", "HEALTH_CHECK_PORT": str(health),
                   "METRICS_PORT": str(metrics)}
            if static:
                env["GROUP_INSTANCE_ID"] = f"bench-worker-{i}"
            return start_worker(doc, Path(folder), f"worker-{i}-{generation}", env)

        procs = [launch(i) for i in range(workers)]
        tasks = [asyncio.create_task(publish()), asyncio.create_task(read())]
        try:
            for i in range(workers):
                await asyncio.to_thread(wait_ready, ports[i][0], procs[i])
            await until_every_partition_flows(out)
            for n in range(kills):
                victim = n % workers
                await until_every_worker_owns(ports)
                owned_before = await asyncio.to_thread(owned, ports[victim][0])
                if not owned_before:
                    print(f"kill {n + 1}: worker {victim} owns no partition; skipped")
                    continue
                killed_at = time.monotonic()
                procs[victim].send_signal(signal.SIGKILL)
                procs[victim].wait()
                if static:  # restarted at once, under the same group.instance.id
                    procs[victim] = launch(victim, n + 1)
                gaps = await gaps_after(out, owned_before, killed_at)
                if not static:
                    procs[victim] = launch(victim, n + 1)
                ready_s = await asyncio.to_thread(wait_ready, ports[victim][0], procs[victim])
                await until_every_partition_flows(out)
                print(f"kill {n + 1}: worker {victim} owned {owned_before}; committed output resumed after "
                      f"max {max(gaps):.1f} s, median {statistics.median(gaps):.1f} s; restarted worker ready "
                      f"in {ready_s:.1f} s", flush=True)
            if rolling:
                await rolling_update(procs, ports, launch, out, kills + 1)
        finally:
            stop.set()
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
            for proc in procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
            await asyncio.sleep(2)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await reader.stop()
            await producer.stop()
    if keep_logs:
        print(f"worker logs: {folder}")
    unique = set(out.sources)
    print(f"published {sent}; outputs seen {len(out.sources)}, distinct sources {len(unique)}, duplicates "
          f"{len(out.sources) - len(unique)}")


async def rolling_update(procs: list[subprocess.Popen], ports: list[tuple[int, int]], launch: Any,
                         out: Output, generation: int) -> None:
    """Replace every worker in turn (new one ready first, then SIGTERM the old one) while polling readiness."""
    timeline: list[tuple[float, int, int]] = []  # (time, workers ready, workers alive)
    live: dict[str, int] = {}  # name -> health port, of every worker process alive

    async def poll() -> None:
        while True:
            names = list(live)
            states = await asyncio.gather(*(asyncio.to_thread(is_ready, live[n]) for n in names))
            timeline.append((time.monotonic(), sum(states), len(names)))
            await asyncio.sleep(0.1)

    await until_every_worker_owns(ports)
    for i in range(len(procs)):
        live[f"old-{i}"] = ports[i][0]
    poller = asyncio.create_task(poll())
    started = time.monotonic()
    steps = []
    try:
        for i in range(len(procs)):
            # The replacement needs its own ports while the old one runs; it takes over the old one's afterwards.
            ports.append((free_port(), free_port()))
            new = launch(len(ports) - 1, generation)
            ready_s = await asyncio.to_thread(wait_ready, ports[-1][0], new)
            live[f"new-{i}"] = ports[-1][0]
            stop_at = time.monotonic()
            procs[i].send_signal(signal.SIGTERM)
            await asyncio.to_thread(procs[i].wait)
            del live[f"old-{i}"]
            steps.append((ready_s, time.monotonic() - stop_at))
            procs[i] = new
        await asyncio.sleep(3)
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
    ended = time.monotonic()
    fewest = min(ready for _, ready, _ in timeline)
    none_s = sum(b[0] - a[0] for a, b in zip(timeline, timeline[1:], strict=False) if a[1] == 0)
    gaps = [longest_gap(out.times[p], started, ended) for p in range(PARTITIONS)]
    for i, (ready_s, stop_s) in enumerate(steps):
        print(f"rolling update, worker {i}: replacement ready in {ready_s:.1f} s; old one stopped in {stop_s:.1f} s")
    print(f"rolling update: {len(timeline)} readiness polls over {ended - started:.1f} s; fewest workers ready at "
          f"once {fewest}; {none_s:.1f} s with none ready; longest gap in committed output per partition: max "
          f"{max(gaps):.1f} s, median {statistics.median(gaps):.1f} s", flush=True)
    print("  longest gap per partition (s): " + ", ".join(f"{p}: {g:.1f}" for p, g in enumerate(gaps)))
    if NOT_READY:
        print(f"  /ready not 200 (polls, by reason): {dict(NOT_READY.most_common(6))}")


NOT_READY: Counter[str] = Counter()  # why a live worker's /ready was not 200, during the rolling update


def is_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as resp:
            return resp.status == 200
    except urllib.error.HTTPError as exc:  # 503: its problems say why
        body = exc.read()
        try:
            problems = json.loads(body or b"{}").get("problems") or ["(no problem named: tasks opening)"]
        except ValueError:
            problems = [f"HTTP {exc.code}: {body[:60]!r}"]
        NOT_READY.update(p.split(":")[0] + ": " + p.split(":", 1)[-1][:60] for p in problems)
        return False
    except OSError as exc:  # refused while starting or stopped, or slow to answer
        NOT_READY[type(exc).__name__] += 1
        return False


def longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest interval in [start, end] without an output time."""
    inside = [t for t in times if start <= t <= end]
    edges = [start, *inside, end]
    return max(b - a for a, b in zip(edges, edges[1:], strict=False))


async def gaps_after(out: Output, partitions: list[int], killed_at: float, timeout: float = 120.0) -> list[float]:
    """Seconds from the kill to each partition's first committed output after it."""
    deadline = killed_at + timeout
    while time.monotonic() < deadline:
        # The killed worker's last commit may still become visible just after the kill: count only output from
        # SETTLE_S on, which only a new owner can have written.
        firsts = [out.first_after(p, killed_at + SETTLE_S) for p in partitions]
        if all(f is not None for f in firsts):
            return [f - killed_at for f in firsts]  # type: ignore[operator]
        await asyncio.sleep(0.05)
    raise TimeoutError(f"partitions {partitions} produced nothing within {timeout:.0f} s of the kill")


async def until_every_worker_owns(ports: list[tuple[int, int]], timeout: float = 120.0) -> None:
    """Wait until every worker owns partitions (a restarted one has rejoined the group)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if all(await asyncio.gather(*(asyncio.to_thread(owned, health) for health, _ in ports))):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("not every worker owns partitions")


async def until_every_partition_flows(out: Output, timeout: float = 120.0) -> None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if all(out.first_after(p, start) is not None for p in range(PARTITIONS)):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("not every partition produced output")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--rate", type=int, default=2000, help="input trades per second")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--session-timeout-ms", type=int, default=None, help="default: the shipped config's")
    parser.add_argument("--transaction-timeout-ms", type=int, default=None, help="default: the shipped config's")
    parser.add_argument("--heartbeat-interval-ms", type=int, default=None, help="default: the shipped config's")
    parser.add_argument("--static", action="store_true", help="static membership; a killed worker restarts at once")
    parser.add_argument("--rolling", action="store_true", help="then a rolling update of every worker")
    parser.add_argument("--keep-logs", action="store_true", help="keep the workers' logs (the folder is printed)")
    args = parser.parse_args()
    kafka = {k: v for k, v in (("session_timeout_ms", args.session_timeout_ms),
                               ("transaction_timeout_ms", args.transaction_timeout_ms),
                               ("heartbeat_interval_ms", args.heartbeat_interval_ms)) if v is not None}
    logging.basicConfig(level=logging.WARNING)
    with broker() as bootstrap:
        asyncio.run(run(bootstrap, args.kills, args.rate, args.workers, kafka, args.static, args.rolling,
                        args.keep_logs))


if __name__ == "__main__":
    main()
