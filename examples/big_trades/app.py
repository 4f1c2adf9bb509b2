"""Big trades: a stateless filter. Every trade of ``raw_trades`` whose notional (price x size, in the quote currency)
is above ``params.min_notional`` goes to ``big_trades``, keyed by symbol, exactly once.

Run it with ``stream-processor -A examples.big_trades.app:app worker`` (see README.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from stream_processor import App
from stream_processor.market.models import Trade

CONFIG = Path(__file__).with_name("config.yaml")


class BigTradesParams(BaseModel):
    """``stream_processors.big_trades.params`` in the YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_notional: float = Field(default=10_000.0, gt=0)  # quote currency (USDT for BTCUSDT)


def notional(trade: Trade) -> float:
    """The trade's value in the quote currency."""
    return trade.price * trade.size


def make_app(settings: Mapping[str, Any] | None = None, topics: Mapping[str, str] | None = None) -> App:
    """The app. ``settings``: the configuration document instead of ``config.yaml``; ``topics``: other names for
    its topics (``{"raw_trades": ..., "big_trades": ...}``), e.g. to run it in isolation in a test."""
    name = dict(topics or {})
    app = App("big-trades", config=CONFIG if settings is None else None, settings=settings)
    trades = app.topic(name.get("raw_trades", "raw_trades"), value_type=Trade)  # checked Binance/normalized trades
    big = app.topic(name.get("big_trades", "big_trades"))

    @app.agent(trades, sink=[big], params=BigTradesParams)
    async def big_trades(stream: Any) -> Any:
        limit = stream.params.min_notional  # stream.params: the validated BigTradesParams of the YAML
        async for trade in stream.filter(lambda t: notional(t) > limit):
            yield {
                "venue": trade.venue,
                "market": trade.market,
                "symbol": trade.symbol,
                "trade_id": trade.trade_id,
                "price": trade.price,
                "size": trade.size,
                "side": trade.side,
                "notional": notional(trade),
                "time_ms": trade.time_ms,
            }

    return app


app = make_app()
