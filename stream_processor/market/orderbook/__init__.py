"""Per-symbol L2 order books rebuilt from depth snapshots and diffs, and their metrics."""

from stream_processor.market.orderbook.analytics import BookMetrics
from stream_processor.market.orderbook.book import (
    MAX_DEFERRED_TICKERS,
    RESYNC_POLICIES,
    BookSide,
    BookStatus,
    OrderBook,
    diff_state_bytes,
    max_state_bytes,
)

__all__ = [
    "MAX_DEFERRED_TICKERS",
    "RESYNC_POLICIES",
    "BookMetrics",
    "BookSide",
    "BookStatus",
    "OrderBook",
    "diff_state_bytes",
    "max_state_bytes",
]
