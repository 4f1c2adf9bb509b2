"""A Faust ``App(...)`` line runs as it is: its keywords (applied, accepted with no effect, or refused), ``app.conf``,
``app.main()`` and the command line, ``app.task``/``app.command``, ``on_leader`` without a worker, and agents without
a topic. No broker: the worker is replaced where a command would start one."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import faust
import pytest
from click.testing import CliRunner
from faust.types.settings.settings import Settings as FaustSettings

import stream_processor
from stream_processor import cli
from stream_processor.engine import faust_conf
from stream_processor.engine.app import App
from stream_processor.engine.faust_conf import APPLIED, INERT, REFUSED, broker_addresses

REPO = Path(__file__).resolve().parents[3]
FAUST_EXAMPLES = Path(__file__).resolve().parents[2] / "faust_programs" / "programs"  # faust-streaming's examples/

ENGINE_ENV = ("KAFKA_BOOTSTRAP_SERVERS", "HEALTH_CHECK_PORT", "LOG_LEVEL", "BROKER_URL", "APP_VERSION", "WEB_PORT",
              "TOPIC_PARTITIONS", "PROCESSING_GUARANTEE", "APP_STORE", "APP_ENV_PREFIX", "METRICS_PORT")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENGINE_ENV:
        monkeypatch.delenv(name, raising=False)


def _with_agent(app: App, topic: str = "src", sink: str = "out") -> App:
    @app.agent(app.topic(topic), sink=[app.topic(sink)])
    async def copy(stream: Any) -> Any:
        async for value in stream:
            yield value

    return app


# ---- 1. the keywords ----------------------------------------------------------------------------------------


def test_every_faust_setting_is_applied_inert_or_refused_and_no_two_at_once() -> None:
    faust_names = set(FaustSettings.SETTINGS)
    assert faust_names <= set(APPLIED) | INERT | set(REFUSED), faust_names - (set(APPLIED) | INERT | set(REFUSED))
    assert not set(APPLIED) & INERT
    assert not set(APPLIED) & set(REFUSED)
    assert not INERT & set(REFUSED)


def test_the_issue_app_line_builds_and_configures_the_worker() -> None:
    app = _with_agent(stream_processor.App(
        "word-counts", broker="kafka://h1:9092;h2:9093", store="rocksdb://", value_serializer="json",
        key_serializer="raw", topic_partitions=4, version=1, autodiscover=False, origin="examples.word_count",
        web_port=6066, processing_guarantee="at_least_once"))
    settings = app.settings
    assert settings.app_id == "word-counts"
    assert settings.kafka.bootstrap_servers == ["h1:9092", "h2:9093"]
    assert settings.monitoring.health_check_port == 6066
    assert settings.topics["src"].partitions == 4 and settings.topics["out"].partitions == 4
    entry = settings.stream_processors["copy"]
    assert entry.processing_mode == "at_least_once"
    assert entry.store == "rocksdb://"
    assert entry.consumer_group == "word-counts-copy"


@pytest.mark.parametrize(("broker", "expected"), [
    ("kafka://h1:9092;h2:9092", ["h1:9092", "h2:9092"]),
    ("kafka://h1:9092,kafka://h2:9094", ["h1:9092", "h2:9094"]),
    (["kafka://a:1", "kafka://b:2"], ["a:1", "b:2"]),
    ("aiokafka://h:9093", ["h:9093"]),
    ("confluent://h:9093", ["h:9093"]),
    ("h:9095", ["h:9095"]),
    ("kafka://localhost", ["localhost:9092"]),
    ("h1;h2:9093", ["h1:9092", "h2:9093"]),
])
def test_broker_urls_are_read_as_faust_reads_them(broker: Any, expected: list[str]) -> None:
    assert broker_addresses(broker) == expected
    app = _with_agent(App("b", broker=broker))
    assert app.settings.kafka.bootstrap_servers == expected
    assert app.conf.broker == [f"kafka://{a}" for a in expected]
    # Faust's own reading of the same argument names the same hosts (its default port is aiokafka's 9092).
    urls = faust.App("b", broker=broker).conf.broker
    assert [f"{u.host}:{u.port or 9092}" for u in urls] == expected


def test_a_broker_url_without_a_host_is_fausts_default_host() -> None:
    from faust.transport.drivers.aiokafka import server_list

    assert broker_addresses("aiokafka://") == server_list(faust.App("b", broker="aiokafka://").conf.broker, 9092)
    assert broker_addresses("aiokafka://") == ["127.0.0.1:9092"]


def test_a_broker_of_another_transport_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="'redis' is not offered"):
        App("b", broker="redis://h:6379")


@pytest.mark.parametrize("version", [2, 7])
def test_version_renames_the_app_id_as_faust_does(version: int) -> None:
    app = _with_agent(App("vapp", version=version))
    assert app.conf.id == faust.App("vapp", version=version).conf.id == f"vapp-v{version}"
    settings = app.settings
    assert settings.app_id == f"vapp-v{version}"
    assert settings.stream_processors["copy"].consumer_group == f"vapp-v{version}-copy"
    assert settings.stream_processors["copy"].input_topics == ["src"]  # a source topic keeps its name


def test_version_1_keeps_the_id_and_id_format_is_honoured() -> None:
    assert App("v", version=1).conf.id == "v"
    assert App("v", version=3, id_format="{id}.{self.version}").conf.id == "v.3"


def test_processing_guarantee_sets_every_agents_mode_and_the_yaml_entry_wins() -> None:
    app = _with_agent(App("pg", processing_guarantee="at_least_once",
                          settings={"stream_processors": {"copy": {"processing_mode": "exactly_once"}}}))
    assert app.settings.stream_processors["copy"].processing_mode == "exactly_once"
    other = _with_agent(App("pg2"))
    assert other.settings.stream_processors["copy"].processing_mode == "exactly_once"
    assert other.conf.processing_guarantee == "exactly_once"
    with pytest.raises(ValueError, match="processing_guarantee"):
        App("pg3", processing_guarantee="at_most_once")


def test_faust_processing_guarantee_enum_is_taken() -> None:
    app = _with_agent(App("pge", processing_guarantee=faust.types.enums.ProcessingGuarantee.AT_LEAST_ONCE))
    assert app.settings.stream_processors["copy"].processing_mode == "at_least_once"


def test_topic_partitions_leaves_explicit_partitions_and_the_yaml_alone() -> None:
    app = App("tp", topic_partitions=6, settings={"topics": {"out": {"partitions": 2}}})

    @app.agent(app.topic("src"), sink=[app.topic("out")])
    async def copy(stream: Any) -> Any:
        async for value in stream:
            yield value

    app.topic("explicit", partitions=3)
    topics = app.settings.topics
    assert (topics["src"].partitions, topics["out"].partitions, topics["explicit"].partitions) == (6, 2, 3)
    assert _with_agent(App("tp1")).settings.topic("src").partitions == 1  # not given: one, as before


def test_commit_interval_and_timeouts_take_faust_durations() -> None:
    app = _with_agent(App("d", broker_commit_interval=dt.timedelta(milliseconds=250), broker_session_timeout="10s",
                          broker_heartbeat_interval=2, broker_max_poll_records=77, topic_replication_factor=3,
                          consumer_group_instance_id="pod-0", web_bind="127.0.0.1"))
    kafka = app.settings.kafka
    assert (kafka.commit_interval_ms, kafka.session_timeout_ms, kafka.heartbeat_interval_ms) == (250, 10_000, 2_000)
    assert (kafka.max_poll_records, kafka.replication_factor, kafka.group_instance_id) == (77, 3, "pod-0")
    assert app.settings.monitoring.host == "127.0.0.1"


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_refused_keyword_raises_type_error_naming_it_and_why(name: str) -> None:
    with pytest.raises(TypeError, match=rf"App\({name}=\.\.\.\) is not offered: \w+"):
        App("r", **{name: object()})


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"broker": "h:1", "broker_consumer": "other:1"}, "broker_consumer=...\\) differs from broker"),
    ({"consumer_auto_offset_reset": "latest"}, "consumer_auto_offset_reset='latest'"),
    ({"producer_acks": 1}, "producer_acks=1"),
    ({"topic_allow_declare": False}, "topic_allow_declare=False"),
    ({"brokers": "h:1"}, "unexpected keyword argument 'brokers'"),
])
def test_values_that_would_change_what_the_program_does_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(TypeError, match=match):
        App("r", **kwargs)


def test_the_values_faust_takes_anyway_are_accepted() -> None:
    App("ok", broker="h:1", broker_consumer="kafka://h:1", consumer_auto_offset_reset="earliest", producer_acks=-1,
        topic_allow_declare=True)


async def test_inert_keywords_are_kept_in_conf_and_logged_once_at_start(caplog: pytest.LogCaptureFixture) -> None:
    app = App("inert", debug=True, stream_buffer_maxsize=100, table_standby_replicas=2, web_enabled=False)
    assert (app.conf.debug, app.conf.stream_buffer_maxsize, app.conf.datadir) == (True, 100, None)
    stopping = asyncio.Event()
    stopping.set()
    with caplog.at_level(logging.INFO, logger="stream_processor.engine.app_services"):
        await app.run_timers(stopping)
    lines = [r.getMessage() for r in caplog.records if "no effect" in r.getMessage()]
    assert len(lines) == 1
    assert all(n in lines[0] for n in ("debug", "stream_buffer_maxsize", "table_standby_replicas", "web_enabled"))
    assert App("quiet").conf.inert_note() is None


def test_the_environment_wins_over_the_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_URL", "kafka://faust-env:9092")
    monkeypatch.setenv("WEB_PORT", "7000")
    monkeypatch.setenv("APP_VERSION", "2")
    app = _with_agent(App("env", broker="kafka://arg:9092", web_port=6066))
    assert app.conf.broker == ["kafka://faust-env:9092"]
    assert app.conf.id == "env-v2"
    assert app.settings.kafka.bootstrap_servers == ["faust-env:9092"]
    assert app.settings.monitoring.health_check_port == 7000
    # The engine's own variables (the README's) win over Faust's.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "ours:9092")
    monkeypatch.setenv("HEALTH_CHECK_PORT", "7100")
    app = _with_agent(App("env", broker="kafka://arg:9092", web_port=6066))
    assert app.conf.broker == ["kafka://ours:9092"] and app.conf.web_port == 7100
    assert app.settings.kafka.bootstrap_servers == ["ours:9092"]
    assert app.settings.monitoring.health_check_port == 7100


def test_env_prefix_names_fausts_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYAPP_BROKER_URL", "kafka://prefixed:9092")
    monkeypatch.setenv("BROKER_URL", "kafka://unprefixed:9092")
    assert App("p", env_prefix="MYAPP_").conf.broker == ["kafka://prefixed:9092"]


def test_the_yaml_wins_over_the_arguments(tmp_path: Path) -> None:
    config = tmp_path / "app.yaml"
    config.write_text("kafka:\n  bootstrap_servers: [yaml:9092]\nmonitoring:\n  health_check_port: 9001\n")
    app = _with_agent(App("y", config=config, broker="arg:9092", web_port=6066))
    assert app.settings.kafka.bootstrap_servers == ["yaml:9092"]
    assert app.settings.monitoring.health_check_port == 9001


def test_an_app_with_config_or_settings_works_as_before() -> None:
    app = _with_agent(App("old", settings={"kafka": {"bootstrap_servers": ["k:1"]}}))
    assert app.settings.kafka.bootstrap_servers == ["k:1"]
    assert _with_agent(App("bare")).settings.kafka.bootstrap_servers == ["localhost:9092"]


# ---- 2. app.conf --------------------------------------------------------------------------------------------


def test_app_conf_has_fausts_names_and_defaults() -> None:
    conf = App("c").conf
    reference = faust.App("c").conf
    for name in ("id", "version", "value_serializer", "key_serializer", "topic_partitions", "store"):
        assert hasattr(conf, name)
    assert (conf.id, conf.version) == (reference.id, reference.version)
    assert (conf.value_serializer, conf.key_serializer) == (reference.value_serializer, reference.key_serializer)
    assert conf.broker == [str(u) for u in reference.broker] == ["kafka://localhost:9092"]
    assert conf.store == "memory://" and conf.processing_guarantee == "exactly_once"
    assert conf.web_port == 8081  # the engine's health port (Faust's own default, 6066, is its web server's)
    assert conf.timezone is dt.UTC
    with pytest.raises(AttributeError, match="no setting 'nope'"):
        _ = conf.nope


def test_app_conf_given_values() -> None:
    conf = App("c", value_serializer="raw", key_serializer="json", store="rocksdb://", web_port=6067,
               topic_partitions=3, timezone="Europe/Paris", origin="proj.app").conf
    assert (conf.value_serializer, conf.key_serializer, conf.store) == ("raw", "json", "rocksdb://")
    assert (conf.web_port, conf.topic_partitions, conf.origin) == (6067, 3, "proj.app")
    assert str(conf.timezone) == "Europe/Paris"
    with pytest.raises(ValueError, match="store 'redis://'"):
        App("c", store="redis://")


def test_autodiscover_imports_the_listed_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "discovered_pkg"
    (pkg / "tests").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "agents.py").write_text("IMPORTED = True\n")
    (pkg / "tests" / "__init__.py").write_text("raise RuntimeError('tests are not imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    app = _with_agent(App("ad", autodiscover=True, origin="discovered_pkg"))
    app.finalize()
    assert sys.modules["discovered_pkg.agents"].IMPORTED
    with pytest.raises(ValueError, match="needs origin"):
        _with_agent(App("ad2", autodiscover=True)).finalize()


# ---- 3. app.main(), the command line ------------------------------------------------------------------------


class _FakeWorker:
    """Stands in for the worker: records the settings a command line would run it with."""

    started: list[Any] = []

    def __init__(self, settings: Any, only: Any = None, metrics: Any = None, app: Any = None) -> None:
        self.settings, self.app = settings, app
        self.hard_exit_s: float | None = None

    async def run(self) -> None:
        _FakeWorker.started.append(self)


@pytest.fixture
def fake_worker(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    from stream_processor.engine import worker as worker_module

    monkeypatch.setattr(worker_module, "Worker", _FakeWorker)
    _FakeWorker.started = []
    return _FakeWorker.started


def test_app_main_runs_the_worker_with_fausts_options(fake_worker: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    app = _with_agent(App("m", web_port=6066))
    monkeypatch.setattr(sys, "argv", ["app.py", "worker", "-l", "info", "--web-port", "6070"])
    with pytest.raises(SystemExit) as exit_:
        app.main()
    assert exit_.value.code == 0
    [worker] = fake_worker
    assert worker.app is app
    assert worker.settings.monitoring.log_level == "INFO"
    assert worker.settings.monitoring.health_check_port == 6070  # the command line wins over App(web_port=)


@pytest.mark.parametrize(("argv", "level"), [(["-l", "WARN", "worker"], "WARNING"), (["worker", "-l", "crit"],
                                                                                      "CRITICAL"), (["worker"], None)])
def test_loglevel_is_taken_before_or_after_worker(fake_worker: list[Any], argv: list[str], level: str | None) -> None:
    app = _with_agent(App("m", web_port=6066))
    result = CliRunner().invoke(cli.main, argv, obj=app)
    assert result.exit_code == 0, result.output
    assert fake_worker[0].settings.monitoring.log_level == (level or "INFO")
    assert fake_worker[0].settings.monitoring.health_check_port == 6066


def test_a_bad_loglevel_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli.main, ["worker", "-l", "loud"], obj=App("m"))
    assert result.exit_code == 2 and "'loud' is not one of" in result.output


def test_stream_processor_dash_a_runs_a_module(fake_worker: list[Any], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "faust_cli_app.py").write_text(
        "import stream_processor as faust\n"
        "app = faust.App('cliapp', broker='kafka://h:9092', topic_partitions=2)\n"
        "src = app.topic('src')\n"
        "@app.agent(src)\n"
        "async def consume(stream):\n"
        "    async for _ in stream:\n"
        "        pass\n")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.main, ["-A", "faust_cli_app", "worker", "-l", "debug"])
    assert result.exit_code == 0, result.output
    settings = fake_worker[0].settings
    assert (settings.app_id, settings.kafka.bootstrap_servers) == ("cliapp", ["h:9092"])
    assert settings.monitoring.log_level == "DEBUG"


@pytest.mark.parametrize("command", ["send", "tables", "agents", "reset", "clean_versions", "livecheck"])
def test_a_faust_subcommand_not_offered_is_an_error_naming_it(command: str) -> None:
    result = CliRunner().invoke(cli.main, [command, "x"], obj=App("m"))
    assert result.exit_code == 2
    assert f"Faust's {command!r} command is not offered here" in result.output
    assert "worker" in result.output  # the commands there are


def test_an_unknown_subcommand_is_clicks_error() -> None:
    result = CliRunner().invoke(cli.main, ["frobnicate"], obj=App("m"))
    assert result.exit_code == 2 and "No such command 'frobnicate'" in result.output


# ---- 5. app.task, app.command, app.page ---------------------------------------------------------------------


async def test_tasks_run_once_at_start_with_the_app_when_they_take_it() -> None:
    app = App("t")
    calls: list[Any] = []

    @app.task
    async def plain() -> None:
        calls.append("plain")

    @app.task()
    async def with_app(the_app: Any) -> None:
        calls.append(the_app)

    stopping = asyncio.Event()
    runner = asyncio.create_task(app.run_timers(stopping))
    async with asyncio.timeout(5):
        while len(calls) < 2:
            await asyncio.sleep(0.01)
    stopping.set()
    await runner
    assert sorted(map(str, calls)) == sorted(["plain", str(app)])
    with pytest.raises(TypeError, match="async def"):
        app.task(lambda: None)


async def test_an_on_leader_timer_runs_only_while_this_worker_leads() -> None:
    app = App("lead")
    calls: list[str] = []

    @app.timer("10ms", on_leader=True)
    async def tick() -> None:
        calls.append("tick")

    assert app.needs_leader
    [(name, delay, wrapped)] = app.timers
    assert (name, delay()) == ("tick", 0.01)
    assert app.is_leader()  # no worker: one process is the whole group
    await wrapped()

    class Elector:
        is_leader = False

    app.elector = Elector()
    await wrapped()
    Elector.is_leader = True
    await wrapped()
    assert calls == ["tick", "tick"]


def test_timer_intervals_are_faust_durations() -> None:
    app = App("dur")
    for interval in (dt.timedelta(seconds=2), "2s", 2, 2.0, "2000ms"):
        app.timer(interval)(_noop)
    assert [delay() for _, delay, _ in app.timers] == [2.0] * 5
    with pytest.raises(ValueError, match="not a duration"):
        app.timer("soon")


async def _noop() -> None:
    pass


def test_app_command_is_a_subcommand_with_its_options() -> None:
    app = App("cmd")

    @app.command(cli.option("--count", type=int, default=3), cli.argument("word"))
    async def shout(self: Any, word: str, count: int) -> None:
        self.say(f"{word.upper()} x{count} ({self.app.conf.id})")

    @app.command()
    async def hello_there() -> None:
        print("hello")

    runner = CliRunner()
    result = runner.invoke(cli.main, ["shout", "hi", "--count", "2"], obj=app)
    assert result.exit_code == 0, result.output
    assert result.output == "HI x2 (cmd)\n"
    assert runner.invoke(cli.main, ["hello-there"], obj=app).output == "hello\n"
    assert runner.invoke(cli.main, ["hello_there"], obj=app).output == "hello\n"
    assert "shout" in runner.invoke(cli.main, ["--help"], obj=app).output


async def test_pages_and_signals_are_accepted_and_said_not_served(caplog: pytest.LogCaptureFixture) -> None:
    app = App("web")
    table = app.Table("counts", default=int)

    @app.page("/count/{word}/")
    @app.table_route(table=table, match_info="word")
    async def get_count(web: Any, request: Any, word: str) -> Any:
        return None

    @app.on_rebalance_complete.connect  # type: ignore[attr-defined]
    async def on_rebalance_complete(sender: Any, **kwargs: Any) -> None:
        pass

    assert get_count.__name__ == "get_count"
    stopping = asyncio.Event()
    stopping.set()
    with caplog.at_level(logging.INFO):
        await app.run_timers(stopping)
    text = caplog.text
    assert "app.page /count/{word}/ (get_count) is registered but not served" in text
    assert "app.on_rebalance_complete has 1 receiver(s) (on_rebalance_complete): not called here" in text


# ---- 6. agents without a topic ------------------------------------------------------------------------------


def test_an_agent_without_a_topic_gets_its_own() -> None:
    app = App("own", topic_partitions=3)

    @app.agent(value_type=str)
    async def count_words(words: Any) -> None:
        async for _ in words:
            pass

    [topic] = app.agents["count_words"].topics
    assert topic.name.startswith("own-") and topic.value_type is str
    assert app.settings.topics[topic.name].partitions == 3


# ---- the whole-program check --------------------------------------------------------------------------------


def test_fausts_word_count_imports_and_builds_its_app_with_only_the_import_changed(tmp_path: Path) -> None:
    source = FAUST_EXAMPLES.joinpath("word_count.py").read_text()  # upstream's, byte for byte (its SOURCE.md)
    assert source.count("\nimport faust\n") == 1
    (tmp_path / "word_count.py").write_text(source.replace("\nimport faust\n", "\nimport stream_processor as faust\n"))
    check = ("import word_count as m\n"
             "s = m.app.settings\n"
             "print(s.app_id, s.kafka.bootstrap_servers[0], sorted(s.stream_processors),"
             " s.stream_processors['count_words'].store, s.topic('posts').partitions, [t.name for t in m.app.tasks])\n")
    done = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == ("word-counts localhost:9092 ['count_words', 'shuffle_words'] rocksdb:// 8 "
                                          "['sender']")


def test_faust_conf_module_names_every_refusal_reason() -> None:
    assert all(reason for reason in faust_conf.REFUSED.values())
    assert all(where for where in faust_conf.APPLIED.values())


def test_fausts_agent_keywords_are_taken() -> None:
    app = App("ak")

    @app.agent(app.topic("src"), isolated_partitions=True, supervisor_strategy=None, use_reply_headers=True)
    async def each_partition(stream: Any) -> None:
        async for _ in stream:
            pass

    assert app.settings.stream_processors["each_partition"].input_topics == ["src"]


async def test_page_routes_serve_views_and_answer_501_for_routed_ones(caplog: pytest.LogCaptureFixture) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from stream_processor.engine.app_services import page_routes

    app = App("pages")
    table = app.Table("counts", default=int)

    @app.page("/hello/{name}/")
    async def hello(web_: Any, request: Any, name: str) -> Any:
        return web_.json({"hello": name, "method": request.method})

    @app.page("/count/{word}/")
    @app.table_route(table=table, match_info="word")
    async def get_count(web_: Any, request: Any, word: str) -> Any:
        return web_.json({word: table[word]})

    server = web.Application()
    server.add_routes(page_routes(app))
    async with TestClient(TestServer(server)) as client:
        resp = await client.get("/hello/ann/")
        assert (resp.status, await resp.json()) == (200, {"hello": "ann", "method": "GET"})
        resp = await client.get("/count/fox/")
        assert resp.status == 501
        assert "table_route view is not offered" in (await resp.json())["error"]
    stopping = asyncio.Event()
    stopping.set()
    with caplog.at_level(logging.WARNING):
        await app.run_timers(stopping)
    assert "not served" not in caplog.text  # served: no warning
    with pytest.raises(TypeError, match="View classes are not offered"):
        app.page("/v")(type("V", (), {}))


async def test_app_service_starts_with_the_worker_and_stops_after_its_timers() -> None:
    """``@app.service`` on a ``faust.Service`` (mode's: examples/advanced/service.py): started before the tasks and
    timers, its ``@Service.task`` running, stopped when the worker stops."""
    app = App("svc")
    events: list[str] = []

    @app.service
    class Beacon(stream_processor.Service):
        async def on_start(self) -> None:
            events.append("start")

        async def on_stop(self) -> None:
            events.append("stop")

        @stream_processor.Service.task
        async def _background(self) -> None:
            events.append("task")

    @app.task
    async def after_start() -> None:
        events.append("app task")

    assert stream_processor.Service is faust.Service  # mode's, the same class
    stopping = asyncio.Event()
    runner = asyncio.create_task(app.run_timers(stopping))
    async with asyncio.timeout(5):
        while "app task" not in events or "task" not in events:
            await asyncio.sleep(0.01)
    assert events[0] == "start" and "stop" not in events
    stopping.set()
    await runner
    assert events[-1] == "stop"


async def test_a_faust_app_is_told_at_start_that_yielded_values_are_keyed(caplog: pytest.LogCaptureFixture) -> None:
    """The one difference of an agent's results from Faust's that is not refused: a value yielded to a topic sink
    is keyed like its input record (Faust: no key). A Faust-style App (no YAML) is told so when the worker starts."""
    app = _with_agent(App("keyed"))
    stopping = asyncio.Event()
    stopping.set()
    with caplog.at_level(logging.WARNING):
        await app.run_timers(stopping)
    assert "agent copy yields to out: each value is keyed like the input record" in caplog.text
