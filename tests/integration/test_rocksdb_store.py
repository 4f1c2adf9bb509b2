"""A table on disk (``store: rocksdb://``) on the real broker: a worker killed with kill -9 mid-stream, restarted on the
same state directory, then stopped cleanly and started again; every total exact, every event counted once.

The app is a Faust-style agent summing ``n`` per key in ``app.Table("totals")`` and yielding the running total; it
runs as users run it, ``python -m stream_processor -A <module> worker`` in its own process. The first worker is
killed (SIGKILL) once part of the input is committed: its RocksDB files hold writes whose transactions may never
have committed, and no checkpoint, so the second worker must wipe them and restore from the changelog. The second is
stopped with SIGTERM: its clean close leaves a checkpoint in each task's database, which the third trusts (it reads
only the changelog written after it) while it processes the last third of the input. Read back under
read_committed: each event comes out once, with the running total of its key in input order, and the changelog ends
with each key's total.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rocksdict import Options, Rdict

from stream_processor.engine.rocksdb_store import CHECKPOINT_KEY
from tests.conftest import ROOT
from tests.helpers import isolated_settings, read_topic, wait_for

EVENTS = 9_000  # in three parts: before the kill, after it, after the clean stop
KEYS = 150
PARTITIONS = 4
TIMEOUT = 120.0

APP = '''
from stream_processor import App

app = App({app_id!r}, settings={settings!r})
totals = app.Table("totals", default=int)


@app.agent({source!r}, sink=[{sink!r}])
async def count(stream):
    async for event in stream:
        totals[event["k"]] += event["n"]
        yield {{"i": event["i"], "k": event["k"], "total": totals[event["k"]]}}
'''


def write_app(where: Path, bootstrap: str) -> dict[str, str]:
    """The app module ``rocks_app.py`` in ``where``, its topics and state directory unique to this run."""
    base = isolated_settings(bootstrap).model_dump(mode="json")
    run = uuid.uuid4().hex[:8]
    names = {"app_id": f"rocks-{run}", "source": f"events-{run}", "sink": f"totals-{run}",
             "state": str(where / "state")}
    settings = {"kafka": base["kafka"], "monitoring": base["monitoring"],
                "topics": {names["source"]: {"partitions": PARTITIONS}, names["sink"]: {"partitions": PARTITIONS}},
                "stream_processors": {"count": {"store": "rocksdb://" + names["state"]}}}
    (where / "rocks_app.py").write_text(APP.format(app_id=names["app_id"], settings=settings,
                                                   source=names["source"], sink=names["sink"]))
    return names


def start_worker(where: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "METRICS_PORT", "HEALTH_CHECK_PORT"):
        env.pop(name, None)
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "stream_processor", "-A", "rocks_app", "worker"], cwd=where,
                                env=env, stdout=out, stderr=subprocess.STDOUT)


def events() -> list[dict[str, Any]]:
    return [{"i": i, "k": f"k{(i * 7919) % KEYS}", "n": i % 7 + 1} for i in range(EVENTS)]


async def produce(bootstrap: str, topic: str, part: list[dict[str, Any]], pace_s: float = 0.0) -> None:
    """Send ``part`` in order (a key's events to its partition in order), ``pace_s`` between batches of 100: a
    stream that is still arriving when the worker is killed."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for start in range(0, len(part), 100):
            for event in part[start:start + 100]:
                await producer.send(topic, orjson.dumps(event), key=event["k"].encode())
            await producer.flush()
            await asyncio.sleep(pace_s)
    finally:
        await producer.stop()


async def create_topics(bootstrap: str, *topics: str) -> None:
    """The input and output topics, so they can be read before the worker has made them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, num_partitions=PARTITIONS, replication_factor=1) for t in topics])
    finally:
        await admin.close()


async def changelog_ends(bootstrap: str, topic: str) -> list[int]:
    """The end offset of each partition of ``topic``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, q) for q in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        return [ends[tp] for tp in tps]
    finally:
        await consumer.stop()


async def committed_outputs(bootstrap: str, sink: str) -> list[Any]:
    return await read_topic(bootstrap, sink)


async def test_a_rocksdb_table_survives_kill_9_and_a_clean_restart_exactly(kafka_bootstrap: str,
                                                                           tmp_path: Path) -> None:
    names = write_app(tmp_path, kafka_bootstrap)
    log = tmp_path / "worker.log"
    inputs = events()
    third = EVENTS // 3
    await create_topics(kafka_bootstrap, names["source"], names["sink"])
    procs: list[subprocess.Popen[bytes]] = []

    async def outputs_at_least(n: int, proc: subprocess.Popen[bytes]) -> bool:
        assert proc.poll() is None, log.read_text()[-3000:]
        return len(await committed_outputs(kafka_bootstrap, names["sink"])) >= n

    try:
        first = start_worker(tmp_path, log)
        procs.append(first)
        producing = asyncio.create_task(produce(kafka_bootstrap, names["source"], inputs[:2 * third], 0.25))
        await wait_for(lambda: outputs_at_least(third // 2, first), TIMEOUT, message="first worker's outputs")
        first.send_signal(signal.SIGKILL)  # mid-stream: records in flight, RocksDB written ahead of commits
        first.wait()
        await producing

        second = start_worker(tmp_path, log)
        procs.append(second)
        await wait_for(lambda: outputs_at_least(2 * third, second), TIMEOUT, message="second worker's outputs")
        second.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.wait, 60) == 0
        databases = sorted(p for p in (tmp_path / "state").glob("*/*") if p.is_dir())
        assert [p.name for p in databases] == [str(q) for q in range(PARTITIONS)]
        ends = await changelog_ends(kafka_bootstrap, databases[0].parent.name)
        for q, path in enumerate(databases):  # the clean close left a checkpoint the next opening will trust
            db = Rdict(str(path), Options(raw_mode=True))
            try:
                checkpoint = db.get(CHECKPOINT_KEY)
            finally:
                db.close()
            assert checkpoint is not None, path
            assert 0 < orjson.loads(checkpoint)["offset"] <= ends[q]

        await produce(kafka_bootstrap, names["source"], inputs[2 * third:])
        last = start_worker(tmp_path, log)
        procs.append(last)
        await wait_for(lambda: outputs_at_least(EVENTS, last), TIMEOUT, message="third worker's outputs")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(proc.wait, 60)
                except subprocess.TimeoutExpired:
                    proc.kill()

    outputs = [orjson.loads(r.value) for r in await committed_outputs(kafka_bootstrap, names["sink"])]
    seen = Counter(out["i"] for out in outputs)
    assert sorted(seen) == list(range(EVENTS)), "an event lost"
    assert max(seen.values()) == 1, "an event counted twice"
    running: dict[str, int] = defaultdict(int)
    expected: dict[int, int] = {}
    for event in inputs:  # one key is one partition: its events are counted in input order
        running[event["k"]] += event["n"]
        expected[event["i"]] = running[event["k"]]
    assert {out["i"]: out["total"] for out in outputs} == expected
    changelog = databases[0].parent.name  # each task's database is <state>/<changelog topic>/<q>
    final: dict[str, int] = {}
    for rec in sorted(await read_topic(kafka_bootstrap, changelog), key=lambda r: (r.partition, r.offset)):
        if rec.key is not None and rec.key.startswith(b"\x01totals\x00"):
            final[rec.key[len(b"\x01totals\x00"):].decode()] = orjson.loads(rec.value)
    assert final == dict(running)
