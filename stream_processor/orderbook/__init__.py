"""Per-symbol L2 order books rebuilt from depth snapshots and diffs, and their metrics."""

from stream_processor.orderbook.analytics import BookMetrics
from stream_processor.orderbook.book import BookSide, BookStatus, OrderBook

__all__ = ["BookMetrics", "BookSide", "BookStatus", "OrderBook"]
