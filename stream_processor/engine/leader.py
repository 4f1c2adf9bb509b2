"""Leader election among an app's workers, for ``on_leader=True`` timers and tasks (Faust's ``app.is_leader()``).

Faust elects its leader with a one-partition topic in the app's group (faust/assignor/leader_assignor.py: the member
assigned partition 0 of ``<app id>-__assignor-__leader`` is the leader). Here the same idea has its own group: every
worker of the app joins the consumer group ``<app id>-__leader`` on the one-partition topic ``<app id>-__leader``
(created when missing); the member the group assigns that partition to is the leader. At most one member holds the
partition at a time; when the leader dies (kill -9), the group gives the partition to another member after
``kafka.session_timeout_ms`` (6 s by default), which leads from then on. A leader that loses the partition
(rebalance, lost heartbeat) stops leading when aiokafka revokes it, before another member is assigned it.

Nothing is read from the topic: the member polls it only to stay in the group (aiokafka's max poll interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from .kafka_internals import force_metadata_update
from .security import client_options
from .settings import Settings, TopicSettings
from .topics import ensure_topics

log = logging.getLogger(__name__)

POLL_TIMEOUT_MS = 1_000  # each poll waits this long for (never expected) records: keeps the member polling
METADATA_RETRY_S = 0.2  # a topic just created reaches the metadata of every broker within moments


def leader_topic(app_id: str) -> str:
    """The election topic (and group) of app ``app_id``: ``<app id>-__leader``."""
    return f"{app_id}-__leader"


class LeaderElector(ConsumerRebalanceListener):
    """One worker's membership in its app's leader group; :attr:`is_leader` is True while it holds the partition.

    ``became_leader`` is set the first time it leads (an ``on_leader`` task waits for it).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = leader_topic(settings.app_id)
        self.is_leader = False
        self.became_leader = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None

    async def on_partitions_revoked(self, revoked: Any) -> None:
        """aiokafka's rebalance hook: leadership ends before the partition can go to another member."""
        if self.is_leader:
            log.info("no longer the leader of app %s", self.settings.app_id)
        self.is_leader = False

    async def on_partitions_assigned(self, assigned: Any) -> None:
        """aiokafka's rebalance hook: this member leads when it got the election partition."""
        self.is_leader = TopicPartition(self.topic, 0) in set(assigned)
        if self.is_leader:
            log.info("this worker (%s) is the leader of app %s", self.settings.processor_id, self.settings.app_id)
            self.became_leader.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Create the topic, join the group and stay in it until ``stopping`` is set (then leave it: the partition
        moves to another member at once). Broker errors are retried every second."""
        kafka = self.settings.kafka
        while not stopping.is_set():
            try:
                await ensure_topics(self.settings, {self.topic: TopicSettings(partitions=1)})
                consumer = AIOKafkaConsumer(
                    group_id=self.topic, enable_auto_commit=False, auto_offset_reset="latest",
                    session_timeout_ms=kafka.session_timeout_ms, heartbeat_interval_ms=kafka.heartbeat_interval_ms,
                    client_id=f"{self.settings.processor_id}-leader", **client_options(kafka))
                self._consumer = consumer
                await consumer.start()
                # The assigning member must know the new topic's partition, or it assigns it to nobody (aiokafka:
                # "No partition metadata") and no rebalance follows.
                while not consumer.partitions_for_topic(self.topic):
                    await force_metadata_update(consumer)
                    if not consumer.partitions_for_topic(self.topic):
                        await asyncio.sleep(METADATA_RETRY_S)
                consumer.subscribe([self.topic], listener=self)
                while not stopping.is_set():
                    await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - broker unreachable or the group rebalancing: try again
                log.warning("leader election of app %s: %r; retrying", self.settings.app_id, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), 1.0)
            finally:
                await self.close()

    async def close(self) -> None:
        """Leave the group (leadership ends)."""
        self.is_leader = False
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await consumer.stop()
