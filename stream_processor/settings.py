"""Configuration: ``config/streams-config.yaml`` plus environment overrides, validated once at start.

``load_settings(path, environ)`` returns a frozen :class:`Settings`; any invalid value raises
:class:`~stream_processor.exceptions.ConfigError` naming the file (or ``environment``) and the key,
for example ``config/streams-config.yaml: stream_processors.trades.batch_size: Input should be a
valid integer``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .alerts import AlertRule
from .exceptions import ConfigError

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "config" / "streams-config.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeyedError(ValueError):
    """A cross-field check failed at ``key`` (a dotted path in the YAML); ``load_settings`` names that key."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


def _bootstrap_address(address: str) -> str:
    """``host:port`` (``[v6]:port`` for IPv6) with a port in 1..65535; raises ValueError otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536 or host.endswith(":"):
        raise ValueError(f"bootstrap server {address!r} must be host:port, e.g. kafka-0.kafka:9092")
    return address


class KafkaSettings(_Strict):
    """Broker connection and the exactly-once commit cadence (times in ms)."""

    bootstrap_servers: list[str] = Field(min_length=1)
    commit_interval_ms: int = Field(default=100, gt=0)
    max_poll_records: int = Field(default=2000, gt=0)
    transaction_timeout_ms: int = Field(default=10_000, gt=0)
    session_timeout_ms: int = Field(default=30_000, gt=0)
    replication_factor: int = Field(default=1, gt=0)

    @field_validator("bootstrap_servers")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return [_bootstrap_address(a) for a in value]

    @model_validator(mode="after")
    def _transactions_end_before_sessions(self) -> KafkaSettings:
        # A dead worker's open transaction must abort (timeout) before its partitions could be handed over by
        # the session timeout alone, so read_committed readers are never held up by it longer than that.
        if self.transaction_timeout_ms >= self.session_timeout_ms:
            raise ValueError(
                f"transaction_timeout_ms ({self.transaction_timeout_ms}) must be below session_timeout_ms "
                f"({self.session_timeout_ms})"
            )
        return self


class TopicSettings(_Strict):
    """One topic this project creates when it is missing."""

    partitions: int = Field(gt=0)
    compacted: bool = False
    retention_ms: int | None = None


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


class KlinesParams(_Strict):
    """Intervals, indicator periods (in bars), SMC detectors and alert rules of the klines processor."""

    # "trades": klines are built from trades per `intervals`; "klines": the venue's closed klines are used as
    # they are. A record of the other kind is dead-lettered (invalid).
    source: Literal["trades", "klines"] = "trades"
    intervals: list[str] = Field(default=["1m"], min_length=1)  # built from trades; venue klines keep theirs
    grace_ms: int = Field(default=GRACE_MS, ge=0)  # a window closes when a trade this much after its end arrives
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


class EventTimeSettings(_Strict):
    """The window around a record's Kafka timestamp that its event times must fall in (ms); None: unbounded.

    A record whose event time is later than its Kafka timestamp + ``max_future_ms`` (a nanosecond or year-2100
    time, or a clock far ahead) or earlier than its Kafka timestamp - ``max_past_ms`` (a time in seconds) is
    dead-lettered (reason "invalid") before it reaches state. Replays publish old data with the current Kafka
    timestamp, hence the wide default past bound (10 years).
    """

    max_future_ms: int | None = Field(default=5_000, ge=0)
    max_past_ms: int | None = Field(default=315_576_000_000, ge=0)


class ProcessorSettings(_Strict):
    """One stream processor: its consumer group, topics and mode; each ``type`` adds its own ``params``.

    Several ``input_topics`` must be co-partitioned (same partition count, keyed alike): partition q of every
    input is one task, one transaction and one changelog partition.
    """

    type: str
    consumer_group: str = Field(min_length=1)
    processing_mode: Literal["exactly_once", "at_least_once"] = "exactly_once"
    batch_size: int = Field(default=500, gt=0)
    input_topics: list[str] = Field(min_length=1)
    output_topics: list[str] = Field(min_length=1)
    dead_letter_topic: str = "dead_letter"
    enabled: bool = True
    max_input_bytes: int = Field(default=1_048_576, gt=0)  # a larger input record is dead-lettered undecoded
    event_time: EventTimeSettings = EventTimeSettings()

    @model_validator(mode="after")
    def _topics_apart(self) -> ProcessorSettings:
        for field in ("output_topics", "dead_letter_topic"):
            value = getattr(self, field)
            for i, topic in enumerate(value if isinstance(value, list) else [value]):
                if topic in self.input_topics:
                    key = f"{field}.{i}" if isinstance(value, list) else field
                    raise KeyedError(key, f"{topic!r} is also an input topic: the processor would read its own "
                                          "output")
        if len(set(self.input_topics)) != len(self.input_topics):
            raise KeyedError("input_topics", f"lists a topic twice: {self.input_topics}")
        return self


class TradesProcessorSettings(ProcessorSettings):
    """``type: trades``: per-symbol indicators on every trade (see processors/trades.py)."""

    type: Literal["trades"]
    params: TradesParams = TradesParams()


class EosCheckProcessorSettings(ProcessorSettings):
    """``type: eos_check``: the topology of the exactly-once harness (see processors/eos_check.py)."""

    type: Literal["eos_check"]


class OrderbookProcessorSettings(ProcessorSettings):
    """``type: orderbook``: a per-symbol L2 book and its metrics (see processors/orderbook.py)."""

    type: Literal["orderbook"]
    params: OrderbookParams = OrderbookParams()


class KlinesProcessorSettings(ProcessorSettings):
    """``type: klines``: klines, their indicators, SMC signals and alerts (see processors/klines.py)."""

    type: Literal["klines"]
    params: KlinesParams = KlinesParams()


AnyProcessorSettings = Annotated[
    TradesProcessorSettings | EosCheckProcessorSettings | OrderbookProcessorSettings | KlinesProcessorSettings,
    Field(discriminator="type"),
]
PROCESSOR_SETTINGS: dict[str, type[ProcessorSettings]] = {
    "trades": TradesProcessorSettings,
    "eos_check": EosCheckProcessorSettings,
    "orderbook": OrderbookProcessorSettings,
    "klines": KlinesProcessorSettings,
}


class ReplaySettings(_Strict):
    """Where the replay producer publishes each message family."""

    topics: dict[Literal["trades", "orderbook", "klines"], str]


class MonitoringSettings(_Strict):
    """HTTP ports and log level."""

    host: str = "0.0.0.0"  # address the HTTP ports listen on
    metrics_port: int = Field(default=8080, ge=0, le=65535)
    health_check_port: int = Field(default=8081, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class CircuitBreakerSettings(_Strict):
    """When a partition's transactions keep aborting: how many in a row open the circuit, and the backoff (ms)."""

    failures: int = Field(default=3, gt=0)  # consecutive aborted commits or failed opens that open the circuit
    backoff_ms: int = Field(default=1_000, gt=0)  # first wait before the partition is tried again; doubles
    max_backoff_ms: int = Field(default=30_000, gt=0)


class HealthSettings(_Strict):
    """What makes ``/health`` unhealthy (and ``/ready`` 503), besides a failed processor and an open circuit."""

    broker_timeout_ms: int = Field(default=15_000, gt=0)  # the broker has not answered for this long
    stuck_partition_ms: int = Field(default=60_000, gt=0)  # a partition with input has not committed for this long
    probe_interval_ms: int = Field(default=2_000, gt=0)  # how often the broker is asked for metadata


class Settings(_Strict):
    """The whole validated configuration."""

    app_id: str = Field(default="stream-processor", min_length=1)
    processor_id: str = Field(default_factory=socket.gethostname, min_length=1)
    kafka: KafkaSettings
    topics: dict[str, TopicSettings] = {}
    stream_processors: dict[str, AnyProcessorSettings] = Field(min_length=1)
    replay: ReplaySettings
    monitoring: MonitoringSettings = MonitoringSettings()
    health: HealthSettings = HealthSettings()
    circuit_breaker: CircuitBreakerSettings = CircuitBreakerSettings()
    # SIGTERM: the worker commits and leaves within this, even with a hung broker; keep it below Kubernetes'
    # terminationGracePeriodSeconds (30 s by default).
    shutdown_timeout_ms: int = Field(default=20_000, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        groups: dict[str, str] = {}
        for name, proc in self.stream_processors.items():
            if not proc.enabled:
                continue
            other = groups.setdefault(proc.consumer_group, name)
            if other != name:
                raise KeyedError(f"stream_processors.{name}.consumer_group",
                                 f"{proc.consumer_group!r} is also {other!r}'s group: the two would split the "
                                 "partitions between them and each miss part of its input")
            counts = {t: self.topics[t].partitions for t in proc.input_topics if t in self.topics}
            if len(set(counts.values())) > 1:
                raise KeyedError(f"stream_processors.{name}.input_topics",
                                 f"inputs must be co-partitioned (same partition count), got {counts}")
        mon = self.monitoring
        if mon.metrics_port and mon.metrics_port == mon.health_check_port:
            raise KeyedError("monitoring.health_check_port", f"equals metrics_port ({mon.metrics_port})")
        return self

    def topic(self, name: str) -> TopicSettings:
        """The settings of topic ``name``; a topic not listed gets 1 partition."""
        return self.topics.get(name, TopicSettings(partitions=1))


# Environment variable -> (path in the YAML document, parser). None in the path means "every processor".
def _int(raw: str) -> int:
    return int(raw.strip())


def _servers(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


ENV_OVERRIDES: dict[str, tuple[tuple[str | None, ...], Any]] = {
    "KAFKA_BOOTSTRAP_SERVERS": (("kafka", "bootstrap_servers"), _servers),
    "PROCESSOR_ID": (("processor_id",), str),
    "BATCH_SIZE": (("stream_processors", None, "batch_size"), _int),
    "COMMIT_INTERVAL_MS": (("kafka", "commit_interval_ms"), _int),
    "MAX_POLL_RECORDS": (("kafka", "max_poll_records"), _int),
    "METRICS_PORT": (("monitoring", "metrics_port"), _int),
    "HEALTH_CHECK_PORT": (("monitoring", "health_check_port"), _int),
    "LOG_LEVEL": (("monitoring", "log_level"), str),
}


def _apply_env(doc: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, (path, parse) in ENV_OVERRIDES.items():
        raw = environ.get(name)
        if raw is None or raw == "":
            continue
        try:
            value = parse(raw)
        except ValueError:
            raise ConfigError("environment", name, f"cannot parse {raw!r}") from None
        if path[1:2] == (None,):
            for proc in (doc.get(path[0]) or {}).values():
                if isinstance(proc, dict):
                    proc[path[2]] = value
            continue
        node = doc
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value


def _location(error: Any) -> tuple[Any, ...]:
    """The error's path in the YAML document (pydantic adds the processor type, the union's tag, to it)."""
    loc = tuple(error["loc"])
    if len(loc) > 2 and loc[0] == "stream_processors" and loc[2] in PROCESSOR_SETTINGS:
        loc = loc[:2] + loc[3:]
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc = (*loc, "type")
    keyed = (error.get("ctx") or {}).get("error")
    if isinstance(keyed, KeyedError):
        loc = (*loc, *keyed.key.split("."))
    return loc


def _key_of(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, override from ``environ`` (default ``os.environ``) and validate the configuration.

    Raises:
        ConfigError: the file is missing or not YAML, or a key is unknown, missing or of a wrong type.
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG
    environ = os.environ if environ is None else environ
    source = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(source, "(file)", f"cannot read: {exc.strerror}") from None
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(source, "(file)", f"not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(source, "(top level)", "must be a mapping")
    _apply_env(doc, environ)
    try:
        return Settings.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = _location(first)
        key = _key_of(loc)
        origin = next(
            (f"environment {name}" for name, (p, _) in ENV_OVERRIDES.items()
             if environ.get(name) and _matches(p, loc)),
            source,
        )
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        keyed = (first.get("ctx") or {}).get("error")
        reason = keyed.reason if isinstance(keyed, KeyedError) else first["msg"]
        raise ConfigError(origin, key, reason + more) from None


def _matches(path: tuple[str | None, ...], loc: tuple[Any, ...]) -> bool:
    return len(path) == len(loc) and all(p is None or p == str(part) for p, part in zip(path, loc, strict=True))
