"""The runtime's own guarantees, whatever the processor does: a record that breaks it is dead-lettered and leaves
state exactly as it was, and the partition keeps committing.

A processor (the eos_check topology, echo plus per-key running aggregates) is given five ways to fail on chosen
records, each after it has already changed its state half-way, as a buggy processor would:

- ``666``: raises (``processing_error``: the transaction is rolled back and replayed without the record);
- ``777``: returns an output larger than its topic allows (``output_too_large``);
- ``888``: grows its state past what a changelog record can hold (``state_too_large``: found at the commit, then
  the record that did it is found by encoding each record's state changes);
- ``999``: puts a value in state that JSON cannot encode (``state_unserializable``);
- ``555``: returns a 50 KB output to a topic whose ``max.message.bytes`` was lowered to 20 KB after the worker read
  it, so only the broker refuses it (``uncommittable``: one transaction per record finds it; it is dead-lettered
  by reference, without its value).

Everything else must come out exactly once with the aggregates of a run without those records, and the changelog
must hold that run's final state.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter, defaultdict
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from stream_processor.engine.processor import ProcessorContext
from stream_processor.engine.settings import Settings
from stream_processor.engine.state import OFFSET_KEY
from stream_processor.engine.topics import changelog_topic, ensure_topics, required_topics
from stream_processor.engine.worker import Worker
from tests.eos.eos_check import CheckRecord, EosCheckProcessor, KeyAggregate
from tests.helpers import isolated_settings, read_topic, wait_for, wait_until_settled

FAILURES = {666: "processing_error", 777: "output_too_large", 888: "state_too_large", 999: "state_unserializable",
            555: "uncommittable"}
RECORDS = 3000


class Buggy(EosCheckProcessor):
    """eos_check, failing on the values of ``FAILURES`` after changing its state."""

    def process(self, record: CheckRecord, ctx: ProcessorContext) -> None:
        super().process(record, ctx)  # the state has changed, two outputs are sent
        agg: Any = ctx.state().data[record.key]
        if record.value == 666:
            raise RuntimeError("bug: cannot handle 666")
        if record.value == 777:
            ctx.send(self.echo_topic, b"x" * 2_000_000, record.key.encode())
        if record.value == 888:
            agg.sum = "y" * 1_100_000
        if record.value == 999:
            agg.sum = 2**70
        if record.value == 555:
            ctx.send(self.aggregates_topic, b"z" * 50_000, record.key.encode())


def _settings(bootstrap: str) -> Settings:
    base = isolated_settings(bootstrap, processors=["trades"])
    run = uuid.uuid4().hex[:8]
    doc = base.model_dump()
    doc["stream_processors"] = {"check": {
        "type": "eos_check", "consumer_group": f"check-{run}", "input_topics": [f"in-{run}"],
        "output_topics": [f"echo-{run}", f"agg-{run}"], "dead_letter_topic": f"dlq-{run}"}}
    doc["topics"].update({f"in-{run}": {"partitions": 4}, f"echo-{run}": {"partitions": 3},
                          f"agg-{run}": {"partitions": 3}})
    return Settings.model_validate(doc)


@pytest.mark.slow  # 10-20 s on the 2-core machine
async def test_a_record_that_breaks_the_processor_is_dead_lettered_and_changes_no_state(kafka_bootstrap: str) -> None:
    settings = _settings(kafka_bootstrap)
    proc = settings.stream_processors["check"]
    await ensure_topics(settings, required_topics(settings))
    rng = random.Random(5)
    inputs: list[tuple[int, str, int]] = []
    special = iter(sorted(FAILURES) * 3)  # each failure three times, spread over the input
    for i in range(RECORDS):
        value = next(special, None) if i % (RECORDS // 16) == 100 else None
        value = rng.randint(-500, 500) if value is None else value
        inputs.append((i, f"k{rng.randrange(12)}", value))
    assert sum(1 for _, _, v in inputs if v in FAILURES) == 15

    worker = Worker(settings)
    worker.runners[0].processor = Buggy("check", proc)
    task = asyncio.create_task(worker.run())
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=True)
    await producer.start()
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await wait_for(lambda: _ready(worker, task), timeout=60)
        # Only the broker knows now: the aggregates topic takes records of 20 KB at most.
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, proc.output_topics[1],
                                                  {"max.message.bytes": "20000"})])
        await wait_for(lambda: _max_message_bytes(admin, proc.output_topics[1]), timeout=30,
                       message=f"max.message.bytes of {proc.output_topics[1]} applied (20000)")
        for i, key, value in inputs:
            await producer.send(proc.input_topics[0], orjson.dumps({"id": i, "key": key, "value": value}),
                                key=key.encode())
        await producer.flush()

        async def drained() -> bool:
            assert not task.done(), task.exception()
            got = await read_topic(kafka_bootstrap, proc.output_topics[0])
            dlq = await read_topic(kafka_bootstrap, proc.dead_letter_topic)
            return len(got) >= RECORDS - 15 and len(dlq) >= 15

        await wait_for(drained, timeout=240, message="every good record echoed and every failure dead-lettered")
        await wait_until_settled(kafka_bootstrap, {proc.consumer_group: proc.input_topics},
                                 [*proc.output_topics, proc.dead_letter_topic], timeout=60,
                                 alive=lambda: _alive(task))
        health = worker.runners[0].health()
    finally:
        await producer.stop()
        await admin.close()
        worker.request_stop()
        await asyncio.wait_for(task, timeout=60)
    assert health["circuit_state"] == "closed" and health["problems"] == []

    # The five kinds of failure, three each, in the dead-letter topic with their reasons.
    dlq = await read_topic(kafka_bootstrap, proc.dead_letter_topic, schema="dead_letter")
    reasons = Counter(dict(r.headers)["reason"].decode() for r in dlq)
    assert reasons == {reason: 3 for reason in FAILURES.values()}
    for rec in dlq:
        headers = dict(rec.headers)
        value = orjson.loads(rec.value) if rec.value else None
        if headers["reason"] == b"uncommittable":
            assert rec.value == b"" and int(headers["value_truncated"]) > 0  # by reference: the source headers
        else:
            assert FAILURES[value["value"]] == headers["reason"].decode()

    # Every other record exactly once, with the aggregates of a run that never saw the failing ones.
    good = [(i, k, v) for i, k, v in inputs if v not in FAILURES]
    expected: dict[int, dict[str, Any]] = {}
    states: dict[str, KeyAggregate] = defaultdict(KeyAggregate)
    for i, key, value in good:
        states[key].update(value)
        agg = states[key]
        expected[i] = {"id": i, "key": key, "count": agg.count, "sum": agg.sum, "min": agg.min, "max": agg.max}
    echo = Counter(orjson.loads(r.value)["id"] for r in await read_topic(kafka_bootstrap, proc.output_topics[0]))
    assert echo == Counter(i for i, _, _ in good)
    aggregates = [orjson.loads(r.value) for r in await read_topic(kafka_bootstrap, proc.output_topics[1])]
    assert len(aggregates) == len(good)
    assert {a["id"]: a for a in aggregates} == expected

    # The changelog holds exactly that run's final state.
    final: dict[str, Any] = {}
    for rec in await read_topic(kafka_bootstrap, changelog_topic(settings, "check")):
        if not rec.key.startswith(OFFSET_KEY):
            final[rec.key.decode()] = orjson.loads(rec.value)
    assert final == {k: v.to_state() for k, v in states.items()}


def _alive(task: asyncio.Task[None]) -> None:
    assert not task.done(), task.exception()


async def _ready(worker: Worker, task: asyncio.Task[None]) -> bool:
    _alive(task)
    return all(r.ready for r in worker.runners)


async def _max_message_bytes(admin: AIOKafkaAdminClient, topic: str) -> bool:
    """Whether the broker reports ``topic``'s max.message.bytes as 20000 (it applies a change shortly after it
    answers the alter request)."""
    for response in await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)]):
        for _, _, _, _, entries in response.resources:
            if any(entry[0] == "max.message.bytes" and entry[1] == "20000" for entry in entries):
                return True
    return False
