"""Configuration: an app's YAML file (or document) plus environment overrides, validated once at start.

``load_settings(path, environ)`` returns a frozen :class:`Settings`; any invalid value raises
:class:`~stream_processor.engine.exceptions.ConfigError` naming the file (or ``environment``) and the key,
for example ``config/streams-config.yaml: stream_processors.trades.batch_size: Input should be a
valid integer``. With neither a file nor a document, the settings are the defaults and the environment (the broker
at :data:`DEFAULT_BROKER` unless ``KAFKA_BOOTSTRAP_SERVERS`` says otherwise).

An application adds top-level sections of its own (see :class:`Settings`): a section model passed in ``sections``
(an :class:`~stream_processor.engine.app.App`'s ``sections``), or one an installed distribution declares in the
entry-point group :data:`SECTIONS_GROUP`, loaded only when a document has that key.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

#: The broker an app without a configuration file talks to (Faust's default broker, ``kafka://localhost:9092``),
#: unless its settings or ``KAFKA_BOOTSTRAP_SERVERS`` name another.
DEFAULT_BROKER = "localhost:9092"

#: The entry-point group of top-level settings sections: ``<key> = "module:Model"`` (a pydantic model), loaded when a
#: document has ``<key>`` and no section model was passed for it.
SECTIONS_GROUP = "stream_processor.sections"


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
    # A dead worker's partitions move after session_timeout_ms (6 s is the broker's default minimum,
    # group.min.session.timeout.ms), noticed by the others within a heartbeat.
    transaction_timeout_ms: int = Field(default=5_000, gt=0)
    session_timeout_ms: int = Field(default=6_000, gt=0)
    heartbeat_interval_ms: int = Field(default=1_000, gt=0)
    # Static membership (KIP-345): a worker that restarts under the same id within session_timeout_ms gets its
    # partitions back without a rebalance. Unique per worker process (a StatefulSet's pod name); None: dynamic.
    group_instance_id: str | None = Field(default=None, min_length=1)
    replication_factor: int = Field(default=1, gt=0)
    # Authentication and encryption (see the README's "Kafka security"): secrets come from the environment
    # (KAFKA_SASL_PASSWORD, KAFKA_SSL_KEY_PASSWORD) or from mounted files, never from this file.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None  # from KAFKA_SASL_PASSWORD only
    sasl_password_file: Path | None = None  # a mounted Secret's file holding the password
    ssl_cafile: Path | None = None  # PEM CA bundle that signed the brokers' certificates (default: system CAs)
    ssl_certfile: Path | None = None  # PEM client certificate (mTLS), with ssl_keyfile
    ssl_keyfile: Path | None = None
    ssl_key_password: SecretStr | None = None  # from KAFKA_SSL_KEY_PASSWORD only
    ssl_key_password_file: Path | None = None
    ssl_check_hostname: bool = True

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

    @model_validator(mode="after")
    def _heartbeats_within_sessions(self) -> KafkaSettings:
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise KeyedError("heartbeat_interval_ms", f"{self.heartbeat_interval_ms} must be at most a third of "
                                                      f"session_timeout_ms ({self.session_timeout_ms})")
        return self

    @model_validator(mode="after")
    def _security(self) -> KafkaSettings:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl:
            if self.sasl_mechanism is None:
                raise KeyedError("sasl_mechanism", f"{self.security_protocol} needs one of PLAIN, SCRAM-SHA-256, "
                                                   "SCRAM-SHA-512")
            if not self.sasl_username:
                raise KeyedError("sasl_username", f"{self.security_protocol} needs a user name")
            if (self.sasl_password is None) == (self.sasl_password_file is None):
                raise KeyedError("sasl_password_file", f"{self.security_protocol} needs the password in exactly one "
                                                       "place: the file named here or environment KAFKA_SASL_PASSWORD")
        else:
            for key in ("sasl_mechanism", "sasl_username", "sasl_password", "sasl_password_file"):
                if getattr(self, key) is not None:
                    raise KeyedError(key, f"is set but security_protocol is {self.security_protocol} (no SASL)")
        if not self.security_protocol.endswith("SSL"):
            for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password", "ssl_key_password_file"):
                if getattr(self, key) is not None:
                    raise KeyedError(key, f"is set but security_protocol is {self.security_protocol} (no TLS)")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise KeyedError("ssl_keyfile" if self.ssl_keyfile is None else "ssl_certfile",
                             "a client certificate (mTLS) needs both ssl_certfile and ssl_keyfile")
        for key in ("sasl_password_file", "ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password_file"):
            path = getattr(self, key)
            if path is not None and not path.is_file():
                raise KeyedError(key, f"{str(path)!r} is not a readable file")
        if self.security_protocol.endswith("SSL"):
            from .security import TLSFileError, ssl_context

            try:
                ssl_context(self)
            except TLSFileError as exc:
                raise KeyedError(exc.key, exc.reason) from None
        return self


class TopicSettings(_Strict):
    """One topic this project creates when it is missing."""

    partitions: int = Field(gt=0)
    compacted: bool = False
    retention_ms: int | None = None
    #: An internal repartition topic (a group_by's): created with Kafka Streams' configs (retention.ms=-1) and
    #: purged by its reader up to what it committed (engine/purge.py).
    repartition: bool = False


class ProcessorSettings(_Strict):
    """One stream processor or agent: its consumer group, topics and mode; each ``type`` adds its own ``params``.

    ``type`` names a registered processor type (see :mod:`stream_processor.engine.registry`); left out, it is the
    entry's name (an agent's or processor's registered name). ``consumer_group`` defaults to
    ``<app_id>-<name>``. Several ``input_topics`` must be co-partitioned (same partition count, keyed alike):
    partition q of every input is one task, one transaction and one changelog partition. ``state_errors``: what a
    changelog snapshot this code cannot read does on restore (``reset``: that key starts empty, logged and counted
    as the event ``state_reset``; ``fail``: the processor fails at once, naming the key).
    """

    type: str
    consumer_group: str = Field(min_length=1)
    processing_mode: Literal["exactly_once", "at_least_once"] = "exactly_once"
    batch_size: int = Field(default=500, gt=0)
    input_topics: list[str] = Field(min_length=1)
    output_topics: list[str] = []
    dead_letter_topic: str = "dead_letter"
    state_errors: Literal["reset", "fail"] = "reset"
    enabled: bool = True
    max_input_bytes: int = Field(default=1_048_576, gt=0)  # a larger input record is dead-lettered undecoded
    # Several inputs: a task processes their records in timestamp order (Kafka Streams' PartitionGroup). An input
    # partition with nothing fetched holds the others back while the broker has records for it (KIP-695), and for
    # up to this long while it has none (KIP-353); past that its task goes on without it ("enforced processing":
    # counted, and the records processed so say so in ProcessorContext.enforced). -1: never wait.
    max_task_idle_ms: int = Field(default=0, ge=-1)
    # Where the tasks' stores keep their keys (Faust's App(store=...)): "memory://" (a dict per store), or
    # "rocksdb://" (RocksDB on disk, one database per task, under <working directory>/<app_id>-data/rocksdb) or
    # "rocksdb:///a/dir" (under /a/dir); the changelog stays the source of truth either way (see
    # stream_processor.engine.rocksdb_store).
    store: str = "memory://"

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if value == "memory://" or value.startswith("rocksdb://"):
            return value
        raise ValueError(f"store {value!r} must be 'memory://' or 'rocksdb://' (optionally 'rocksdb:///a/dir', "
                         "the directory of its files)")

    def sends_to(self) -> list[str]:
        """Every topic the processor may send to: ``output_topics`` and any its type's ``params`` name (a type with
        such topics overrides this); the changelog and dead-letter topics aside."""
        return list(self.output_topics)

    def copartitioned_outputs(self) -> list[str]:
        """Topics among :meth:`sends_to` the processor writes to the input record's partition number: the worker
        refuses to start unless they have as many partitions as the inputs."""
        return []

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


class MonitoringSettings(_Strict):
    """HTTP ports and logs. Neither port has authentication: bind ``host`` (env ``MONITORING_HOST``) to an address
    only the scraper and the kubelet reach, or keep them behind a NetworkPolicy."""

    host: str = "0.0.0.0"  # address the HTTP ports listen on
    metrics_port: int = Field(default=8080, ge=0, le=65535)
    health_check_port: int = Field(default=8081, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = "text"  # json: one JSON object per line (LOG_FORMAT=json)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


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
    """The whole validated configuration.

    Besides the engine's keys below, a document may hold sections of an application (a ``replay`` section naming
    the topics its replay command publishes to, say). A top-level key is validated by the section model given for
    it (the validation context's ``sections``, which :func:`load_settings` fills from its argument), else by the
    model an installed distribution declares under that key in the entry-point group :data:`SECTIONS_GROUP`; any
    other key is refused, naming it. A section is read with :meth:`section` (or as an attribute:
    ``settings.replay``); a section given a model but absent from the document is None.
    """

    # "allow" only to carry application sections: every extra key is validated or refused by _sections below.
    model_config = ConfigDict(extra="allow", frozen=True)

    app_id: str = Field(default="stream-processor", min_length=1)
    processor_id: str = Field(default_factory=socket.gethostname, min_length=1)
    kafka: KafkaSettings
    topics: dict[str, TopicSettings] = {}
    stream_processors: dict[str, SerializeAsAny[ProcessorSettings]] = Field(default_factory=dict,
                                                                            validate_default=True)
    monitoring: MonitoringSettings = MonitoringSettings()
    health: HealthSettings = HealthSettings()
    circuit_breaker: CircuitBreakerSettings = CircuitBreakerSettings()
    # SIGTERM: the worker commits and leaves within this, even with a hung broker; keep it below Kubernetes'
    # terminationGracePeriodSeconds (30 s by default).
    shutdown_timeout_ms: int = Field(default=20_000, gt=0)

    @field_validator("stream_processors", mode="before")
    @classmethod
    def _processors(cls, value: Any, info: ValidationInfo) -> Any:
        """Validate each entry with the settings class of its registered ``type`` (the registry comes with the
        validation context, else the global one)."""
        from .registry import resolve_entries

        if not isinstance(value, dict):
            return value
        context = info.context or {}
        app_id = info.data.get("app_id", "stream-processor")
        return resolve_entries(value, app_id, context.get("types"))

    @model_validator(mode="after")
    def _sections(self, info: ValidationInfo) -> Settings:
        """Validate each application section with its model; refuse a key no model claims."""
        from .registry import load_entry_point

        extra = self.__pydantic_extra__
        if extra is None:  # pragma: no cover - extra="allow" always sets it
            return self
        given: Mapping[str, type[BaseModel]] = (info.context or {}).get("sections") or {}
        for name in given:
            extra.setdefault(name, None)
        for name, raw in extra.items():
            model = given.get(name)
            if model is None:
                try:
                    model = load_entry_point(SECTIONS_GROUP, name)
                except ValueError as exc:
                    raise KeyedError(name, str(exc)) from None
            if model is None:
                raise KeyedError(name, "Extra inputs are not permitted (neither a key of the engine's settings nor "
                                       "a section the app or an installed package adds)")
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise KeyedError(name, f"the section model of {name!r} is not a pydantic model: {model!r}")
            if raw is None or isinstance(raw, model):
                continue
            try:
                extra[name] = model.model_validate(raw, context=info.context)
            except ValidationError as exc:
                error = exc.errors()[0]
                loc = _location(error)
                keyed = (error.get("ctx") or {}).get("error")
                reason = keyed.reason if isinstance(keyed, KeyedError) else error["msg"]
                more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
                raise KeyedError(".".join([name, *map(str, loc)]), reason + more) from None
        return self

    def section(self, name: str) -> Any:
        """The validated application section ``name`` (an instance of its model), or None when the document has
        none."""
        return (self.__pydantic_extra__ or {}).get(name)

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if not self.stream_processors:
            raise KeyedError("stream_processors", "no processors: configure one here or register an agent")
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


def _location(error: Any) -> tuple[Any, ...]:
    """The error's path in the YAML document (pydantic adds the processor type, the union's tag, to it)."""
    loc = tuple(error["loc"])
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc = (*loc, "type")
    keyed = (error.get("ctx") or {}).get("error")
    if isinstance(keyed, KeyedError):
        loc = (*loc, *keyed.key.split("."))
    return loc


# Reading a file and the environment into Settings (re-exported here: where load_settings always lived).
from .config import ENV_OVERRIDES, SECRET_KEYS, load_settings  # noqa: E402

__all__ = ["ENV_OVERRIDES", "SECRET_KEYS", "KafkaSettings", "KeyedError", "ProcessorSettings", "Settings",
           "TopicSettings", "load_settings"]
