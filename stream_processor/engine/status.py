"""``GET /status``: every input partition of every processor, who owns it and how far it is.

The worker knows its own partitions in detail (transaction state, last commit, restore progress, circuit); the
consumer group, asked through the admin API at each request, gives the owner, the committed offset and the end
offset of the others. The document::

    {"processor_id", "version", "timestamp": float (s since the epoch),
     "processors": {name: {"consumer_group", "processing_mode", "state", "group_state", "group_error",
                           "partitions": [{"topic", "partition", "owner", "owned_here", "committed_offset",
                                           "end_offset", "lag", ...what this worker knows of its own...}]}}}

``owner`` is the owning member's client id and host (``"<processor_id> (host)"``; the worker's own
``processor_id`` for its partitions), None when no member owns it (a rebalance). ``committed_offset`` is the
group's committed offset (under exactly_once the offset marker in the changelog is the truth; they are equal after
every commit). ``end_offset`` is the last stable offset: what a read_committed reader can reach.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from .kafka_internals import AIOKafkaAdminClient, ConsumerProtocolMemberAssignment, force_metadata_update
from .security import client_options
from .version import __version__

if TYPE_CHECKING:
    from .runner import ProcessorRunner
    from .worker import Worker

log = logging.getLogger(__name__)

#: Seconds a ``/status`` request waits for the broker before it answers with what the worker knows alone.
STATUS_TIMEOUT_S = 5.0


class GroupView:
    """Asks the broker about the worker's consumer groups (one admin client and one consumer, opened lazily)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            options = client_options(self.worker.settings.kafka)
            client_id = f"{self.worker.settings.processor_id}-status"
            admin = AIOKafkaAdminClient(**options, client_id=client_id)
            consumer = AIOKafkaConsumer(**options, client_id=client_id, isolation_level="read_committed",
                                        enable_auto_commit=False)
            try:
                await admin.start()
                await consumer.start()
            except BaseException:
                await admin.close()
                await consumer.stop()
                raise
            self._admin, self._consumer = admin, consumer
        return self._admin, self._consumer

    async def close(self) -> None:
        """Close the clients (when the worker stops)."""
        if self._admin is not None:
            await self._admin.close()
        if self._consumer is not None:
            await self._consumer.stop()
        self._admin = self._consumer = None

    async def group(self, runner: ProcessorRunner) -> dict[str, Any]:
        """``{"state", "owners": {tp: owner}, "committed": {tp: offset}, "ends": {tp: offset}}`` of the runner's
        group and inputs. Raises the broker's error."""
        admin, consumer = await self._clients()
        group_id = runner.psettings.consumer_group
        owners: dict[TopicPartition, str] = {}
        state = None
        for response in await admin.describe_consumer_groups([group_id]):
            for group in response.to_object()["groups"]:
                state = group["state"]
                for member in group["members"]:
                    raw = member["member_assignment"]
                    if not raw:
                        continue
                    assignment = ConsumerProtocolMemberAssignment.decode(raw)
                    owner = f"{member['client_id']} ({member['client_host'].lstrip('/')})"
                    for topic, numbers in assignment.assignment:
                        for p in numbers:
                            owners[TopicPartition(topic, p)] = owner
        committed = {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group_id)).items()}
        tps: list[TopicPartition] = []
        for topic in runner.psettings.input_topics:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await force_metadata_update(consumer)  # first look at this topic
                partitions = consumer.partitions_for_topic(topic) or set()
            tps.extend(TopicPartition(topic, p) for p in sorted(partitions))
        ends = await consumer.end_offsets(tps) if tps else {}
        return {"state": state, "owners": owners, "committed": committed, "ends": ends, "partitions": tps}


async def status_document(worker: Worker, view: GroupView) -> dict[str, Any]:
    """The ``/status`` JSON of ``worker`` (see the module docstring)."""
    processors: dict[str, Any] = {}
    me = worker.settings.processor_id
    for runner in worker.runners:
        own = runner.partition_status()
        try:
            async with asyncio.timeout(STATUS_TIMEOUT_S):
                group = await view.group(runner)
            error = None
        except Exception as exc:  # noqa: BLE001 - the broker is down or slow: answer with what is known here
            group, error = {"state": None, "owners": {}, "committed": {}, "ends": {}, "partitions": sorted(own)}, (
                repr(exc) if str(exc) else type(exc).__name__)
        partitions = []
        for tp in sorted({*group["partitions"], *own}):
            mine = own.get(tp)
            committed = group["committed"].get(tp)
            end = group["ends"].get(tp)
            row: dict[str, Any] = {
                "topic": tp.topic,
                "partition": tp.partition,
                "owner": me if mine is not None else group["owners"].get(tp),
                "owned_here": mine is not None,
                "committed_offset": committed,
                "end_offset": end,
                "lag": max(0, end - committed) if end is not None and committed is not None else None,
            }
            if mine is not None:  # this worker's own view, where it has one, over the group's
                row.update({k: v for k, v in mine.items() if v is not None or k not in row})
            partitions.append(row)
        processors[runner.name] = {
            "consumer_group": runner.psettings.consumer_group,
            "processing_mode": runner.psettings.processing_mode,
            "state": runner.state,
            "group_state": group["state"],
            "group_error": error,
            "partitions": partitions,
        }
    return {"processor_id": me, "version": __version__, "timestamp": time.time(), "processors": processors}
