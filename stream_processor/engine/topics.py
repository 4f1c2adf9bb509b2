"""Every topic the project uses: names, partitions, compaction; created when missing."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from .security import client_options
from .settings import Settings, TopicSettings

log = logging.getLogger(__name__)

#: aiokafka's default ``max_request_size``: a produce request (so a record) is never larger.
MAX_REQUEST_BYTES = 1_048_576
#: Kafka's default ``max.message.bytes`` (message.max.bytes), for a topic whose config cannot be read.
DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
#: Room left for the record batch header (61 bytes) and the record's own framing (a few varints).
RECORD_OVERHEAD = 256


def changelog_topic(settings: Settings, name: str) -> str:
    """The compacted changelog topic of processor ``name``'s state."""
    return f"{settings.app_id}-{name}-state-changelog"


def required_topics(settings: Settings, processors: list[str] | None = None) -> dict[str, TopicSettings]:
    """The topics of the replay families and of ``processors`` (default: every enabled one).

    A processor's changelog gets as many partitions as its largest input topic, and is compacted.
    """
    names = set(settings.replay.topics.values()) if settings.replay is not None else set()
    topics: dict[str, TopicSettings] = {}
    for name, proc in settings.stream_processors.items():
        if processors is not None and name not in processors or not proc.enabled:
            continue
        names.update(proc.input_topics, proc.output_topics, [proc.dead_letter_topic])
        partitions = max(settings.topic(t).partitions for t in proc.input_topics)
        topics[changelog_topic(settings, name)] = TopicSettings(partitions=partitions, compacted=True)
    topics.update({name: settings.topic(name) for name in names})
    return topics


async def record_limits(settings: Settings, topics: list[str]) -> dict[str, int]:
    """The largest record (key + value + headers, in bytes) each of ``topics`` takes.

    That is the topic's ``max.message.bytes`` (read from the broker; Kafka's default if it cannot be read), at most
    the producer's request size, less :data:`RECORD_OVERHEAD`. A record within it is never refused as too large,
    since the runner's batches hold one record more only while they are below the limit.
    """
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    await admin.start()
    try:
        resources = [
            ConfigResource(ConfigResourceType.TOPIC, t, {"max.message.bytes": None}) for t in sorted(set(topics))
        ]
        found: dict[str, int] = {}
        for response in await admin.describe_configs(resources):
            for error_code, _, _, name, entries in response.resources:
                if error_code:
                    continue
                for entry in entries:
                    if entry[0] == "max.message.bytes" and entry[1]:
                        found[name] = int(entry[1])
    finally:
        await admin.close()
    return {t: min(found.get(t, DEFAULT_MAX_MESSAGE_BYTES), MAX_REQUEST_BYTES) - RECORD_OVERHEAD for t in topics}


async def ensure_topics(settings: Settings, topics: dict[str, TopicSettings]) -> list[str]:
    """Create the topics of ``topics`` that do not exist yet; returns the names created."""
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = []
        for name, spec in sorted(topics.items()):
            if name in existing:
                continue
            config = {}
            if spec.compacted:
                config["cleanup.policy"] = "compact"
            if spec.retention_ms is not None:
                config["retention.ms"] = str(spec.retention_ms)
            new.append(NewTopic(name, spec.partitions, settings.kafka.replication_factor, topic_configs=config))
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another worker created them first
            log.info("created topics %s", [t.name for t in new])
        return [t.name for t in new]
    finally:
        await admin.close()
