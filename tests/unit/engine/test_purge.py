"""The repartition purger without a broker: what it deletes, when, and a refused purge retried later."""

from __future__ import annotations

from typing import Any

from aiokafka import OffsetAndMetadata, TopicPartition

from stream_processor.engine.purge import RepartitionPurger
from stream_processor.engine.settings import TopicSettings
from stream_processor.engine.topics import REPARTITION_CONFIGS, topic_configs

R0, R1, OTHER = TopicPartition("app-a-by-repartition", 0), TopicPartition("app-a-by-repartition", 1), TopicPartition(
    "orders", 0)


class Admin:
    def __init__(self) -> None:
        self.calls: list[dict[TopicPartition, int]] = []
        self.refuse = False

    async def delete_records(self, todo: dict[TopicPartition, Any]) -> None:
        if self.refuse:
            raise RuntimeError("TOPIC_AUTHORIZATION_FAILED")
        self.calls.append({tp: r.before_offset for tp, r in todo.items()})

    async def close(self) -> None:
        pass


async def test_only_committed_repartition_offsets_are_purged_once_an_interval() -> None:
    admin = Admin()

    async def make() -> Admin:
        return admin

    purger = RepartitionPurger({R0.topic}, make, interval_s=30)
    purger.note({R0: 10, OTHER: 99, R1: OffsetAndMetadata(4, "")})
    purger.note({R0: 7})  # an older commit's offsets never move it back
    start = purger._next - 30  # noqa: SLF001
    assert await purger.maybe_purge(start + 29) == {}  # not yet
    assert await purger.maybe_purge(start + 30) == {R0: 10, R1: 4}
    assert admin.calls == [{R0: 10, R1: 4}]
    purger.note({R0: 12})
    assert await purger.maybe_purge(start + 61) == {R0: 12}  # R1 did not move: not asked again
    admin.refuse = True
    purger.note({R1: 8})
    assert await purger.maybe_purge(start + 92) == {}  # refused: logged, kept for the next purge
    admin.refuse = False
    assert await purger.maybe_purge(start + 123) == {R1: 8}


def test_a_repartition_topic_keeps_its_records_until_purged() -> None:
    assert topic_configs("x-repartition", TopicSettings(partitions=4, repartition=True)) == REPARTITION_CONFIGS
    assert REPARTITION_CONFIGS["retention.ms"] == "-1"
    assert topic_configs("plain", TopicSettings(partitions=4)) == {}


def test_the_default_purge_interval_is_kafka_streams_30_s() -> None:
    async def make() -> Admin:
        return Admin()

    assert RepartitionPurger({R0.topic}, make).interval_s == 30.0  # repartition.purge.interval.ms's default
