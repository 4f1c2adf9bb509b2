"""The order-book processor: a per-symbol L2 book from depth diffs and snapshots, and its metrics on every change."""

from __future__ import annotations

from typing import Any

import orjson

from ..exceptions import InvalidRecordError
from ..models import BookTicker, DepthSnapshot, DepthUpdate, MarketRecord
from ..orderbook.analytics import BookMetrics
from ..orderbook.book import BookStatus, OrderBook
from ..settings import OrderbookParams, OrderbookProcessorSettings
from ..state import ChangelogStore
from .base import Output, Processor

_EMITTING = frozenset({BookStatus.SNAPSHOT, BookStatus.APPLIED})


class OrderbookProcessor(Processor):
    """Keeps one :class:`~stream_processor.orderbook.book.OrderBook` per symbol and emits its metrics.

    Input: Binance ``depthUpdate`` diffs, REST/partial-depth snapshots and ``bookTicker`` (or the normalized
    form). A snapshot or an applied diff emits, to ``output_topics[0]`` keyed by symbol, the
    :class:`~stream_processor.orderbook.analytics.BookMetrics` of the book (best bid/ask, mid, spread and bps,
    microprice, band depth, imbalance, walls, ``state`` ok/crossed/locked/incomplete) plus ``venue``,
    ``book_status`` and the source (``source_topic, source_partition, source_offset``). A book out of sync (before
    its first snapshot, after a sequence gap or a bookTicker mismatch) emits nothing until a snapshot resyncs it.
    A bookTicker only checks the book.
    """

    def __init__(self, name: str, settings: OrderbookProcessorSettings) -> None:
        super().__init__(name, settings)
        self.params: OrderbookParams = settings.params
        self.output_topic = settings.output_topics[0]
        p = self.params
        self.metrics = BookMetrics(p.bands_bps, p.imbalance_levels, p.wall_levels, p.wall_multiple)

    def state_from(self, state: dict[str, Any]) -> OrderBook:
        return OrderBook.from_state(state)

    def process(
        self, record: MarketRecord, store: ChangelogStore, topic: str, partition: int, offset: int
    ) -> list[Output]:
        if not isinstance(record, DepthUpdate | DepthSnapshot | BookTicker):
            raise InvalidRecordError(f"orderbook processor takes depth and bookTicker records, got "
                                     f"{type(record).__name__}")
        symbol = record.symbol
        book = store.data.get(symbol)
        if book is None:
            book = OrderBook(symbol, self.params.depth_levels, self.params.max_pending)
            store.data[symbol] = book
        try:
            status = book.apply(record)  # type: ignore[union-attr]
        except ValueError as exc:
            raise InvalidRecordError(str(exc)) from None
        store.dirty.add(symbol)
        if status not in _EMITTING:
            return []
        metrics = self.metrics.compute(book)  # type: ignore[arg-type]
        if metrics is None:
            return []
        metrics.update(venue=record.venue, book_status=str(status), source_topic=topic,
                       source_partition=partition, source_offset=offset)
        return [(self.output_topic, symbol.encode(), orjson.dumps(metrics))]
