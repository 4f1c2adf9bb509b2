"""Faust's ``App(...)`` keywords: what each one does here, and ``app.conf`` (:class:`FaustConf`).

Every keyword of faust-streaming 0.15.3's ``Settings.__init__`` (faust/types/settings/settings.py) is in exactly one
of three tables:

- :data:`APPLIED`: it configures the worker (the table says where: a key of
  :class:`~stream_processor.engine.settings.Settings`, or what the app does with it);
- :data:`INERT`: it only tunes Faust's own internals (its buffers, its web server, its producer batching, its
  extension classes' defaults); it is accepted, kept in ``app.conf``, has no effect, and the worker logs it once at
  INFO when it starts (:meth:`FaustConf.inert_note`);
- :data:`REFUSED`: keeping it would change what the program does without saying so; ``App(...)`` raises TypeError
  naming it and why.

A keyword in none of them raises TypeError as Python does for an unexpected keyword argument.

The environment: as in Faust (``BaseSettings._init_settings``: a setting's ``env_name`` value replaces the argument),
an environment variable wins over the argument. Faust's own names (``BROKER_URL``, ``APP_VERSION``, ``WEB_PORT``,
..., see :data:`FAUST_ENV`, with ``env_prefix``) are read for the applied settings, and the engine's (the README's
``KAFKA_BOOTSTRAP_SERVERS``, ``HEALTH_CHECK_PORT``, ... :data:`~stream_processor.engine.settings.ENV_OVERRIDES`) win
over both, since they are what a deployment of this engine sets.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from .durations import to_ms

log = logging.getLogger(__name__)

#: Applied keywords -> what they set here.
APPLIED: dict[str, str] = {
    "broker": "kafka.bootstrap_servers ('kafka://h1:9092;h2:9092', a list, 'aiokafka://', bare 'h:p'; no port: 9092)",
    "url": "kafka.bootstrap_servers (Faust's deprecated name of broker)",
    "broker_consumer": "kafka.bootstrap_servers: must be the broker's hosts (one cluster holds a transaction)",
    "broker_producer": "kafka.bootstrap_servers: must be the broker's hosts (one cluster holds a transaction)",
    "version": "the app id: '<id>-v<version>' when version > 1 (Faust's _prepare_id), so its consumer groups, "
               "changelog, repartition and internal topics are new; source topics are not renamed",
    "id_format": "the app id's format when version > 1 (default '{id}-v{self.version}')",
    "store": "each agent's stream_processors.<agent>.store ('memory://', 'rocksdb://')",
    "processing_guarantee": "each agent's stream_processors.<agent>.processing_mode ('exactly_once', "
                            "'at_least_once'; not given: exactly_once)",
    "topic_partitions": "the partition count of the topics the app creates, where neither app.topic(partitions=) "
                        "nor the YAML gives one",
    "topic_replication_factor": "kafka.replication_factor",
    "value_serializer": "app.conf.value_serializer: the codec of topics declared without one (default 'json')",
    "key_serializer": "app.conf.key_serializer: the codec of topics' keys declared without one (default 'raw')",
    "web_port": "monitoring.health_check_port (the worker's web server: /health, /ready, /status)",
    "web_bind": "monitoring.host (the address the worker's web servers listen on)",
    "broker_commit_interval": "kafka.commit_interval_ms (a duration; Faust's default 2.8 s, ours 100 ms)",
    "broker_session_timeout": "kafka.session_timeout_ms (a duration)",
    "broker_heartbeat_interval": "kafka.heartbeat_interval_ms (a duration)",
    "broker_max_poll_records": "kafka.max_poll_records",
    "table_cleanup_interval": "how often (a duration; Faust's default 30 s) each task closes the expired windows of "
                              "its windowed tables that expire by the wall clock (Faust's table cleanup)",
    "consumer_group_instance_id": "kafka.group_instance_id (static membership)",
    "consumer_auto_offset_reset": "'earliest' only (what every group here starts from)",
    "producer_acks": "-1 / 'all' only (a transaction needs every replica's acknowledgement)",
    "topic_allow_declare": "True only: the worker creates the topics it needs",
    "timezone": "the default timezone of app.crontab",
    "autodiscover": "modules imported when the app is finalized (True: the origin's package and its submodules)",
    "origin": "app.conf.origin: the package autodiscover=True imports",
    "env_prefix": "the prefix of Faust's environment names read here (FAUST_ENV)",
}

#: Keywords accepted with no effect: they tune Faust's internals only.
INERT: frozenset[str] = frozenset({
    "datadir", "tabledir", "debug", "agent_supervisor", "blocking_timeout", "cython_optimizations",
    "broker_api_version", "broker_check_crcs", "broker_client_id", "broker_commit_every",
    "broker_commit_livelock_soft_timeout", "broker_max_poll_interval", "broker_rebalance_timeout",
    "broker_request_timeout", "consumer_api_version", "consumer_max_fetch_size", "consumer_metadata_max_age_ms",
    "consumer_connections_max_idle_ms", "logging_config", "loghandlers", "producer_api_version",
    "producer_compression_type", "producer_linger", "producer_linger_ms", "producer_max_batch_size",
    "producer_max_request_size", "producer_request_timeout", "producer_threaded", "producer_metadata_max_age_ms",
    "producer_connections_max_idle_ms", "reply_create_topic", "reply_expires", "reply_to", "reply_to_prefix",
    "stream_buffer_maxsize", "stream_processing_timeout", "stream_publish_on_commit", "stream_recovery_delay",
    "stream_wait_empty", "stream_ack_cancelled_tasks", "stream_ack_exceptions",
    "table_key_index_size", "table_standby_replicas", "topic_disable_leader", "recovery_consistency_check",
    "store_check_exists", "crash_app_on_aerospike_exception", "aerospike_retries_on_exception",
    "aerospike_sleep_seconds_between_retries_on_exception", "cache", "canonical_url", "web", "web_transport",
    "web_host", "web_in_thread", "web_enabled", "web_graph_enabled", "web_metrics_enabled", "web_router_enabled",
    "web_stats_enabled", "web_tables_enabled", "web_application_options", "web_cors_options", "web_ssl_context",
    "worker_redirect_stdouts", "worker_redirect_stdouts_level",
})

_EXTENSIONS = ("Agent", "ConsumerScheduler", "Event", "Schema", "Stream", "Table", "SetTable", "GlobalTable",
               "SetGlobalTable", "TableManager", "Serializers", "Worker", "PartitionAssignor", "LeaderAssignor",
               "Router", "Topic", "HttpClient", "Monitor")

#: Refused keywords -> why.
REFUSED: dict[str, str] = {
    "broker_credentials": "credentials come from the environment (KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, "
                          "KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_*) or the YAML's kafka section, "
                          "never from code",
    "ssl_context": "TLS is configured by KAFKA_SECURITY_PROTOCOL=SSL and KAFKA_SSL_CAFILE/CERTFILE/KEYFILE (or the "
                   "YAML's kafka section), which build the context",
    "producer_partitioner": "a custom partitioner would move records off their input's partition: a task's outputs "
                            "and tables are partitioned like its input",
    **{name: "Faust's extension classes are not offered: the engine's own App, agents, tables and worker run the "
             "program" for name in _EXTENSIONS},
}

#: Faust's environment names of the applied settings (faust/types/settings/settings.py ``env_name``).
FAUST_ENV: dict[str, str] = {
    "broker": "BROKER_URL", "version": "APP_VERSION", "id_format": "APP_ID_FORMAT", "store": "APP_STORE",
    "processing_guarantee": "PROCESSING_GUARANTEE", "topic_partitions": "TOPIC_PARTITIONS",
    "topic_replication_factor": "TOPIC_REPLICATION_FACTOR", "value_serializer": "APP_VALUE_SERIALIZER",
    "key_serializer": "APP_KEY_SERIALIZER", "web_port": "WEB_PORT", "web_bind": "WEB_BIND",
    "broker_commit_interval": "BROKER_COMMIT_INTERVAL", "broker_session_timeout": "BROKER_SESSION_TIMEOUT",
    "broker_heartbeat_interval": "BROKER_HEARTBEAT_INTERVAL", "broker_max_poll_records": "BROKER_MAX_POLL_RECORDS",
    "consumer_group_instance_id": "CONSUMER_GROUP_INSTANCE_ID", "timezone": "TIMEZONE",
}

_INTS = ("version", "topic_partitions", "topic_replication_factor", "web_port", "broker_max_poll_records")
_SCHEMES = ("kafka", "aiokafka", "confluent")
_GUARANTEES = ("exactly_once", "at_least_once")
DEFAULT_KAFKA_PORT = 9092  # aiokafka's (and Kafka's) port for a host given without one


def broker_addresses(value: Any, *, what: str = "broker") -> list[str]:
    """``host:port`` addresses of a Faust broker argument: ``'kafka://h1:9092;h2:9092'`` (``;`` or ``,`` between
    URLs, as faust.utils.urls.urllist), a list of such strings (or yarl URLs), ``aiokafka://`` and ``confluent://``
    (the same Kafka hosts), or bare ``h:p``; a host without a port gets 9092, a URL without a host is
    ``127.0.0.1:9092`` (as faust's ``server_list``).

    Raises ValueError for another scheme (naming it) or an empty value.
    """
    items = [value] if not isinstance(value, list | tuple) else list(value)
    urls = [part.strip() for item in items for part in str(item).replace(",", ";").split(";") if part.strip()]
    if not urls:
        raise ValueError(f"{what}: no broker URL in {value!r}")
    out = []
    for url in urls:
        scheme, sep, rest = url.partition("://")
        if not sep:
            scheme, rest = "kafka", url
        if scheme not in _SCHEMES:
            raise ValueError(f"{what}: {url!r}: the transport {scheme!r} is not offered (Kafka only: "
                             f"{', '.join(s + '://' for s in _SCHEMES)} or bare host:port)")
        host = rest.split("/", 1)[0] or "127.0.0.1"  # 'kafka://' alone: Faust's server_list gives 127.0.0.1:9092
        out.append(host if host.rpartition(":")[2].isdigit() and not host.endswith("]") else
                   f"{host}:{DEFAULT_KAFKA_PORT}")
    return out


class FaustConf:
    """``app.conf``: Faust's setting names as attributes (``app.conf.broker``, ``.id``, ``.store``, ...).

    Values are those of the arguments and the environment (see the module docstring); an applied setting not given
    has Faust's default (``value_serializer`` 'json', ``key_serializer`` 'raw', ``web_port`` the engine's
    health port default 8081, ``store`` 'memory://', ``processing_guarantee`` 'exactly_once', our default);
    an inert one not given is None. ``broker`` is the list of ``kafka://host:port`` URLs. A YAML ``config`` of the
    App is not reflected here: its values are in ``app.settings``.

    Raises TypeError (in the constructor) for a refused or unknown keyword, ValueError for a value it cannot use.
    """

    def __init__(self, id: str, kwargs: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> None:  # noqa: A002 - Faust's name
        for name in kwargs:
            if name in REFUSED:
                raise TypeError(f"App({name}=...) is not offered: {REFUSED[name]}")
            if name not in APPLIED and name not in INERT:
                raise TypeError(f"App() got an unexpected keyword argument {name!r} (not a Faust setting)")
        env = os.environ if environ is None else environ
        self.given = dict(kwargs)
        prefix = str(env.get("APP_ENV_PREFIX") or kwargs.get("env_prefix") or "")
        values = dict(kwargs)
        self.from_env: dict[str, str] = {}
        for name, env_name in FAUST_ENV.items():
            key = f"{prefix.rstrip('_')}_{env_name}" if prefix else env_name
            raw = env.get(key)
            if raw:  # Faust: the environment's value replaces the argument
                values[name], self.from_env[name] = raw, key
        self._values = values
        self.version = self._int(values, "version", 1)
        if self.version < 1:
            raise ValueError(f"version must be >= 1 (Faust's first version is 1), got {self.version}")
        self.id_format = str(values.get("id_format") or "{id}-v{self.version}")
        self.id = self.id_format.format(id=id, self=self) if self.version > 1 else id
        self._check_brokers(values)
        ours = env.get("KAFKA_BOOTSTRAP_SERVERS")
        servers = ([s.strip() for s in ours.split(",") if s.strip()] if ours else
                   broker_addresses(values.get("broker") or values.get("url") or "kafka://localhost:9092"))
        self.broker = [f"kafka://{s}" for s in servers]
        self.broker_given = bool(ours or values.get("broker") or values.get("url"))
        self.store = str(values.get("store") or "memory://")
        if self.store in ("memory:", "memory:/"):  # str(yarl.URL("memory://")) is "memory:"
            self.store = "memory://"
        if self.store != "memory://" and not self.store.startswith("rocksdb://"):
            raise ValueError(f"store {self.store!r}: 'memory://' or 'rocksdb://' only (optionally 'rocksdb:///a/dir')")
        guarantee = values.get("processing_guarantee")
        guarantee = getattr(guarantee, "value", guarantee)  # faust.ProcessingGuarantee
        if guarantee is not None and str(guarantee) not in _GUARANTEES:
            raise ValueError(f"processing_guarantee {guarantee!r}: one of {', '.join(_GUARANTEES)}")
        self.processing_guarantee = str(guarantee or "exactly_once")
        self.guarantee_given = guarantee is not None
        self.topic_partitions: int | None = self._int(values, "topic_partitions", None)
        self.topic_replication_factor: int | None = self._int(values, "topic_replication_factor", None)
        self.value_serializer = values.get("value_serializer") or "json"
        self.key_serializer = values.get("key_serializer") or "raw"
        port_env = str(env.get("HEALTH_CHECK_PORT") or "").strip()  # a bad one: load_settings names it
        self.web_port: int = int(port_env) if port_env.isdigit() else self._int(values, "web_port", 8081)
        self.web_bind: str | None = values.get("web_bind")
        self.timezone = _timezone(values.get("timezone"))
        self.autodiscover = values.get("autodiscover", False)
        self.table_cleanup_interval: Any = values.get("table_cleanup_interval") or 30.0  # Faust's default
        self.origin: str | None = values.get("origin")
        self._check_fixed(values)

    @staticmethod
    def _int(values: Mapping[str, Any], name: str, default: int | None) -> Any:
        raw = values.get(name)
        if raw is None:
            return default
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: an integer, got {raw!r}") from None

    @staticmethod
    def _check_brokers(values: Mapping[str, Any]) -> None:
        main = broker_addresses(values["broker"]) if values.get("broker") else None
        for name in ("broker_consumer", "broker_producer"):
            if values.get(name) is not None and broker_addresses(values[name], what=name) != main:
                raise TypeError(f"App({name}=...) differs from broker: one cluster holds both sides of a transaction "
                                "(its input offsets and its outputs); give broker only")

    @staticmethod
    def _check_fixed(values: Mapping[str, Any]) -> None:
        reset = values.get("consumer_auto_offset_reset")
        if reset not in (None, "earliest"):
            raise TypeError(f"App(consumer_auto_offset_reset={reset!r}) is not offered: a group here starts from "
                            "the earliest offset (what Faust does by default)")
        acks = values.get("producer_acks")
        if acks not in (None, -1, "all", "-1"):
            raise TypeError(f"App(producer_acks={acks!r}) is not offered: transactions need acks=all (-1)")
        if values.get("topic_allow_declare") is False:
            raise TypeError("App(topic_allow_declare=False) is not offered: the worker creates the topics it needs "
                            "(create them beforehand with `stream-processor topics` and give them their settings)")

    def __getattr__(self, name: str) -> Any:
        if name in INERT:
            return self.__dict__.get("given", {}).get(name)
        raise AttributeError(f"app.conf has no setting {name!r}")

    def settings_defaults(self) -> dict[str, Any]:
        """The values of the applied settings as a Settings document (merged under the YAML's; the engine's
        environment overrides are applied on top by :func:`~stream_processor.engine.settings.load_settings`)."""
        kafka: dict[str, Any] = {}
        if self.broker_given:
            kafka["bootstrap_servers"] = [u.removeprefix("kafka://") for u in self.broker]
        durations = {"broker_commit_interval": "commit_interval_ms", "broker_session_timeout": "session_timeout_ms",
                     "broker_heartbeat_interval": "heartbeat_interval_ms"}
        for name, key in durations.items():
            if self._values.get(name) is not None:
                kafka[key] = to_ms(_number(self._values[name]), what=name)
        if self._values.get("broker_max_poll_records") is not None:
            kafka["max_poll_records"] = self._int(self._values, "broker_max_poll_records", None)
        if self._values.get("consumer_group_instance_id"):
            kafka["group_instance_id"] = str(self._values["consumer_group_instance_id"])
        if self.topic_replication_factor is not None:
            kafka["replication_factor"] = self.topic_replication_factor
        doc: dict[str, Any] = {"app_id": self.id}
        if kafka:
            doc["kafka"] = kafka
        monitoring: dict[str, Any] = {}
        if self._values.get("web_port") is not None:
            monitoring["health_check_port"] = self._int(self._values, "web_port", None)
        if self.web_bind:
            monitoring["host"] = self.web_bind
        if monitoring:
            doc["monitoring"] = monitoring
        return doc

    def agent_defaults(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """An agent's ``stream_processors`` defaults from ``processing_guarantee`` and ``store`` (``fields``: the
        ProcessorSettings fields, so ``store`` is set only where the engine has that key)."""
        out: dict[str, Any] = {}
        if self.guarantee_given:
            out["processing_mode"] = self.processing_guarantee
        if "store" in fields and ("store" in self._values):
            out["store"] = self.store
        return out

    def inert_note(self) -> str | None:
        """The INFO line naming the inert keywords given (None: none given)."""
        inert = sorted(name for name in self.given if name in INERT)
        if not inert:
            return None
        return ("App() settings accepted with no effect (they tune Faust's own internals, which this engine does "
                "not have): " + ", ".join(inert))


def _number(value: Any) -> Any:
    """A duration from an argument or an environment string (a timedelta, seconds, or a duration string)."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _timezone(value: Any) -> dt.tzinfo:
    if value is None:
        return dt.UTC
    if isinstance(value, dt.tzinfo):
        return value
    try:
        return ZoneInfo(str(value))
    except (KeyError, ValueError):
        raise ValueError(f"timezone {value!r}: not a tzinfo or an IANA name") from None
