"""The trades processor: per-symbol incremental SMA, EMA, session VWAP, momentum and aggressor volumes."""

from __future__ import annotations

from typing import Any

import orjson

from ..exceptions import InvalidRecordError
from ..indicators.ema import EMA
from ..indicators.momentum import Momentum
from ..indicators.rolling_sum import RollingSum
from ..indicators.sma import SMA
from ..indicators.vwap import VWAP
from ..models import MarketRecord, Trade
from ..settings import TradesParams, TradesProcessorSettings
from ..state import ChangelogStore
from .base import Output, Processor


class SymbolTrades:
    """The trades state of one symbol; every update is O(1).

    Fields of :meth:`update`'s result (prices in quote currency, sizes in base units):
    ``sma``/``ema``: of price over the last ``sma_length``/``ema_length`` trades (match pandas_ta.sma/ema);
    ``vwap``: of the current UTC day (matches pandas_ta.vwap with anchor "D");
    ``momentum``: price / price ``momentum_length`` trades ago - 1 (matches pandas_ta.percent_return);
    ``volume``, ``buy_volume``, ``sell_volume``: size summed over the last ``volume_window`` trades, all,
    aggressor buys only, aggressor sells only. Each is None while warming up.
    """

    __slots__ = ("sma", "ema", "vwap", "momentum", "volume", "buy_volume", "sell_volume", "trades")

    def __init__(self, params: TradesParams) -> None:
        self.sma = SMA(params.sma_length)
        self.ema = EMA(params.ema_length)
        self.vwap = VWAP()
        self.momentum = Momentum(params.momentum_length)
        self.volume = RollingSum(params.volume_window)
        self.buy_volume = RollingSum(params.volume_window)
        self.sell_volume = RollingSum(params.volume_window)
        self.trades = 0

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
        state: dict[str, Any] = {name: getattr(self, name).to_state() for name in self.__slots__[:-1]}
        state["trades"] = self.trades
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
        return obj


class TradesProcessor(Processor):
    """Enriches each trade with its symbol's indicators and writes it to the output topic, keyed by symbol.

    The output value is a JSON object: the trade (``venue, symbol, trade_id, price, size, side, time_ms,
    event_time_ms``), the fields of :class:`SymbolTrades`, and the source (``source_topic,
    source_partition, source_offset``) of the input record.
    """

    def __init__(self, name: str, settings: TradesProcessorSettings) -> None:
        super().__init__(name, settings)
        self.params: TradesParams = settings.params
        self.output_topic = settings.output_topics[0]

    def state_from(self, state: dict[str, Any]) -> SymbolTrades:
        return SymbolTrades.from_state(state)

    def process(
        self, record: MarketRecord, store: ChangelogStore, topic: str, partition: int, offset: int
    ) -> list[Output]:
        if type(record) is not Trade:
            raise InvalidRecordError(f"trades processor takes trades, got {type(record).__name__}")
        symbol = record.symbol
        state = store.data.get(symbol)
        if state is None:
            state = SymbolTrades(self.params)
            store.data[symbol] = state
        enriched = state.update(record)
        store.dirty.add(symbol)
        enriched.update(
            venue=record.venue,
            symbol=symbol,
            trade_id=record.trade_id,
            price=record.price,
            size=record.size,
            side=record.side,
            time_ms=record.time_ms,
            event_time_ms=record.event_time_ms,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
        )
        return [(self.output_topic, symbol.encode(), orjson.dumps(enriched))]
