"""The order-book processor: a per-symbol L2 book from depth diffs and snapshots, and its metrics on every change."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from ...engine.exceptions import InvalidRecordError
from ...engine.processor import ProcessorContext
from ..models import BookTicker, DepthSnapshot, DepthUpdate, MarketRecord
from ..orderbook.analytics import BookMetrics
from ..orderbook.book import BookStatus, OrderBook
from ..settings import OrderbookParams, OrderbookProcessorSettings
from .base import MarketProcessor, state_key

log = logging.getLogger(__name__)

_EMITTING = frozenset({BookStatus.SNAPSHOT, BookStatus.APPLIED, BookStatus.UNSYNCED})
_LOST = {BookStatus.GAP: "book_gap", BookStatus.MISMATCH: "book_mismatch"}


class OrderbookProcessor(MarketProcessor):
    """Keeps one :class:`~stream_processor.market.orderbook.book.OrderBook` per symbol and emits its metrics.

    Input: Binance ``depthUpdate`` diffs, REST/partial-depth snapshots and ``bookTicker`` (or the normalized
    form). A snapshot or an applied diff emits, to ``output_topics[0]`` keyed by symbol, the
    :class:`~stream_processor.market.orderbook.analytics.BookMetrics` of the book (best bid/ask, mid, spread and bps,
    microprice, band depth, imbalance, walls, ``state`` ok/crossed/locked/incomplete) plus ``venue``,
    ``book_status`` and the source (``source_topic, source_partition, source_offset``). A book out of sync (before
    its first snapshot, after a sequence gap or a bookTicker mismatch) emits nothing until a snapshot resyncs it
    under ``params.resync: snapshot``; under ``unsynced`` it goes on applying diffs and emits with ``state:
    "unsynced"``. A gap or a mismatch is counted (events ``book_gap``, ``book_mismatch``) and logged once until
    the book is in sync again. A bookTicker only checks the book. Books are kept per venue, market and symbol.
    """

    def __init__(self, name: str, settings: OrderbookProcessorSettings) -> None:
        super().__init__(name, settings)
        self.params: OrderbookParams = settings.params
        self.output_topic = settings.output_topics[0]
        p = self.params
        self.metrics = BookMetrics(p.bands_bps, p.imbalance_levels, p.wall_levels, p.wall_multiple)
        self._out_of_sync: set[str] = set()  # books whose loss of sync was logged (memory only: for the log)

    def state_from(self, state: dict[str, Any]) -> OrderBook:
        return OrderBook.from_state(state)

    def process(self, record: MarketRecord, ctx: ProcessorContext) -> None:
        if not isinstance(record, DepthUpdate | DepthSnapshot | BookTicker):
            raise InvalidRecordError(f"orderbook processor takes depth and bookTicker records, got "
                                     f"{type(record).__name__}")
        symbol = record.symbol
        key = state_key(record)
        store = ctx.state()
        book = store.data.get(key)
        if book is None:
            p = self.params
            book = OrderBook(symbol, p.depth_levels, p.max_pending, max_pending_bytes=p.max_pending_bytes,
                             resync=p.resync)
        try:
            status = book.apply(record)  # type: ignore[union-attr]  # checked before any change
        except ValueError as exc:
            raise InvalidRecordError(str(exc)) from None
        store.data[key] = book
        store.dirty.add(key)
        lost = _LOST.get(status)
        if lost is not None:
            self.events[lost] += 1
            if key not in self._out_of_sync:
                self._out_of_sync.add(key)
                log.warning("order book %s lost sync (%s at update id %s); %s", key, status,
                            getattr(record, "last_update_id", getattr(record, "update_id", None)),
                            "emitting with state 'unsynced' until the next snapshot" if self.params.resync ==
                            "unsynced" else "nothing is emitted until the next snapshot")
        elif status is BookStatus.SNAPSHOT and key in self._out_of_sync:
            self._out_of_sync.discard(key)
            log.info("order book %s is in sync again (snapshot at update id %s)", key, book.last_update_id)
        if status not in _EMITTING:
            return
        metrics = self.metrics.compute(book)  # type: ignore[arg-type]
        if metrics is None:
            return
        metrics.update(venue=record.venue, market=record.market, book_status=str(status), source_topic=ctx.topic,
                       source_partition=ctx.partition, source_offset=ctx.offset)
        ctx.send(self.output_topic, orjson.dumps(metrics), symbol.encode())
