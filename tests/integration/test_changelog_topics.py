"""Changelog topics on a real broker: created with the configs that let compaction keep restores short
(:data:`~stream_processor.engine.topics.CHANGELOG_CONFIGS`), and an existing changelog topic created without them
given the ones it lacks, its own configs kept."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from stream_processor.engine.settings import Settings
from stream_processor.engine.topics import (
    CHANGELOG_CONFIGS,
    changelog_topic,
    ensure_topics,
    required_topics,
)
from tests.helpers import isolated_settings, wait_for

TOPIC_CONFIG = 1  # DescribeConfigs config_source: set on the topic itself


async def _configs(bootstrap: str, topic: str) -> dict[str, tuple[str, bool]]:
    """Every config of ``topic``: value, and whether the topic sets it itself."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = {}
        for response in await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)]):
            for error_code, _, _, _, entries in response.resources:
                assert error_code == 0
                for entry in entries:
                    found[entry[0]] = (entry[1], entry[3] == TOPIC_CONFIG)
        return found
    finally:
        await admin.close()


async def _settled(bootstrap: str, topic: str, check: Callable[[dict[str, tuple[str, bool]]], bool]
                   ) -> dict[str, tuple[str, bool]]:
    """The configs of ``topic`` once ``check`` holds for them (the broker applies a change shortly after it answers);
    TimeoutError with the last configs seen after 10 s."""
    seen: dict[str, tuple[str, bool]] = {}

    async def settled() -> dict[str, tuple[str, bool]] | None:
        try:
            seen.clear()
            seen.update(await _configs(bootstrap, topic))
        except AssertionError:  # not known to the broker we asked yet
            return None
        return dict(seen) if seen and check(seen) else None

    return await wait_for(settled, timeout=10, interval=0.1, message=lambda: f"configs of {topic} ({seen})")


async def _create(bootstrap: str, topic: str, partitions: int, configs: dict[str, str]) -> None:
    """Create ``topic`` with ``configs``, as an older version or an operator would have, and wait until it is known."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, partitions, 1, topic_configs=configs)])
        assert [error for _, error, *_ in response.topic_errors] == [0]

        async def listed() -> bool:
            return topic in await admin.list_topics()

        await wait_for(listed, timeout=10, interval=0.1, message=f"{topic} in the broker's topic list")
    finally:
        await admin.close()
    await _settled(bootstrap, topic, lambda found: all(found.get(k, (None,))[0] == v for k, v in configs.items()))


def _trades(bootstrap: str) -> tuple[Settings, str, dict[str, Any]]:
    settings = isolated_settings(bootstrap, processors=["trades"])
    topics = required_topics(settings, ["trades"])
    return settings, changelog_topic(settings, "trades"), topics


async def test_a_new_changelog_topic_is_created_with_the_compaction_configs(kafka_bootstrap: str) -> None:
    settings, changelog, topics = _trades(kafka_bootstrap)
    created = await ensure_topics(settings, topics)
    assert changelog in created
    configs = await _settled(kafka_bootstrap, changelog, lambda found: "segment.ms" in found)
    for name, value in CHANGELOG_CONFIGS.items():
        assert configs[name] == (value, True), name
    assert configs["cleanup.policy"][0] == "compact"
    assert int(configs["segment.bytes"][0]) > 1_048_588  # above the largest record a changelog takes
    assert float(configs["min.cleanable.dirty.ratio"][0]) < 0.5  # Kafka's default
    # The other topics are created as before: an input topic sets nothing of these.
    raw = settings.stream_processors["trades"].input_topics[0]
    raw_configs = await _settled(kafka_bootstrap, raw, lambda found: True)
    assert not any(raw_configs[name][1] for name in CHANGELOG_CONFIGS)
    assert raw_configs["cleanup.policy"][0] == "delete"
    # A second run finds everything in place and changes nothing.
    assert await ensure_topics(settings, topics) == []
    assert await _configs(kafka_bootstrap, changelog) == configs


async def test_an_existing_changelog_topic_gets_the_configs_it_lacks_and_keeps_its_own(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings, changelog, topics = _trades(kafka_bootstrap)
    # As an older version (or an operator) created it: compacted only, and with two configs of its own.
    await _create(kafka_bootstrap, changelog, topics[changelog].partitions,
                  {"cleanup.policy": "compact", "segment.ms": "3600000", "max.message.bytes": "2000000"})
    with caplog.at_level(logging.INFO, logger="stream_processor.engine.topics"):
        created = await ensure_topics(settings, topics)
    assert changelog not in created
    configs = await _settled(kafka_bootstrap, changelog, lambda found: found["segment.bytes"][1])
    assert configs["segment.ms"] == ("3600000", True)  # the topic's own choice is kept
    assert configs["max.message.bytes"] == ("2000000", True)  # and so is a config this project does not set
    for name, value in CHANGELOG_CONFIGS.items():
        if name != "segment.ms":
            assert configs[name] == (value, True), name
    assert any(changelog in r.getMessage() and "created without them" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="stream_processor.engine.topics"):
        await ensure_topics(settings, topics)  # nothing lacking any more: nothing set, nothing logged
    assert await _configs(kafka_bootstrap, changelog) == configs
    assert not [r for r in caplog.records if changelog in r.getMessage()]


async def test_a_changelog_topic_set_to_delete_is_reported_not_changed(
    kafka_bootstrap: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings, changelog, topics = _trades(kafka_bootstrap)
    await _create(kafka_bootstrap, changelog, topics[changelog].partitions, {"cleanup.policy": "delete"})
    with caplog.at_level(logging.INFO, logger="stream_processor.engine.topics"):
        await ensure_topics(settings, topics)
    configs = await _settled(kafka_bootstrap, changelog, lambda found: found["segment.ms"][1])
    assert configs["cleanup.policy"] == ("delete", True)  # an explicit choice: left as it is, but loudly
    assert configs["segment.ms"] == (CHANGELOG_CONFIGS["segment.ms"], True)  # what it lacked is still set
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(changelog in m and "cleanup.policy=delete" in m for m in errors)
