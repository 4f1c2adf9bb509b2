"""Scaling across cores: trades/s of ``worker --processes N`` for N = 1, 2, ... on the same input, as ratios.

Usage: ``python bench/scaling.py [--processes 1 2] [--copies 8] [--rounds 2]``.

Starts a throwaway real broker (or uses ``TEST_KAFKA_BOOTSTRAP``) and publishes the input of
bench/trades_throughput.py once: the real Binance spot trades of ../shared ``--copies`` times under symbol aliases
(``BTCUSDT.i``), so the keys spread over the 8 partitions like a many-symbol feed. Then, per round and per N
(interleaved), ``python -m stream_processor worker --processes N`` runs the trades processor exactly_once with a
fresh consumer group, output topic and app id, reading that input from the beginning: N worker processes, each a
member of the group (the supervisor of :mod:`stream_processor.engine.supervisor`).

The rate is the growth of the group's committed input offsets (read with the admin API every 100 ms) between the
moment every process owns partitions (its ``/status``) and the moment 95% of the input is committed; the
startup, the group's joins and the tail are outside it. Prints every run, the median per N and N's ratio to
N = 1. On this 2-core machine the broker shares the cores with the workers, so 2 processes cannot reach 2x.
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

from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402

from bench.latency import wait_ready  # noqa: E402
from bench.trades_throughput import PARTITIONS, publish_input  # noqa: E402
from stream_processor.engine.supervisor import PORT_STRIDE  # noqa: E402
from stream_processor.engine.topics import ensure_topics, required_topics  # noqa: E402
from tests.broker import broker, free_port  # noqa: E402
from tests.helpers import isolated_settings  # noqa: E402

#: The measured window ends when this share of the input is committed.
UNTIL = 0.95


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


async def run_processes(bootstrap: str, source: str, total: int, processes: int, folder: Path) -> float:
    """Records/s of ``processes`` worker processes over the measured window."""
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
    await ensure_topics(settings, required_topics(settings))
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
        t0, n0 = time.monotonic(), await committed(admin, group, source)
        deadline = t0 + 600
        while (n1 := await committed(admin, group, source)) < UNTIL * total:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{processes} processes: {n1}/{total} committed; see {log.name}")
            await asyncio.sleep(0.1)
        t1 = time.monotonic()
        if n0 > total / 2:
            raise RuntimeError(f"{processes} processes: {n0} of {total} already committed when all owned partitions")
        return (n1 - n0) / (t1 - t0)
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
        source = f"bench-trades-{uuid.uuid4().hex[:6]}"
        total = await publish_input(bootstrap, source, copies)
        print(f"input: {total} real trades ({copies} copies x 34,419) on {PARTITIONS} partitions; "
              f"{os.cpu_count()} cores", flush=True)
        rates: dict[int, list[float]] = {n: [] for n in counts}
        for i in range(rounds):
            for n in counts:
                rate = await run_processes(bootstrap, source, total, n, Path(tmp))
                rates[n].append(rate)
                print(f"round {i + 1}: {n} process{'es' if n > 1 else ''}: {rate:,.0f} trades/s", flush=True)
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
