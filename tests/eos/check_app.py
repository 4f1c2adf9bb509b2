"""The chaos harness's user agent: a Faust-style agent with a Table and a windowed table, run under ``kill -9``.

``python -m stream_processor -A tests.eos.check_app:app worker --config <yaml>`` runs the agent :data:`AGENT`
beside the YAML's processors: the ``eos_check`` topology (:mod:`tests.eos.eos_check`, registered when this module
imports it) and the market's types (loaded through their entry points). Its input is the harness's check record
``{"id", "key", "value", "ts"}`` (``ts``: an event time in ms, derived from ``id`` by the harness: most records late
by less than :data:`MAX_LATENESS_MS`, a few by :data:`TOO_LATE_MS`, past their window's expiry); for each record it
keeps, per key,

- in the Table :data:`TOTALS` the running count and sum of the values, and
- in the tumbling windowed table :data:`WINDOWS` (:data:`WINDOW_S` windows by ``ts``, kept :data:`EXPIRES_S`
  past their end, so windows expire, and are tombstoned, while the run goes on) the count of the key's records
  in the record's window (0 for a record whose window has expired: it reads as the default and takes no write),

and yields ``{"id", "key", "count", "sum", "window", "window_count"}`` (``window``: the window's start in ms)
to its sink, keyed like its input. Given its input in partition order it is deterministic, provided the table
keeps the latest time it has seen (what decides expiry) in its changelog, so that a task restored after a crash
judges expiry as the one before it did (:func:`expected_outputs` recomputes it without the engine).

The topic names below are placeholders: the harness's YAML entry ``stream_processors.<AGENT>`` renames them
(``input_topics``, ``output_topics``) per run, and sets the consumer group and processing mode.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from stream_processor import App
from tests.eos import eos_check  # noqa: F401 - registers the processor type eos_check the harness's YAML names

AGENT = "eosagent"
INPUT = "eos-agent-in"
OUTPUT = "eos-agent-out"
WINDOW_S = 10.0
EXPIRES_S = 10.0
MAX_LATENESS_MS = 5_000  # below EXPIRES_S: a record this late never meets an expired window
TOO_LATE_MS = (20_000, 40_000)  # a record this late often does (its window ended over EXPIRES_S before the latest)

app = App("eos-agent")
source = app.topic(INPUT)
sink = app.topic(OUTPUT)
TOTALS = app.Table("eos_agent_totals")
WINDOWS = app.Table("eos_agent_windows", default=int).tumbling(
    WINDOW_S, expires=EXPIRES_S, expire_by="stream_time").relative_to_field(
    lambda record: record["ts"] / 1000)  # Faust's times are seconds


@app.agent(source, name=AGENT, sink=[sink])
async def eosagent(stream: Any) -> Any:
    """Per key: running count and sum (Table), count per 10 s window of ``ts`` (windowed table)."""
    async for record in stream:
        key = record["key"]
        total = TOTALS.get(key) or {"count": 0, "sum": 0}
        total = {"count": total["count"] + 1, "sum": total["sum"] + record["value"]}
        TOTALS[key] = total
        WINDOWS[key] += 1
        ts = record["ts"]
        yield {"id": record["id"], "key": key, "count": total["count"], "sum": total["sum"],
               "window": ts - ts % int(WINDOW_S * 1000), "window_count": WINDOWS[key].value()}


def expected_outputs(records: Iterable[tuple[int, dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    """The agent's output per input id, recomputed without the engine from ``records`` (input partition, input
    document) in partition order.

    A window has expired when its end plus :data:`EXPIRES_S` is at or before the latest ``ts`` of its input
    partition so far (this record's included): it then counts as 0 and this record is not added to it.
    """
    totals: dict[str, tuple[int, int]] = {}
    windows: dict[tuple[str, int], int] = defaultdict(int)
    latest: dict[int, int] = {}
    size, expires = int(WINDOW_S * 1000), int(EXPIRES_S * 1000)
    out: dict[int, dict[str, Any]] = {}
    for partition, doc in records:
        key, ts = doc["key"], doc["ts"]
        count, total = totals.get(key, (0, 0))
        count, total = count + 1, total + doc["value"]
        totals[key] = (count, total)
        latest[partition] = max(latest.get(partition, ts), ts)
        window = ts - ts % size
        if window + size + expires <= latest[partition]:
            window_count = 0  # expired
        else:
            windows[(key, window)] += 1
            window_count = windows[(key, window)]
        out[doc["id"]] = {"id": doc["id"], "key": key, "count": count, "sum": total, "window": window,
                          "window_count": window_count}
    return out
