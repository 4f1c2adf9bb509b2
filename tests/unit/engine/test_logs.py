"""RepeatFilter: a repeated log template is written once per interval, then with the count it suppressed; the
text and json formats."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import orjson
import pytest

from stream_processor.engine.logs import MAX_TEMPLATES, JsonFormatter, RepeatFilter, configure


def _record(msg: str, *args: object, name: str = "aiokafka", level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_template_is_written_once_per_interval_with_the_count_suppressed() -> None:
    now = [0.0]
    flt = RepeatFilter(30.0, clock=lambda: now[0])
    passed = []
    for i in range(1400):  # a second of an outage's refused connections, arguments varying
        now[0] = i / 1400
        rec = _record("Unable connect to node with id %s: %s", 1, f"refused #{i}")
        if flt.filter(rec):
            passed.append(rec.getMessage())
    assert len(passed) == 1
    now[0] = 31.0
    rec = _record("Unable connect to node with id %s: %s", 1, "refused")
    assert flt.filter(rec)
    assert rec.getMessage().endswith("(1399 similar messages suppressed in the last 31 s)")


def test_different_templates_levels_loggers_and_first_arguments_are_apart() -> None:
    flt = RepeatFilter(30.0, clock=lambda: 0.0)
    assert flt.filter(_record("a %s %s", 1, "x"))
    assert flt.filter(_record("b %s %s", 1, "x"))
    assert flt.filter(_record("a %s %s", 1, "x", level=logging.WARNING))
    assert flt.filter(_record("a %s %s", 1, "x", name="stream_processor.engine.runner"))
    assert flt.filter(_record("a %s %s", 2, "x"))  # another processor, say
    assert not flt.filter(_record("a %s %s", 1, "y"))


def test_info_and_debug_are_never_suppressed() -> None:
    flt = RepeatFilter(30.0, clock=lambda: 0.0)
    assert all(flt.filter(_record("processor %s assigned %s", "trades", i, level=logging.INFO)) for i in range(50))


def test_memory_is_bounded() -> None:
    flt = RepeatFilter(30.0, clock=lambda: 0.0)
    for i in range(MAX_TEMPLATES * 3):
        flt.filter(_record(f"template {i}"))
    assert len(flt._seen) == MAX_TEMPLATES  # noqa: SLF001


# --- formats: text (unchanged) and json (one object per line) -------------------------------------------------


@pytest.fixture
def root_logging() -> Iterator[None]:
    """:func:`configure` replaces the root handlers: put pytest's back afterwards."""
    root, aiokafka = logging.getLogger(), logging.getLogger("aiokafka")
    saved = root.handlers[:], root.level, aiokafka.level
    yield
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    aiokafka.setLevel(saved[2])


def _json_lines(text: str) -> list[dict]:
    return [orjson.loads(line) for line in text.splitlines() if line]


def test_json_lines_have_the_keys_the_extra_fields_and_the_traceback(
    root_logging: None, capsys: pytest.CaptureFixture[str],
) -> None:
    configure("INFO", fmt="json")
    log = logging.getLogger("stream_processor.engine.worker")
    log.info("started %s", "w-1", extra={"version": "0.2.0", "processors": ["trades", "klines"], "n": 3,
                                         "opaque": object(), "level": "not the level"})
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        log.exception("commit failed on %s", "raw_trades-0")
    log.debug("not at INFO")
    started, failed = _json_lines(capsys.readouterr().err)
    assert started["level"] == "INFO"
    assert started["logger"] == "stream_processor.engine.worker"
    assert started["message"] == "started w-1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", started["ts"])
    assert started["version"] == "0.2.0" and started["processors"] == ["trades", "klines"] and started["n"] == 3
    assert "opaque" not in started  # not JSON-serialisable: left out, the line still written
    assert "exc" not in started
    assert failed["level"] == "ERROR" and failed["message"] == "commit failed on raw_trades-0"
    assert failed["exc"].startswith("Traceback (most recent call last):")
    assert failed["exc"].endswith("ZeroDivisionError: division by zero")


def test_json_ts_is_utc_with_milliseconds() -> None:
    rec = _record("hello %s", "there", name="x", level=logging.WARNING)
    rec.created = 1796112000.123456  # 2026-12-01T08:00:00.123456Z
    rec.msecs = 123.456
    doc = orjson.loads(JsonFormatter().format(rec))
    assert doc == {"ts": "2026-12-01T08:00:00.123Z", "level": "WARNING", "logger": "x", "message": "hello there"}


def test_the_repeat_filter_works_in_json_too(root_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure("INFO", interval_s=30.0, fmt="json")
    for i in range(5):
        logging.getLogger("aiokafka").error("Unable connect to node with id %s: %s", 1, f"refused #{i}")
    lines = _json_lines(capsys.readouterr().err)
    assert [line["message"] for line in lines] == ["Unable connect to node with id 1: refused #0"]
    assert lines[0]["logger"] == "aiokafka"


def test_text_format_is_unchanged(root_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure("INFO")
    log = logging.getLogger("stream_processor.engine.runner")
    log.warning("partition %s stuck", "raw_trades-1", extra={"version": "0.2.0"})
    log.warning("partition %s stuck", "raw_trades-1")  # suppressed
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING stream_processor\.engine\.runner: "
                        r"partition raw_trades-1 stuck", lines[0])
    assert logging.getLogger("aiokafka").level == logging.WARNING


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format 'xml'"):
        configure("INFO", fmt="xml")
