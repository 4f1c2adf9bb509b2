"""Test helpers: settings for an isolated run on the test broker, and reading whole topics."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_processor.engine.settings import DEFAULT_CONFIG, Settings, load_settings
from stream_processor.engine.testing import TestDriver
from stream_processor.schemas import topic_schemas, validate, validate_record

# Fields that parallel work is adding to these outputs and that their schemas do not document yet: dropped before
# validation. The integrator adds them to stream_processor/schemas/<name>/v1.json (as optional fields, then
# `python scripts/schema_docs.py --write`) and deletes the entry; tests/unit/test_schemas.py fails once an entry is
# documented.
PENDING_FIELDS: dict[str, frozenset[str]] = {}


def validate_output(schema: str, value: bytes | None, headers: Any = None, where: str = "") -> None:
    """Validate one record of a topic of output schema ``schema`` (``dead_letter``: its headers), without the
    :data:`PENDING_FIELDS`; AssertionError naming ``where``, the schema and the JSON path."""
    try:
        pending = PENDING_FIELDS.get(schema)
        if pending and value is not None:
            doc = orjson.loads(value)
            validate(schema, {k: v for k, v in doc.items() if k not in pending} if isinstance(doc, dict) else doc)
        else:
            validate_record(schema, value, headers)
    except ValueError as exc:
        raise AssertionError(f"{where}: {exc}") from None


def schemas_of(settings: Settings) -> dict[str, str]:
    """Topic -> output schema of every enabled processor's outputs and dead-letter topic (see
    ``stream_processor.schemas.topic_schemas``)."""
    return topic_schemas(settings)


def isolated_settings(
    bootstrap: str, mode: str = "exactly_once", processors: list[str] | None = None, **kafka: Any
) -> Settings:
    """The default config with every topic, group and app id made unique, on ``bootstrap``.

    ``processors`` names the processors left enabled (default: all of the shipped config's).
    """
    base = load_settings(DEFAULT_CONFIG, environ={})
    run = uuid.uuid4().hex[:8]
    doc = base.model_dump()
    doc["app_id"] = f"test-{run}"
    doc["kafka"].update(bootstrap_servers=[bootstrap], **kafka)
    rename = {name: f"{name}-{run}" for name in doc["topics"]}
    doc["topics"] = {rename[n]: spec for n, spec in doc["topics"].items()}
    doc["replay"]["topics"] = {k: rename.get(v, v) for k, v in doc["replay"]["topics"].items()}
    for name, proc in doc["stream_processors"].items():
        proc["enabled"] = processors is None or name in processors
        proc["consumer_group"] = f"{proc['consumer_group']}-{run}"
        proc["processing_mode"] = mode
        proc["input_topics"] = [rename.get(t, t) for t in proc["input_topics"]]
        proc["output_topics"] = [rename.get(t, t) for t in proc["output_topics"]]
        params = proc.get("params") or {}
        for holder, key in ((params, "smc_context_topic"), (params.get("smc") or {}, "context_topic"),
                            (params.get("volume_profile") or {}, "topic")):
            if holder.get(key) is not None:
                holder[key] = rename.get(holder[key], holder[key])
        proc["dead_letter_topic"] = rename.get(proc["dead_letter_topic"], proc["dead_letter_topic"])
    doc["monitoring"].update(host="127.0.0.1", metrics_port=0, health_check_port=0)
    return Settings.model_validate(doc)


async def read_topic(bootstrap: str, topic: str, isolation_level: str = "read_committed",
                     schema: str | None = None) -> list[Any]:
    """Every record of ``topic`` up to its current end (the last stable offset under read_committed).

    ``schema``: an output schema name (``enriched_trades``, ..., ``dead_letter`` for a dead-letter topic's headers;
    see :func:`schemas_of`): every record must conform to it (:func:`validate_output`), else AssertionError.
    """
    records = await _read_topic(bootstrap, topic, isolation_level)
    if schema is not None:
        for rec in records:
            validate_output(schema, rec.value, rec.headers, f"{topic}[{rec.partition}]@{rec.offset}")
    return records


async def _read_topic(bootstrap: str, topic: str, isolation_level: str) -> list[Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level=isolation_level, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        while True:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                return records
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                records.extend(batch)
    finally:
        await consumer.stop()


async def end_offsets(bootstrap: str, topic: str, isolation_level: str = "read_committed") -> int:
    """Sum of the end offsets of ``topic``'s partitions."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation_level)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def wait_for(predicate: Any, timeout: float, interval: float = 0.25) -> None:
    """Await the async ``predicate()`` until true; raise TimeoutError after ``timeout`` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def driver_run(bootstrap: str, settings: Settings, processors: list[str],
                     skip: frozenset[tuple[str, int, int]] | set[tuple[str, int, int]] = frozenset()) -> TestDriver:
    """The broker-less TestDriver run of ``processors`` over their input topics as the broker holds them (every
    record at its own partition and offset, topic by topic), without the ``skip`` records ``(topic, partition,
    offset)``: what the worker must have written, computed by the same code without Kafka."""
    driver = TestDriver(settings=settings, processors=processors, commit_every=1000)
    inputs = sorted({t for name in processors for t in settings.stream_processors[name].input_topics})
    for topic in inputs:
        for rec in await read_topic(bootstrap, topic, "read_uncommitted"):
            if (rec.topic, rec.partition, rec.offset) in skip:
                continue
            driver.pipe(topic, rec.value, rec.key, timestamp=rec.timestamp, headers=list(rec.headers or ()),
                        partition=rec.partition, offset=rec.offset)
    return driver


def unwrap_state(value: Any) -> Any:
    """A changelog snapshot's state without its layout version wrapper (``{"v": n, "state": ...}``)."""
    if isinstance(value, dict) and set(value) == {"v", "state"}:
        return value["state"]
    return value
