"""The venue-neutral normalized JSON form, for venues other than Binance.

One JSON object per record. Common keys:

* ``"type"``: one of ``"trade"``, ``"book_ticker"``, ``"depth_update"``, ``"depth_snapshot"``, ``"kline"``;
* ``"venue"``: the venue name, kept as given (lower-case by convention), e.g. ``"coinbase"``;
* ``"symbol"``: the venue's instrument name; the decoder upper-cases it.

The other keys are the field names of the matching class in ``stream_processor.models``, in its units:
prices in quote currency (finite, > 0), sizes in base units (finite, >= 0), times in ms since the Unix
epoch (UTC), ids as JSON integers. Prices and sizes may be JSON numbers or decimal strings. Book levels
are ``[[price, size], ...]``, best first; a size of 0 removes the level. ``side`` is the aggressor
(taker) side, ``"buy"`` or ``"sell"``. Keys marked optional below may be omitted or null.

* trade: trade_id, price, size, side, time_ms; optional event_time_ms (defaults to time_ms).
* book_ticker: update_id, bid_price, bid_size, ask_price, ask_size; optional event_time_ms.
* depth_update: first_update_id, last_update_id, bids, asks, event_time_ms; optional prev_update_id.
* depth_snapshot: last_update_id, bids, asks; optional event_time_ms.
* kline: interval, open_time_ms, close_time_ms (inclusive), open, high, low, close, volume, is_closed;
  optional quote_volume (default 0), trade_count (default 0), event_time_ms.

Examples, one per block (the unit tests parse and decode these exact blocks)::

    {"type": "trade", "venue": "coinbase", "symbol": "BTC-USD", "trade_id": 172000123,
     "price": "61837.63", "size": "0.02", "side": "sell",
     "time_ms": 1723161255342, "event_time_ms": 1723161255343}

    {"type": "book_ticker", "venue": "coinbase", "symbol": "BTC-USD", "update_id": 9001,
     "bid_price": 61837.63, "bid_size": 3.78826, "ask_price": 61837.64, "ask_size": 1.54698,
     "event_time_ms": 1723161255208}

    {"type": "depth_update", "venue": "bybit", "symbol": "XRPUSDT",
     "first_update_id": 101, "last_update_id": 105, "prev_update_id": 100,
     "bids": [["0.5123", "1200"], ["0.5120", "0"]], "asks": [["0.5125", "800.5"]],
     "event_time_ms": 1733011200691}

    {"type": "depth_snapshot", "venue": "bybit", "symbol": "XRPUSDT", "last_update_id": 100,
     "bids": [["0.5123", "1000"], ["0.5122", "250"]], "asks": [["0.5125", "800.5"], ["0.5126", "40"]],
     "event_time_ms": 1733011200600}

    {"type": "kline", "venue": "ftx", "symbol": "BTC-PERP", "interval": "1m",
     "open_time_ms": 1640991660000, "close_time_ms": 1640991719999,
     "open": 46200.5, "high": 46250.0, "low": 46180.0, "close": 46240.0, "volume": 12.5, "is_closed": true,
     "quote_volume": 577500.0, "trade_count": 310, "event_time_ms": 1640991720001}
"""

from __future__ import annotations

import dataclasses

from stream_processor.exceptions import InvalidRecordError
from stream_processor.models import (
    BookTicker,
    DepthSnapshot,
    DepthUpdate,
    Kline,
    MarketRecord,
    Trade,
)
from stream_processor.serde.binance import (
    PARSE_ERRORS,
    FieldError,
    flag,
    invalid,
    levels,
    price,
    size,
    symbol,
    text,
)

_SIDES = frozenset({"buy", "sell"})


def _opt(d: dict, key: str, default: object) -> object:
    v = d.get(key)
    return default if v is None else v


def _opt_int(d: dict, key: str) -> int | None:
    v = d.get(key)
    return None if v is None else int(v)


def _side(value: object) -> str:
    if value in _SIDES:
        return value  # type: ignore[return-value]
    raise FieldError(f"field 'side' must be 'buy' or 'sell', got {value!r}")


def _trade(d: dict, venue: str, sym: str) -> Trade:
    t = int(d["time_ms"])
    e = d.get("event_time_ms")
    return Trade(
        venue, sym, int(d["trade_id"]), price(d["price"], "price"), size(d["size"], "size"),
        _side(d["side"]), t, t if e is None else int(e),
    )


def _book_ticker(d: dict, venue: str, sym: str) -> BookTicker:
    return BookTicker(
        venue, sym, int(d["update_id"]), price(d["bid_price"], "bid_price"), size(d["bid_size"], "bid_size"),
        price(d["ask_price"], "ask_price"), size(d["ask_size"], "ask_size"), _opt_int(d, "event_time_ms"),
    )


def _depth_update(d: dict, venue: str, sym: str) -> DepthUpdate:
    return DepthUpdate(
        venue, sym, int(d["first_update_id"]), int(d["last_update_id"]), levels(d["bids"], "bids"),
        levels(d["asks"], "asks"), int(d["event_time_ms"]), _opt_int(d, "prev_update_id"),
    )


def _depth_snapshot(d: dict, venue: str, sym: str) -> DepthSnapshot:
    return DepthSnapshot(
        venue, sym, int(d["last_update_id"]), levels(d["bids"], "bids"), levels(d["asks"], "asks"),
        _opt_int(d, "event_time_ms"),
    )


def _kline(d: dict, venue: str, sym: str) -> Kline:
    return Kline(
        venue, sym, text(d["interval"], "interval"), int(d["open_time_ms"]), int(d["close_time_ms"]),
        price(d["open"], "open"), price(d["high"], "high"),
        price(d["low"], "low"), price(d["close"], "close"),
        size(d["volume"], "volume"), flag(d["is_closed"], "is_closed"),
        size(_opt(d, "quote_volume", 0.0), "quote_volume"), int(_opt(d, "trade_count", 0)),
        _opt_int(d, "event_time_ms"),
    )


_BY_TYPE = {
    "trade": _trade,
    "book_ticker": _book_ticker,
    "depth_update": _depth_update,
    "depth_snapshot": _depth_snapshot,
    "kline": _kline,
}
_TYPE_OF = {Trade: "trade", BookTicker: "book_ticker", DepthUpdate: "depth_update",
            DepthSnapshot: "depth_snapshot", Kline: "kline"}


def normalize_normalized(payload: dict) -> MarketRecord:
    """Build the model record from one object in the normalized form (see this module's docstring).

    Raises InvalidRecordError (message starts with the type, e.g. "trade: missing field 'price'") for a
    non-object, an unknown ``type``, a missing field, a non-numeric/NaN/infinite number, a price <= 0,
    a negative size or a side other than "buy"/"sell".
    """
    if type(payload) is not dict:
        raise InvalidRecordError(f"expected a JSON object, got {type(payload).__name__}")
    kind = payload.get("type")
    parse = _BY_TYPE.get(kind) if type(kind) is str else None
    if parse is None:
        raise InvalidRecordError(f"unknown normalized record type {kind!r}")
    try:
        return parse(payload, text(payload["venue"], "venue"), symbol(payload["symbol"], "symbol"))
    except PARSE_ERRORS as e:
        raise invalid(kind, e) from None  # type: ignore[arg-type]


def to_normalized(record: MarketRecord) -> dict:
    """Return ``record`` as a normalized-form dict; levels stay (price, size) tuples.

    ``encode()`` writes it as JSON (tuples become arrays), and ``normalize_normalized(to_normalized(r))
    == r`` for every valid record. Raises TypeError for an object that is not a model record.
    """
    kind = _TYPE_OF.get(type(record))
    if kind is None:
        raise TypeError(f"not a market record: {type(record).__name__}")
    out = {"type": kind}
    out.update(dataclasses.asdict(record))
    return out
