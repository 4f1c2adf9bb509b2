"""The group's partition assignor: partition q of every input topic goes to the same member (co-partitioning).

A processor with several input topics keeps one state per partition number q (its changelog partition q holds the
state of partition q of every input), so the member that owns q must own partition q of every input, as Kafka
Streams' assignor guarantees for co-partitioned topics. aiokafka's round-robin and range assignors do not.
Partition numbers are dealt to the members in turn, sorted by member id, so the split is even.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from .kafka_internals import (
    AbstractPartitionAssignor,
    ClusterMetadata,
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)


class CopartitionedAssignor(AbstractPartitionAssignor):
    """Assigns partition numbers, not topic-partitions: a member gets partition q of every subscribed topic.

    Members must subscribe to the same topics (every member of a processor's group does). A topic without partition
    q (inputs of different partition counts, which the runner refuses at start) simply contributes nothing to q.
    """

    name = "copartitioned"
    version = 0

    @classmethod
    def assign(
        cls, cluster: ClusterMetadata, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        topics = sorted({topic for meta in members.values() for topic in meta.subscription})
        partitions: dict[str, set[int]] = {t: set(cluster.partitions_for_topic(t) or ()) for t in topics}
        numbers = sorted(set().union(*partitions.values())) if partitions else []
        member_ids = sorted(members)
        assignment: dict[str, dict[str, list[int]]] = {m: defaultdict(list) for m in member_ids}
        for i, q in enumerate(numbers):
            member = member_ids[i % len(member_ids)]
            for topic in topics:
                if q in partitions[topic] and topic in members[member].subscription:
                    assignment[member][topic].append(q)
        return {
            m: ConsumerProtocolMemberAssignment(cls.version, sorted(assignment[m].items()), b"") for m in member_ids
        }

    @classmethod
    def metadata(cls, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"")

    @classmethod
    def on_assignment(cls, assignment: ConsumerProtocolMemberAssignment) -> None:
        pass
