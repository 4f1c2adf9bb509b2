"""``load_settings``: the shipped config, environment overrides, ConfigError messages naming file and key, settings
without a file, and applications' own top-level sections."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from stream_processor.engine.app import App
from stream_processor.engine.exceptions import ConfigError, StreamProcessorError
from stream_processor.engine.registry import ProcessorType
from stream_processor.engine.settings import DEFAULT_BROKER, ProcessorSettings, Settings, load_settings
from stream_processor.market.app import app as market_app
from stream_processor.market.settings import DEFAULT_CONFIG, ReplaySettings

SHIPPED = Path(__file__).resolve().parents[3] / "config" / "streams-config.yaml"
_ANY_TYPE = ProcessorType("t", ProcessorSettings, lambda name, settings: None)


@pytest.fixture(scope="module")
def shipped_doc() -> dict[str, Any]:
    return yaml.safe_load(SHIPPED.read_text())


@pytest.fixture
def write_config(tmp_path: Path, shipped_doc: dict[str, Any]) -> Callable[..., Path]:
    """``write_config(edit)``: the shipped YAML, changed in place by ``edit(doc)``, dumped to a temp file."""

    def write(edit: Callable[[dict[str, Any]], None] | None = None, name: str = "streams-config.yaml") -> Path:
        doc = copy.deepcopy(shipped_doc)
        if edit is not None:
            edit(doc)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    return write


def _config_error(path: Path, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={} if environ is None else environ)
    return info.value


# ---- the shipped file -------------------------------------------------------------------------------


def test_the_market_apps_config_is_the_shipped_file() -> None:
    assert DEFAULT_CONFIG.resolve() == SHIPPED.resolve()  # the package's copy is a link to config/
    assert market_app.config == DEFAULT_CONFIG


def test_no_file_means_no_file_read() -> None:
    # Without a path or a document nothing is read: the defaults and the environment only.
    with pytest.raises(ConfigError) as info:
        load_settings(None, environ={})
    assert (info.value.source, info.value.key) == ("(settings)", "kafka")
    settings = load_settings(None, environ={"KAFKA_BOOTSTRAP_SERVERS": "k:1"}, defaults={
        "app_id": "x", "stream_processors": {"p": {"type": "t", "input_topics": ["in"]}}},
        types={"t": _ANY_TYPE})
    assert (settings.app_id, settings.kafka.bootstrap_servers, list(settings.stream_processors)) == ("x", ["k:1"],
                                                                                                     ["p"])


def test_shipped_config_loads_with_exactly_once_and_100ms_commits() -> None:
    settings = load_settings(SHIPPED, environ={})
    assert isinstance(settings, Settings)
    assert settings.app_id == "stream-processor"
    assert settings.kafka.bootstrap_servers == ["127.0.0.1:9092"]
    assert settings.kafka.commit_interval_ms == 100
    assert settings.kafka.max_poll_records == 2000
    assert settings.kafka.transaction_timeout_ms < settings.kafka.session_timeout_ms
    trades = settings.stream_processors["trades"]
    assert trades.type == "trades"
    assert trades.processing_mode == "exactly_once"
    assert trades.consumer_group == "trades-enricher"
    assert trades.batch_size == 500
    assert trades.input_topics == ["raw_trades"]
    assert trades.output_topics == ["enriched_trades"]
    assert trades.dead_letter_topic == "dead_letter"
    assert (trades.params.sma_length, trades.params.ema_length) == (20, 20)
    assert (trades.params.momentum_length, trades.params.volume_window) == (20, 100)
    assert settings.topic("raw_trades").partitions == 8
    assert settings.topic("dead_letter").partitions == 1
    assert settings.topic("not-listed").partitions == 1
    assert dict(settings.replay.topics) == {
        "trades": "raw_trades",
        "orderbook": "raw_orderbook",
        "klines": "raw_klines",
    }
    assert (settings.monitoring.metrics_port, settings.monitoring.health_check_port) == (8080, 8081)
    assert settings.monitoring.log_level == "INFO"


def test_processing_mode_and_commit_interval_default_when_omitted(write_config) -> None:
    def drop(doc: dict[str, Any]) -> None:
        del doc["stream_processors"]["trades"]["processing_mode"]
        del doc["kafka"]["commit_interval_ms"]

    settings = load_settings(write_config(drop), environ={})
    assert settings.stream_processors["trades"].processing_mode == "exactly_once"
    assert settings.kafka.commit_interval_ms == 100


def test_settings_are_frozen() -> None:
    settings = load_settings(SHIPPED, environ={})
    with pytest.raises(ValueError):
        settings.kafka.commit_interval_ms = 5  # type: ignore[misc]


# ---- environment overrides --------------------------------------------------------------------------


def test_no_environment_means_the_file_values() -> None:
    # An empty mapping (not os.environ) is used as given; empty strings are "not set".
    base = load_settings(SHIPPED, environ={})
    blank = load_settings(SHIPPED, environ={"BATCH_SIZE": "", "LOG_LEVEL": "", "KAFKA_BOOTSTRAP_SERVERS": ""})
    assert blank == base


def test_kafka_bootstrap_servers_is_a_comma_list() -> None:
    settings = load_settings(SHIPPED, environ={"KAFKA_BOOTSTRAP_SERVERS": "k1:9092, k2:9093 ,,k3:9094"})
    assert settings.kafka.bootstrap_servers == ["k1:9092", "k2:9093", "k3:9094"]


def test_processor_id_override() -> None:
    assert load_settings(SHIPPED, environ={"PROCESSOR_ID": "worker-7"}).processor_id == "worker-7"


def test_batch_size_applies_to_every_processor(write_config) -> None:
    def add_second(doc: dict[str, Any]) -> None:
        second = copy.deepcopy(doc["stream_processors"]["trades"])
        second.update(consumer_group="trades-b", batch_size=7)
        doc["stream_processors"]["trades_b"] = second

    path = write_config(add_second)
    assert {n: p.batch_size for n, p in load_settings(path, environ={}).stream_processors.items()} == {
        "trades": 500,
        "orderbook": 500,
        "klines": 500,
        "trades_b": 7,
    }
    settings = load_settings(path, environ={"BATCH_SIZE": " 250 "})
    assert {p.batch_size for p in settings.stream_processors.values()} == {250}
    assert len(settings.stream_processors) == 4


@pytest.mark.parametrize(
    ("name", "raw", "get", "expected"),
    [
        ("COMMIT_INTERVAL_MS", "250", lambda s: s.kafka.commit_interval_ms, 250),
        ("MAX_POLL_RECORDS", "64", lambda s: s.kafka.max_poll_records, 64),
        ("METRICS_PORT", "9100", lambda s: s.monitoring.metrics_port, 9100),
        ("HEALTH_CHECK_PORT", "9101", lambda s: s.monitoring.health_check_port, 9101),
        ("LOG_LEVEL", "debug", lambda s: s.monitoring.log_level, "DEBUG"),
        ("LOG_LEVEL", "Warning", lambda s: s.monitoring.log_level, "WARNING"),
    ],
)
def test_scalar_override_takes_effect(name: str, raw: str, get: Callable[[Settings], Any], expected: Any) -> None:
    base = load_settings(SHIPPED, environ={})
    assert get(base) != expected
    settings = load_settings(SHIPPED, environ={name: raw})
    assert get(settings) == expected
    # Nothing else moved.
    assert settings.model_dump(exclude={"kafka", "monitoring"}) == base.model_dump(exclude={"kafka", "monitoring"})


def test_override_fills_a_section_the_file_omits(write_config) -> None:
    path = write_config(lambda doc: doc.pop("monitoring"))
    settings = load_settings(path, environ={"METRICS_PORT": "9200"})
    assert settings.monitoring.metrics_port == 9200
    assert settings.monitoring.health_check_port == 8081  # the model default


# ---- errors naming the file and the key ------------------------------------------------------------


def test_unknown_key_names_file_and_dotted_key(write_config) -> None:
    path = write_config(lambda doc: doc["stream_processors"]["trades"].update(batchsize=100))
    err = _config_error(path)
    assert isinstance(err, StreamProcessorError)
    assert (err.source, err.key) == (str(path), "stream_processors.trades.batchsize")
    assert str(err).startswith(f"{path}: stream_processors.trades.batchsize: ")
    assert "extra" in err.reason.lower()


def test_unknown_top_level_and_nested_param_keys(write_config) -> None:
    err = _config_error(write_config(lambda doc: doc["stream_processors"]["trades"]["params"].update(sma_len=5)))
    assert err.key == "stream_processors.trades.params.sma_len"
    err = _config_error(write_config(lambda doc: doc.update(kafak={})))
    assert err.key == "kafak"


def test_wrong_type_names_file_and_key(write_config) -> None:
    path = write_config(lambda doc: doc["stream_processors"]["trades"].update(batch_size="many"))
    err = _config_error(path)
    assert (err.source, err.key) == (str(path), "stream_processors.trades.batch_size")
    assert str(err) == f"{path}: stream_processors.trades.batch_size: {err.reason}"
    assert "integer" in err.reason


def test_missing_value_names_file_and_key(write_config) -> None:
    path = write_config(lambda doc: doc["stream_processors"]["trades"].pop("input_topics"))
    err = _config_error(path)
    assert (err.source, err.key) == (str(path), "stream_processors.trades.input_topics")
    assert "required" in err.reason.lower()


def test_consumer_group_defaults_to_app_id_and_entry_name(write_config) -> None:
    def drop(doc: dict[str, Any]) -> None:
        del doc["stream_processors"]["trades"]["consumer_group"]
        doc["app_id"] = "myapp"

    settings = load_settings(write_config(drop), environ={})
    assert settings.stream_processors["trades"].consumer_group == "myapp-trades"
    assert settings.stream_processors["orderbook"].consumer_group == "orderbook-enricher"  # given: kept


def test_replay_section_is_optional(write_config) -> None:
    settings = load_settings(write_config(lambda doc: doc.pop("replay")), environ={})
    assert settings.section("replay") is None and not hasattr(settings, "replay")
    shipped = load_settings(SHIPPED, environ={})
    assert isinstance(shipped.section("replay"), ReplaySettings) and shipped.replay is shipped.section("replay")
    assert shipped.model_dump(mode="json")["replay"] == {"topics": {"trades": "raw_trades",
                                                                    "orderbook": "raw_orderbook",
                                                                    "klines": "raw_klines"}}


def test_transaction_timeout_must_stay_below_the_session_timeout(write_config) -> None:
    path = write_config(lambda doc: doc["kafka"].update(transaction_timeout_ms=30_000, session_timeout_ms=30_000))
    err = _config_error(path)
    assert (err.source, err.key) == (str(path), "kafka")
    assert "transaction_timeout_ms (30000) must be below session_timeout_ms (30000)" in err.reason


def test_missing_section_names_it(write_config) -> None:
    err = _config_error(write_config(lambda doc: doc.pop("kafka")))
    assert err.key == "kafka"
    assert "required" in err.reason.lower()


@pytest.mark.parametrize("mode", ["exactly-once", "EXACTLY_ONCE", "at_most_once", 1])
def test_bad_processing_mode(write_config, mode: Any) -> None:
    path = write_config(lambda doc: doc["stream_processors"]["trades"].update(processing_mode=mode))
    err = _config_error(path)
    assert (err.source, err.key) == (str(path), "stream_processors.trades.processing_mode")
    assert "exactly_once" in err.reason and "at_least_once" in err.reason


def test_at_least_once_is_accepted(write_config) -> None:
    path = write_config(lambda doc: doc["stream_processors"]["trades"].update(processing_mode="at_least_once"))
    assert load_settings(path, environ={}).stream_processors["trades"].processing_mode == "at_least_once"


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda doc: doc["stream_processors"]["trades"].update(batch_size=0), "stream_processors.trades.batch_size"),
        (lambda doc: doc["kafka"].update(commit_interval_ms=-1), "kafka.commit_interval_ms"),
        (lambda doc: doc["kafka"].update(bootstrap_servers=[]), "kafka.bootstrap_servers"),
        (lambda doc: doc["monitoring"].update(metrics_port=70000), "monitoring.metrics_port"),
        (lambda doc: doc["monitoring"].update(log_level="LOUD"), "monitoring.log_level"),
        (lambda doc: doc["stream_processors"]["trades"].update(type="candles"), "stream_processors.trades.type"),
        (
            lambda doc: doc["stream_processors"]["trades"].update(input_topics=[]),
            "stream_processors.trades.input_topics",
        ),
    ],
)
def test_out_of_range_values_name_the_key(write_config, edit: Callable[[dict[str, Any]], None], key: str) -> None:
    path = write_config(edit)
    err = _config_error(path)
    assert (err.source, err.key) == (str(path), key)


def test_unknown_replay_family_names_it(write_config) -> None:
    err = _config_error(write_config(lambda doc: doc["replay"]["topics"].update(ticks="raw_ticks")))
    # pydantic reports a bad dict key at ``<dict>.<key>.[key]``.
    assert err.key.startswith("replay.topics.ticks")
    assert "trades" in err.reason


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "streams-config.yaml"
    err = _config_error(path)
    assert err.source == str(path)
    assert str(path) in str(err)
    assert "cannot read" in err.reason


def test_invalid_yaml_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("kafka:\n  bootstrap_servers: [\"a:1\"\n  commit_interval_ms: 100\n")
    err = _config_error(path)
    assert err.source == str(path)
    assert str(err).startswith(f"{path}: ")
    assert "YAML" in err.reason


def test_non_mapping_document(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    err = _config_error(path)
    assert (err.source, err.key) == (str(path), "(top level)")


# ---- errors from environment overrides ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["BATCH_SIZE", "COMMIT_INTERVAL_MS", "MAX_POLL_RECORDS", "METRICS_PORT"])
def test_unparsable_override_names_environment_and_variable(name: str) -> None:
    err = _config_error(SHIPPED, {name: "x"})
    assert (err.source, err.key) == ("environment", name)
    assert str(err).startswith(f"environment: {name}: ")
    assert "'x'" in err.reason


def test_parsable_but_invalid_override_names_variable_and_key() -> None:
    err = _config_error(SHIPPED, {"BATCH_SIZE": "0"})
    assert err.source == "environment BATCH_SIZE"
    assert err.key == "stream_processors.trades.batch_size"
    assert str(err).startswith("environment BATCH_SIZE: stream_processors.trades.batch_size: ")


@pytest.mark.parametrize(
    ("name", "raw", "key"),
    [
        ("METRICS_PORT", "70000", "monitoring.metrics_port"),
        ("COMMIT_INTERVAL_MS", "0", "kafka.commit_interval_ms"),
        ("LOG_LEVEL", "verbose", "monitoring.log_level"),
        ("KAFKA_BOOTSTRAP_SERVERS", " , ", "kafka.bootstrap_servers"),
    ],
)
def test_other_invalid_overrides_name_variable_and_key(name: str, raw: str, key: str) -> None:
    err = _config_error(SHIPPED, {name: raw})
    assert (err.source, err.key) == (f"environment {name}", key)


def test_file_error_is_not_blamed_on_an_unrelated_override(write_config) -> None:
    path = write_config(lambda doc: doc["kafka"].update(max_poll_records="lots"))
    err = _config_error(path, {"BATCH_SIZE": "10", "METRICS_PORT": "9000"})
    assert (err.source, err.key) == (str(path), "kafka.max_poll_records")


def test_file_error_is_not_blamed_on_an_empty_override(write_config) -> None:
    path = write_config(lambda doc: doc["stream_processors"]["trades"].update(batch_size="many"))
    err = _config_error(path, {"BATCH_SIZE": ""})
    assert (err.source, err.key) == (str(path), "stream_processors.trades.batch_size")


# ---- configurations that would lose records or exactly-once silently ------------------------------------


def _second_trades(doc: dict[str, Any], **changes: Any) -> None:
    second = copy.deepcopy(doc["stream_processors"]["trades"])
    second.update(changes)
    doc["stream_processors"]["trades_b"] = second


@pytest.mark.parametrize(
    ("edit", "key", "words"),
    [
        (lambda doc: _second_trades(doc), "stream_processors.trades_b.consumer_group", "split the partitions"),
        (lambda doc: doc["stream_processors"]["trades"].update(output_topics=["raw_trades"]),
         "stream_processors.trades.output_topics.0", "also an input topic"),
        (lambda doc: doc["stream_processors"]["klines"].update(
            output_topics=["enriched_klines", "raw_trades", "alerts"]),
         "stream_processors.klines.output_topics.1", "also an input topic"),
        (lambda doc: doc["stream_processors"]["trades"].update(dead_letter_topic="raw_trades"),
         "stream_processors.trades.dead_letter_topic", "also an input topic"),
        (lambda doc: doc["stream_processors"]["trades"].update(input_topics=["raw_trades", "raw_trades"]),
         "stream_processors.trades.input_topics", "twice"),
        (lambda doc: doc["monitoring"].update(metrics_port=9000, health_check_port=9000),
         "monitoring.health_check_port", "equals metrics_port"),
        (lambda doc: doc["kafka"].update(bootstrap_servers=["kafka-0.kafka"]), "kafka.bootstrap_servers",
         "must be host:port"),
        (lambda doc: doc["kafka"].update(bootstrap_servers=["k:9092", "k:port"]), "kafka.bootstrap_servers",
         "must be host:port"),
        (lambda doc: doc["stream_processors"]["klines"]["params"]["alerts"].append({"name": "x", "event": "bos2"}),
         "stream_processors.klines.params.alerts.2.event", "unknown SMC event type 'bos2'"),
        (lambda doc: doc["stream_processors"]["klines"]["params"]["alerts"].append(
            {"name": "x", "event": "bos", "against_trend": "4h"}),
         "stream_processors.klines.params.alerts.2.against_trend", "not among intervals"),
        (lambda doc: (doc["topics"].update(raw_more={"partitions": 3}),
                      doc["stream_processors"]["trades"].update(input_topics=["raw_trades", "raw_more"])),
         "stream_processors.trades.input_topics", "co-partitioned"),
        (lambda doc: doc["stream_processors"]["trades"]["params"].update(smc_context_topic="smc_context"),
         "stream_processors.trades.params.smc_context_topic", "must also be one of input_topics"),
        (lambda doc: doc["stream_processors"]["klines"]["params"]["smc"].update(context_topic="raw_trades"),
         "stream_processors.klines.params.smc.context_topic", "read its own output"),
        (lambda doc: doc["stream_processors"]["klines"]["params"]["smc"].update(sessions=["London", "Londn"]),
         "stream_processors.klines.params.smc.sessions.1", "session must be one of"),
        (lambda doc: doc["stream_processors"]["klines"]["params"]["volume_profile"].update(interval="15m"),
         "stream_processors.klines.params.volume_profile.interval", "not among intervals"),
    ],
)
def test_configurations_that_would_fail_silently_are_refused(
    write_config, edit: Callable[[dict[str, Any]], None], key: str, words: str
) -> None:
    path = write_config(edit)
    err = _config_error(path)
    assert (err.source, err.key) == (str(path), key), err
    assert words in err.reason


def test_a_disabled_processor_may_share_a_group_and_ipv6_and_zero_ports_are_fine(write_config) -> None:
    def edit(doc: dict[str, Any]) -> None:
        _second_trades(doc, enabled=False)
        doc["kafka"]["bootstrap_servers"] = ["[::1]:9092", "kafka-0.kafka.svc:19092"]
        doc["monitoring"].update(metrics_port=0, health_check_port=0)

    settings = load_settings(write_config(edit), environ={})
    assert settings.kafka.bootstrap_servers == ["[::1]:9092", "kafka-0.kafka.svc:19092"]


def test_co_partitioned_inputs_are_accepted(write_config) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["stream_processors"]["trades"]["input_topics"] = ["raw_trades", "raw_klines"]

    assert load_settings(write_config(edit), environ={}).stream_processors["trades"].input_topics == [
        "raw_trades", "raw_klines"]


# ---- an application's own sections --------------------------------------------------------------------------------


class Alerting(BaseModel):
    """A section an application adds (``alerting:``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    window_ms: int = Field(gt=0)
    channel: str = "ops"


def test_an_apps_section_is_validated_with_the_rest(write_config) -> None:
    path = write_config(lambda doc: doc.update(alerting={"window_ms": 5}))
    settings = load_settings(path, environ={}, sections={"alerting": Alerting})
    assert settings.section("alerting") == Alerting(window_ms=5) == settings.alerting
    assert settings.section("replay") is not None  # the shipped replay section still comes from its entry point
    # Given a model but absent from the document: None.
    assert load_settings(SHIPPED, environ={}, sections={"alerting": Alerting}).section("alerting") is None


@pytest.mark.parametrize(("section", "key", "words"), [
    ({"window_ms": 0}, "alerting.window_ms", "greater than 0"),
    ({"window_ms": 5, "chanel": "x"}, "alerting.chanel", "Extra inputs"),
    ({}, "alerting.window_ms", "required"),
    ("often", "alerting", "valid dictionary"),
])
def test_an_apps_section_errors_name_the_file_and_key(write_config, section: Any, key: str, words: str) -> None:
    path = write_config(lambda doc: doc.update(alerting=section))
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={}, sections={"alerting": Alerting})
    assert (info.value.source, info.value.key) == (str(path), key)
    assert words in info.value.reason


def test_a_section_no_model_claims_is_an_unknown_key(write_config) -> None:
    err = _config_error(write_config(lambda doc: doc.update(alerting={"window_ms": 5})))
    assert err.key == "alerting" and "Extra inputs are not permitted" in err.reason


def test_an_app_registers_its_sections(tmp_path: Path) -> None:
    config = tmp_path / "app.yaml"
    config.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": ["k:1"]}, "alerting": {"window_ms": 7}}))
    app = App("sections", config=config, sections={"alerting": Alerting})

    @app.agent("in")
    async def agent(stream: Any) -> None:
        async for _ in stream:
            pass

    assert app.settings.section("alerting") == Alerting(window_ms=7)
    with pytest.raises(ConfigError) as info:
        _ = App("bare", settings={"alerting": {"window_ms": 7}}).settings
    assert (info.value.source, info.value.key) == ("(settings)", "alerting")


# ---- an App without a configuration file -----------------------------------------------------------------------


def _bare_app(**kwargs: Any) -> App:
    app = App("bare-app", **kwargs)

    @app.agent("in", sink=["out"])
    async def agent(stream: Any) -> Any:
        async for value in stream:
            yield value

    return app


def test_an_app_without_config_takes_its_id_and_faust_s_default_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    settings = _bare_app().settings
    assert (settings.app_id, settings.kafka.bootstrap_servers) == ("bare-app", [DEFAULT_BROKER])
    assert DEFAULT_BROKER == "localhost:9092"
    assert list(settings.stream_processors) == ["agent"] and settings.section("replay") is None
    # A document without the broker keeps its other Kafka keys and gets the default broker.
    partial = _bare_app(settings={"kafka": {"commit_interval_ms": 50}}).settings
    assert (partial.kafka.bootstrap_servers, partial.kafka.commit_interval_ms) == ([DEFAULT_BROKER], 50)


def test_the_environment_overrides_an_app_without_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("METRICS_PORT", "9300")
    settings = _bare_app().settings
    assert settings.kafka.bootstrap_servers == ["k1:9092", "k2:9092"]
    assert settings.monitoring.metrics_port == 9300
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "no-port")
    with pytest.raises(ConfigError) as info:
        _ = _bare_app().settings
    assert (info.value.source, info.value.key) == ("environment KAFKA_BOOTSTRAP_SERVERS", "kafka.bootstrap_servers")


def test_a_config_file_still_needs_its_broker(write_config) -> None:
    # The default broker is an App's without a file: a file that forgets `kafka` is refused, as before.
    path = write_config(lambda doc: doc.pop("kafka"))
    with pytest.raises(ConfigError) as info:
        _ = App("with-file", config=path).settings
    assert (info.value.source, info.value.key) == (str(path), "kafka")
