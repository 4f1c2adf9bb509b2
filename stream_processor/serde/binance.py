"""Normalize Binance spot and USD-M websocket/REST market-data JSON to the internal model."""

from __future__ import annotations

from stream_processor.exceptions import InvalidRecordError
from stream_processor.models import (
    BookTicker,
    DepthSnapshot,
    DepthUpdate,
    Kline,
    Level,
    MarketRecord,
    Trade,
)

VENUE = "binance"
_INF = float("inf")
_PARTIAL_DEPTH = frozenset({"depth5", "depth10", "depth20"})


class FieldError(ValueError):
    """A field is present but its value is unusable; the message names the field."""


def price(value: object, field: str) -> float:
    """Return ``value`` (decimal string or number) as a finite price > 0, else raise FieldError."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FieldError(f"field '{field}' is not a number: {value!r}") from None
    if 0.0 < x < _INF:
        return x
    raise FieldError(f"field '{field}' must be a finite price > 0, got {value!r}")


def size(value: object, field: str) -> float:
    """Return ``value`` (decimal string or number) as a finite size >= 0, else raise FieldError."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FieldError(f"field '{field}' is not a number: {value!r}") from None
    if 0.0 <= x < _INF:
        return x
    raise FieldError(f"field '{field}' must be a finite size >= 0, got {value!r}")


def levels(raw: object, field: str) -> list[Level]:
    """Return ``[[price, size], ...]`` as a list of ``(price, size)`` floats, else raise FieldError."""
    try:
        out = [(float(p), float(q)) for p, q in raw]  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise FieldError(f"field '{field}' is not a list of [price, size] numbers") from None
    for p, q in out:
        if not (0.0 < p < _INF and 0.0 <= q < _INF):
            raise FieldError(f"field '{field}' has a bad level [{p!r}, {q!r}]")
    return out


def flag(value: object, field: str) -> bool:
    """Return ``value`` if it is a JSON boolean, else raise FieldError."""
    if value is True or value is False:
        return value
    raise FieldError(f"field '{field}' is not a boolean: {value!r}")


def symbol(value: object, field: str) -> str:
    """Return ``value`` upper-cased if it is a non-empty string, else raise FieldError."""
    if type(value) is str and value:
        return value.upper()
    raise FieldError(f"field '{field}' is not a symbol: {value!r}")


def text(value: object, field: str) -> str:
    """Return ``value`` if it is a non-empty string, else raise FieldError."""
    if type(value) is str and value:
        return value
    raise FieldError(f"field '{field}' is not a non-empty string: {value!r}")


PARSE_ERRORS = (KeyError, ValueError, TypeError, OverflowError)


def invalid(kind: str, exc: Exception) -> InvalidRecordError:
    """Turn a KeyError/ValueError/TypeError/OverflowError raised while parsing ``kind`` into an error."""
    if isinstance(exc, KeyError):
        return InvalidRecordError(f"{kind}: missing field {exc.args[0]!r}")
    if isinstance(exc, FieldError):
        return InvalidRecordError(f"{kind}: {exc}")
    return InvalidRecordError(f"{kind}: bad value ({exc})")


def _trade(d: dict, stream: str | None, hint: str | None) -> Trade:
    return Trade(
        VENUE, symbol(d["s"], "s"), int(d["t"]), price(d["p"], "p"), size(d["q"], "q"),
        "sell" if flag(d["m"], "m") else "buy", int(d["T"]), int(d["E"]),
    )


def _agg_trade(d: dict, stream: str | None, hint: str | None) -> Trade:
    return Trade(
        VENUE, symbol(d["s"], "s"), int(d["a"]), price(d["p"], "p"), size(d["q"], "q"),
        "sell" if flag(d["m"], "m") else "buy", int(d["T"]), int(d["E"]),
    )


def _depth_update(d: dict, stream: str | None, hint: str | None) -> DepthUpdate | DepthSnapshot:
    if stream is not None and stream.partition("@")[2].partition("@")[0] in _PARTIAL_DEPTH:
        # USD-M partial book depth (<sym>@depth5/10/20[@100ms]): the top N levels as of `u`, not a diff.
        return DepthSnapshot(
            VENUE, symbol(d["s"], "s"), int(d["u"]), levels(d["b"], "b"), levels(d["a"], "a"), int(d["E"])
        )
    pu = d.get("pu")
    return DepthUpdate(
        VENUE, symbol(d["s"], "s"), int(d["U"]), int(d["u"]), levels(d["b"], "b"), levels(d["a"], "a"),
        int(d["E"]), None if pu is None else int(pu),
    )


def _book_ticker(d: dict, stream: str | None, hint: str | None) -> BookTicker:
    e = d.get("E")
    return BookTicker(
        VENUE, symbol(d["s"], "s"), int(d["u"]), price(d["b"], "b"), size(d["B"], "B"),
        price(d["a"], "a"), size(d["A"], "A"), None if e is None else int(e),
    )


def _snapshot(d: dict, stream: str | None, hint: str | None) -> DepthSnapshot:
    if stream is not None:
        sym = symbol(stream.partition("@")[0], "stream")
    elif hint:
        sym = symbol(hint, "key")
    else:
        raise InvalidRecordError("depth snapshot: no symbol (no stream name and no symbol_hint)")
    e = d.get("E")
    return DepthSnapshot(
        VENUE, sym, int(d["lastUpdateId"]), levels(d["bids"], "bids"), levels(d["asks"], "asks"),
        None if e is None else int(e),
    )


def _kline(d: dict, stream: str | None, hint: str | None) -> Kline:
    k = d["k"]
    return Kline(
        VENUE, symbol(d["s"], "s"), text(k["i"], "k.i"), int(k["t"]), int(k["T"]),
        price(k["o"], "k.o"), price(k["h"], "k.h"), price(k["l"], "k.l"), price(k["c"], "k.c"),
        size(k["v"], "k.v"), flag(k["x"], "k.x"), size(k["q"], "k.q"), int(k["n"]), int(d["E"]),
    )


_BY_EVENT = {
    "trade": _trade,
    "aggTrade": _agg_trade,
    "depthUpdate": _depth_update,
    "bookTicker": _book_ticker,
    "kline": _kline,
}


def normalize_binance(payload: dict, symbol_hint: str | None = None) -> MarketRecord:
    """Normalize one Binance message, bare or in a combined-stream envelope ``{"stream", "data"}``.

    Kinds: ``trade`` and ``aggTrade`` -> Trade (``m`` true -> side "sell"; time_ms = T, event_time_ms = E);
    ``depthUpdate`` -> DepthUpdate (USD-M ``pu`` -> prev_update_id), or DepthSnapshot on a USD-M
    ``<sym>@depth5/10/20`` stream; ``bookTicker`` (spot has no ``e``: recognized by its keys
    u,s,b,B,a,A or a ``...bookTicker`` stream name) -> BookTicker; ``kline`` -> Kline; the REST depth
    snapshot or partial-depth payload ``{"lastUpdateId", "bids", "asks"}`` -> DepthSnapshot, whose symbol
    comes from the stream name, else ``symbol_hint`` (e.g. the Kafka key). Decimal strings become floats;
    times stay ms since epoch. venue is always ``"binance"`` (spot and USD-M alike).

    Raises InvalidRecordError (message starts with the kind, e.g. "trade: missing field 'p'") for a
    non-object, an unknown event kind, a missing field, a non-numeric/NaN/infinite number, a price <= 0
    or a negative size.
    """
    if type(payload) is not dict:
        raise InvalidRecordError(f"expected a JSON object, got {type(payload).__name__}")
    stream = payload.get("stream")
    if stream is None:
        data = payload
    else:
        data = payload.get("data")
        if type(stream) is not str or type(data) is not dict:
            raise InvalidRecordError("envelope: 'stream' must be a string and 'data' an object")
    event = data.get("e")
    if event is not None:
        parse = _BY_EVENT.get(event) if type(event) is str else None
        if parse is None:
            raise InvalidRecordError(f"unknown Binance event type {event!r}")
        kind = event
    elif "lastUpdateId" in data:
        parse, kind = _snapshot, "depth snapshot"
    elif ("B" in data and "A" in data) or (stream is not None and stream.endswith("bookTicker")):
        parse, kind = _book_ticker, "bookTicker"
    else:
        raise InvalidRecordError("not a Binance market-data message (no 'e', not a snapshot or bookTicker)")
    try:
        return parse(data, stream, symbol_hint)
    except PARSE_ERRORS as e:
        raise invalid(kind, e) from None
