"""Test helpers: settings for an isolated run on the test broker, reading whole topics, and waiting for a condition
(:func:`wait_for`; :func:`wait_until_settled` before reading what a worker wrote) instead of sleeping."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from stream_processor.engine.kafka_internals import force_metadata_update
from stream_processor.engine.partition_group import is_progress
from stream_processor.engine.settings import Settings, load_settings
from stream_processor.engine.testing import TestDriver
from stream_processor.market.schemas import topic_schemas, validate, validate_record
from stream_processor.market.settings import DEFAULT_CONFIG

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
                     schema: str | None = None, progress: bool = False) -> list[Any]:
    """Every record of ``topic`` up to its current end (the last stable offset under read_committed).

    ``schema``: an output schema name (``enriched_trades``, ..., ``dead_letter`` for a dead-letter topic's headers;
    see :func:`schemas_of`): every record must conform to it (:func:`validate_output`), else AssertionError.
    ``progress``: keep the progress records (engine/partition_group.py, header ``sp-progress``) a task writes to a
    topic co-partitioned with its input; left out by default, as every consumer of such a topic leaves them out.
    """
    records = await _read_topic(bootstrap, topic, isolation_level)
    if not progress:
        records = [r for r in records if not is_progress(r.headers)]
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
        await force_metadata_update(consumer)
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
    """Sum of the end offsets of ``topic``'s partitions (0 while the broker does not know the topic)."""
    return sum((await _ends(bootstrap, [topic], isolation_level, missing_ok=True)).values())


async def _ends(bootstrap: str, topics: Iterable[str], isolation_level: str,
                missing_ok: bool = False) -> dict[TopicPartition, int]:
    """The end offset of every partition of ``topics``: the last stable offset under ``read_committed``, the high
    watermark under ``read_uncommitted``. AssertionError for a topic the broker does not know, unless ``missing_ok``
    (then it has no partitions)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation_level)
    await consumer.start()
    try:
        await force_metadata_update(consumer)
        tps = []
        for topic in topics:
            partitions = consumer.partitions_for_topic(topic)
            assert partitions or missing_ok, f"topic {topic} does not exist"
            partitions = partitions or set()
            tps += [TopicPartition(topic, p) for p in sorted(partitions)]
        return dict(await consumer.end_offsets(tps)) if tps else {}
    finally:
        await consumer.stop()


async def group_lag(bootstrap: str, group: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """Records of ``topics`` that consumer group ``group`` has not committed, per partition: the high watermark minus
    the group's committed offset (0 where it has committed none). A worker commits past the transaction markers of a
    transactional input, so a drained partition's lag is 0."""
    ends = await _ends(bootstrap, topics, "read_uncommitted")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group, partitions=list(ends))
    finally:
        await admin.close()
    return {tp: end - max(0, committed[tp].offset if tp in committed else 0) for tp, end in ends.items()}


async def open_transactions(bootstrap: str, topics: Iterable[str]) -> list[TopicPartition]:
    """The partitions of ``topics`` where a transaction is open (neither committed nor aborted yet): their last stable
    offset is below their high watermark, and what follows it is not readable under read_committed yet."""
    topics = list(topics)
    stable = await _ends(bootstrap, topics, "read_committed")
    written = await _ends(bootstrap, topics, "read_uncommitted")
    return sorted(tp for tp, end in written.items() if stable[tp] < end)


async def wait_until_settled(bootstrap: str, groups: Mapping[str, Iterable[str]], outputs: Iterable[str] = (),
                             timeout: float = 120, alive: Callable[[], object] | None = None) -> None:
    """Wait until every consumer group of ``groups`` (group -> its input topics) has committed the end of its inputs
    and no transaction is open on ``outputs``.

    Then every output of those inputs is committed and readable, and nothing more is written until new input
    arrives: the positive signal to read outputs by, instead of sleeping long enough for a duplicate to show up.
    ``alive()`` runs before each poll (say, an assertion that the worker is still running). TimeoutError after
    ``timeout`` s naming the partitions still behind (with their lag) and those with an open transaction.
    """
    outputs = list(outputs)
    pending: dict[str, Any] = {}

    async def settled() -> bool:
        if alive is not None:
            alive()
        pending.clear()
        try:
            pending["uncommitted records"] = {f"{tp.topic}[{tp.partition}]": n for group, topics in groups.items()
                                              for tp, n in (await group_lag(bootstrap, group, topics)).items() if n}
            pending["open transactions"] = [f"{tp.topic}[{tp.partition}]"
                                            for tp in await open_transactions(bootstrap, outputs)]
        except KafkaError as exc:  # a group coordinator not elected or loading yet: ask again
            if not exc.retriable:
                raise
            pending["broker"] = repr(exc)
        return not any(pending.values())

    await wait_for(settled, timeout, interval=0.5, message=lambda: f"inputs committed and outputs settled ({pending})")


async def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.25,
                   message: str | Callable[[], object] = "condition") -> Any:
    """Call ``predicate()`` (a function, or one returning an awaitable) every ``interval`` s until it gives a true
    value, and return that value.

    Raises TimeoutError after ``timeout`` s: ``"<message>: not met within <timeout> s"``, where ``message`` names what
    was awaited, or is called then to describe it (the last state seen: the lag, the last answer, ...).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            what = message() if callable(message) else message
            raise TimeoutError(f"{what}: not met within {timeout} s")
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
