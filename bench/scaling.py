"""Scaling across cores: trades/s of ``worker --processes N`` for N = 1, 2, ... on the same input, as ratios.

Usage: ``python bench/scaling.py [--processes 1 2] [--copies 8] [--rounds 2]``.

Starts a throwaway real broker (or uses ``TEST_KAFKA_BOOTSTRAP``). Per round and per N (interleaved),
``python -m stream_processor worker --processes N`` runs the trades processor exactly_once on a new, empty input
topic (8 partitions), with a fresh consumer group, output topic and app id: N worker processes, each a member of
the group (the supervisor of :mod:`stream_processor.engine.supervisor`). Once every process owns partitions (its
``/status``), this process publishes the input of bench/trades_throughput.py at once (the real Binance spot trades
of ../shared ``--copies`` times under symbol aliases ``BTCUSDT.i``, keyed so they spread over the partitions like a
many-symbol feed; built into record batches in advance, so publishing takes a fraction of a second).

The rate is the growth of the group's committed input offsets (read with the admin API every 50 ms) from 5% to 95%
of the input: the startup, the group's joins and the tail are outside it. Prints every run, the median per N and
N's ratio to N = 1. On this 2-core machine the broker shares the cores with the workers, so 2 processes cannot
reach 2x.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402

from bench.latency import wait_ready  # noqa: E402
from bench.trades_throughput import _PARTITIONER, PARTITIONS, aliased, real_trades  # noqa: E402
from stream_processor.engine.settings import TopicSettings  # noqa: E402
from stream_processor.engine.supervisor import PORT_STRIDE  # noqa: E402
from stream_processor.engine.topics import ensure_topics, required_topics  # noqa: E402
from tests.broker import broker, free_port  # noqa: E402
from tests.helpers import isolated_settings  # noqa: E402

#: The measured window: from this share of the input committed to that one.
FROM, UNTIL = 0.05, 0.95


def owns_partitions(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as resp:
            doc = json.load(resp)
    except OSError:
        return False
    return any(p["owned_here"] for p in doc["processors"]["trades"]["partitions"])


async def committed(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except Exception:  # noqa: BLE001 - the group's coordinator is still loading
        return 0
    return sum(max(meta.offset, 0) for tp, meta in offsets.items() if tp.topic == topic)


def input_batches(copies: int) -> dict[int, list[tuple[bytes, bytes]]]:
    """The input as (key, value) per partition (Kafka's default partitioner), in publishing order."""
    every = list(range(PARTITIONS))
    out: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in every}
    trades = real_trades()
    for i in range(copies):
        for symbol, raw in trades:
            key = f"{symbol}.{i}".encode()
            out[_PARTITIONER(key, every, every)].append((key, aliased(symbol, raw, key.decode())))
    return out


async def publish(bootstrap: str, topic: str, records: dict[int, list[tuple[bytes, bytes]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=1024 * 1024)
    await producer.start()
    try:
        futures = []
        for partition, pairs in records.items():
            batch = producer.create_batch()
            for key, value in pairs:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    batch.append(key=key, value=value, timestamp=None)
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


async def run_processes(bootstrap: str, records: dict[int, list[tuple[bytes, bytes]]], processes: int,
                        folder: Path) -> tuple[float, float]:
    """(records/s of ``processes`` worker processes over the measured window, share of the cores busy in it)."""
    total = sum(len(v) for v in records.values())
    source = f"bench-trades-{uuid.uuid4().hex[:6]}"
    settings = isolated_settings(bootstrap, processors=["trades"])
    doc = settings.model_dump(mode="json")
    doc.pop("replay", None)
    doc["topics"][source] = {"partitions": PARTITIONS}
    trades = doc["stream_processors"]["trades"]
    trades["input_topics"] = [source]
    group = trades["consumer_group"]
    # Ports base + PORT_STRIDE * i for child i: find a free run of them.
    base = free_port()
    doc["monitoring"].update(metrics_port=base, health_check_port=base + 1)
    await ensure_topics(settings, {**required_topics(settings), source: TopicSettings(partitions=PARTITIONS)})
    config = folder / f"scaling-{uuid.uuid4().hex[:6]}.yaml"
    config.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "LOG_LEVEL": "WARNING"}
    log = open(folder / f"workers-{processes}.log", "ab")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "stream_processor", "worker", "--config", str(config),
                             "--processes", str(processes)], stdout=log, stderr=subprocess.STDOUT, env=env)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        health = [base + 1 + PORT_STRIDE * i for i in range(processes)]
        for port in health:
            await asyncio.to_thread(wait_ready, port, proc)
        while not all(await asyncio.gather(*(asyncio.to_thread(owns_partitions, p) for p in health))):
            await asyncio.sleep(0.05)
        await publish(bootstrap, source, records)
        deadline = time.monotonic() + 600
        marks: list[tuple[float, int]] = []
        while (n := await committed(admin, group, source)) < UNTIL * total:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{processes} processes: {n}/{total} committed; see {log.name}")
            if n >= FROM * total and not marks:
                marks.append((time.monotonic(), n))
                cpu0 = cpu_times()
            await asyncio.sleep(0.05)
        t1, cpu1 = time.monotonic(), cpu_times()
        if not marks:
            raise RuntimeError(f"{processes} processes: no commit seen between {FROM:.0%} and {UNTIL:.0%}")
        t0, n0 = marks[0]
        busy = (cpu1[0] - cpu0[0]) / max(cpu1[1] - cpu0[1], 1.0)
        return (n - n0) / max(t1 - t0, 1e-3), busy
    finally:
        await admin.close()
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=60)
        if proc.poll() is None:
            proc.kill()
        log.close()


async def main(counts: list[int], copies: int, rounds: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    with broker() as bootstrap, tempfile.TemporaryDirectory(prefix="scaling-bench-") as tmp:
        records = input_batches(copies)
        total = sum(len(v) for v in records.values())
        print(f"input: {total} real trades ({copies} copies x 34,419) on {PARTITIONS} partitions; "
              f"{os.cpu_count()} cores", flush=True)
        rates: dict[int, list[float]] = {n: [] for n in counts}
        for i in range(rounds):
            for n in counts:
                rate, busy = await run_processes(bootstrap, records, n, Path(tmp))
                rates[n].append(rate)
                print(f"round {i + 1}: {n} process{'es' if n > 1 else ''}: {rate:,.0f} trades/s (cores {busy:.0%} "
                      "busy: workers, broker and this process)", flush=True)
        med = {n: statistics.median(r) for n, r in rates.items()}
        one = med.get(1)
        for n, rate in med.items():
            ratio = f"; {rate / one:.2f}x one process ({rate / one / n:.2f} of {n}x)" if one else ""
            print(f"median {n} process{'es' if n > 1 else ''}: {rate:,.0f} trades/s{ratio}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.processes, args.copies, args.rounds))
