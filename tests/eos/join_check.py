"""The SMC context join checked the hard way: the chaos run's enriched trades against a quiet run's over the same
stored raw trades, and both against a batch recomputation of the join written without the engine's store.

The join rule (:mod:`stream_processor.market.context`): an enriched trade with Kafka timestamp ``t``, event time
``time_ms`` and price ``p`` carries ``smc``: per interval of its symbol, the newest context stored strictly before
``t`` whose kline closed before ``time_ms`` (walking back through older versions), re-measured from ``p`` by
:func:`~stream_processor.market.context.project`; and ``smc_stale``: true when it was processed after the context
input's wait (``max_task_idle_ms``) ran out, else false. Records of the two runs are matched by the source partition
and offset they carry.

:func:`context_versions` and :func:`expected_smc` recompute the rule from the context records and their Kafka
timestamps with a sort and a scan (no :class:`~stream_processor.engine.versioned.VersionedStore`): per input
partition, symbol and interval, the contexts sorted by (timestamp, offset) are scanned once; a context is kept as a
version unless the version before it is of the same or a later kline (what ``remember`` refuses), a version at the
timestamp of the previous one replaces it (a versioned store holds one version per timestamp); a trade's context
is the last version with a timestamp below ``t``, stepped back while its kline closed at or after ``time_ms``. The
store's history expiry (``smc_context_history_ms``, one hour of Kafka time) is not modelled: a run that spans more
than an hour of Kafka timestamps would need it.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from stream_processor.market.context import project
from stream_processor.market.models import Trade
from stream_processor.market.serde.decode import decode

KILL_BEFORE_MS = 2_000  # a trade produced up to this long before a kill may wait on the killed worker's klines
KILL_AFTER_MS = 30_000  # the session timeout (6 s), the rebalance, the restore and the wait (5 s), with room
# (the chaos events: the workers' start, each kill -9, graceful stop and broker restart)

Where = tuple[int, int]  # (source partition, source offset) of an enriched trade's raw input record


@dataclass
class Versions:
    """The versions the join keeps of one symbol's context of one interval on one partition, oldest first:
    Kafka timestamps (ms, ascending, distinct), kline close times (ms) and context documents side by side."""

    times: list[int] = field(default_factory=list)
    closes: list[int] = field(default_factory=list)
    contexts: list[dict[str, Any]] = field(default_factory=list)


def context_versions(records: Iterable[Any]) -> dict[tuple[int, str], dict[str, Versions]]:
    """Per (partition, ``venue/market/symbol``), per interval, the versions the join keeps (see the module docstring)
    of the context records ``records`` (Kafka records with ``partition``, ``offset``, ``timestamp`` and a context
    record's JSON ``value``; progress records left out by the caller)."""
    by_key: dict[tuple[int, str, str], list[tuple[int, int, int, dict[str, Any]]]] = defaultdict(list)
    for rec in records:
        doc = orjson.loads(rec.value)
        key = f"{doc['venue']}/{doc['market']}/{doc['symbol']}"
        by_key[(rec.partition, key, doc["interval"])].append(
            (rec.timestamp, rec.offset, doc["close_time_ms"], doc["context"]))
    out: dict[tuple[int, str], dict[str, Versions]] = defaultdict(dict)
    for (partition, key, interval), contexts in by_key.items():
        versions = Versions()
        for timestamp, _, close, context in sorted(contexts, key=lambda c: (c[0], c[1])):
            if versions.closes and versions.closes[-1] >= close:
                continue  # a re-sent or out-of-order context: refused
            if versions.times and versions.times[-1] == timestamp:
                versions.closes[-1], versions.contexts[-1] = close, context
            else:
                versions.times.append(timestamp)
                versions.closes.append(close)
                versions.contexts.append(context)
        out[(partition, key)][interval] = versions
    return dict(out)


def smc_of(versions: dict[str, Versions] | None, timestamp: int, time_ms: int, price: float) -> dict[str, Any] | None:
    """The ``smc`` of a trade with Kafka timestamp ``timestamp``, event time ``time_ms`` and price ``price`` over its
    symbol's ``versions`` (per interval, from :func:`context_versions`): intervals in name order, None when none has
    a context."""
    out = {}
    for interval in sorted(versions or {}):
        v = versions[interval]  # type: ignore[index]
        i = bisect.bisect_left(v.times, timestamp) - 1  # the last version strictly before the trade's timestamp
        while i >= 0 and v.closes[i] >= time_ms:
            i -= 1
        if i >= 0:
            out[interval] = project(v.contexts[i], price)
    return out or None


def expected_smc(trades: Iterable[Any], contexts: Iterable[Any]) -> dict[Where, dict[str, Any] | None]:
    """The ``smc`` every raw trade of ``trades`` (Kafka records: ``partition``, ``offset``, ``timestamp``, ``key``,
    ``value``) must carry given the context records ``contexts``, by (partition, offset)."""
    versions = context_versions(contexts)
    out: dict[Where, dict[str, Any] | None] = {}
    for rec in trades:
        trade = decode(rec.value, rec.key)
        assert isinstance(trade, Trade)
        key = f"{trade.venue}/{trade.market}/{trade.symbol}"
        out[(rec.partition, rec.offset)] = smc_of(versions.get((rec.partition, key)), rec.timestamp, trade.time_ms,
                                                  trade.price)
    return out


@dataclass
class ContextCheck:
    """One run's committed context records against the replay's: compared as (partition, Kafka timestamp, key,
    value), a multiset."""

    run: str
    records: int = 0
    missing: int = 0  # replayed, not committed
    unexpected: int = 0  # committed, not replayed (or at another partition or timestamp, or twice)
    examples: list[str] = field(default_factory=list)


def check_contexts(run: str, committed: Iterable[Any], replayed: Iterable[Any]) -> ContextCheck:
    """:class:`ContextCheck` of the context records ``committed`` by run ``run`` against ``replayed``."""
    def items(records: Iterable[Any]) -> Counter[tuple[int, int, bytes | None, bytes]]:
        return Counter((r.partition, r.timestamp, r.key, r.value) for r in records)

    got, want = items(committed), items(replayed)
    check = ContextCheck(run, records=sum(got.values()))
    for item, n in (got - want).items():
        check.unexpected += n
        if len(check.examples) < 3:
            check.examples.append(f"{run}: unexpected context at partition {item[0]}, timestamp {item[1]}: "
                                  f"{item[3][:160]!r}")
    for item, n in (want - got).items():
        check.missing += n
        if len(check.examples) < 6:
            check.examples.append(f"{run}: missing context at partition {item[0]}, timestamp {item[1]}: "
                                  f"{item[3][:160]!r}")
    return check


@dataclass
class JoinCheck:
    """The two runs' enriched trades compared (see the module docstring); ``failures()`` must be 0."""

    quiet_workers: int = 0
    quiet_seconds: float = 0.0
    quiet_exits: list[str] = field(default_factory=list)  # the quiet run's unexpected worker exits
    contexts: list[ContextCheck] = field(default_factory=list)
    replayed_contexts: int = 0
    compared: int = 0  # enriched trades present in both runs (matched by source partition and offset)
    unmatched: int = 0  # present in one run only (or more than once in one)
    joined: int = 0  # compared trades flagged in neither run whose smc is not null
    flagged_chaos: int = 0
    flagged_quiet: int = 0
    no_flag: int = 0  # records without a boolean smc_stale
    unflagged: int = 0  # compared trades flagged in neither run
    identical: int = 0  # ... of which byte-identical between the runs
    differing: int = 0  # ... of which not
    recomputed: dict[str, list[int]] = field(default_factory=dict)  # run -> [equal, of unflagged]
    stale_changed: int = 0  # flagged in the chaos run with an smc other than the recomputation's
    flags_by_partition: dict[int, list[int]] = field(default_factory=dict)  # partition -> flagged trades' timestamps
    flag_delays_ms: list[int] = field(default_factory=list)  # per flagged trade: its timestamp - the event before it
    unexplained: int = 0  # flagged trades with no chaos event (kill, stop, broker restart, start) near
    flagged_last: dict[str, int] = field(default_factory=dict)  # run -> flags at their partition's largest timestamp
    start_ms: int = 0  # the chaos workers' start (wall ms): the origin of the times in text()
    stale_events: int | None = None  # the workers' smc_context_stale count (None: a worker died unscraped)
    examples: list[str] = field(default_factory=list)

    def failures(self) -> int:
        """Records that break an equality: byte-different unflagged records, unflagged records unequal to the
        recomputation, flags in the quiet run, records missing from one run, context records that differ from the
        replay, and flagged outputs beyond the workers' count of processing after a wait ran out."""
        wrong_contexts = sum(c.missing + c.unexpected for c in self.contexts)
        not_recomputed = sum(total - equal for equal, total in self.recomputed.values())
        beyond = 0 if self.stale_events is None else max(0, self.flagged_chaos - self.stale_events)
        return (self.differing + not_recomputed + self.flagged_quiet + self.unmatched + self.no_flag
                + wrong_contexts + beyond)

    def text(self) -> str:
        contexts = ", ".join(f"{c.run} {c.records} ({c.missing} missing, {c.unexpected} unexpected)"
                             for c in self.contexts)
        recomputed = ", ".join(f"{run} {equal} of {total}" for run, (equal, total) in self.recomputed.items())
        delays = sorted(self.flag_delays_ms)
        spread = (f"{delays[0] / 1000:.1f} to {delays[-1] / 1000:.1f} s after a chaos event" if delays else "none")
        per_partition = ", ".join(
            f"{q}: {len(ts)} at +{(min(ts) - self.start_ms) / 1000:.1f}..+{(max(ts) - self.start_ms) / 1000:.1f} s"
            for q, ts in sorted(self.flags_by_partition.items()))
        events = "unknown (a worker died before it was scraped)" if self.stale_events is None else self.stale_events
        lines = [
            f"join: quiet rerun of klines + trades ({self.quiet_workers} worker(s), no kills, no load) in "
            f"{self.quiet_seconds:.0f} s; unexpected worker exits {self.quiet_exits}",
            f"  context records: replay {self.replayed_contexts}; committed: {contexts}",
            f"  enriched trades compared: {self.compared} (unmatched {self.unmatched}); smc not null: {self.joined}",
            f"  smc_stale: chaos {self.flagged_chaos}, quiet {self.flagged_quiet}; missing or not boolean: "
            f"{self.no_flag}",
            f"  flagged in neither run: {self.unflagged}, byte-identical {self.identical}, differing {self.differing}",
            f"  equal to the batch recomputation (unflagged): {recomputed}",
            f"  flags at their partition's largest timestamp (the end of the input): {self.flagged_last}",
            f"  chaos flags per input partition (count, produced at, from the workers' start): "
            f"{per_partition or 'none'}",
            f"  chaos flags' timestamps {spread}; unexplained by one {self.unexplained}; smc other than the "
            f"recomputation's {self.stale_changed}; the workers' smc_context_stale events {events}",
        ]
        lines.extend(f"  e.g. {ex}" for ex in self.examples[:6])
        return "\n".join(lines)


def _by_source(enriched: Iterable[Any]) -> tuple[dict[Where, Any], int]:
    """Enriched records by (source partition, source offset); and how many repeat a source already seen."""
    out: dict[Where, Any] = {}
    repeats = 0
    for rec in enriched:
        doc = orjson.loads(rec.value)
        where = (doc["source_partition"], doc["source_offset"])
        if where in out:
            repeats += 1
        out[where] = (rec, doc)
    return out, repeats


def compare_runs(check: JoinCheck, trades: list[Any], chaos: list[Any], quiet: list[Any],
                 expected: dict[Where, dict[str, Any] | None], events_ms: list[tuple[int, str]],
                 contexts: list[Any]) -> None:
    """Fill ``check`` from the raw trades ``trades``, the chaos and quiet runs' committed enriched trades, the
    recomputed ``smc`` per raw record (:func:`expected_smc`), the chaos events ``(wall ms, what)`` (kills, stops,
    broker restarts, the workers' start) and the replayed ``contexts`` (for the examples)."""
    raw = {(r.partition, r.offset): r for r in trades}
    last: dict[int, int] = {}  # input partition -> its largest Kafka timestamp
    for r in trades:
        last[r.partition] = max(last.get(r.partition, r.timestamp), r.timestamp)
    check.start_ms = min((ms for ms, what in events_ms if what == "start"), default=0)
    check.flagged_last = {"chaos": 0, "quiet": 0}
    runs = {"chaos": _by_source(chaos), "quiet": _by_source(quiet)}
    check.unmatched = sum(repeats for _, repeats in runs.values())
    (a, _), (b, _) = runs["chaos"], runs["quiet"]
    check.unmatched += len(a.keys() ^ b.keys())
    check.compared = len(a.keys() & b.keys())
    check.recomputed = {"chaos": [0, 0], "quiet": [0, 0]}
    # The byte comparison first, in the order the trades were produced: its first difference is the first example.
    for where in sorted(a.keys() & b.keys(), key=lambda w: (raw[w].timestamp if w in raw else -1, w)):
        (rec_a, doc_a), (rec_b, doc_b) = a[where], b[where]
        if doc_a.get("smc_stale") is not False or doc_b.get("smc_stale") is not False:
            continue
        check.unflagged += 1
        if doc_a.get("smc") is not None:
            check.joined += 1
        if rec_a.value == rec_b.value:
            check.identical += 1
        else:
            check.differing += 1
            _example(check, f"byte-different at {where}", where, raw, a[where], b[where], expected, contexts)
    moments = sorted(ms for ms, _ in events_ms)
    by_partition: dict[int, list[int]] = defaultdict(list)
    for run, (records, _) in runs.items():
        for where, (_, doc) in records.items():
            stale = doc.get("smc_stale")
            if type(stale) is not bool:
                check.no_flag += 1
                continue
            if stale:
                rec = raw.get(where)
                if rec is not None and rec.timestamp == last[where[0]]:
                    check.flagged_last[run] += 1
                if run == "quiet":
                    check.flagged_quiet += 1
                    _example(check, f"quiet run flagged {where}", where, raw, a.get(where), b.get(where), expected,
                             contexts)
                    continue
                check.flagged_chaos += 1
                if doc.get("smc") != expected.get(where):
                    check.stale_changed += 1
                if rec is not None:
                    by_partition[where[0]].append(rec.timestamp)
                    before = [m for m in moments if m - KILL_BEFORE_MS <= rec.timestamp]
                    if before and rec.timestamp - before[-1] <= KILL_AFTER_MS:
                        check.flag_delays_ms.append(rec.timestamp - before[-1])
                    else:
                        check.unexplained += 1
                continue
            counts = check.recomputed[run]
            counts[1] += 1
            if doc.get("smc") == expected.get(where, "absent"):
                counts[0] += 1
            else:
                _example(check, f"{run} run: smc not the recomputation's at {where}", where, raw, a.get(where),
                         b.get(where), expected, contexts)
    check.flags_by_partition = dict(by_partition)


def _example(check: JoinCheck, what: str, where: Where, raw: dict[Where, Any], chaos: Any, quiet: Any,
             expected: dict[Where, Any], contexts: list[Any]) -> None:
    """Describe one failing record in full (at most 6): both runs' records and Kafka timestamps, the raw trade's,
    the recomputation, and the contexts of its symbol within 5 s of its timestamp."""
    if len(check.examples) >= 6:
        return
    rec = raw.get(where)
    near = []
    if rec is not None:
        symbol = (chaos or quiet)[1]["symbol"]
        for c in contexts:
            if c.partition == where[0] and abs(c.timestamp - rec.timestamp) <= 5_000:
                doc = orjson.loads(c.value)
                if doc["symbol"] == symbol:
                    near.append((c.timestamp, doc["interval"], doc["close_time_ms"]))
    parts = [what, f"raw timestamp {None if rec is None else rec.timestamp}"]
    for run, item in (("chaos", chaos), ("quiet", quiet)):
        parts.append(f"{run}: " + ("absent" if item is None else f"timestamp {item[0].timestamp} {item[0].value!r}"))
    parts.append(f"recomputed smc {orjson.dumps(expected.get(where)).decode()}")
    parts.append(f"contexts of the symbol within 5 s (timestamp, interval, close_time_ms): {sorted(near)}")
    check.examples.append("; ".join(parts))
