"""SMC context joined onto other records: the klines processor's context records, remembered per symbol and
projected onto a trade's price or a book's mid.

The klines processor (``params.smc.context_topic``) writes one context record per closed kline of each interval to
the context topic, keyed by symbol and sent to the partition number of the input record that closed the kline: so
partition q of the context topic holds exactly the symbols of partition q of the raw input, whatever partitioner
the raw topic's producers used. A processor that lists the context topic among its ``input_topics`` (co-partitioned
with its own input: same partition count; the engine then gives partition q of both to one task) and names it in
``params.smc_context_topic`` keeps the last :data:`KEEP` context records of each symbol and interval in its store
``smc_context`` (changelog-backed, in the same transaction as its outputs: exactly once like any state) and adds to
each enriched record an ``smc`` object: per interval, the newest context whose kline closed before the record's
time (never a kline the record itself belongs to: no lookahead), with the distances re-measured from the record's
price by :func:`project`.

A context record (the value on the context topic, JSON): ``venue, market, symbol, interval, open_time_ms,
close_time_ms, close`` of the kline, ``context`` (see :func:`stream_processor.market.smc.context.smc_context` for its
fields; measured from ``close``) and ``source_topic, source_partition, source_offset``.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..engine.exceptions import InvalidRecordError
from .smc.context import bps, zone

CONTEXT_STORE = "smc_context"
"""Name of the store in which a processor joining the context keeps it."""

KEEP = 4
"""Context records kept per symbol and interval: the newest one whose kline closed before a record's time is used
(a record can arrive after the context of its own kline, when the klines processor runs ahead)."""

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
    return ContextRecord(f"{doc['venue']}/{doc['market']}/{symbol}", symbol, doc["interval"], doc["close_time_ms"],
                         doc["context"])


def remember(data: dict[str, Any], record: ContextRecord) -> None:
    """Keep ``record`` in the store's ``data`` (``{key: {interval: [[close_time_ms, context], ...]}}``, oldest first,
    at most :data:`KEEP` per interval). A record not newer than the newest kept is ignored (a re-sent one)."""
    intervals = data.get(record.key)
    if intervals is None:
        intervals = data[record.key] = {}
    kept = intervals.get(record.interval)
    if kept is None:
        intervals[record.interval] = [[record.close_time_ms, record.doc]]
        return
    if kept[-1][0] >= record.close_time_ms:
        return
    kept.append([record.close_time_ms, record.doc])
    if len(kept) > KEEP:
        del kept[0]


def lookup(intervals: dict[str, list] | None, time_ms: int | None, price: float | None) -> dict[str, Any] | None:
    """The ``smc`` object of a record at ``time_ms`` (None: the newest context) priced ``price``: per interval the
    newest kept context whose kline closed before ``time_ms``, projected on ``price``; None when there is none."""
    if not intervals:
        return None
    out: dict[str, Any] = {}
    for interval, kept in intervals.items():
        chosen = None
        for close_time_ms, doc in reversed(kept):
            if time_ms is None or close_time_ms < time_ms:
                chosen = doc
                break
        if chosen is not None:
            out[interval] = project(chosen, price)
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

