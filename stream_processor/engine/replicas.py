"""Feeding the global tables' replicas (:class:`~stream_processor.engine.global_table.GlobalReplica`): every worker
reads, under ``read_committed`` and without a consumer group, every partition of the changelog of each processor
that keeps a global table, and applies each committed record to that table's replica.

:func:`sources` says which changelogs feed which tables; :func:`replicate` reads them (the worker runs it beside its
processors: it reads to the end offsets once before it returns from :meth:`Replicator.caught_up`, then follows);
:func:`feed_from` applies records already read (the test driver calls it after each commit).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from .kafka_internals import force_metadata_update
from .topics import changelog_topic

log = logging.getLogger(__name__)

__all__ = ["Replicator", "feed_from", "sources"]


Feeds = dict[str, list[tuple[str, Any]]]  # changelog topic -> [(processor name, global table)]


def sources(settings: Any, processors: Mapping[str, Any], tables: Mapping[str, Any]) -> Feeds:
    """Changelog topic -> [(processor name, global table)] for every global table of ``tables`` kept by one of
    ``processors`` (name -> Processor, its ``stores()`` naming the tables it keeps)."""
    out: Feeds = {}
    for name, processor in processors.items():
        kept = {spec.name for spec in processor.stores()}
        for table in tables.values():
            if getattr(table, "is_global", False) and table.name in kept:
                out.setdefault(changelog_topic(settings, name), []).append((name, table))
    return out


def feed_from(feeds: Mapping[str, list[tuple[str, Any]]], records: Iterable[Any]) -> None:
    """Apply committed changelog ``records`` (``topic``, ``partition``, ``offset``, ``key``, ``value``) to the
    replicas ``feeds`` names; a replica skips what it has already applied."""
    for rec in records:
        for processor, table in feeds.get(rec.topic, ()):
            table.replica.feed(processor, rec.partition, rec.offset, rec.key, rec.value)


class Replicator:
    """One read_committed consumer without a group over every partition of the changelogs in ``feeds``."""

    def __init__(self, feeds: Mapping[str, list[tuple[str, Any]]], consumer: Any) -> None:
        self.feeds = feeds
        self.consumer = consumer
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Read and apply until ``stop`` is set; :attr:`ready` is set once the end offsets seen at the start are
        reached. Raises what the consumer raises (the worker reports it)."""
        from aiokafka import TopicPartition

        await self.consumer.start()
        try:
            await force_metadata_update(self.consumer)  # partitions_for_topic answers from fetched metadata only
            tps = [TopicPartition(topic, p) for topic in self.feeds
                   for p in sorted(self.consumer.partitions_for_topic(topic) or ())]
            self.consumer.assign(tps)
            await self.consumer.seek_to_beginning(*tps)
            ends = await self.consumer.end_offsets(tps) if tps else {}
            while not stop.is_set():
                if not self.ready.is_set() and await self._caught_up(ends):
                    self.ready.set()
                batches = await self.consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    feed_from(self.feeds, records)
        finally:
            await self.consumer.stop()

    async def _caught_up(self, ends: Mapping[Any, int]) -> bool:
        for tp, end in ends.items():
            if await self.consumer.position(tp) < end:
                return False
        return True
