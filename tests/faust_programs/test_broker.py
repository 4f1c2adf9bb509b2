"""The broker form: the pageviews tutorial, with only its import line changed, run by the worker on a real broker,
killed with ``kill -9`` mid-stream and restarted, ends with the table faust-streaming's ``test_context`` gives on
the same input: every page view counted once (a duplicate would count one too many, a loss one too few).

The program (``group_by(PageView.id)`` through a repartition topic, then ``page_views[view.id] += 1``) is written to
a module file as :func:`~tests.faust_programs.harness.port` makes it and run as
``python -m stream_processor -A page_views_port:app worker``, its broker given by the environment
(``KAFKA_BOOTSTRAP_SERVERS`` wins over the program's ``broker='kafka://localhost:9092'``). The table at the end is
its changelog folded (read_committed: the last record of each key wins).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream_processor.engine.topics import changelog_topic

from .harness import START_MS, Put, Scenario, load, port, run_faust, source_of

ROOT = Path(__file__).resolve().parents[2]
VIEWS = 3000
RATE = 400  # views/s: the input takes 7.5 s
KILL_AT = 600  # views counted (committed) when w1 gets kill -9, while the rest is still being sent


def page_views(n: int) -> list[tuple[bytes, bytes]]:
    """``n`` page views (key: the user, as a web tier would key them; value: PageView JSON) of 6 pages by 50 users."""
    rng = random.Random(20)
    out = []
    for _ in range(n):
        user = f"user-{rng.randint(1, 50)}"
        out.append((user.encode(), orjson.dumps({"id": f"page-{rng.randint(1, 6)}", "user": user})))
    return out


def start_worker(workdir: Path, bootstrap: str, name: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PROCESSOR_ID": name, "PYTHONUNBUFFERED": "1",
           "METRICS_PORT": "0", "HEALTH_CHECK_PORT": "0",  # any free ports: other tests' workers run beside it
           "PYTHONPATH": os.pathsep.join([str(workdir), str(ROOT)])}
    with open(workdir / f"{name}.log", "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "stream_processor", "-A", "page_views_port:app", "worker"],
                                cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)


async def folded_table(bootstrap: str, topic: str, store: str) -> dict[str, int]:
    """The table ``store`` as changelog ``topic`` holds it (read_committed; keys ``\\x01<store>\\x00<key>``)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        if not parts:
            return {}
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        table: dict[str, int] = {}
        for tp in tps:
            await consumer.seek_to_beginning(tp)
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for rec in records:
                    if rec.key is None or rec.key[:1] != b"\x01":
                        continue  # an offset marker or a store's metadata
                    name, _, key = rec.key[1:].partition(b"\x00")
                    if name != store.encode():
                        continue
                    if rec.value is None:
                        table.pop(key.decode(), None)
                    else:
                        table[key.decode()] = orjson.loads(rec.value)
        return table
    finally:
        await consumer.stop()


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], rate: float) -> None:
    """Send ``records`` at about ``rate`` records/s (idempotent, acks=all)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    started = time.monotonic()
    try:
        for i, (key, value) in enumerate(records):
            await producer.send(topic, value, key=key)
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
        await producer.flush()
    finally:
        await producer.stop()


def test_page_views_on_the_broker_killed_mid_stream_counts_each_view_once(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    views = page_views(VIEWS)
    scenario = Scenario([Put("page_view_topic", v, key=k, timestamp_ms=START_MS + i) for i, (k, v) in
                         enumerate(views)], tables=("page_views",))
    expected = asyncio.run(asyncio.wait_for(run_faust("page_views", scenario, monkeypatch), 300)).tables["page_views"]
    assert sum(expected.values()) == VIEWS
    monkeypatch.undo()

    (tmp_path / "page_views_port.py").write_text(port(source_of("page_views")))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    app = load("page_views", port(source_of("page_views"))).app
    changelog = changelog_topic(app.settings, "count_page_views")

    async def scenario_on_the_broker() -> dict[str, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("page_views", 4, 1)])  # topic_partitions=4, as Faust creates it
        finally:
            await admin.close()
        first = start_worker(tmp_path, kafka_bootstrap, "w1")
        sending = asyncio.create_task(produce(kafka_bootstrap, "page_views", views, RATE))
        deadline = time.monotonic() + 120
        while (counted := sum((await folded_table(kafka_bootstrap, changelog, "page_views")).values())) < KILL_AT:
            assert first.poll() is None, (tmp_path / "w1.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"w1 counted {counted} views in 120 s"
            await asyncio.sleep(0.2)
        first.send_signal(signal.SIGKILL)  # mid-stream: the producer is still sending
        first.wait()
        assert not sending.done(), f"the input ended before the kill ({counted} views counted)"
        second = start_worker(tmp_path, kafka_bootstrap, "w2")
        try:
            await sending
            deadline = time.monotonic() + 180
            table: dict[str, int] = {}
            while sum(table.values()) < VIEWS:
                assert second.poll() is None, (tmp_path / "w2.log").read_text()[-3000:]
                assert time.monotonic() < deadline, f"{sum(table.values())} of {VIEWS} views counted in 180 s"
                await asyncio.sleep(0.5)
                table = await folded_table(kafka_bootstrap, changelog, "page_views")
            return table
        finally:
            second.send_signal(signal.SIGTERM)
            try:
                second.wait(timeout=60)
            except subprocess.TimeoutExpired:
                second.kill()
                second.wait()

    table = asyncio.run(scenario_on_the_broker())
    assert table == expected  # every view once: no duplicate (a count too high), no loss (too low)
