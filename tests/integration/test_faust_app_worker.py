"""``@app.timer(interval, on_leader=True)`` on two workers of one app: one worker sends at a time, and after kill -9
of the leader the other takes over (stream_processor/engine/leader.py).

The app is a Faust program (``import stream_processor as faust``, ``faust.App(..., broker=..., web_port=0)``) run by
``stream-processor -A <module> worker -l info``, twice, with two PROCESSOR_IDs. Its on_leader timer writes the
sender's id to a topic every 0.3 s; a plain timer beside it writes from every worker (the control: both workers run);
an ``@app.task(on_leader=True)`` writes once on each worker when it first leads.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

ROOT = Path(__file__).resolve().parents[2]

APP_SOURCE = '''
import os
import stream_processor as faust

ID = os.environ["TEST_APP_ID"]
app = faust.App(ID, broker=os.environ["TEST_BROKER"], web_port=0, topic_partitions=1)
src = app.topic(ID + "-src")
leader_out = app.topic(ID + "-leader-out")
all_out = app.topic(ID + "-all-out")
task_out = app.topic(ID + "-task-out")


@app.agent(src)
async def idle(stream):
    async for _ in stream:
        pass


@app.timer(0.3, on_leader=True)
async def beat():
    await leader_out.send(key=os.environ["PROCESSOR_ID"], value=os.environ["PROCESSOR_ID"])


@app.task(on_leader=True)
async def once_on_the_leader():
    await task_out.send(key=os.environ["PROCESSOR_ID"], value=os.environ["PROCESSOR_ID"])


@app.timer(0.3)
async def everyone():
    await all_out.send(key=os.environ["PROCESSOR_ID"], value=os.environ["PROCESSOR_ID"])
'''


class _Worker:
    def __init__(self, tmp: Path, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.log = tmp / f"{name}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stream_processor", "-A", "leader_app", "worker", "-l", "info"],
                cwd=tmp, env={**env, "PROCESSOR_ID": name}, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def app_dir(tmp_path: Path, kafka_bootstrap: str) -> Iterator[tuple[Path, dict[str, str], str]]:
    app_id = f"leader-{uuid.uuid4().hex[:8]}"
    (tmp_path / "leader_app.py").write_text(APP_SOURCE)
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "HEALTH_CHECK_PORT")}
    env.update({"TEST_APP_ID": app_id, "TEST_BROKER": f"kafka://{kafka_bootstrap}", "METRICS_PORT": "0",
                "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
    yield tmp_path, env, app_id


async def _senders(consumer: AIOKafkaConsumer, want: int, within: float) -> list[str]:
    """The next ``want`` records' values (sender ids), in order; fails after ``within`` s."""
    got: list[str] = []
    deadline = time.monotonic() + within
    while len(got) < want:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(got)} of {want} records within {within:.0f} s: {got}"
        batch = await consumer.getmany(timeout_ms=int(min(left, 1.0) * 1000))
        got += [orjson.loads(r.value) for records in batch.values() for r in records]  # JSON, as Faust sends a str
    return got[:want]


async def test_one_leader_sends_and_the_other_takes_over_after_kill_9(kafka_bootstrap: str,
                                                                       app_dir: tuple[Path, dict[str, str], str]
                                                                       ) -> None:
    tmp, env, app_id = app_dir
    workers = [_Worker(tmp, "w1", env), _Worker(tmp, "w2", env)]
    leader_out = AIOKafkaConsumer(f"{app_id}-leader-out", bootstrap_servers=kafka_bootstrap,
                                  auto_offset_reset="earliest")
    all_out = AIOKafkaConsumer(f"{app_id}-all-out", bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest")
    await leader_out.start()
    await all_out.start()
    try:
        # Both workers run their timers (the control), so both are up and in the leader group.
        seen: set[str] = set()
        began = time.monotonic()
        while seen != {"w1", "w2"}:
            assert time.monotonic() - began < 120, f"workers sending: {seen}; logs in {tmp}"
            seen.update(await _senders(all_out, 1, 120))
        # Let a rebalance that the second member's joining started finish, then: one sender only.
        await _senders(leader_out, 20, 60)
        window = await _senders(leader_out, 20, 60)
        assert len(set(window)) == 1, f"on_leader records came from several workers at once: {window}"
        [leader] = set(window)
        other = next(w for w in workers if w.name != leader)
        everyone = await _senders(all_out, 20, 60)
        assert set(everyone) == {"w1", "w2"}  # the plain timer runs on both meanwhile

        # kill -9 the leader: the other takes over within the session timeout and a rebalance.
        next(w for w in workers if w.name == leader).proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        after: list[str] = []
        while other.name not in after:
            assert time.monotonic() - killed < 60, f"no takeover within 60 s: {after}"
            after += await _senders(leader_out, 1, 60)
        took = time.monotonic() - killed
        assert took < 30, f"takeover took {took:.1f} s"
        assert await _senders(leader_out, 10, 30) == [other.name] * 10
        task_out = AIOKafkaConsumer(f"{app_id}-task-out", bootstrap_servers=kafka_bootstrap,
                                    auto_offset_reset="earliest")
        await task_out.start()
        # The on_leader task runs once on each worker when it first leads: both led (the other may have led first,
        # alone in the group before the second member joined, or only when it took over), neither ran it twice.
        try:
            assert sorted(await _senders(task_out, 2, 30)) == sorted([leader, other.name])
            assert await task_out.getmany(timeout_ms=1000) == {}
        finally:
            await task_out.stop()
    finally:
        await leader_out.stop()
        await all_out.stop()
        for worker in workers:
            worker.stop()
    logs = {w.name: w.log.read_text() for w in workers}
    assert f"this worker ({leader}) is the leader of app {app_id}" in logs[leader]
    assert f"this worker ({other.name}) is the leader of app {app_id}" in logs[other.name]

