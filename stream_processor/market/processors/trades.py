"""The trades processor: per-symbol incremental SMA, EMA, session VWAP, momentum and aggressor volumes."""

from __future__ import annotations

from typing import Any

import orjson

from ...engine.exceptions import InvalidRecordError
from ...engine.processor import ProcessorContext
from ..context import ContextRecord
from ..dedup import TradeIdWindow
from ..indicators.ema import EMA
from ..indicators.momentum import Momentum
from ..indicators.rolling_sum import RollingSum
from ..indicators.sma import SMA
from ..indicators.vwap import VWAP
from ..models import MarketRecord, Trade
from ..settings import TradesParams, TradesProcessorSettings
from ..snapshot import MarketSnapshot
from .base import MarketProcessor


def check_price_band(what: str, price: float, last_price: float | None, max_jump: float | None) -> None:
    """Raise InvalidRecordError if ``price`` moved more than ``max_jump`` (a fraction) from ``last_price``.

    The sanity band of the trades and klines processors: a price of 1e300, or one in the wrong unit, would poison
    every EMA and the day's VWAP. Nothing is checked before a symbol's first price or with ``max_jump`` None.
    ``what`` names the price in the message, e.g. ``"trade 42: price"``.
    """
    if max_jump is None or last_price is None:
        return
    jump = price / last_price - 1.0
    if not -max_jump <= jump <= max_jump:
        raise InvalidRecordError(f"{what} {price} is {jump:+.1%} from the last {last_price} "
                                 f"(max_price_jump {max_jump})")


class SymbolTrades(MarketSnapshot):
    """The trades state of one symbol; every update is O(1). A store value (see
    :mod:`stream_processor.market.snapshot`).

    Fields of :meth:`update`'s result (prices in quote currency, sizes in base units):
    ``sma``/``ema``: of price over the last ``sma_length``/``ema_length`` trades (match pandas_ta.sma/ema);
    ``vwap``: of the current UTC day (matches pandas_ta.vwap with anchor "D");
    ``momentum``: price / price ``momentum_length`` trades ago - 1 (matches pandas_ta.percent_return);
    ``volume``, ``buy_volume``, ``sell_volume``: size summed over the last ``volume_window`` trades, all,
    aggressor buys only, aggressor sells only. Each is None while warming up.

    Before it changes anything, :meth:`check` refuses a trade of an earlier UTC day than the session's and a
    price outside the sanity band; ``ids`` (``params.dedup_window`` > 0) remembers recent trade ids so that a
    re-sent trade is recognized.
    """

    __slots__ = ("sma", "ema", "vwap", "momentum", "volume", "buy_volume", "sell_volume", "trades", "last_price",
                 "ids")

    def __init__(self, params: TradesParams) -> None:
        self.sma = SMA(params.sma_length)
        self.ema = EMA(params.ema_length)
        self.vwap = VWAP()
        self.momentum = Momentum(params.momentum_length)
        self.volume = RollingSum(params.volume_window)
        self.buy_volume = RollingSum(params.volume_window)
        self.sell_volume = RollingSum(params.volume_window)
        self.trades = 0
        self.last_price: float | None = None
        self.ids = TradeIdWindow(params.dedup_window) if params.dedup_window else None

    def check(self, trade: Trade, max_price_jump: float | None) -> None:
        """Raise InvalidRecordError if :meth:`update` must refuse ``trade``; changes nothing."""
        try:
            self.vwap.check(trade.time_ms)
        except ValueError as exc:
            raise InvalidRecordError(f"trade {trade.trade_id}: {exc}") from None
        check_price_band(f"trade {trade.trade_id}: price", trade.price, self.last_price, max_price_jump)

    def update(self, trade: Trade) -> dict[str, Any]:
        """Consume one trade; return its indicator values.

        Raises:
            InvalidRecordError: the trade's time goes back to an earlier UTC day than a previous trade's
                (nothing is changed).
        """
        price, size = trade.price, trade.size
        try:
            vwap = self.vwap.update(price, size, trade.time_ms)  # first: it is the one that can refuse
        except ValueError as exc:
            raise InvalidRecordError(f"trade {trade.trade_id}: {exc}") from None
        is_buy = trade.side == "buy"
        self.trades += 1
        self.last_price = price
        if self.ids is not None:
            self.ids.add(trade.trade_id)
        return {
            "sma": self.sma.update(price),
            "ema": self.ema.update(price),
            "vwap": vwap,
            "momentum": self.momentum.update(price),
            "volume": self.volume.update(size),
            "buy_volume": self.buy_volume.update(size if is_buy else 0.0),
            "sell_volume": self.sell_volume.update(0.0 if is_buy else size),
            "trade_count": self.trades,
        }

    def to_state(self) -> dict[str, Any]:
        """A JSON-safe snapshot for the changelog."""
        state: dict[str, Any] = {name: getattr(self, name).to_state() for name in self.__slots__[:7]}
        state["trades"] = self.trades
        state["last_price"] = self.last_price
        state["ids"] = None if self.ids is None else self.ids.to_state()
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SymbolTrades:
        """Rebuild from :meth:`to_state`; the object continues with identical outputs."""
        obj = cls.__new__(cls)
        obj.sma = SMA.from_state(state["sma"])
        obj.ema = EMA.from_state(state["ema"])
        obj.vwap = VWAP.from_state(state["vwap"])
        obj.momentum = Momentum.from_state(state["momentum"])
        obj.volume = RollingSum.from_state(state["volume"])
        obj.buy_volume = RollingSum.from_state(state["buy_volume"])
        obj.sell_volume = RollingSum.from_state(state["sell_volume"])
        obj.trades = state["trades"]
        obj.last_price = state.get("last_price")
        ids = state.get("ids")
        obj.ids = None if ids is None else TradeIdWindow.from_state(ids)
        return obj


class TradesProcessor(MarketProcessor):
    """Enriches each trade with its symbol's indicators and writes it to the output topic, keyed by symbol.

    The output value is a JSON object: the trade (``venue, market, symbol, trade_id, price, size, side, time_ms,
    event_time_ms``), the fields of :class:`SymbolTrades`, and the source (``source_topic,
    source_partition, source_offset``) of the input record. State is kept per venue, market and symbol. A trade
    whose id was seen within ``params.dedup_window`` is dropped (no output; counted as the event
    ``duplicate_trade``).

    With ``params.smc_context_topic`` (one of its ``input_topics``, co-partitioned with the trades) each output also
    carries ``smc``: the SMC context of its symbol per interval, the newest stored before the trade's Kafka
    timestamp whose kline closed before the trade's ``time_ms``, measured from the trade's price (see
    :mod:`stream_processor.market.context`); null until the first context; and ``smc_stale`` (true when the context
    input had nothing fetched and its wait ran out; counted as the event ``smc_context_stale``).
    """

    state_type = SymbolTrades

    def __init__(self, name: str, settings: TradesProcessorSettings) -> None:
        super().__init__(name, settings)
        self.params: TradesParams = settings.params
        self.output_topic = settings.output_topics[0]

    def process(self, record: MarketRecord | ContextRecord, ctx: ProcessorContext) -> None:
        if type(record) is not Trade:
            if type(record) is ContextRecord:
                self.remember_context(record, ctx)
                return
            raise InvalidRecordError(f"trades processor takes trades, got {type(record).__name__}")
        symbol = record.symbol
        key = f"{record.venue}/{record.market}/{symbol}"  # state_key, inlined on the hot path
        store = ctx.state()
        state: SymbolTrades | None = store.get(key)
        if state is None:  # a new state has nothing to refuse a trade for
            state = SymbolTrades(self.params)
            enriched = state.update(record)
            store.put(key, state)
        else:
            ids = state.ids
            if ids is not None and ids.seen(record.trade_id):
                self.events["duplicate_trade"] += 1
                return
            state.check(record, self.params.max_price_jump)
            enriched = state.update(record)
            store.mark_dirty(key)
        enriched.update(
            venue=record.venue,
            market=record.market,
            symbol=symbol,
            trade_id=record.trade_id,
            price=record.price,
            size=record.size,
            side=record.side,
            time_ms=record.time_ms,
            event_time_ms=record.event_time_ms,
            source_topic=ctx.topic,
            source_partition=ctx.partition,
            source_offset=ctx.offset,
        )
        if self.context_topic is not None:
            self.join_context(enriched, ctx, key, record.time_ms, record.price)
        ctx.send(self.output_topic, orjson.dumps(enriched), symbol.encode())
