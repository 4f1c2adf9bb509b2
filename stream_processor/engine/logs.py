"""Logging that stays small through an outage: a repeated message is written once per interval, with a count.

A 10-minute broker outage used to write 93.5 MB of log (aiokafka logs every refused connection, ~1,400 lines a
second). :class:`RepeatFilter` lets the first WARNING-or-worse record of each (logger, level, message template,
first argument) through, drops the same ones for ``interval_s`` seconds, then lets the next one through with
``(N similar messages suppressed in the last X s)`` appended. Messages with the same template and first argument
(``"Unable connect to node with id %s: %s"`` for node 1) count as the same message whatever the other arguments;
the first argument keeps one processor's messages apart from another's. INFO and DEBUG are never suppressed.

Two formats (``monitoring.log_format``, env ``LOG_FORMAT``): ``text``, ``<asctime> <LEVEL> <logger>: <message>``,
and ``json``, one object per line for a log collector (:class:`JsonFormatter`): ``ts`` (ISO-8601 UTC with ms),
``level``, ``logger``, ``message``, ``exc`` (the traceback) when there is one, and the ``extra=`` fields of the
call that JSON can hold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

#: Seconds during which a repeated message is suppressed after it was written.
REPEAT_INTERVAL_S = 30.0
#: Templates remembered at most (the oldest are forgotten first), so the filter's memory is bounded.
MAX_TEMPLATES = 1024
#: The formats :func:`configure` knows.
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RepeatFilter(logging.Filter):
    """Drops a record whose template was written less than ``interval_s`` ago; counts what it dropped."""

    def __init__(self, interval_s: float = REPEAT_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self._seen: dict[tuple[str, int, str, str], list[float | int]] = {}  # template -> [last written, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        args = record.args
        first = str(args[0])[:100] if isinstance(args, tuple) and args else ""
        key = (record.name, record.levelno, str(record.msg), first)
        now = self.clock()
        entry = self._seen.get(key)
        if entry is not None and now - entry[0] < self.interval_s:
            entry[1] += 1
            return False
        if entry is not None and entry[1]:
            record.msg = f"{record.msg} ({entry[1]} similar messages suppressed in the last {now - entry[0]:.0f} s)"
        if entry is None and len(self._seen) >= MAX_TEMPLATES:
            self._seen.pop(next(iter(self._seen)))
        self._seen[key] = [now, 0]
        return True


#: Attributes every LogRecord has: anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_CORE_KEYS = ("ts", "level", "logger", "message", "exc", "stack")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``message``, ``exc`` and ``stack`` when present,
    then the ``extra=`` fields JSON can hold (one it cannot, or one named like a key above, is left out)."""

    def format(self, record: logging.LogRecord) -> str:
        created = time.gmtime(record.created)
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", created) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            record.exc_text = record.exc_text or self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key in _RECORD_ATTRIBUTES or key in _CORE_KEYS or key.startswith("_"):
                continue
            try:
                orjson.dumps(value)
            except TypeError:  # not JSON-serialisable: left out rather than losing the line
                continue
            doc[key] = value
        return orjson.dumps(doc).decode()


def configure(level: str, interval_s: float = REPEAT_INTERVAL_S, fmt: str = "text") -> None:
    """Root logging at ``level`` in format ``fmt`` (``text`` or ``json``) with a :class:`RepeatFilter` on its
    handler; aiokafka at WARNING at least."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: expected one of {', '.join(FORMATS)}")
    logging.basicConfig(level=level, format=TEXT_FORMAT, force=True)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatFilter(interval_s))
        if fmt == "json":
            handler.setFormatter(JsonFormatter())
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLogger().level))
