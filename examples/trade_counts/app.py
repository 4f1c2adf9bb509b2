"""Trade counts: per symbol, the trades and the volume of each 1-minute tumbling window of trade time.

For every trade of ``raw_trades`` the agent adds it to its window (``[start, start + 60 s)`` of the trade's own
``time_ms``, aligned to the epoch) and sends the window's running value to ``trade_counts``, keyed by symbol. The
windows live in two windowed tables (changelog-backed, restored on restart); a window is dropped (tombstoned in the
changelog) once the symbol's partition has seen a trade ``EXPIRES_S`` seconds past the window's end.

Run it with ``stream-processor -A examples.trade_counts.app:app worker`` (see README.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stream_processor import App
from stream_processor.market.models import Trade

CONFIG = Path(__file__).with_name("config.yaml")
WINDOW_S = 60.0  # tumbling window size
EXPIRES_S = 300.0  # a window is kept this long past its end (by trade time), then deleted


def state_key(trade: Trade) -> str:
    """The windows' key: venue, market and symbol (spot and USD-M BTCUSDT are counted apart)."""
    return f"{trade.venue}/{trade.market}/{trade.symbol}"


def make_app(settings: Mapping[str, Any] | None = None, topics: Mapping[str, str] | None = None) -> App:
    """The app. ``settings``: the configuration document instead of ``config.yaml``; ``topics``: other names for
    its topics (``{"raw_trades": ..., "trade_counts": ...}``), e.g. to run it in isolation in a test."""
    name = dict(topics or {})
    app = App("trade-counts", config=CONFIG if settings is None else None, settings=settings)
    trades = app.topic(name.get("raw_trades", "raw_trades"), value_type=Trade)
    out = app.topic(name.get("trade_counts", "trade_counts"))
    window_ms = int(WINDOW_S * 1000)
    # Windows by the trade's time (not the Kafka timestamp, which is when the connector published it).
    # Faust's window times are seconds: the trade's time_ms / 1000.
    # Windows expire by the table's stream time (the trades' own), not by Faust's wall-clock cleanup: a replay of
    # old trades gives the same counts.
    counts = app.Table("trade_counts", default=int).tumbling(
        WINDOW_S, expires=EXPIRES_S, expire_by="stream_time").relative_to_field(lambda trade: trade.time_ms / 1000)
    volume = app.Table("volume", default=float).tumbling(
        WINDOW_S, expires=EXPIRES_S, expire_by="stream_time").relative_to_field(lambda trade: trade.time_ms / 1000)

    @app.agent(trades, sink=[out])
    async def trade_counts(stream: Any) -> Any:
        async for trade in stream:
            key = state_key(trade)
            counts[key] += 1
            volume[key] += trade.size
            start = trade.time_ms - trade.time_ms % window_ms
            yield {
                "venue": trade.venue,
                "market": trade.market,
                "symbol": trade.symbol,
                "window_start_ms": start,
                "window_end_ms": start + window_ms,
                "trades": counts[key].value(),
                "volume": volume[key].value(),
                "trade_id": trade.trade_id,
                "time_ms": trade.time_ms,
            }

    return app


app = make_app()
