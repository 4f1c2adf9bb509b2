"""The topics a worker needs: names, partitions, compaction; created when missing."""

from __future__ import annotations

import logging

from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from .kafka_internals import AIOKafkaAdminClient, ConfigResource, ConfigResourceType, NewTopic
from .security import client_options
from .settings import Settings, TopicSettings

log = logging.getLogger(__name__)

#: aiokafka's default ``max_request_size``: a produce request (so a record) is never larger.
MAX_REQUEST_BYTES = 1_048_576
#: Kafka's default ``max.message.bytes`` (message.max.bytes), for a topic whose config cannot be read.
DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
#: Room left for the record batch header (61 bytes) and the record's own framing (a few varints).
RECORD_OVERHEAD = 256

#: The end of every changelog topic's name (see :func:`changelog_topic`).
CHANGELOG_SUFFIX = "-state-changelog"

#: Topic configs of a changelog topic, so that compaction keeps restores short. A restore reads the whole partition:
#: what compaction left (one record per key, and recent transaction markers) plus what it has not cleaned yet, which
#: these bound:
#:
#: - ``segment.ms`` 10 min, ``segment.bytes`` 64 MiB: the cleaner never touches the active segment, which a quiet
#:   partition would otherwise keep for 7 days (Kafka's log.roll.hours) and a busy one up to the broker's
#:   log.segment.bytes (1 GiB by default), every record of it read on each restore. A segment rolls at the first
#:   append after 10 minutes or at 64 MiB (above the largest record a changelog takes, 1 MiB); later cleaning
#:   passes merge small cleaned segments (up to segment.bytes each), so the segment count stays small.
#: - ``min.cleanable.dirty.ratio`` 0.1 (Kafka: 0.5): a closed segment is cleaned once the uncleaned part is a tenth
#:   of the log, not half of it. The compacted part of a changelog is small (keys x snapshot), so cleaning it more
#:   often costs little.
#: - ``min.compaction.lag.ms`` 0: a record can be compacted as soon as its segment is closed (Kafka's default, set so
#:   that a broker-wide lag does not apply).
#: - ``delete.retention.ms`` 1 h (Kafka: 1 day): how long the cleaner keeps a tombstone, and the commit marker of a
#:   transaction whose records it has all removed, after it first passes them. Every transaction leaves a marker in
#:   the changelog partition (10 per second on a busy one), so with a day's retention a compacted partition still
#:   holds up to ~864,000 of them, all read on a restore. A reader only misses a tombstone if it reads the key's
#:   older value and the tombstone more than an hour apart: a restore takes seconds, and a store kept across a
#:   rebalance catches up within that rebalance.
#:
#: :func:`ensure_topics` creates changelog topics with them and sets those an existing changelog topic lacks.
CHANGELOG_CONFIGS: dict[str, str] = {
    "cleanup.policy": "compact",
    "segment.ms": str(10 * 60 * 1000),
    "segment.bytes": str(64 * 1024 * 1024),
    "min.cleanable.dirty.ratio": "0.1",
    "min.compaction.lag.ms": "0",
    "delete.retention.ms": str(60 * 60 * 1000),
}

#: DescribeConfigs ``config_source`` of a config set on the topic itself (not a broker or Kafka default).
_TOPIC_CONFIG_SOURCE = 1


def changelog_topic(settings: Settings, name: str) -> str:
    """The compacted changelog topic of processor ``name``'s state."""
    return f"{settings.app_id}-{name}{CHANGELOG_SUFFIX}"


def is_changelog(name: str, spec: TopicSettings) -> bool:
    """True for a processor's changelog topic (compacted, named by :func:`changelog_topic`)."""
    return spec.compacted and name.endswith(CHANGELOG_SUFFIX)


#: The configs of a repartition topic (Kafka Streams' InternalTopicManager for repartition topics): records kept
#: until their reader purges them (engine/purge.py), whatever their timestamps, in segments small enough to delete.
REPARTITION_CONFIGS = {"cleanup.policy": "delete", "retention.ms": "-1", "segment.bytes": str(50 * 1024 * 1024),
                       "segment.ms": str(10 * 60 * 1000)}


def topic_configs(name: str, spec: TopicSettings) -> dict[str, str]:
    """The topic configs ``name`` is created with: :data:`CHANGELOG_CONFIGS` for a changelog topic,
    :data:`REPARTITION_CONFIGS` for a repartition topic, ``cleanup.policy=compact`` for another compacted one,
    ``retention.ms`` if the spec sets it."""
    config = dict(CHANGELOG_CONFIGS) if is_changelog(name, spec) else {}
    if spec.repartition:
        config.update(REPARTITION_CONFIGS)
    if spec.compacted:
        config["cleanup.policy"] = "compact"
    if spec.retention_ms is not None:
        config["retention.ms"] = str(spec.retention_ms)
    return config


def required_topics(settings: Settings, processors: list[str] | None = None) -> dict[str, TopicSettings]:
    """The topics of ``processors`` (default: every enabled one): inputs, outputs (:meth:`sends_to`), dead-letter
    topic and changelog, each with its settings (:meth:`Settings.topic`).

    A processor's changelog gets as many partitions as its largest input topic, and is compacted. Topics an app
    declares itself (``app.topic``) are not here: the worker adds them.
    """
    names: set[str] = set()
    topics: dict[str, TopicSettings] = {}
    for name, proc in settings.stream_processors.items():
        if processors is not None and name not in processors or not proc.enabled:
            continue
        names.update(proc.input_topics, proc.sends_to(), [proc.dead_letter_topic])
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
    """Create the topics of ``topics`` that do not exist yet; returns the names created.

    A changelog topic is created with :data:`CHANGELOG_CONFIGS`; an existing one gets those it does not set itself
    (see :func:`update_changelog_configs`).
    """
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = []
        for name, spec in sorted(topics.items()):
            if name in existing:
                continue
            new.append(NewTopic(name, spec.partitions, settings.kafka.replication_factor,
                                topic_configs=topic_configs(name, spec)))
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # another worker created them first
            log.info("created topics %s", [t.name for t in new])
        changelogs = sorted(name for name, spec in topics.items() if name in existing and is_changelog(name, spec))
        if changelogs:
            await update_changelog_configs(admin, changelogs)
        return [t.name for t in new]
    finally:
        await admin.close()


async def update_changelog_configs(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, dict[str, str]]:
    """Set the :data:`CHANGELOG_CONFIGS` that existing changelog ``topics`` do not set themselves; returns what was
    set, by topic.

    A changelog topic created before these configs (or by hand) restores more slowly each day, so it gets them once,
    logged. A config the topic sets itself is left as it is, an operator's choice: only a ``cleanup.policy``
    without ``compact`` is logged (as an error: retention then deletes state). Kafka's AlterConfigs replaces all of
    a topic's own configs, so the ones it has are sent again with the new ones (aiokafka has no
    IncrementalAlterConfigs); a topic whose own configs cannot all be read (a sensitive one) is left alone, logged.
    Never raises for a broker that refuses (no ALTER_CONFIGS permission, an old broker): it logs what to set.
    """
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
    except KafkaError as exc:
        log.warning("cannot read the configs of changelog topics %s (%r); a changelog topic should have %s", topics,
                    exc, CHANGELOG_CONFIGS)
        return {}
    changes: dict[str, dict[str, str]] = {}
    resources = []
    for response in responses:
        for error_code, _, _, name, entries in response.resources:
            if error_code:
                log.warning("cannot read the configs of changelog topic %s (%s); it should have %s", name,
                            for_code(error_code).__name__, CHANGELOG_CONFIGS)
                continue
            own: dict[str, str | None] = {}
            for entry in entries:
                source = entry[3]  # DescribeConfigs v0: is_default (bool); v1 and later: config_source
                if (not source) if isinstance(source, bool) else source == _TOPIC_CONFIG_SOURCE:
                    own[entry[0]] = entry[1]
            policy = own.get("cleanup.policy")
            if policy is not None and "compact" not in policy.split(","):
                log.error("changelog topic %s has cleanup.policy=%s: retention deletes state that restores need; "
                          "set cleanup.policy=compact", name, policy)
            missing = {k: v for k, v in CHANGELOG_CONFIGS.items() if k not in own}
            if not missing:
                continue
            if any(v is None for v in own.values()):
                log.warning("changelog topic %s lacks %s, but its own configs cannot all be read to keep them; set "
                            "them by hand (kafka-configs --alter --add-config)", name, missing)
                continue
            changes[name] = missing
            resources.append(ConfigResource(ConfigResourceType.TOPIC, name, {**own, **missing}))
    if not resources:
        return {}
    try:
        responses = await admin.alter_configs(resources)
    except KafkaError as exc:
        log.warning("cannot set the configs of changelog topics %s (%r): %s", sorted(changes), exc, changes)
        return {}
    for response in responses:
        for error_code, message, _, name, *_ in response.resources:
            if error_code:
                log.warning("cannot set %s on changelog topic %s (%s: %s); restores read more than they need",
                            changes.pop(name, {}), name, for_code(error_code).__name__, message)
    for name, missing in changes.items():
        log.info("changelog topic %s: set %s (it was created without them)", name, missing)
    return changes
