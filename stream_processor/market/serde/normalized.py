"""The venue-neutral normalized JSON form, for venues other than Binance.

One JSON object per record. Common keys:

* ``"type"``: one of ``"trade"``, ``"book_ticker"``, ``"depth_update"``, ``"depth_snapshot"``, ``"kline"``;
* ``"venue"``: the venue name, 1 to 32 of ``a-z 0-9 . _ -`` (upper-case ASCII letters are lower-cased), e.g.
  ``"coinbase"``;
* ``"market"`` (optional, default ``"spot"``): the venue's market of the symbol, same rules as ``venue``, e.g.
  ``"spot"``, ``"perp"``; one symbol on two markets of a venue keeps two states;
* ``"symbol"``: the venue's instrument name, 1 to 64 ASCII letters, digits or ``. _ - / : +``; the decoder
  upper-cases it.

The other keys are the field names of the matching class in ``stream_processor.market.models``, in its units:
prices in quote currency (0 < price <= 1e15), sizes in base units (0 <= size <= 1e18), both JSON numbers or
decimal strings, finite; times in ms since the Unix epoch (UTC) up to year 9999 and ids in [0, 2**63 - 1],
as JSON integers or strings of decimal digits (floats, even 12.0, are refused). Book levels are
``[[price, size], ...]``, at most 5000 per side, best first; a size of 0 removes the level. ``side`` is the
aggressor (taker) side, ``"buy"`` or ``"sell"``. Keys marked optional below may be omitted or null.

* trade: trade_id, price, size, side, time_ms; optional event_time_ms (defaults to time_ms).
* book_ticker: update_id, bid_price, bid_size, ask_price, ask_size; optional event_time_ms.
* depth_update: first_update_id <= last_update_id, bids, asks, event_time_ms; optional prev_update_id
  (<= last_update_id).
* depth_snapshot: last_update_id, bids, asks; optional event_time_ms.
* kline: interval (``<n><unit>``, unit s, m, h, d, w or M), open_time_ms, close_time_ms (inclusive,
  >= open_time_ms), open, high, low, close (low <= open, close <= high), volume, is_closed; optional
  quote_volume (default 0), trade_count (default 0), event_time_ms.

The values are the model's own: the decoder converts no unit (a venue quoting contracts converts them to base
units before writing this form).

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

    {"type": "kline", "venue": "ftx", "market": "perp", "symbol": "BTC-PERP", "interval": "1m",
     "open_time_ms": 1640991660000, "close_time_ms": 1640991719999,
     "open": 46200.5, "high": 46250.0, "low": 46180.0, "close": 46240.0, "volume": 12.5, "is_closed": true,
     "quote_volume": 577500.0, "trade_count": 310, "event_time_ms": 1640991720001}
"""

from __future__ import annotations

import dataclasses
import re

from stream_processor.engine.exceptions import InvalidRecordError
from stream_processor.market.models import (
    BookTicker,
    DepthSnapshot,
    DepthUpdate,
    Kline,
    MarketRecord,
    Trade,
)
from stream_processor.market.serde.binance import (
    PARSE_ERRORS,
    FieldError,
    check_kline,
    check_update_ids,
    flag,
    ident,
    interval,
    invalid,
    levels,
    ms,
    price,
    show_value,
    size,
    symbol,
)

_SIDES = frozenset({"buy", "sell"})
_NAME_RE = re.compile(r"[a-z0-9._\-]{1,32}").fullmatch
_names: dict[str, str] = {}


def name(value: object, field: str) -> str:
    """Return a venue or market name: 1 to 32 of ``a-z 0-9 . _ -`` after lower-casing ASCII letters, else FieldError."""
    if type(value) is str:
        known = _names.get(value)
        if known is not None:
            return known
        if value.isascii():
            lower = value.lower()
            if _NAME_RE(lower):
                if len(_names) < 4096:
                    _names[value] = lower
                return lower
    raise FieldError(f"field '{field}' must be 1 to 32 of a-z 0-9 . _ -, got {show_value(value)}")


def _opt_ms(d: dict, key: str) -> int | None:
    v = d.get(key)
    return None if v is None else ms(v, key)


def _side(value: object) -> str:
    if type(value) is str and value in _SIDES:
        return value
    raise FieldError(f"field 'side' must be 'buy' or 'sell', got {show_value(value)}")


def _trade(d: dict, venue: str, sym: str, market: str) -> Trade:
    t = ms(d["time_ms"], "time_ms")
    e = d.get("event_time_ms")
    return Trade(
        venue, sym, ident(d["trade_id"], "trade_id"), price(d["price"], "price"), size(d["size"], "size"),
        _side(d["side"]), t, t if e is None else ms(e, "event_time_ms"), market,
    )


def _book_ticker(d: dict, venue: str, sym: str, market: str) -> BookTicker:
    return BookTicker(
        venue, sym, ident(d["update_id"], "update_id"), price(d["bid_price"], "bid_price"),
        size(d["bid_size"], "bid_size"), price(d["ask_price"], "ask_price"), size(d["ask_size"], "ask_size"),
        _opt_ms(d, "event_time_ms"), market,
    )


_UPDATE_ID_NAMES = ("first_update_id", "last_update_id", "prev_update_id")


def _depth_update(d: dict, venue: str, sym: str, market: str) -> DepthUpdate:
    first, last = ident(d["first_update_id"], "first_update_id"), ident(d["last_update_id"], "last_update_id")
    pu = d.get("prev_update_id")
    prev = None if pu is None else ident(pu, "prev_update_id")
    check_update_ids(first, last, prev, _UPDATE_ID_NAMES)
    return DepthUpdate(
        venue, sym, first, last, levels(d["bids"], "bids"), levels(d["asks"], "asks"),
        ms(d["event_time_ms"], "event_time_ms"), prev, market,
    )


def _depth_snapshot(d: dict, venue: str, sym: str, market: str) -> DepthSnapshot:
    return DepthSnapshot(
        venue, sym, ident(d["last_update_id"], "last_update_id"), levels(d["bids"], "bids"),
        levels(d["asks"], "asks"), _opt_ms(d, "event_time_ms"), market,
    )


_KLINE_NAMES = ("open", "high", "low", "close", "open_time_ms", "close_time_ms")


def _kline(d: dict, venue: str, sym: str, market: str) -> Kline:
    o, h = price(d["open"], "open"), price(d["high"], "high")
    low, c = price(d["low"], "low"), price(d["close"], "close")
    t_open, t_close = ms(d["open_time_ms"], "open_time_ms"), ms(d["close_time_ms"], "close_time_ms")
    check_kline(o, h, low, c, t_open, t_close, _KLINE_NAMES)
    qv = d.get("quote_volume")
    n = d.get("trade_count")
    return Kline(
        venue, sym, interval(d["interval"], "interval"), t_open, t_close, o, h, low, c,
        size(d["volume"], "volume"), flag(d["is_closed"], "is_closed"),
        0.0 if qv is None else size(qv, "quote_volume"), 0 if n is None else ident(n, "trade_count"),
        _opt_ms(d, "event_time_ms"), market,
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

    Raises InvalidRecordError (message starts with the type and names the field, e.g. "trade: missing field
    'price'") for a non-object, an unknown ``type``, a missing field, or a value outside the rules of this
    module's docstring (see also the field parsers of ``stream_processor.market.serde.binance``).
    """
    if type(payload) is not dict:
        raise InvalidRecordError(f"expected a JSON object, got {type(payload).__name__}")
    kind = payload.get("type")
    parse = _BY_TYPE.get(kind) if type(kind) is str else None
    if parse is None:
        raise InvalidRecordError(f"unknown normalized record type {show_value(kind)}")
    try:
        market = payload.get("market")
        return parse(payload, name(payload["venue"], "venue"), symbol(payload["symbol"], "symbol"),
                     "spot" if market is None else name(market, "market"))
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
