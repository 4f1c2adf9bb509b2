"""The command line without a broker: --version, the log format reaching logging, option ranges, and replay's
one-line errors for files it cannot read (checked before the broker is contacted)."""

from __future__ import annotations

import gzip
import importlib.metadata
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import stream_processor
import stream_processor.cli as cli
from stream_processor.engine.app import App
from stream_processor.engine.settings import DEFAULT_CONFIG

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
