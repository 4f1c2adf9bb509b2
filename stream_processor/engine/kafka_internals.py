"""Every use of aiokafka's private attributes and non-public module paths, and of one asyncio internal, in one place.

The engine needs a few things aiokafka 0.14.0 has no public API for: a consumer's fetch position without awaiting,
a group rejoin on demand, the group generation, a metadata refresh of a consumer's own client, whether a producer is
in a transaction or was fenced, and a one-shot metadata request that reports failure instead of retrying. Each is a
small function here that says what it reads, why no public API does it, and what it returns when aiokafka has no
such object (a consumer not started, a producer that is not transactional). No other engine module reads an
underscore attribute of an aiokafka object or imports an aiokafka submodule other than ``aiokafka`` itself and
``aiokafka.errors``: the non-public classes it needs are re-exported from here.

The contract: ``tests/unit/engine/test_kafka_internals.py`` builds real aiokafka objects (no broker) and checks every
attribute chain below and its type, plus the type stubs in ``stubs/aiokafka`` (mypy's stubtest), against the
installed aiokafka, whose version must be the one pinned in requirements.txt. When bumping aiokafka, re-read each
function against the new source and run that test: a moved or retyped attribute fails it, not production.

An attribute that is *gone* (an aiokafka upgrade that moved it, which that test catches first) raises
AttributeError from the functions that act or whose answer has no safe default, and gives the "unknown" answer
(None) from the two whose callers already handle "unknown" (:func:`consumed_position`, :func:`group_generation`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Iterable

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.admin.records_to_delete import RecordsToDelete
from aiokafka.cluster import ClusterMetadata
from aiokafka.conn import create_conn
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata
from aiokafka.errors import ProducerFenced
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import RecordMetadata

__all__ = [
    # functions over private attributes
    "consumed_position", "force_metadata_update", "group_generation", "metadata_update", "producer_fenced",
    "producer_in_transaction", "release_future", "request_rejoin",
    # re-exports of non-public module paths
    "AIOKafkaAdminClient", "AbstractPartitionAssignor", "BatchBuilder", "ClusterMetadata", "ConfigResource",
    "ConfigResourceType", "ConsumerProtocolMemberAssignment", "ConsumerProtocolMemberMetadata", "DefaultPartitioner",
    "NewTopic", "RecordMetadata", "RecordsToDelete", "create_conn", "create_ssl_context",
    # ours
    "Partitioner",
]


class Partitioner(DefaultPartitioner):
    """aiokafka's DefaultPartitioner (murmur2 of the key, as Kafka's Java client), drawing the partition of a keyless
    record from its own ``random.Random``: the program's global ``random`` state is left alone (a program that seeds
    it draws what it would draw without the engine; aiokafka's draws from the global one)."""

    def __init__(self) -> None:
        self._random = random.Random()  # noqa: S311 - a partition, not a secret

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:  # type: ignore[override]
        if key is None:
            return self._random.choice(available or all_partitions)
        return int(DefaultPartitioner.__call__(key, all_partitions, available))


def consumed_position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """The consumer's fetch position in ``tp`` (the offset of the next record it will return), without awaiting.

    Reads ``consumer._subscription.subscription.assignment.state_value(tp)`` and its ``has_valid_position`` and
    ``position``. The public ``await consumer.position(tp)`` waits until a position is known (an offset reset, a
    committed-offset fetch), which a commit in progress must not do; aiokafka's own ``last_stable_offset`` and
    ``highwater`` read the same state object.

    Returns None when the consumer has no subscription or assignment yet, ``tp`` is not assigned to it (mid-rebalance),
    its position is not known yet (after an assignment or a ``seek_to_*``), or the chain is gone.
    """
    try:
        subscription = consumer._subscription.subscription
        assignment = subscription.assignment if subscription is not None else None
        state = assignment.state_value(tp) if assignment is not None else None
        return state.position if state is not None and state.has_valid_position else None
    except AttributeError:
        return None


def group_generation(consumer: AIOKafkaConsumer) -> int | None:
    """The consumer group generation this consumer last joined (for logs), from ``consumer._coordinator.generation``.

    aiokafka exposes no generation. None before ``start()`` (no coordinator), for a consumer without ``group_id``
    (its NoGroupCoordinator has none), before the first join (aiokafka's -1, ``DEFAULT_GENERATION_ID``), or when the
    chain is gone.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    if not isinstance(coordinator, GroupCoordinator):
        return None
    generation = getattr(coordinator, "generation", None)
    return generation if isinstance(generation, int) and generation >= 0 else None


def request_rejoin(consumer: AIOKafkaConsumer) -> None:
    """Make the consumer leave its current generation and join the group again at its next poll (a rebalance).

    Calls ``consumer._coordinator.request_rejoin()``, what aiokafka itself does on a metadata change; aiokafka has no
    public ``enforce_rebalance`` (the Java client's). A no-op before ``start()`` and for a consumer without
    ``group_id`` (no group to rejoin). Raises AttributeError if aiokafka no longer has it.
    """
    coordinator = consumer._coordinator
    if isinstance(coordinator, GroupCoordinator):
        coordinator.request_rejoin()


def force_metadata_update(consumer: AIOKafkaConsumer) -> Awaitable[bool]:
    """Refresh the cluster metadata of the consumer's own client now; await the result (True once it succeeded).

    Calls ``consumer._client.force_metadata_update()`` (public on AIOKafkaClient, but the consumer's client is
    private). ``partitions_for_topic`` only answers from metadata already fetched, and a consumer fetches a topic's
    metadata only once it subscribes to or is assigned the topic; this refreshes it for a topic it only looks at. The
    refresh happens in the client's background task: the awaitable never completes before ``start()``. Raises
    AttributeError if aiokafka no longer has it.
    """
    return consumer._client.force_metadata_update()


def metadata_update(client: AIOKafkaClient, topics: Iterable[str]) -> Awaitable[bool]:
    """One metadata request for ``topics``: await True when a broker answered, False when none did (or the answer
    named no broker). Never retries, never raises for an unreachable broker.

    Calls ``client._metadata_update(ClusterMetadata(), topics)`` with a throw-away ClusterMetadata, so the answer is
    not applied to the client's own metadata. The worker's broker probe needs exactly this: the public
    ``force_metadata_update`` waits for the background task (which retries), ``fetch_all_metadata`` asks for every
    topic and raises. Raises AttributeError if aiokafka no longer has it.
    """
    return client._metadata_update(ClusterMetadata(), list(topics))


def producer_in_transaction(producer: AIOKafkaProducer) -> bool:
    """True while the producer is in a transaction (begun, neither committing nor aborting nor in error).

    Reads ``producer._txn_manager.is_in_transaction()``: aiokafka exposes no transaction state, and its
    ``abort_transaction`` fails with an AssertionError outside a transaction, so a caller that aborts "whatever is
    open" asks first. False for a producer that is neither idempotent nor transactional (no transaction manager).
    Raises AttributeError if aiokafka no longer has it.
    """
    manager = producer._txn_manager
    return manager is not None and manager.is_in_transaction()


def producer_fenced(producer: AIOKafkaProducer) -> bool:
    """True once the producer's sender task ended with ProducerFenced: a newer producer has its ``transactional.id``
    (the partition's next owner), or the broker aborted a transaction that outlived ``transaction_timeout_ms``.

    Reads ``producer._sender.sender_task``: aiokafka then fails the pending batches and later calls with other errors
    (or none: ``begin_transaction`` only changes local state), so only the task says it was fenced. False before
    ``start()`` (no task), while it runs, when it was cancelled (``stop()``) or ended with another error. Raises
    AttributeError if aiokafka no longer has it.
    """
    task = producer._sender.sender_task
    if task is None or not task.done() or task.cancelled():
        return False
    return isinstance(task.exception(), ProducerFenced)


def release_future(fut: object) -> None:
    """Acknowledge a future that a coroutine driven by hand yielded, as an asyncio Task does, before awaiting it.

    asyncio's Future protocol (``asyncio/futures.py``): ``await fut`` sets ``fut._asyncio_future_blocking = True``
    and yields ``fut`` to whoever drives the coroutine; the Task that receives it sets the flag back to False and
    waits for it (``Task.__step``), and a future yielded with the flag False is a ``yield`` instead of an ``await``
    (a RuntimeError). The agent driver (engine/agent.py) runs an agent's coroutine step by step with ``send(None)``,
    in place of a Task, so it receives the future itself; it clears the flag as the Task would, then awaits the
    future from its own task. No public API does this: there is no public way to drive a coroutine that awaits
    asyncio futures other than a Task. Objects that are not asyncio futures (``asyncio.isfuture``: they have no
    such flag) are left alone.
    """
    if asyncio.isfuture(fut):
        fut._asyncio_future_blocking = False
