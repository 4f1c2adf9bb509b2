"""Purging what a repartition topic's readers have committed, as Kafka Streams does (``repartition.purge.interval.ms``).

A ``group_by`` agent's repartition topic (``<app id>-<agent>-<name>-repartition``) is internal: its records keep
the Kafka timestamps of the input records they came from, so with Kafka's time-based retention a replay of data
older than ``retention.ms`` (7 days by default) could lose records the second stage has not read yet. It is
therefore created with ``retention.ms=-1`` (:data:`~stream_processor.engine.topics.REPARTITION_CONFIGS`), and the
processor reading it deletes (Kafka's DeleteRecords) each partition up to the offset it has committed, at most
every :data:`PURGE_INTERVAL_S`: only what every transaction that read it has committed, so nothing a restart
replays is gone. A broker that refuses (no DELETE permission on the topic) is logged once a purge, never raised: the
topic then grows until an operator sets a retention.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiokafka import TopicPartition

log = logging.getLogger(__name__)

#: How often a processor purges its repartition inputs (s): Kafka Streams' default repartition.purge.interval.ms.
PURGE_INTERVAL_S = 30.0


class RepartitionPurger:
    """Deletes the committed records of the repartition ``topics`` a processor reads (see the module docstring).
    ``admin``: called with no argument, returns a started AIOKafkaAdminClient (made when first needed)."""

    def __init__(self, topics: set[str], admin: Any, interval_s: float | None = None) -> None:
        self.topics = topics
        self._make_admin = admin
        self._admin: Any = None
        self.interval_s = PURGE_INTERVAL_S if interval_s is None else interval_s
        self.committed: dict[TopicPartition, int] = {}  # the next offset committed, not purged yet
        self.purged: dict[TopicPartition, int] = {}
        self._next = time.monotonic() + self.interval_s

    def note(self, offsets: dict[TopicPartition, Any]) -> None:
        """A commit landed with these next offsets (an int or an OffsetAndMetadata) per input partition."""
        for tp, offset in offsets.items():
            if tp.topic in self.topics:
                self.committed[tp] = max(getattr(offset, "offset", offset), self.committed.get(tp, 0))

    async def maybe_purge(self, now: float | None = None) -> dict[TopicPartition, int]:
        """Purge every partition committed past its last purge, if the interval has passed; returns what was
        purged (partition -> the new low watermark)."""
        now = time.monotonic() if now is None else now
        if now < self._next:
            return {}
        self._next = now + self.interval_s
        todo = {tp: o for tp, o in self.committed.items() if o > self.purged.get(tp, 0)}
        if not todo:
            return {}
        try:
            if self._admin is None:
                self._admin = await self._make_admin()
            from .kafka_internals import RecordsToDelete

            await self._admin.delete_records({tp: RecordsToDelete(before_offset=o) for tp, o in todo.items()})
        except Exception as exc:  # noqa: BLE001 - a refused purge leaves the records: logged, the next one retries
            log.warning("could not purge repartition records %s (%r): the topics keep them until a later purge or "
                        "a retention an operator sets", {f"{tp.topic}[{tp.partition}]": o for tp, o in todo.items()},
                        exc)
            return {}
        self.purged.update(todo)
        return todo

    async def close(self) -> None:
        if self._admin is not None:
            admin, self._admin = self._admin, None
            await admin.close()


def purger_for(settings: Any, input_topics: list[str]) -> RepartitionPurger | None:
    """A purger of the repartition topics among ``input_topics`` (None when there are none)."""
    topics = {t for t in input_topics if settings.topic(t).repartition}
    if not topics:
        return None

    async def admin() -> Any:
        from .kafka_internals import AIOKafkaAdminClient
        from .security import client_options

        client = AIOKafkaAdminClient(**client_options(settings.kafka), client_id=f"{settings.processor_id}-purge")
        await client.start()
        return client

    return RepartitionPurger(topics, admin)
