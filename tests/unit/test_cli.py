"""The command line without a broker: --version, the log format reaching logging, option ranges, replay's
one-line errors for files it cannot read (checked before the broker is contacted), and the app it runs: the market
app and its packaged configuration without ``-A``, ``--config`` instead, an app of one's own with ``-A``."""

from __future__ import annotations

import gzip
import importlib.metadata
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import stream_processor
import stream_processor.cli as cli
import stream_processor.engine.topics as engine_topics
from stream_processor.engine.app import App
from stream_processor.engine.settings import ENV_OVERRIDES
from stream_processor.market.app import app as market_app
from stream_processor.market.settings import DEFAULT_CONFIG

ROOT = Path(__file__).resolve().parents[2]
UNREACHABLE = "127.0.0.1:9"  # nothing listens: any attempt to reach the broker would fail the test's expectation


@pytest.fixture
def logging_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Record configure_logging's calls instead of replacing the root handlers of the test process."""
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(cli, "configure_logging", lambda *args, **kwargs: calls.append((args, kwargs)))
    return calls


def _invoke(args: list[str], env: dict[str, str] | None = None, monitoring: dict[str, Any] | None = None) -> Any:
    """Run the command on the shipped configuration, its broker one that cannot be reached."""
    doc = yaml.safe_load(DEFAULT_CONFIG.read_text())
    doc["kafka"]["bootstrap_servers"] = [UNREACHABLE]
    doc.setdefault("monitoring", {}).update(monitoring or {})
    app = App("cli-test", settings=doc)
    env = {"LOG_FORMAT": None, "LOG_LEVEL": None, "KAFKA_BOOTSTRAP_SERVERS": None, **(env or {})}
    return CliRunner().invoke(cli.main, args, obj=app, env=env, catch_exceptions=False)


def test_version() -> None:
    result = CliRunner().invoke(cli.main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"stream-processor {importlib.metadata.version('stream-processor')}\n"
    assert result.output == f"stream-processor {stream_processor.__version__}\n"  # pyproject and package agree


def test_version_as_a_program() -> None:
    done = subprocess.run([sys.executable, "-m", "stream_processor", "--version"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, f"stream-processor {stream_processor.__version__}")


@pytest.mark.parametrize(("env", "monitoring", "fmt"), [
    ({}, {}, "text"),
    ({}, {"log_format": "json"}, "json"),
    ({"LOG_FORMAT": "json"}, {}, "json"),
    ({"LOG_FORMAT": "text"}, {"log_format": "json"}, "text"),
])
def test_the_log_format_reaches_logging(logging_calls: list, env: dict[str, str], monitoring: dict, fmt: str) -> None:
    result = _invoke(["check-config"], env=env, monitoring=monitoring)
    assert result.exit_code == 0, result.output
    assert len(logging_calls) == 1
    args, kwargs = logging_calls[0]
    assert args == ("INFO",) and kwargs == {"fmt": fmt}


@pytest.mark.parametrize("n", ["0", "-3"])
def test_tail_refuses_a_count_below_one(logging_calls: list, n: str) -> None:
    result = CliRunner().invoke(cli.main, ["tail", "raw_trades", "-n", n])
    assert result.exit_code == 2
    assert f"Invalid value for '-n': {n} is not in the range x>=1" in result.output
    assert not logging_calls  # refused before anything ran


def test_replay_refuses_a_limit_below_one(logging_calls: list, tmp_path: Path) -> None:
    feed = tmp_path / "f.txt"
    feed.write_bytes(b'1 {"e":"trade","s":"BTCUSDT"}\n')
    result = CliRunner().invoke(cli.main, ["replay", "--limit", "0", str(feed)])
    assert result.exit_code == 2 and "is not in the range x>=1" in result.output


def test_replay_of_a_missing_file_is_a_usage_error(logging_calls: list, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.main, ["replay", str(tmp_path / "nope.gz")])
    assert result.exit_code == 2 and "does not exist" in result.output


def _replay_error(paths: list[Path]) -> str:
    result = _invoke(["replay", "--no-progress", *map(str, paths)])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    return result.stderr.strip()


def test_replay_errors_are_one_line_before_the_broker(logging_calls: list, tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_bytes(b'1 {"e":"trade","s":"BTCUSDT"}\n')
    assert _replay_error([good, tmp_path]) == f"replay: cannot read {tmp_path}: is a directory"
    fake = tmp_path / "fake.gz"
    fake.write_bytes(good.read_bytes())
    assert _replay_error([good, fake]) == f"replay: cannot read {fake}: not a gzip file (named .gz)"
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gzip.compress(good.read_bytes() * 10)[:15])
    assert _replay_error([cut]).startswith(f"replay: cannot read {cut}: ")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\n1723161253937085768\n")
    assert _replay_error([bad]) == (f"replay: {bad}:2: not a feed line: expected "
                                    "'<local_receive_time_ns> <json>'")
    odd = tmp_path / "odd.txt"
    odd.write_bytes(b'1 {"e":"24hrTicker","s":"BTCUSDT"}\n')
    assert _replay_error([odd]) == f"replay: {odd}:1: not a feed line: cannot tell the stream kind of this message"


def test_replay_of_an_unreadable_file(logging_calls: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import stream_processor.market.replay as replay_module

    def denied(file: Any, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied", str(file))

    monkeypatch.setattr(replay_module, "open", denied, raising=False)  # root reads any file: pretend
    path = tmp_path / "locked.gz"
    path.write_bytes(b"")
    assert _replay_error([path]) == f"replay: cannot read {path}: permission denied"


def test_a_broker_that_cannot_be_reached_is_one_line(logging_calls: list) -> None:
    result = _invoke(["tail", "raw_trades"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"tail: Kafka at {UNREACHABLE}: ")
    assert "Traceback" not in result.stderr


# ---- which app, which configuration -----------------------------------------------------------------------------

NO_ENV: dict[str, str | None] = dict.fromkeys(ENV_OVERRIDES)  # CliRunner unsets these for the command


@pytest.fixture
def market(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The market app, its configuration and declared topics restored after the test (--config changes them)."""
    monkeypatch.setattr(market_app, "config", market_app.config)
    monkeypatch.setattr(market_app, "_settings", None)
    monkeypatch.setattr(market_app, "topics", dict(market_app.topics))
    return market_app


def _json(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return yaml.safe_load(result.stdout)


def test_without_a_the_market_app_runs_on_its_packaged_config(logging_calls: list, market: App) -> None:
    got = _json(CliRunner().invoke(cli.main, ["check-config"], env=NO_ENV, catch_exceptions=False))
    assert market.config == DEFAULT_CONFIG and (got["app_id"], got["kafka"]["bootstrap_servers"]) == (
        "stream-processor", ["127.0.0.1:9092"])
    assert {n: p["type"] for n, p in got["stream_processors"].items()} == {
        "trades": "trades", "orderbook": "orderbook", "klines": "klines"}
    assert got["replay"] == {"topics": {"trades": "raw_trades", "orderbook": "raw_orderbook", "klines": "raw_klines"}}
    assert got["stream_processors"]["trades"]["event_time"] == {"max_future_ms": 5000, "max_past_ms": 315576000000}


def test_config_names_another_file(logging_calls: list, market: App, tmp_path: Path) -> None:
    doc = yaml.safe_load(DEFAULT_CONFIG.read_text())
    doc["app_id"] = "other"
    doc["stream_processors"] = {"trades": doc["stream_processors"]["trades"]}
    config = tmp_path / "other.yaml"
    config.write_text(yaml.safe_dump(doc))
    got = _json(CliRunner().invoke(cli.main, ["check-config", "--config", str(config)], env=NO_ENV,
                                   catch_exceptions=False))
    assert (got["app_id"], list(got["stream_processors"])) == ("other", ["trades"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**doc, "replay": {"topics": {"ticks": "raw_ticks"}}}))
    result = CliRunner().invoke(cli.main, ["check-config", "--config", str(bad)], env=NO_ENV)
    assert result.exit_code == 2 and f"configuration error: {bad}: replay.topics.ticks" in result.stderr


def test_topics_creates_what_the_worker_needs_with_the_replay_topics(logging_calls: list, market: App,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[dict[str, Any]] = []

    async def ensure(settings: Any, topics: dict[str, Any]) -> list[str]:
        asked.append(topics)
        return sorted(topics)

    monkeypatch.setattr(engine_topics, "ensure_topics", ensure)
    result = CliRunner().invoke(cli.main, ["topics"], env=NO_ENV, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    [topics] = asked
    # raw_klines is no processor's input: only the market app's replay section names it.
    assert {"raw_trades", "raw_orderbook", "raw_klines", "enriched_trades", "smc_context", "dead_letter",
            "stream-processor-trades-state-changelog"} <= set(topics)
    assert topics["raw_klines"].partitions == 8 and topics["stream-processor-klines-state-changelog"].compacted
    assert result.stdout.startswith(f"created {len(topics)} topic(s)")


def test_an_app_of_ones_own_runs_alone(logging_calls: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "own_app_for_cli.py").write_text(textwrap.dedent("""
        from stream_processor import App

        app = App("own")

        @app.agent("in", sink=["out"])
        async def agent(stream):
            async for value in stream:
                yield value
    """))
    monkeypatch.chdir(tmp_path)  # -A imports from the working directory (and puts it on sys.path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "own_app_for_cli", raising=False)
    got = _json(CliRunner().invoke(cli.main, ["-A", "own_app_for_cli", "check-config"], env=NO_ENV,
                                   catch_exceptions=False))
    assert (got["app_id"], got["kafka"]["bootstrap_servers"], list(got["stream_processors"])) == (
        "own", ["localhost:9092"], ["agent"])
    assert "replay" not in got
    feed = tmp_path / "f.txt"
    feed.write_bytes(b'1 {"e":"trade","s":"BTCUSDT"}\n')
    result = CliRunner().invoke(cli.main, ["-A", "own_app_for_cli", "replay", "--no-progress", str(feed)], env=NO_ENV)
    assert result.exit_code == 1 and result.stderr.startswith("replay: the configuration has no replay section")
