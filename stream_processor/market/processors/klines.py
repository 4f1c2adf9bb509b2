"""The klines processor: klines (built from trades, or the venue's), their indicators, SMC signals and alerts."""

from __future__ import annotations

import weakref
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter

from ...engine.exceptions import InvalidRecordError
from ...engine.processor import ProcessorContext, PunctuationType
from ..alerts import evaluate, update_trends
from ..dedup import TradeIdWindow
from ..klines.builder import KlineBuilder
from ..klines.indicators import KlineIndicatorParams, KlineIndicators
from ..models import Kline, MarketRecord, Trade
from ..settings import KlinesParams, KlinesProcessorSettings, interval_ms
from ..smc.detector import SmcDetector
from ..snapshot import MarketSnapshot
from ..volume_profile import VolumeProfile
from .base import MarketProcessor, state_key
from .trades import check_price_band

IDLE_CHECK_MS = 1_000

#: Header of an SMC signal naming its pattern (``bos``, ``fvg``, ...), with an ``interval`` header beside it.
PATTERN_HEADER = "pattern"

_PATTERN_EVENTS: weakref.WeakKeyDictionary[CollectorRegistry, Counter] = weakref.WeakKeyDictionary()


def pattern_events(registry: CollectorRegistry) -> Counter:
    """``stream_processor_pattern_events_total{processor, type, interval}`` of a worker's registry (made once)."""
    counter = _PATTERN_EVENTS.get(registry)
    if counter is None:
        counter = _PATTERN_EVENTS[registry] = Counter(
            "stream_processor_pattern_events",
            "Pattern events written (SMC: swing_high, bos, choch, fvg, order_block, liquidity_swept, ...), by type "
            "and interval; counted when their transaction commits.",
            ["processor", "type", "interval"], registry=registry)
    return counter
"""How often, in stream time, idle symbols' windows are checked for closing."""


class SymbolKlines(MarketSnapshot):
    """The klines state of one symbol: per interval a builder (trades input), indicators and SMC detectors. A store
    value (see :mod:`stream_processor.market.snapshot`).

    ``profile`` is the symbol's volume profile (None until its first input, or when off). ``trends`` holds, per
    interval, the direction of its latest BOS or CHoCH (for the alert rules); ``ids`` the
    recent trade ids (dedup), ``last_price`` the last trade's price and ``last_close`` each venue interval's last
    close (the sanity band).
    """

    __slots__ = ("builders", "indicators", "smc", "trends", "ids", "last_price", "last_close", "profile")

    def __init__(self, dedup_window: int = 0) -> None:
        self.builders: dict[str, KlineBuilder] = {}
        self.indicators: dict[str, KlineIndicators] = {}
        self.smc: dict[str, SmcDetector] = {}
        self.trends: dict[str, int] = {}
        self.ids = TradeIdWindow(dedup_window) if dedup_window else None
        self.last_price: float | None = None
        self.last_close: dict[str, float] = {}
        self.profile: VolumeProfile | None = None

    def to_state(self) -> dict[str, Any]:
        """A JSON-safe snapshot for the changelog."""
        return {
            "builders": {k: v.to_state() for k, v in self.builders.items()},
            "indicators": {k: v.to_state() for k, v in self.indicators.items()},
            "smc": {k: v.to_state() for k, v in self.smc.items()},
            "trends": dict(self.trends),
            "ids": None if self.ids is None else self.ids.to_state(),
            "last_price": self.last_price,
            "last_close": dict(self.last_close),
            "profile": None if self.profile is None else self.profile.to_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SymbolKlines:
        """Rebuild from :meth:`to_state`; it continues with identical outputs."""
        obj = cls()
        obj.builders = {k: KlineBuilder.from_state(v) for k, v in state["builders"].items()}
        obj.indicators = {k: KlineIndicators.from_state(v) for k, v in state["indicators"].items()}
        obj.smc = {k: SmcDetector.from_state(v) for k, v in state["smc"].items()}
        obj.trends = dict(state["trends"])
        ids = state.get("ids")
        obj.ids = None if ids is None else TradeIdWindow.from_state(ids)
        obj.last_price = state.get("last_price")
        obj.last_close = dict(state.get("last_close", {}))
        profile = state.get("profile")  # absent from snapshots written before the volume profile
        obj.profile = None if profile is None else VolumeProfile.from_state(profile)
        return obj


class KlinesProcessor(MarketProcessor):
    """Closed klines of every configured interval, enriched, with SMC events and alerts.

    Input, per ``params.source``: trades (each symbol's klines are built per ``params.intervals`` with
    ``params.grace_ms``; a trade for a window already closed goes to the dead-letter topic as ``late``, a re-sent
    trade id is dropped, a price outside the sanity band is ``invalid``), or venue klines (a closed ``Kline`` is
    used as it is for its own interval; an open one is ignored; one not after the interval's last, or whose close
    is outside the sanity band, is ``invalid``). A record of the other kind is ``invalid``: mixed in one state
    they would refuse each other. State is kept per venue, market and symbol. For each closed kline, in time
    order:

    - ``output_topics[0]`` (enriched klines), keyed by symbol: the kline (``venue, symbol, interval,
      open_time_ms, close_time_ms, open, high, low, close, volume, quote_volume, trade_count``) and its indicators
      (:data:`~stream_processor.market.klines.indicators.KLINE_INDICATOR_FIELDS`);
    - ``output_topics[1]`` (SMC signals), when ``params.smc.enabled``: one record per event the SMC detectors
      confirm at this kline, with ``symbol`` and ``interval`` added;
    - ``output_topics[2]`` (alerts), when ``params.alerts`` has rules: one record per rule an event fires;
    - with ``params.volume_profile`` (on by default), each enriched kline carries ``volume_profile``, the summary
      of the symbol's :class:`~stream_processor.market.volume_profile.VolumeProfile` (every trade accepted before
      the one that closed the kline; from venue klines, every kline of ``volume_profile.interval`` up to this one),
      and ``volume_profile.topic`` gets the profile with its levels at each closed kline of that interval;
    - with ``params.smc.context`` (on by default), each enriched kline carries ``smc``: per interval, the SMC
      context (:meth:`SmcDetector.context`) at this kline's close, with ``as_of_ms`` and ``price``; and
      ``params.smc.context_topic`` gets this interval's context, sent to the input record's partition number (see
      :mod:`stream_processor.market.context` for the processors that join it).

    An idle symbol's last kline closes by stream time: with trades as the source, every second of the
    partition's stream time (the latest trade time seen on it) the windows of every symbol that ended
    ``params.idle_close_ms`` or more before it are closed (a stream-time punctuation, so a replay closes them at
    the same trade); a trade for such a window afterwards is ``late``. The source fields of those klines name
    the record that moved stream time.

    Raises (at construction) ValueError when ``output_topics`` is too short for what is enabled.
    """

    state_type = SymbolKlines

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
        self.context_topic_out = p.smc.context_topic if p.smc.enabled else None
        self.profile_params = p.volume_profile if p.volume_profile.enabled else None
        self.profile_interval = p.volume_profile.interval or p.intervals[0]
        self.profile_topic = p.volume_profile.topic if self.profile_params is not None else None
        self.pattern_events: Counter | None = None  # the worker's, once it registers this processor's metrics
        self.indicator_params = KlineIndicatorParams(
            sma_length=p.sma_length, ema_length=p.ema_length, rsi_length=p.rsi_length, macd_fast=p.macd_fast,
            macd_slow=p.macd_slow, macd_signal=p.macd_signal, atr_length=p.atr_length, bb_length=p.bb_length,
            bb_std=p.bb_std,
        )

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Count the SMC signals written, by pattern and interval, in ``stream_processor_pattern_events_total``."""
        self.pattern_events = pattern_events(registry)

    def event_time(self, record: Any) -> int:  # type: ignore[override]
        """A trade's time (ms): stream time, which closes idle symbols' klines; -1 for anything else."""
        return record.time_ms if type(record) is Trade else -1

    def init(self, ctx: ProcessorContext) -> None:
        if self.params.source == "trades" and self.params.idle_close_ms is not None:
            ctx.schedule(IDLE_CHECK_MS, PunctuationType.STREAM_TIME, lambda now: self._close_idle(ctx, now))

    def _close_idle(self, ctx: ProcessorContext, now_ms: int) -> None:
        """Close every symbol's windows that ended ``idle_close_ms`` or more before stream time ``now_ms``."""
        watermark = now_ms - self.params.idle_close_ms  # type: ignore[operator]
        store = ctx.state()
        for key, state in store.items():
            closed = [kline for builder in state.builders.values()
                      if builder.watermark_ms is not None and builder.watermark_ms < watermark
                      for kline in builder.close_until(watermark)]
            if not closed:
                continue
            store.mark_dirty(key)
            closed.sort(key=lambda k: (k.close_time_ms, self.intervals[k.interval]))
            market = key.split("/")[1]
            for kline in closed:
                self._closed(state, kline, market, ctx)

    def process(self, record: MarketRecord, ctx: ProcessorContext) -> None:
        kind = type(record)
        want = Trade if self.params.source == "trades" else Kline
        if kind is not want:
            raise InvalidRecordError(f"klines processor {self.name} takes {self.params.source} (params.source), got "
                                     f"{kind.__name__}")
        key = state_key(record)
        store = ctx.state()
        state: SymbolKlines | None = store.get(key)
        if state is None:
            state = SymbolKlines(self.params.dedup_window)
        if kind is Trade:
            if state.ids is not None and state.ids.seen(record.trade_id):  # type: ignore[union-attr]
                self.events["duplicate_trade"] += 1
                return
            check_price_band(f"trade {record.trade_id}: price", record.price, state.last_price,  # type: ignore[union-attr]
                             self.params.max_price_jump)
            builders = []
            for name, ms in self.intervals.items():
                builder = state.builders.get(name) or KlineBuilder(ms, self.params.grace_ms)
                builder.check(record)  # LateTradeError (a RecordError): dead-lettered, no builder changed
                builders.append((name, builder))
            # Nothing below refuses a record: from here on the state changes.
            for name, builder in builders:
                state.builders[name] = builder
            closed: list[Kline] = [kline for _, builder in builders for kline in builder.add(record)]
            state.last_price = record.price  # type: ignore[union-attr]
            if state.ids is not None:
                state.ids.add(record.trade_id)  # type: ignore[union-attr]
            closed.sort(key=lambda k: (k.close_time_ms, self.intervals[k.interval]))
        else:
            if not record.is_closed:  # type: ignore[union-attr]
                return
            interval = record.interval  # type: ignore[union-attr]
            indicators = state.indicators.get(interval)
            if indicators is not None:
                try:
                    indicators.check(record)  # type: ignore[arg-type]
                except ValueError as exc:
                    raise InvalidRecordError(str(exc)) from None
            check_price_band(f"kline {interval} at {record.open_time_ms}: close", record.close,  # type: ignore[union-attr]
                             state.last_close.get(interval), self.params.max_price_jump)
            state.last_close[interval] = record.close  # type: ignore[union-attr]
            closed = [record]  # type: ignore[list-item]
        store.put(key, state)
        profiled = self.profile_params is not None
        if profiled and state.profile is None:
            state.profile = self.new_profile(record.symbol)
        if kind is Kline and profiled and record.interval == self.profile_interval:  # type: ignore[union-attr]
            state.profile.add_kline(record)  # type: ignore[union-attr,arg-type]
        for kline in closed:
            self._closed(state, kline, record.market, ctx)
        if kind is Trade and profiled:
            # After the klines it closes: a kline's profile holds the trades accepted before the one that closed it.
            try:
                state.profile.add_trade(record.price, record.size, record.side, record.time_ms)  # type: ignore[union-attr]
            except ValueError:  # a trade of the previous UTC day, within the grace, after the new day began
                self.events["volume_profile_late"] += 1

    def _closed(self, state: SymbolKlines, kline: Kline, market: str, ctx: ProcessorContext) -> None:
        """Send one closed kline, enriched, and the SMC events and alerts it confirms."""
        interval = kline.interval
        indicators = state.indicators.get(interval)
        if indicators is None:
            indicators = state.indicators[interval] = KlineIndicators(self.indicator_params)
        values = indicators.update(kline)  # checked before any change (a failure here is a bug: rolled back)
        key = kline.symbol.encode()
        doc = {
            "venue": kline.venue, "market": market, "symbol": kline.symbol, "interval": interval,
            "open_time_ms": kline.open_time_ms,
            "close_time_ms": kline.close_time_ms, "open": kline.open, "high": kline.high, "low": kline.low,
            "close": kline.close, "volume": kline.volume, "quote_volume": kline.quote_volume,
            "trade_count": kline.trade_count, **values,
            "source_topic": ctx.topic, "source_partition": ctx.partition, "source_offset": ctx.offset,
        }
        profile = state.profile
        if profile is not None:
            if interval == self.profile_interval:
                profile.close_kline(kline.open_time_ms)  # a rolling window moves (the day: nothing to do)
                if self.profile_topic is not None:
                    levels = {"venue": kline.venue, "market": market, "symbol": kline.symbol, "interval": interval,
                              "open_time_ms": kline.open_time_ms, "close_time_ms": kline.close_time_ms,
                              **profile.snapshot(levels=True), "source_topic": ctx.topic,
                              "source_partition": ctx.partition, "source_offset": ctx.offset}
                    ctx.send(self.profile_topic, orjson.dumps(levels), key)
            doc["volume_profile"] = profile.summary()
        smc = self.params.smc
        if not smc.enabled:
            ctx.send(self.klines_topic, orjson.dumps(doc), key)
            return
        detector = state.smc.get(interval)
        if detector is None:
            detector = state.smc[interval] = self.new_detector()
        events = detector.update(kline)
        if smc.context or self.context_topic_out is not None:
            own = self.context_of(interval, detector, kline.close)
            if smc.context:
                doc["smc"] = {name: own if name == interval else self.context_of(name, other, kline.close)
                              for name, other in state.smc.items()}
            if self.context_topic_out is not None:
                record = {"venue": kline.venue, "market": market, "symbol": kline.symbol, "interval": interval,
                          "open_time_ms": kline.open_time_ms, "close_time_ms": kline.close_time_ms,
                          "close": kline.close, "context": own, "source_topic": ctx.topic,
                          "source_partition": ctx.partition, "source_offset": ctx.offset}
                # To the input's partition number: co-partitioned with the raw input whatever its partitioner.
                ctx.send(self.context_topic_out, orjson.dumps(record), key, partition=ctx.task)
        ctx.send(self.klines_topic, orjson.dumps(doc), key)
        for event in events:
            signal = {"symbol": kline.symbol, "interval": interval, **event}
            # The headers name the pattern: consumers filter on them without parsing.
            headers = [(PATTERN_HEADER, event["type"].encode()), ("interval", interval.encode())]
            ctx.send(self.signals_topic, orjson.dumps(signal), key, headers)  # type: ignore[arg-type]
            if self.pattern_events is not None:  # counted once its transaction commits
                ctx.on_commit(self.pattern_events.labels(self.name, event["type"], interval).inc)
            if self.alerts_topic is not None:
                for alert in evaluate(self.params.alerts, event, kline.symbol, interval, state.trends):
                    ctx.send(self.alerts_topic, orjson.dumps(alert), key)
            update_trends(state.trends, event, interval)

    def new_profile(self, symbol: str) -> VolumeProfile:
        """A fresh volume profile of ``params.volume_profile`` for ``symbol``."""
        p = self.profile_params
        assert p is not None
        width = p.bin_widths.get(symbol, p.bin_width)
        return VolumeProfile(bin_width=width, tick_size=None if width is not None else p.tick_size,
                             ticks_per_bin=p.ticks_per_bin if width is None else 1, value_area=p.value_area,
                             max_bins=p.max_bins, window=p.window,
                             interval=self.profile_interval if p.window is not None else None)

    def new_detector(self) -> SmcDetector:
        """A fresh SMC detector of ``params.smc``."""
        smc = self.params.smc
        return SmcDetector(
            swing_length=smc.swing_length, close_break=smc.close_break, close_mitigation=smc.close_mitigation,
            range_percent=smc.range_percent, pip_range=smc.pip_range, fvg_join_consecutive=smc.fvg_join_consecutive,
            previous_high_low=smc.previous_high_low, sessions=smc.sessions, retracements=smc.retracements,
        )

    def context_of(self, interval: str, detector: SmcDetector, price: float) -> dict[str, Any]:
        """The SMC context of ``interval`` at ``price``, with ``as_of_ms``: the close time of its latest kline."""
        ms = self.intervals.get(interval) or interval_ms(interval)
        as_of = None if detector.last_time_ms is None else detector.last_time_ms + ms - 1
        return {"as_of_ms": as_of, "price": price, **detector.context(price)}
