"""The task, its manager and the commit pipeline, without a broker: the worker's own code over in-memory clients.

Fencing, poison isolation (check and isolate modes), pipelined commits, timestamp order and progress records.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError, RecordTooLargeError
from prometheus_client import CollectorRegistry

from stream_processor.engine.app import AgentSettings
from stream_processor.engine.breaker import CircuitBreaker
from stream_processor.engine.checkpoint import CheckpointState, transactional_id
from stream_processor.engine.commits import CommitPipeline
from stream_processor.engine.exceptions import InvalidRecordError
from stream_processor.engine.memory import MemoryBroker, MemoryConsumer, MemoryProducer
from stream_processor.engine.metrics import Metrics
from stream_processor.engine.observe import RunnerStats
from stream_processor.engine.partition_group import PROGRESS_HEADER
from stream_processor.engine.processor import Processor, ProcessorContext
from stream_processor.engine.registry import build_processor
from stream_processor.engine.task import ISOLATE_CHUNK, TaskEnv
from stream_processor.engine.task_manager import TaskManager
from tests.unit.engine.support import make_app

T0 = 1_700_000_000_000


class Counter(Processor):
    """Counts records per key in its store and sends ``{"key", "n", "value", "enforced"}`` to ``out``.

    Values: ``"boom"`` raises a bug, ``"bad"`` is refused (RecordError), ``"unwritable"`` leaves a state that
    cannot be encoded; anything else is counted.
    """

    def process(self, record: Any, ctx: ProcessorContext) -> None:
        if record == "boom":
            raise RuntimeError("boom")
        if record == "bad":
            raise InvalidRecordError("bad record")
        key = ctx.key.decode() if ctx.key else "-"
        store = ctx.state()
        n = (store.get(key) or 0) + 1
        store.put(key, n)
        if record == "unwritable":
            store.put("junk", object())  # no JSON form
        ctx.send("out", {"key": key, "n": n, "value": record, "enforced": sorted(ctx.enforced)}, key=key)


class SideSettings(AgentSettings):
    """A processor that writes ``side`` to its input's partition number."""

    def copartitioned_outputs(self) -> list[str]:
        return ["side"]


class Harness:
    """A processor's task manager and commit pipeline over an in-memory broker, stepped by hand."""

    def __init__(self, entry: dict[str, Any], partitions: int = 1, settings_class: type = AgentSettings) -> None:
        app = make_app(stream_processors={"counter": entry})
        app.processor("counter", settings=settings_class)(Counter)
        settings = app.settings
        self.now = [1_000.0]
        self.broker = MemoryBroker(lambda topic: partitions, lambda: T0)
        proc = build_processor("counter", settings, app.types)
        psettings = proc.settings
        self.consumer = MemoryConsumer(self.broker, psettings.consumer_group)
        self.rejoins = 0
        self.consumer.request_rejoin = self._rejoin  # type: ignore[method-assign]
        self.tid = lambda inputs: transactional_id(settings.app_id, psettings.consumer_group, inputs)
        env = TaskEnv(proc, settings, consumer=self.consumer, restore_consumer=MemoryConsumer(self.broker),
                      new_producer=lambda inputs: MemoryProducer(self.broker, self.tid(inputs)),
                      clock_ms=lambda: self.now[0])
        env.limits.update(dict.fromkeys(env.written_topics, 1_000_000))
        self.env = env
        self.manager = TaskManager(env, CircuitBreaker(3, 1.0, 30.0))
        self.stats = RunnerStats()
        self.pipeline = CommitPipeline(self.manager, Metrics(CollectorRegistry()), self.stats)
        self.partitions = {TopicPartition(t, p) for t in psettings.input_topics for p in range(partitions)}

    def _rejoin(self) -> None:
        self.rejoins += 1

    async def open(self) -> None:
        self.consumer.assign(sorted(self.partitions))
        await self.manager.assign(self.partitions)
        while await self.manager.open_next():
            pass

    def produce(self, topic: str, value: Any, key: str = "k", ts: int = T0, partition: int = 0) -> None:
        self.broker.append(TopicPartition(topic, partition), key.encode(), orjson.dumps(value), (), ts)

    async def step(self, force: bool = False) -> None:
        """Fetch and process until nothing moves (a task reopened reads its input again)."""
        while True:
            batches = self.consumer.poll()
            recoveries = self.manager.recoveries
            self.manager.add(batches)
            taken = 0
            for task in list(self.manager.open_tasks.values()):
                taken += await self.manager.process(task, force=force)
            if not batches and not taken and self.manager.recoveries == recoveries:
                return

    async def commit(self) -> None:
        await self.pipeline.commit_all(wait=True, punctuate=False)

    def out(self, topic: str = "out") -> list[Any]:
        records = [r for log in self.broker.logs.get(topic, []) for r in log if r.visible]
        return [orjson.loads(r.value) for r in sorted(records, key=lambda r: r.seq) if r.value]

    def records(self, topic: str) -> list[Any]:
        return sorted((r for log in self.broker.logs.get(topic, []) for r in log if r.visible), key=lambda r: r.seq)

    def store(self) -> dict[str, Any]:
        (task,) = self.manager.tasks.values()
        assert task.stores is not None
        return dict(task.stores.stores[""].data)


ENTRY = {"input_topics": ["in"], "output_topics": ["out"]}


async def test_outputs_carry_their_input_timestamp_and_commit_with_the_offsets() -> None:
    h = Harness(ENTRY)
    await h.open()
    for i, value in enumerate(["x", "y", "z"]):
        h.produce("in", value, ts=T0 + 10 * i)
    await h.step()
    assert h.out() == []  # nothing is visible before the commit
    await h.commit()
    assert [(d["n"], d["value"]) for d in h.out()] == [(1, "x"), (2, "y"), (3, "z")]
    assert [r.timestamp for r in h.records("out")] == [T0, T0 + 10, T0 + 20]
    assert h.broker.group_offsets[("t-counter", TopicPartition("in", 0))] == 3
    assert h.stats.messages_processed == 3
    (task,) = h.manager.tasks.values()
    assert task.committed[TopicPartition("in", 0)] == 3 and task.health.failures == 0


async def test_a_processing_error_is_replayed_in_check_mode_and_only_that_record_is_dead_lettered() -> None:
    h = Harness(ENTRY)
    await h.open()
    for value in ["a", "b", "boom", "c"]:
        h.produce("in", value)
    await h.step()
    await h.commit()
    assert [d["value"] for d in h.out()] == ["a", "b", "c"]
    assert [d["n"] for d in h.out()] == [1, 2, 3]  # state as if the bad record never came
    [dead] = h.records("dead_letter")
    headers = dict(dead.headers)
    assert headers["reason"] == b"processing_error" and b"RuntimeError('boom')" in headers["error"]
    assert headers["source_offset"] == b"2" and dead.value == b'"boom"' and dead.timestamp == T0
    (task,) = h.manager.tasks.values()
    assert task.check_until is None and task.poison == {TopicPartition("in", 0): {}}  # forgotten once committed
    assert h.manager.recoveries == 2  # the replay in check mode, then the one that dead-letters it


async def test_a_refused_record_changes_nothing_and_is_dead_lettered_in_the_same_transaction() -> None:
    h = Harness(ENTRY)
    await h.open()
    for value in ["a", "bad", "b"]:
        h.produce("in", value)
    await h.step()
    await h.commit()
    assert [d["n"] for d in h.out()] == [1, 2]
    assert [dict(r.headers)["reason"] for r in h.records("dead_letter")] == [b"invalid"]
    assert h.manager.recoveries == 0


async def test_a_state_that_cannot_be_written_is_found_in_check_mode() -> None:
    h = Harness(ENTRY)
    await h.open()
    for value in ["a", "unwritable", "b"]:
        h.produce("in", value)
    await h.step()
    await h.commit()  # the changelog record of "unwritable" cannot be encoded: the task replays in check mode
    assert h.out() == []
    (task,) = h.manager.tasks.values()
    assert task.check_until == {TopicPartition("in", 0): 3}
    await h.step()
    await h.commit()
    assert [d["value"] for d in h.out()] == ["a", "b"] and [d["n"] for d in h.out()] == [1, 2]
    assert [dict(r.headers)["reason"] for r in h.records("dead_letter")] == [b"state_unserializable"]
    assert h.store() == {"k": 2} and task.check_until is None


async def test_a_record_the_broker_refuses_is_isolated_and_dead_lettered_by_reference() -> None:
    h = Harness(ENTRY)
    h.broker.refuse = lambda topic, key, value, headers: (
        RecordTooLargeError() if topic == "out" and value and b'"huge"' in value else None)
    await h.open()
    values = [f"v{i}" for i in range(100)]
    values[70] = "huge"
    for value in values:
        h.produce("in", value, ts=T0 + 1)
    await h.step()
    await h.commit()  # refused: the task goes to isolate mode
    (task,) = h.manager.tasks.values()
    assert h.out() == [] and task.isolate_until == ({TopicPartition("in", 0): 100}, ISOLATE_CHUNK)
    await h.step()
    await h.commit()
    assert [d["value"] for d in h.out()] == values[:70] + values[71:]
    [dead] = h.records("dead_letter")
    headers = dict(dead.headers)
    assert headers["reason"] == b"uncommittable" and headers["source_offset"] == b"70"
    assert dead.value == b"" and headers["value_truncated"] == b"6" and "value_sha256" in headers
    assert dead.timestamp == T0  # a copy by reference is stamped when it is sent, not with its record's time
    assert task.isolate_until is None and h.store() == {"k": 99}


async def test_a_fenced_task_is_closed_its_inputs_paused_and_the_group_rejoined() -> None:
    h = Harness(ENTRY)
    await h.open()
    h.produce("in", "a")
    await h.step()  # processed into an open transaction
    (task,) = h.manager.tasks.values()
    zombie = task.checkpoint
    assert zombie is not None and zombie.state is CheckpointState.OPEN
    newer = MemoryProducer(h.broker, h.tid((TopicPartition("in", 0),)))
    await newer.start()  # another worker opened the task: this one is fenced
    assert task.fenced
    await h.commit()
    assert not task.is_open and h.rejoins == 1
    assert TopicPartition("in", 0) in h.consumer._paused  # noqa: SLF001 - the in-memory consumer's own state
    assert h.out() == []  # the zombie's transaction never commits


async def test_commits_are_pipelined_and_a_failed_one_drops_the_transaction_held_after_it() -> None:
    h = Harness(ENTRY)
    await h.open()
    (task,) = h.manager.tasks.values()
    for value in ["a", "b"]:
        h.produce("in", value)
    await h.step()
    await h.pipeline.commit_all(punctuate=False)  # in the background
    assert task.inflight is not None and not task.inflight.done()
    for value in ["c", "d"]:
        h.produce("in", value)
    await h.step()  # processed into the next transaction, held in memory while the first commits
    cp = task.checkpoint
    assert cp is not None and cp.is_open and cp.pending_count == 2 and cp.sealed is not None
    await h.pipeline.harvest(wait=True)
    assert [d["value"] for d in h.out()] == ["a", "b"]
    await h.commit()
    assert [d["value"] for d in h.out()] == ["a", "b", "c", "d"]

    h.broker.fail_next["commit_transaction"] = KafkaTimeoutError()
    for value in ["e", "f"]:
        h.produce("in", value)
    await h.step()
    await h.pipeline.commit_all(punctuate=False)
    h.produce("in", "g")
    await h.step()  # into the transaction held after the failing one
    await h.pipeline.harvest(wait=True)  # the commit failed: both dropped, the task reopened from its last commit
    assert task.health.failures == 1 and task.is_open
    await h.step()
    await h.commit()
    assert [d["value"] for d in h.out()] == ["a", "b", "c", "d", "e", "f", "g"]  # exactly once
    assert h.store() == {"k": 7} and task.health.failures == 0


async def test_two_inputs_are_processed_in_timestamp_order_whatever_arrives_first() -> None:
    entry = {"input_topics": ["in", "other"], "output_topics": ["out"], "max_task_idle_ms": 500}
    h = Harness(entry)
    await h.open()
    for i in range(3):
        h.produce("in", f"in{i}", ts=T0 + 20 * i)  # 0, 20, 40
    await h.step()
    assert h.manager.tasks[0].pending_count == 0  # "other" has no record yet: the task waits (up to 500 ms)
    for i in range(2):
        h.produce("other", f"other{i}", ts=T0 + 10 + 20 * i)  # 10, 30
    await h.step()
    await h.commit()
    assert [d["value"] for d in h.out()] == ["in0", "other0", "in1", "other1"]  # in2 waits for "other"
    h.now[0] += 500
    await h.step()  # the wait ran out: in2 goes without "other", and says so
    await h.commit()
    last = h.out()[-1]
    assert last["value"] == "in2" and last["enforced"] == ["other"]
    assert all(d["enforced"] == [] for d in h.out()[:-1])


async def test_a_copartitioned_output_gets_a_progress_record_per_commit() -> None:
    entry = {"input_topics": ["in"], "output_topics": ["out", "side"]}
    h = Harness(entry, partitions=2, settings_class=SideSettings)
    await h.open()
    h.produce("in", "a", ts=T0 + 5, partition=1)
    h.produce("in", "b", ts=T0 + 9, partition=1)
    await h.step()
    await h.commit()
    [progress] = h.records("side")
    assert progress.partition == 1 and progress.timestamp == T0 + 9 and progress.headers == ((PROGRESS_HEADER, b""),)
    await h.commit()  # nothing new processed: no new progress record
    assert len(h.records("side")) == 1


async def test_a_progress_record_is_time_passing_not_a_record() -> None:
    h = Harness({"input_topics": ["in"], "output_topics": ["out"]})
    await h.open()
    h.broker.append(TopicPartition("in", 0), None, b"", ((PROGRESS_HEADER, b""),), T0)
    h.produce("in", "a")
    await h.step()
    await h.commit()
    assert [d["value"] for d in h.out()] == ["a"] and h.records("dead_letter") == []
    assert h.broker.group_offsets[("t-counter", TopicPartition("in", 0))] == 2


async def test_records_of_equal_timestamps_go_in_the_order_of_input_topics_not_of_names() -> None:
    entry = {"input_topics": ["zeta", "alpha"], "output_topics": ["out"], "max_task_idle_ms": 500}
    h = Harness(entry)
    await h.open()
    (task,) = h.manager.tasks.values()
    assert [tp.topic for tp in task.inputs] == ["zeta", "alpha"]
    h.produce("alpha", "a1", ts=T0)
    h.produce("zeta", "z1", ts=T0)
    h.produce("alpha", "a2", ts=T0 + 1)
    h.produce("zeta", "z2", ts=T0 + 1)
    await h.step()
    h.now[0] += 500
    await h.step()
    await h.commit()
    assert [d["value"] for d in h.out()] == ["z1", "a1", "z2", "a2"]
