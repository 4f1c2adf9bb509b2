"""The klines processor: klines (built from trades, or the venue's), their indicators, SMC signals and alerts."""

from __future__ import annotations

from typing import Any

import orjson

from ..alerts import evaluate, update_trends
from ..exceptions import InvalidRecordError
from ..klines.builder import KlineBuilder
from ..klines.indicators import KlineIndicatorParams, KlineIndicators
from ..models import Kline, MarketRecord, Trade
from ..settings import KlinesParams, KlinesProcessorSettings, interval_ms
from ..smc.detector import SmcDetector
from ..state import ChangelogStore
from .base import Output, Processor


class SymbolKlines:
    """The klines state of one symbol: per interval a builder (trades input), indicators and SMC detectors.

    ``trends`` holds, per interval, the direction of its latest BOS or CHoCH (for the alert rules).
    """

    __slots__ = ("builders", "indicators", "smc", "trends")

    def __init__(self) -> None:
        self.builders: dict[str, KlineBuilder] = {}
        self.indicators: dict[str, KlineIndicators] = {}
        self.smc: dict[str, SmcDetector] = {}
        self.trends: dict[str, int] = {}

    def to_state(self) -> dict[str, Any]:
        """A JSON-safe snapshot for the changelog."""
        return {
            "builders": {k: v.to_state() for k, v in self.builders.items()},
            "indicators": {k: v.to_state() for k, v in self.indicators.items()},
            "smc": {k: v.to_state() for k, v in self.smc.items()},
            "trends": dict(self.trends),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SymbolKlines:
        """Rebuild from :meth:`to_state`; it continues with identical outputs."""
        obj = cls()
        obj.builders = {k: KlineBuilder.from_state(v) for k, v in state["builders"].items()}
        obj.indicators = {k: KlineIndicators.from_state(v) for k, v in state["indicators"].items()}
        obj.smc = {k: SmcDetector.from_state(v) for k, v in state["smc"].items()}
        obj.trends = dict(state["trends"])
        return obj


class KlinesProcessor(Processor):
    """Closed klines of every configured interval, enriched, with SMC events and alerts.

    Input: trades (each symbol's klines are built per ``params.intervals`` with ``params.grace_ms``; a trade for a
    window already closed goes to the dead-letter topic as ``late``), and/or venue klines (a closed ``Kline`` is
    used as it is for its own interval; an open one is ignored). For each closed kline, in time order:

    - ``output_topics[0]`` (enriched klines), keyed by symbol: the kline (``venue, symbol, interval,
      open_time_ms, close_time_ms, open, high, low, close, volume, quote_volume, trade_count``) and its indicators
      (:data:`~stream_processor.klines.indicators.KLINE_INDICATOR_FIELDS`);
    - ``output_topics[1]`` (SMC signals), when ``params.smc.enabled``: one record per event the SMC detectors
      confirm at this kline, with ``symbol`` and ``interval`` added;
    - ``output_topics[2]`` (alerts), when ``params.alerts`` has rules: one record per rule an event fires.

    Raises (at construction) ValueError when ``output_topics`` is too short for what is enabled.
    """

    def __init__(self, name: str, settings: KlinesProcessorSettings) -> None:
        super().__init__(name, settings)
        p: KlinesParams = settings.params
        self.params = p
        needed = 1 + p.smc.enabled + bool(p.alerts)  # alerts need SMC events: the settings check that
        if len(settings.output_topics) < needed:
            raise ValueError(
                f"stream_processors.{name}.output_topics: needs [enriched_klines, smc_signals, alerts] for what is "
                f"enabled, got {settings.output_topics}"
            )
        topics = [*settings.output_topics, None, None]
        self.klines_topic, self.signals_topic, self.alerts_topic = topics[0], topics[1], topics[2]
        self.intervals = {name_: interval_ms(name_) for name_ in p.intervals}
        self.indicator_params = KlineIndicatorParams(
            sma_length=p.sma_length, ema_length=p.ema_length, rsi_length=p.rsi_length, macd_fast=p.macd_fast,
            macd_slow=p.macd_slow, macd_signal=p.macd_signal, atr_length=p.atr_length, bb_length=p.bb_length,
            bb_std=p.bb_std,
        )

    def state_from(self, state: dict[str, Any]) -> SymbolKlines:
        return SymbolKlines.from_state(state)

    def process(
        self, record: MarketRecord, store: ChangelogStore, topic: str, partition: int, offset: int
    ) -> list[Output]:
        symbol = record.symbol
        state = store.data.get(symbol)
        if state is None:
            state = store.data[symbol] = SymbolKlines()
        assert isinstance(state, SymbolKlines)
        if type(record) is Trade:
            builders = []
            for name, ms in self.intervals.items():
                builder = state.builders.get(name)
                if builder is None:
                    builder = state.builders[name] = KlineBuilder(ms, self.params.grace_ms)
                builder.check(record)  # LateTradeError (a RecordError): dead-lettered, no builder changed
                builders.append(builder)
            closed: list[Kline] = [kline for builder in builders for kline in builder.add(record)]
            store.dirty.add(symbol)
            if not closed:
                return []
            closed.sort(key=lambda k: (k.close_time_ms, self.intervals[k.interval]))
        elif type(record) is Kline:
            if not record.is_closed:
                return []
            closed = [record]
        else:
            raise InvalidRecordError(f"klines processor takes trades and klines, got {type(record).__name__}")
        out: list[Output] = []
        for kline in closed:
            out.extend(self._closed(state, kline, topic, partition, offset))
        store.dirty.add(symbol)
        return out

    def _closed(self, state: SymbolKlines, kline: Kline, topic: str, partition: int, offset: int) -> list[Output]:
        interval = kline.interval
        indicators = state.indicators.get(interval)
        if indicators is None:
            indicators = state.indicators[interval] = KlineIndicators(self.indicator_params)
        try:
            values = indicators.update(kline)
        except ValueError as exc:
            raise InvalidRecordError(str(exc)) from None
        key = kline.symbol.encode()
        doc = {
            "venue": kline.venue, "symbol": kline.symbol, "interval": interval, "open_time_ms": kline.open_time_ms,
            "close_time_ms": kline.close_time_ms, "open": kline.open, "high": kline.high, "low": kline.low,
            "close": kline.close, "volume": kline.volume, "quote_volume": kline.quote_volume,
            "trade_count": kline.trade_count, **values,
            "source_topic": topic, "source_partition": partition, "source_offset": offset,
        }
        out: list[Output] = [(self.klines_topic, key, orjson.dumps(doc))]
        smc = self.params.smc
        if not smc.enabled:
            return out
        detector = state.smc.get(interval)
        if detector is None:
            detector = state.smc[interval] = SmcDetector(
                swing_length=smc.swing_length, close_break=smc.close_break, close_mitigation=smc.close_mitigation,
                range_percent=smc.range_percent, pip_range=smc.pip_range,
            )
        for event in detector.update(kline):
            signal = {"symbol": kline.symbol, "interval": interval, **event}
            out.append((self.signals_topic, key, orjson.dumps(signal)))  # type: ignore[arg-type]
            if self.alerts_topic is not None:
                for alert in evaluate(self.params.alerts, event, kline.symbol, interval, state.trends):
                    out.append((self.alerts_topic, key, orjson.dumps(alert)))
            update_trends(state.trends, event, interval)
        return out
