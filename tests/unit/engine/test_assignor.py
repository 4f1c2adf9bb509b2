"""The copartitioned assignor: partition q of every input topic goes to one member, evenly."""

from __future__ import annotations

from collections import Counter

from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from stream_processor.engine.assignor import CopartitionedAssignor


class Cluster:
    def __init__(self, partitions: dict[str, int]) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        n = self.partitions.get(topic)
        return None if n is None else set(range(n))


def _assign(partitions: dict[str, int], members: list[str]) -> dict[str, dict[str, list[int]]]:
    meta = {m: ConsumerProtocolMemberMetadata(0, sorted(partitions), b"") for m in members}
    result = CopartitionedAssignor.assign(Cluster(partitions), meta)  # type: ignore[arg-type]
    return {m: dict(a.assignment) for m, a in result.items()}


def test_each_partition_number_goes_to_one_member_for_every_topic() -> None:
    got = _assign({"trades": 8, "klines": 8}, ["m-b", "m-a", "m-c"])
    owners: dict[int, set[str]] = {}
    for member, topics in got.items():
        assert set(topics) == {"trades", "klines"}
        assert topics["trades"] == topics["klines"]
        for q in topics["trades"]:
            owners.setdefault(q, set()).add(member)
    assert sorted(owners) == list(range(8)) and all(len(o) == 1 for o in owners.values())
    assert sorted(Counter(len(t["trades"]) for t in got.values()).elements()) == [2, 3, 3]


def test_one_topic_and_more_members_than_partitions() -> None:
    got = _assign({"raw": 2}, ["a", "b", "c"])
    assert got == {"a": {"raw": [0]}, "b": {"raw": [1]}, "c": {}}


def test_metadata_names_the_subscription() -> None:
    assert CopartitionedAssignor.metadata(["x", "y"]).subscription == ["x", "y"]
