"""RepeatFilter: a repeated log template is written once per interval, then with the count it suppressed."""

from __future__ import annotations

import logging

from stream_processor.engine.logs import MAX_TEMPLATES, RepeatFilter


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
