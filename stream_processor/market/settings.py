"""Settings of the market application: its default configuration file, its processors' entries and ``params``,
the event-time window of its decoders, and its own top-level section, ``replay``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..engine.settings import KeyedError, ProcessorSettings, Settings, _Strict
from .alerts import AlertRule

#: The market application's configuration (``stream-processor`` without ``-A`` and without ``--config``), shipped
#: inside the package so that an installed package and the image find it (in a checkout, a link to
#: config/streams-config.yaml).
DEFAULT_CONFIG = Path(__file__).resolve().parent / "streams-config.yaml"


class EventTimeSettings(_Strict):
    """The window around a record's Kafka timestamp that its event times must fall in (ms); None: unbounded.

    A record whose event time is later than its Kafka timestamp + ``max_future_ms`` (a nanosecond or year-2100
    time, or a clock far ahead) or earlier than its Kafka timestamp - ``max_past_ms`` (a time in seconds) is
    dead-lettered (reason "invalid") before it reaches state. Replays publish old data with the current Kafka
    timestamp, hence the wide default past bound (10 years).
    """

    max_future_ms: int | None = Field(default=5_000, ge=0)
    max_past_ms: int | None = Field(default=315_576_000_000, ge=0)


class ReplaySettings(_Strict):
    """The ``replay:`` section: where the replay producer (``stream-processor replay``) publishes each message
    family (``trades``, ``orderbook``, ``klines``), keyed by symbol. The market app's worker creates these topics."""

    topics: dict[Literal["trades", "orderbook", "klines"], str]


def replay_settings(settings: Settings) -> ReplaySettings | None:
    """The ``replay`` section of ``settings``, or None when the configuration has none."""
    section = settings.section("replay")
    return section if isinstance(section, ReplaySettings) else None


class TradesParams(_Strict):
    """Window lengths of the trades processor, in trades."""

    sma_length: int = Field(default=20, gt=0)
    ema_length: int = Field(default=20, gt=0)
    momentum_length: int = Field(default=20, gt=0)
    volume_window: int = Field(default=100, gt=0)
    # A trade whose price moves more than this fraction from its symbol's last accepted price is dead-lettered
    # (reason "invalid"), e.g. 0.5: the price must stay within [0.5, 1.5] x the last one. None: no band.
    max_price_jump: float | None = Field(default=0.5, gt=0)
    dedup_window: int = Field(default=1_000_000, ge=0)  # trade ids remembered per symbol to drop re-sent trades; 0: off
    # The klines processor's SMC context topic (its params.smc.context_topic), one of input_topics: each enriched
    # trade then carries `smc`, its symbol's context per interval (see stream_processor/market/context.py).
    smc_context_topic: str | None = None
    # How far back (ms of Kafka record time) the joined SMC context keeps versions, so that a record finds the
    # context valid at its own timestamp (the newest version at or before the cutoff is always kept).
    smc_context_history_ms: int = Field(default=3_600_000, gt=0)


# The largest changelog record a processor's configured state may need (Kafka's default max.message.bytes, less
# the batch and record framing).
MAX_STATE_BYTES = 1_000_000


class OrderbookParams(_Strict):
    """The order-book processor's book size and metrics (see stream_processor/orderbook)."""

    depth_levels: int = Field(default=1000, gt=0)  # levels kept per side
    max_pending: int = Field(default=500, gt=0)  # diffs buffered while waiting for a snapshot
    max_pending_bytes: int = Field(default=262_144, gt=0)  # ... and at most this much of them, in changelog bytes
    # After a sequence gap or a bookTicker mismatch: "snapshot" emits nothing until the next snapshot resyncs the
    # book; "unsynced" keeps applying diffs and emits with state "unsynced" (for venues that send no snapshots).
    resync: Literal["snapshot", "unsynced"] = "snapshot"
    bands_bps: list[float] = Field(default=[5.0, 10.0, 25.0], min_length=1)  # depth bands around mid, bps
    imbalance_levels: int = Field(default=10, gt=0)  # top-N levels per side of the imbalance
    wall_levels: int = Field(default=20, gt=0)  # levels per side searched for walls
    wall_multiple: float = Field(default=5.0, gt=0)  # a wall is > this many times the median level size
    # How a book goes to the changelog: "delta" writes a small head and the levels changed since the last full
    # state (a new full state when they add up to the book's size); "full" writes the whole book at every commit
    # in which it changed (the layout before "delta"; both read both, see processors/orderbook.py).
    state_encoding: Literal["delta", "full"] = "delta"
    smc_context_topic: str | None = None  # as for trades: each output carries `smc`, measured from mid
    # How far back (ms of Kafka record time) the joined SMC context keeps versions, so that a record finds the
    # context valid at its own timestamp (the newest version at or before the cutoff is always kept).
    smc_context_history_ms: int = Field(default=3_600_000, gt=0)

    @model_validator(mode="after")
    def _state_fits_a_record(self) -> OrderbookParams:
        from .orderbook.book import max_state_bytes

        most = max_state_bytes(self.depth_levels, self.max_pending_bytes)
        if most > MAX_STATE_BYTES:
            raise KeyedError("depth_levels", f"a book of {self.depth_levels} levels per side with "
                             f"max_pending_bytes {self.max_pending_bytes} can take {most} bytes in the changelog, "
                             f"more than a Kafka record holds ({MAX_STATE_BYTES})")
        return self


# Default grace of klines built from trades, in ms (see the README's "Bad input and failures").
GRACE_MS = 2_000

_INTERVAL_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def interval_ms(name: str) -> int:
    """Milliseconds of an interval named like Binance's: ``"30s"``, ``"1m"``, ``"15m"``, ``"1h"``, ``"1d"``.

    Raises ValueError for another form, or an interval that does not divide a day (windows align to UTC days).
    """
    number, unit = name[:-1], name[-1:]
    if unit not in _INTERVAL_UNITS or not number.isdigit() or int(number) <= 0:
        raise ValueError(f"interval {name!r} is not like 30s, 1m, 15m, 1h or 1d")
    ms = int(number) * _INTERVAL_UNITS[unit]
    if 86_400_000 % ms:
        raise ValueError(f"interval {name!r} does not divide a day")
    return ms


class SmcParams(_Strict):
    """Smart Money Concepts detectors on each closed kline (see stream_processor/smc)."""

    enabled: bool = True
    swing_length: int = Field(default=5, gt=0)  # candles on each side of a swing high/low
    close_break: bool = True  # BOS/CHoCH confirmed by the close (else the wick)
    close_mitigation: bool = False  # order blocks mitigated by the body (else the wick)
    range_percent: float = Field(default=0.01, gt=0)  # liquidity: equal highs/lows within this share of range
    pip_range: float | None = Field(default=None, gt=0)  # liquidity: a fixed tolerance instead, in price units
    fvg_join_consecutive: bool = False  # the reference's fvg(join_consecutive=True): adjacent gaps merge
    previous_high_low: list[str] = ["1D"]  # higher time frames whose previous high/low the context gives: 4h, 1D, W
    sessions: list[str] = ["Sydney", "Tokyo", "London", "New York"]  # followed for the context (the reference's names)
    retracements: bool = True  # the current swing leg's retracement in the context
    context: bool = True  # each enriched kline carries `smc`: the SMC context of every interval at its close
    # Each closed kline's context also goes to this topic, to the input record's partition number (co-partitioned
    # with the raw input): processors that list it among their input_topics join it (params.smc_context_topic).
    context_topic: str | None = None

    @model_validator(mode="after")
    def _detectors(self) -> SmcParams:
        from .smc.previous_high_low import PreviousHighLow
        from .smc.sessions import Sessions

        for key, values, make in (("sessions", self.sessions, Sessions),
                                  ("previous_high_low", self.previous_high_low, PreviousHighLow)):
            for i, value in enumerate(values):
                try:
                    make(value)
                except ValueError as exc:
                    raise KeyedError(f"{key}.{i}", str(exc)) from None
        return self


class VolumeProfileParams(_Strict):
    """The per-symbol volume profile of the klines processor (see stream_processor/market/volume_profile.py).

    Bins are ``tick_size * ticks_per_bin`` wide (or ``bin_width``; ``bin_widths`` per symbol); the width doubles
    whenever the profile would span more than ``max_bins`` bins, so a default tick of 0.01 suits any price.
    """

    enabled: bool = True
    bin_width: float | None = Field(default=None, gt=0)  # quote currency; instead of tick_size
    bin_widths: dict[str, float] = {}  # per symbol (upper case): its bin width, quote currency
    tick_size: float | None = Field(default=0.01, gt=0)  # quote currency
    ticks_per_bin: int = Field(default=1, gt=0)
    value_area: float = Field(default=0.7, gt=0, le=1)  # share of the volume in the value area
    max_bins: int = Field(default=200, ge=2)  # the most bins the profile may span (memory, changelog, cost)
    window: int | None = Field(default=None, gt=0)  # None: the UTC day; N: the last N klines of `interval`
    interval: str | None = None  # the klines that feed it (venue klines) / its window; default: intervals[0]
    # Each closed kline of `interval` also sends the profile with its levels to this topic (None: only the summary
    # on enriched klines).
    topic: str | None = None

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str | None) -> str | None:
        if value is not None:
            interval_ms(value)
        return value


class KlinesParams(_Strict):
    """Intervals, indicator periods (in bars), SMC detectors and alert rules of the klines processor."""

    # "trades": klines are built from trades per `intervals`; "klines": the venue's closed klines are used as
    # they are. A record of the other kind is dead-lettered (invalid).
    source: Literal["trades", "klines"] = "trades"
    intervals: list[str] = Field(default=["1m"], min_length=1)  # built from trades; venue klines keep theirs
    grace_ms: int = Field(default=GRACE_MS, ge=0)  # a window closes when a trade this much after its end arrives
    # ... or when the partition's stream time (its latest trade) is this much past its end (an idle symbol); None: off
    idle_close_ms: int | None = Field(default=60_000, ge=0)
    max_price_jump: float | None = Field(default=0.5, gt=0)  # as for trades (and a venue kline's close)
    dedup_window: int = Field(default=1_000_000, ge=0)  # as for trades
    sma_length: int = Field(default=20, gt=0)
    ema_length: int = Field(default=20, gt=0)
    rsi_length: int = Field(default=14, gt=0)
    macd_fast: int = Field(default=12, gt=0)
    macd_slow: int = Field(default=26, gt=0)
    macd_signal: int = Field(default=9, gt=0)
    atr_length: int = Field(default=14, gt=0)
    bb_length: int = Field(default=20, gt=0)
    bb_std: float = Field(default=2.0, gt=0)
    smc: SmcParams = SmcParams()
    volume_profile: VolumeProfileParams = VolumeProfileParams()
    alerts: list[AlertRule] = []

    @field_validator("intervals")
    @classmethod
    def _intervals(cls, value: list[str]) -> list[str]:
        for name in value:
            interval_ms(name)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> KlinesParams:
        if self.macd_fast >= self.macd_slow:
            raise ValueError(f"macd_fast ({self.macd_fast}) must be below macd_slow ({self.macd_slow})")
        if self.idle_close_ms is not None and self.idle_close_ms < self.grace_ms:
            raise KeyedError("idle_close_ms", f"{self.idle_close_ms} is below grace_ms ({self.grace_ms}): an idle "
                             "close would refuse trades the grace still lets in")
        profile = self.volume_profile
        if self.source == "trades" and profile.interval is not None and profile.interval not in self.intervals:
            raise KeyedError("volume_profile.interval", f"{profile.interval!r} is not among intervals "
                             f"{self.intervals}")
        if self.alerts and not self.smc.enabled:
            raise ValueError("alerts are raised by SMC events: smc.enabled must be true")
        if self.source == "trades":
            for i, rule in enumerate(self.alerts):
                for field in ("intervals", "against_trend", "with_trend"):
                    value = getattr(rule, field)
                    names = value if isinstance(value, list) else [] if value is None else [value]
                    unknown = [n for n in names if n not in self.intervals]
                    if unknown:
                        raise KeyedError(f"alerts.{i}.{field}", f"interval(s) {unknown} are not among intervals "
                                         f"{self.intervals}")
        return self


#: ``max_task_idle_ms`` of a processor joining the SMC context (``params.smc_context_topic``) when its entry does not
#: set one: how long its records wait for the klines processor to get as far (its context records and the progress
#: records it writes with them) before they go without it, flagged ``smc_stale``.
JOIN_IDLE_MS = 5_000


class MarketProcessorSettings(ProcessorSettings):
    """A market processor's entry: like any processor's, with at least one output topic and the window its records'
    event times must fall in (``event_time``); a joined SMC context topic (``params.smc_context_topic``) must be one
    of its ``input_topics``, and its ``max_task_idle_ms`` defaults to :data:`JOIN_IDLE_MS`."""

    output_topics: list[str] = Field(min_length=1)
    event_time: EventTimeSettings = EventTimeSettings()

    @model_validator(mode="before")
    @classmethod
    def _joins_wait(cls, data: Any) -> Any:
        params = data.get("params") if isinstance(data, dict) else None
        joins = isinstance(params, dict) and params.get("smc_context_topic") or \
            getattr(params, "smc_context_topic", None)
        if joins and "max_task_idle_ms" not in data:
            data = {**data, "max_task_idle_ms": JOIN_IDLE_MS}
        return data

    @model_validator(mode="after")
    def _context_is_an_input(self) -> MarketProcessorSettings:
        topic = getattr(getattr(self, "params", None), "smc_context_topic", None)
        if topic is not None and topic not in self.input_topics:
            raise KeyedError("params.smc_context_topic", f"{topic!r} must also be one of input_topics "
                             f"{self.input_topics} (co-partitioned with them)")
        return self


class TradesProcessorSettings(MarketProcessorSettings):
    """``type: trades``: per-symbol indicators on every trade (see processors/trades.py)."""

    type: Literal["trades"]
    params: TradesParams = TradesParams()


class OrderbookProcessorSettings(MarketProcessorSettings):
    """``type: orderbook``: a per-symbol L2 book and its metrics (see processors/orderbook.py)."""

    type: Literal["orderbook"]
    params: OrderbookParams = OrderbookParams()


class KlinesProcessorSettings(MarketProcessorSettings):
    """``type: klines``: klines, their indicators, SMC signals and alerts (see processors/klines.py)."""

    type: Literal["klines"]
    params: KlinesParams = KlinesParams()

    def sends_to(self) -> list[str]:
        """``output_topics``, then the SMC context topic and the volume profile topic when set."""
        p = self.params
        profile = p.volume_profile.topic if p.volume_profile.enabled else None
        extra = [t for t in (p.smc.context_topic if p.smc.enabled else None, profile)
                 if t is not None and t not in self.output_topics]
        return [*self.output_topics, *extra]

    @model_validator(mode="after")
    def _params_topics_are_outputs(self) -> KlinesProcessorSettings:
        p = self.params
        for key, topic in (("params.smc.context_topic", p.smc.context_topic), ("params.volume_profile.topic",
                                                                                 p.volume_profile.topic)):
            if topic is not None and topic in self.input_topics:
                raise KeyedError(key, f"{topic!r} is also an input topic: the processor would read its own output")
        return self

    def copartitioned_outputs(self) -> list[str]:
        """The SMC context topic: written to the input's partition number (co-partitioned with the raw input)."""
        return [self.params.smc.context_topic] if self.params.smc.enabled and self.params.smc.context_topic else []
