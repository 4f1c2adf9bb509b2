"""The trades enrichment of the built-in ``trades`` processor, written as a user agent on the public API.

Used by bench/trades_throughput.py (contender ``agent_exactly_once``) to measure what the agent API costs over
the processor API for the same work: the same per-symbol :class:`SymbolTrades` state (in a Table), the same
checks and the same output document, keyed by symbol.
"""

from __future__ import annotations

from typing import Any

from stream_processor import App
from stream_processor.market.models import Trade
from stream_processor.market.processors.trades import SymbolTrades
from stream_processor.market.settings import TradesParams


def make_app(settings: dict[str, Any], source: str, sink: str) -> App:
    """An app with one agent, ``enrich``, from ``source`` (raw trades) to ``sink``; ``settings``: the YAML doc."""
    app = App("bench-agent", settings=settings)
    params = TradesParams()
    trades = app.topic(source, value_type=Trade)
    enriched = app.topic(sink)
    states = app.Table("symbol_trades", value_type=SymbolTrades)

    @app.agent(trades, sink=[enriched])
    async def enrich(stream: Any) -> Any:
        async for trade in stream:
            key = f"{trade.venue}/{trade.market}/{trade.symbol}"
            state = states.get(key)
            if state is None:
                state = SymbolTrades(params)
            elif state.ids is not None and state.ids.seen(trade.trade_id):
                continue
            else:
                state.check(trade, params.max_price_jump)
            doc = state.update(trade)
            states[key] = state
            ctx = stream.current_event
            doc.update(venue=trade.venue, market=trade.market, symbol=trade.symbol, trade_id=trade.trade_id,
                       price=trade.price, size=trade.size, side=trade.side, time_ms=trade.time_ms,
                       event_time_ms=trade.event_time_ms, source_topic=ctx.topic, source_partition=ctx.partition,
                       source_offset=ctx.offset)
            yield doc

    return app
