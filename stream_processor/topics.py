"""Every topic the project uses: names, partitions, compaction; created when missing."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from .runner import changelog_topic
from .settings import Settings, TopicSettings

log = logging.getLogger(__name__)


def required_topics(settings: Settings, processors: list[str] | None = None) -> dict[str, TopicSettings]:
    """The topics of the replay families and of ``processors`` (default: every enabled one).

    A processor's changelog gets as many partitions as its largest input topic, and is compacted.
    """
    names = set(settings.replay.topics.values())
    topics: dict[str, TopicSettings] = {}
    for name, proc in settings.stream_processors.items():
        if processors is not None and name not in processors or not proc.enabled:
            continue
        names.update(proc.input_topics, proc.output_topics, [proc.dead_letter_topic])
        partitions = max(settings.topic(t).partitions for t in proc.input_topics)
        topics[changelog_topic(settings, name)] = TopicSettings(partitions=partitions, compacted=True)
    topics.update({name: settings.topic(name) for name in names})
    return topics


async def ensure_topics(settings: Settings, topics: dict[str, TopicSettings]) -> list[str]:
    """Create the topics of ``topics`` that do not exist yet; returns the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
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
