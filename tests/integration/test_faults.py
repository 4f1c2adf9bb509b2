"""Broker faults while a worker runs: /health tells the truth, nothing is lost or repeated, logs and stops are bounded.

On a broker of its own, with worker processes (``python -m stream_processor worker``) running the trades
processor while real trades are produced at a steady rate:

1. the broker is frozen (SIGSTOP) for 20 s: ``/health`` must turn 503 within the bound (``broker_timeout_ms`` plus
   one probe) and come back to 200 after SIGCONT;
2. the broker is killed (kill -9) and, while it is down, a second worker is started: it must serve ``/health``
   (503, naming the broker) at once instead of refusing connections; after the broker restarts both turn healthy;
3. once the input is drained: every input record enriched exactly once (by source offset), committed offsets at
   the input ends;
4. the log stays small: a repeated message is written once per interval;
5. SIGTERM with the broker frozen: each worker exits within ``shutdown_timeout_ms`` (plus the hard-exit margin).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer

from stream_processor.engine.settings import Settings
from stream_processor.engine.topics import ensure_topics, required_topics
from stream_processor.market.serde.feed import iter_feed, stream_kind
from tests import broker as brokers
from tests.conftest import FEEDS
from tests.helpers import end_offsets, read_topic, wait_for, wait_until_settled

ROOT = Path(__file__).resolve().parents[2]
BROKER_TIMEOUT_S = 5.0
PROBE_S = 1.0
SHUTDOWN_S = 8.0
# /health must turn: the broker timeout, plus one probe interval and the probe's own timeout, plus polling.
UNHEALTHY_WITHIN_S = BROKER_TIMEOUT_S + PROBE_S + 2 * (BROKER_TIMEOUT_S / 3) + 1.0
HEALTHY_AGAIN_WITHIN_S = 45.0
RATE = 300  # trades per second
LOG_BYTES_MAX = 200_000


def _config(bootstrap: str, run: str, health_port: int) -> dict[str, Any]:
    return {
        "app_id": f"faults-{run}",
        "kafka": {"bootstrap_servers": [bootstrap], "session_timeout_ms": 6000, "transaction_timeout_ms": 5000},
        "topics": {f"raw-{run}": {"partitions": 4}, f"enriched-{run}": {"partitions": 4},
                   f"dlq-{run}": {"partitions": 1}},
        "stream_processors": {"trades": {
            "type": "trades", "consumer_group": f"trades-{run}", "input_topics": [f"raw-{run}"],
            "output_topics": [f"enriched-{run}"], "dead_letter_topic": f"dlq-{run}"}},
        "replay": {"topics": {"trades": f"raw-{run}"}},
        "monitoring": {"host": "127.0.0.1", "metrics_port": 0, "health_check_port": health_port},
        "health": {"broker_timeout_ms": int(BROKER_TIMEOUT_S * 1000), "probe_interval_ms": int(PROBE_S * 1000),
                   "stuck_partition_ms": 15_000},
        "circuit_breaker": {"failures": 3, "backoff_ms": 500, "max_backoff_ms": 4000},
        "shutdown_timeout_ms": int(SHUTDOWN_S * 1000),
    }


class WorkerProcess:
    def __init__(self, config: Path, log: Path, name: str) -> None:
        self.log = log
        env = {**os.environ, "PROCESSOR_ID": name, "PYTHONUNBUFFERED": "1"}
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "stream_processor", "worker", "--config", str(config)],
                                         cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


async def _health(port: int) -> tuple[int | None, dict[str, Any] | None]:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            async with http.get(f"http://127.0.0.1:{port}/health") as resp:
                return resp.status, await resp.json()
    except (aiohttp.ClientError, TimeoutError):
        return None, None


async def _until(port: int, status: int, within: float) -> float:
    """Seconds until ``/health`` on ``port`` answers ``status``; fails after ``within`` s."""
    began = time.monotonic()
    while time.monotonic() - began < within:
        got, _ = await _health(port)
        if got == status:
            return time.monotonic() - began
        await asyncio.sleep(0.25)
    got, doc = await _health(port)
    pytest.fail(f"/health on :{port} did not answer {status} within {within:.0f} s (last: {got} {doc})")


async def _committing(bootstrap: str, topic: str, more: int, when: str) -> None:
    """Wait until ``more`` records more than now are committed in ``topic``: the workers are processing."""
    now = await end_offsets(bootstrap, topic)

    async def grown() -> bool:
        return await end_offsets(bootstrap, topic) >= now + more

    await wait_for(grown, timeout=60, interval=0.5, message=f"{more} more committed records in {topic} {when}")


def _running(workers: list[WorkerProcess]) -> None:
    """AssertionError naming a worker process that has exited (they run until SIGTERM)."""
    for w in workers:
        assert w.proc.poll() is None, f"{w.log.name}: exited with {w.proc.returncode}"


def _trades() -> list[bytes]:
    out = []
    for day in ("20240808", "20240809"):
        for sym in ("btcusdt", "ethusdt"):
            out.extend(raw for _, raw in iter_feed(FEEDS / "spot" / f"{sym}_{day}.gz") if stream_kind(raw) == "trades")
    return out


async def _produce(bootstrap: str, topic: str, trades: list[bytes], stop: asyncio.Event) -> int:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                request_timeout_ms=120_000, retry_backoff_ms=200, linger_ms=5)
    await producer.start()
    sent, pending = 0, []
    try:
        began = time.monotonic()
        for raw in trades:
            if stop.is_set():
                break
            symbol = orjson.loads(raw)["data"]["s"]
            pending.append(await producer.send(topic, raw, key=symbol.encode()))
            sent += 1
            await asyncio.sleep(max(0.0, began + sent / RATE - time.monotonic()))  # the steady rate, not a wait
        await asyncio.gather(*pending)
        return sent
    finally:
        await producer.stop()


@pytest.mark.slow  # 90-105 s on the 2-core machine
async def test_health_tells_the_truth_through_broker_faults(tmp_path: Path, shared_data: Any) -> None:
    with brokers.broker(own=True) as bootstrap:
        run = uuid.uuid4().hex[:8]
        ports = [brokers.free_port(), brokers.free_port()]
        configs = []
        for port in ports:
            path = tmp_path / f"config-{port}.yaml"
            path.write_text(yaml.safe_dump(_config(bootstrap, run, port)))
            configs.append(path)
        settings = Settings.model_validate(_config(bootstrap, run, ports[0]))
        await ensure_topics(settings, required_topics(settings))
        raw, enriched = f"raw-{run}", f"enriched-{run}"
        stop = asyncio.Event()
        producing = asyncio.create_task(_produce(bootstrap, raw, _trades(), stop))
        workers = [WorkerProcess(configs[0], tmp_path / "w1.log", "w1")]
        timings: dict[str, float] = {}
        try:
            await _until(ports[0], 200, 60)
            await _committing(bootstrap, enriched, 5 * RATE, "before the freeze")  # 5 s of the stream

            # 1. frozen broker
            os.kill(brokers.pid(bootstrap), signal.SIGSTOP)
            try:
                timings["sigstop: unhealthy after"] = await _until(ports[0], 503, UNHEALTHY_WITHIN_S)
                _, doc = await _health(ports[0])
                assert doc is not None and any(p.startswith("broker:") for p in doc["problems"]), doc
                await asyncio.sleep(20 - timings["sigstop: unhealthy after"])  # the fault: frozen for 20 s in all
            finally:
                os.kill(brokers.pid(bootstrap), signal.SIGCONT)
            timings["sigcont: healthy after"] = await _until(ports[0], 200, HEALTHY_AGAIN_WITHIN_S)

            # 2. killed broker; a worker started during the outage serves /health at once
            await _committing(bootstrap, enriched, 3 * RATE, "after SIGCONT")  # 3 s more
            brokers.kill9(bootstrap)
            killed = time.monotonic()
            timings["kill -9: unhealthy after"] = await _until(ports[0], 503, UNHEALTHY_WITHIN_S)
            workers.append(WorkerProcess(configs[1], tmp_path / "w2.log", "w2"))
            answered = await _until(ports[1], 503, 15)
            timings["worker started during the outage: /health 503 after"] = answered
            _, doc = await _health(ports[1])
            assert doc is not None and doc["starting"] is not None, doc
            await asyncio.sleep(max(0.0, 15 - (time.monotonic() - killed)))  # the fault: down for 15 s
            timings["broker restart took"] = await asyncio.to_thread(brokers.start, bootstrap)
            for name, port in (("w1", ports[0]), ("w2", ports[1])):
                timings[f"restart: {name} healthy after"] = await _until(port, 200, HEALTHY_AGAIN_WITHIN_S)

            # 3. drained: every input record exactly once
            stop.set()
            sent = await producing
            assert sent > 10_000
            # The group committed the input's ends and no output transaction is open: nothing more comes.
            await wait_until_settled(bootstrap, {f"trades-{run}": [raw]}, [enriched, f"dlq-{run}"], timeout=120,
                                     alive=lambda: _running(workers))
            inputs = await read_topic(bootstrap, raw, "read_uncommitted")
            outputs = await read_topic(bootstrap, enriched, schema="enriched_trades")
            sources = Counter((v["source_partition"], v["source_offset"]) for v in map(orjson.loads,
                                                                                      (r.value for r in outputs)))
            want = {(r.partition, r.offset) for r in inputs}
            assert len(inputs) == sent
            assert sum(n - 1 for n in sources.values()) == 0, "duplicates"
            assert want - set(sources) == set(), f"{len(want - set(sources))} lost"
            assert await read_topic(bootstrap, f"dlq-{run}") == []

            # 5. SIGTERM with the broker frozen: bounded
            os.kill(brokers.pid(bootstrap), signal.SIGSTOP)
            try:
                began = time.monotonic()
                for w in workers:
                    w.proc.send_signal(signal.SIGTERM)
                for w in workers:
                    w.proc.wait(timeout=SHUTDOWN_S + 10)
                timings["SIGTERM with a frozen broker: exited after"] = time.monotonic() - began
            finally:
                os.kill(brokers.pid(bootstrap), signal.SIGCONT)
        finally:
            stop.set()
            for w in workers:
                if w.proc.poll() is None:
                    w.proc.kill()
                    w.proc.wait()
            if not producing.done():
                producing.cancel()
        print("\n".join(f"{k}: {v:.1f} s" for k, v in timings.items()))
        assert timings["SIGTERM with a frozen broker: exited after"] <= SHUTDOWN_S + 6

        # 4. bounded log volume
        for w in workers:
            size = w.log.stat().st_size
            lines = w.log.read_text(errors="replace").count("\n")
            print(f"{w.log.name}: {size} bytes, {lines} lines")
            assert size < LOG_BYTES_MAX, w.log.read_text(errors="replace")[-3000:]
