"""Trades with book: each trade joined with the latest order book of its symbol.

Two processors run in this app's worker:

- ``orderbook`` (the built-in processor, a YAML entry of ``type: orderbook``) turns the Binance depth diffs,
  snapshots and bookTickers of ``raw_orderbook`` into one JSON record of book metrics per book change on
  ``enriched_orderbook`` (best bid/ask, mid, spread_bps, microprice, ...), keyed by symbol;
- ``trades_with_book`` (the agent below) reads ``raw_trades`` and ``enriched_orderbook`` together. Both are keyed
  by symbol and have the same partition count (co-partitioned), so a symbol's trades and books reach the same task,
  in the order that task reads them. A book record replaces the symbol's entry in the ``latest_book`` table; a trade
  is sent to ``trades_with_book`` with that book's mid, spread and its distance from mid in bps. A trade that comes
  before any book of its symbol is skipped.

Run it with ``stream-processor -A examples.trades_with_book.app:app worker`` (see README.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stream_processor import App
from stream_processor.market.models import Trade

CONFIG = Path(__file__).with_name("config.yaml")
BPS = 10_000.0
BOOK_FIELDS = ("state", "update_id", "event_time_ms", "best_bid", "best_ask", "mid", "spread", "spread_bps",
               "microprice")  # what the table keeps of each enriched_orderbook record


def distance_bps(price: float, mid: float | None) -> float | None:
    """How far ``price`` is from ``mid``, in basis points of mid (positive above mid); None without a mid."""
    return None if mid is None else (price - mid) / mid * BPS


def make_app(settings: Mapping[str, Any] | None = None, topics: Mapping[str, str] | None = None) -> App:
    """The app. ``settings``: the configuration document instead of ``config.yaml``; ``topics``: other names for
    its agent's topics (``{"raw_trades": ..., "enriched_orderbook": ..., "trades_with_book": ...}``), e.g. to run
    it in isolation in a test (the ``orderbook`` entry of the settings names its own topics)."""
    name = dict(topics or {})
    app = App("trades-with-book", config=CONFIG if settings is None else None, settings=settings)
    trades = app.topic(name.get("raw_trades", "raw_trades"), value_type=Trade)
    books = app.topic(name.get("enriched_orderbook", "enriched_orderbook"))  # JSON, from the orderbook processor
    joined = app.topic(name.get("trades_with_book", "trades_with_book"))
    latest_book = app.Table("latest_book")  # venue/market/symbol -> the fields BOOK_FIELDS of its latest book

    @app.agent([trades, books], sink=[joined])
    async def trades_with_book(stream: Any) -> Any:
        async for value in stream:
            if stream.current_event.topic == books.name:
                key = f"{value['venue']}/{value['market']}/{value['symbol']}"
                latest_book[key] = {f: value.get(f) for f in BOOK_FIELDS}
                continue
            trade: Trade = value
            book = latest_book.get(f"{trade.venue}/{trade.market}/{trade.symbol}")
            if book is None:
                continue  # no book of this symbol yet
            mid = book["mid"]  # None unless the book's state is "ok" (crossed, locked and incomplete have none)
            yield {
                "venue": trade.venue,
                "market": trade.market,
                "symbol": trade.symbol,
                "trade_id": trade.trade_id,
                "price": trade.price,
                "size": trade.size,
                "side": trade.side,
                "time_ms": trade.time_ms,
                "mid": mid,
                "spread_bps": book["spread_bps"],
                "best_bid": book["best_bid"],
                "best_ask": book["best_ask"],
                "distance_bps": distance_bps(trade.price, mid),
                "book_state": book["state"],
                "book_update_id": book["update_id"],
                "book_age_ms": trade.time_ms - book["event_time_ms"] if book["event_time_ms"] is not None else None,
            }

    return app


app = make_app()
