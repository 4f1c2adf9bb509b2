"""SMC context joined onto other records: the klines processor's context records, kept per symbol and interval in
a store versioned by Kafka timestamp, and projected onto a trade's price or a book's mid.

The klines processor (``params.smc.context_topic``) writes one context record per closed kline of each interval to
the context topic, keyed by symbol and sent to the partition number of the input record that closed the kline: so
partition q of the context topic holds exactly the symbols of partition q of the raw input, whatever partitioner
the raw topic's producers used; the record's Kafka timestamp is that of the input record that closed the kline. A
processor that lists the context topic among its ``input_topics`` (co-partitioned with its own input: same partition
count; the engine then gives partition q of both to one task, and hands it their records in timestamp order) and
names it in ``params.smc_context_topic`` keeps every context record in the versioned store :data:`CONTEXT_STORE`
(:class:`~stream_processor.engine.state.VersionedStore`; changelog-backed, in the same transaction as its outputs:
exactly once like any state): one versioned key per venue/market/symbol and interval (:func:`context_key`), each
version valid from the Kafka timestamp of its context record, kept ``params.smc_context_history_ms`` (default one
hour) of stream time.

Each enriched record then carries ``smc`` (:func:`lookup`): for a record with Kafka timestamp ``t`` and event time
``e``, per interval, the newest context stored strictly before ``t`` (so records of equal timestamps never see each
other, whatever order they were read in) whose kline closed before ``e`` (never the kline the record belongs to,
nor a later one: no lookahead), walking back through older versions when the newest fails that, with the distances
re-measured from the record's price by :func:`project`. And ``smc_stale``: true when the record was processed while
the context topic's partition had nothing fetched and its wait (``max_task_idle_ms``) had run out, so a context
with an earlier timestamp may still come (the processor counts the event ``smc_context_stale``).

A context record (the value on the context topic, JSON): ``venue, market, symbol, interval, open_time_ms,
close_time_ms, close`` of the kline, ``context`` (see :func:`stream_processor.market.smc.context.smc_context` for its
fields; measured from ``close``) and ``source_topic, source_partition, source_offset``.

Upgrade from df71527: that code kept the last 4 contexts per symbol in a key-value store named ``smc_context``. This
code does not declare that store: its changelog records are skipped on restore (a store the code no longer has), and
the versioned store fills from the next context record of each interval (an old context cannot be given the Kafka
timestamp its version needs).
"""

from __future__ import annotations

from typing import Any

import orjson

from ..engine.exceptions import InvalidRecordError
from ..engine.state import StoreSpec, VersionedStore
from .smc.context import bps, zone

CONTEXT_STORE = "smc_context_versions"
"""Name of the versioned store in which a processor joining the context keeps it."""

DEFAULT_HISTORY_MS = 3_600_000
"""History kept of each context when the params do not say (``smc_context_history_ms``): one hour of stream
time."""

# The level fields of a side of the context, and the field holding its distance in bps from the price.
_ABOVE = (("ob_above_bottom", "ob_above_bps"), ("fvg_above_bottom", "fvg_above_bps"),
          ("liquidity_above_level", "liquidity_above_bps"))
_BELOW = (("ob_below_top", "ob_below_bps"), ("fvg_below_top", "fvg_below_bps"),
          ("liquidity_below_level", "liquidity_below_bps"))


class ContextRecord:
    """One decoded context record: the state key it belongs to, its interval and kline close time, its document."""

    __slots__ = ("key", "symbol", "interval", "close_time_ms", "doc")

    def __init__(self, key: str, symbol: str, interval: str, close_time_ms: int, doc: dict[str, Any]) -> None:
        self.key, self.symbol, self.interval, self.close_time_ms, self.doc = key, symbol, interval, close_time_ms, doc


def context_store(history_ms: int = DEFAULT_HISTORY_MS) -> StoreSpec:
    """The spec of :data:`CONTEXT_STORE`: versions ``{"close_time_ms": ms, "context": {...}}`` (JSON), kept
    ``history_ms`` ms."""
    return StoreSpec(name=CONTEXT_STORE, history_ms=history_ms)


def context_key(key: str, interval: str) -> str:
    """The versioned key of one symbol's (``venue/market/symbol``) context of ``interval``: ``key@interval``."""
    return f"{key}@{interval}"


def decode_context(value: bytes | None, key: bytes | None) -> ContextRecord:
    """A context record from one message of the context topic.

    Raises InvalidRecordError when the value is not such a record or the key is not its symbol.
    """
    try:
        doc = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError as exc:
        raise InvalidRecordError(f"smc context: not JSON: {exc}") from None
    if type(doc) is not dict:
        raise InvalidRecordError("smc context: not a JSON object")
    for field, kind in (("venue", str), ("market", str), ("symbol", str), ("interval", str),
                        ("close_time_ms", int), ("context", dict)):
        if type(doc.get(field)) is not kind:
            raise InvalidRecordError(f"smc context: field {field!r} is not a {kind.__name__}")
    symbol = doc["symbol"]
    if key is None or key.decode(errors="replace").upper() != symbol:
        raise InvalidRecordError(f"smc context: key {key!r} is not the record's symbol {symbol!r}")
    if "@" in doc["interval"] or "\x00" in doc["interval"]:
        raise InvalidRecordError(f"smc context: interval {doc['interval']!r} is not an interval")
    return ContextRecord(f"{doc['venue']}/{doc['market']}/{symbol}", symbol, doc["interval"], doc["close_time_ms"],
                         doc["context"])


def remember(store: VersionedStore, record: ContextRecord, timestamp: int | None) -> bool:
    """Keep ``record`` as the version of its symbol and interval valid from ``timestamp`` (the Kafka timestamp of the
    context record, ms). Returns False, keeping nothing, when the version valid at ``timestamp`` is of the same or a
    later kline (a re-sent or out-of-order context), or when the version is older than the store's history.

    Raises InvalidRecordError (before any change) when there is no timestamp (None or negative): the record cannot
    be placed in time.
    """
    if timestamp is None or timestamp < 0:
        raise InvalidRecordError(f"smc context of {record.symbol} {record.interval}: no Kafka timestamp, which its "
                                 "version needs")
    key = context_key(record.key, record.interval)
    current = store.get(key, timestamp)
    if current is not None and current.value["close_time_ms"] >= record.close_time_ms:
        return False
    return store.put(key, {"close_time_ms": record.close_time_ms, "context": record.doc}, timestamp)


def lookup(store: VersionedStore, key: str, timestamp: int | None, time_ms: int | None,
           price: float | None) -> dict[str, Any] | None:
    """The ``smc`` object of a record of symbol ``key`` (``venue/market/symbol``) with Kafka timestamp ``timestamp``
    and event time ``time_ms`` (ms), priced ``price``: per interval, the newest context version with a timestamp
    strictly before ``timestamp`` whose kline closed before ``time_ms`` (older versions are tried when the newest
    closed at or after it), projected on ``price``; intervals in key order. None when no interval has one.

    ``timestamp`` None (a record without one): the newest version; ``time_ms`` None: no event-time filter. Cost:
    O(log n) per interval and version tried (a binary search in the key's versions).
    """
    prefix = f"{key}@"
    as_of = None if timestamp is None else timestamp - 1
    out: dict[str, Any] = {}
    for name in store.scan(prefix):
        found = store.get(name, as_of)
        if time_ms is not None:
            while found is not None and found.value["close_time_ms"] >= time_ms:
                found = store.get(name, found.timestamp - 1)
        if found is not None:
            out[name[len(prefix):]] = project(found.value["context"], price)
    return out or None


def project(context: dict[str, Any], price: float | None) -> dict[str, Any]:
    """``context`` (measured from its kline's close) measured from ``price`` instead: the distances in bps to the
    levels above (``level - price``) and below (``price - level``), and the position in the swing range (``zone``,
    ``range_position``). A level the price has crossed since the kline closed gets a negative distance: the context
    changes at the next closed kline, not between. ``price`` None: the context as it is."""
    if price is None or price == context.get("price"):
        return context
    out = dict(context)
    out["price"] = price
    for level, field in _ABOVE:
        value = context.get(level)
        if value is not None:
            out[field] = bps(value - price, price)
    for level, field in _BELOW:
        value = context.get(level)
        if value is not None:
            out[field] = bps(price - value, price)
    high, low = context.get("range_high"), context.get("range_low")
    if high is not None and low is not None:
        out["range_position"], out["zone"] = zone(price, high, low)
    return out

