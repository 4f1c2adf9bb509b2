"""Normalize Binance spot, USD-M and COIN-M websocket/REST market-data JSON to the internal model.

Strict field parsers
--------------------
Every field goes through one of the parsers below, which raise :class:`FieldError` naming the field, so no
value reaches a processor's state that could later break JSON encoding (orjson refuses ints beyond 64 bits) or
poison an indicator (NaN, inf, ``true`` read as 1.0, 12.7 read as 12):

* :func:`integer` / :func:`ident` / :func:`ms`: a JSON integer (never a bool, never a float, not even 12.0) or a
  string of ASCII decimal digits with an optional leading ``-``, within bounds: ids (trade ids, update ids,
  trade counts) in ``[0, MAX_ID]``; times in ms since the Unix epoch in ``[0, MAX_TIME_MS]`` (year 9999). How far
  an event time may lie from the Kafka timestamp is checked by the processors, not here.
* :func:`price` / :func:`size`: a finite JSON number (never a bool) or a decimal string (ASCII; digits, ``.``, an
  optional sign and exponent; no surrounding blanks, no ``_`` separators); ``0 < price <= MAX_PRICE`` and
  ``0 <= size <= MAX_SIZE``.
* :func:`levels`: a list of at most ``MAX_LEVELS`` levels per side, each exactly ``[price, size]``.
* :func:`symbol`: 1 to 64 ASCII letters, digits or ``. _ - / : +``; upper-cased.
* :func:`interval`: ``<n><unit>``, n a positive integer, unit one of ``s m h d w M`` (``1m``, ``4h``, ``1M``).
* :func:`check_kline`: ``low <= min(open, close)``, ``max(open, close) <= high``, ``close_time >= open_time``;
  :func:`check_update_ids`: ``first <= last`` and ``prev <= last``.

Markets
-------
Spot, USD-M futures and COIN-M futures all have venue ``"binance"``; ``market`` (``"spot"``, ``"usdm"``,
``"coinm"``) keeps a symbol's state on one market apart from the same symbol on another. It is decided, in
this order:

1. an explicit ``"market"`` key in the combined-stream envelope ``{"stream": ..., "data": ..., "market":
   "usdm"}`` (our extension of Binance's envelope; ``"spot"``, ``"usdm"`` or ``"coinm"``, anything else is
   invalid). Connectors should always set it: it is the only way to tell a USD-M ``aggTrade`` or ``kline``
   from a spot one, whose payloads differ only by fields that are absent (spot's ``M``), and absence is
   not taken as evidence;
2. COIN-M when the symbol has COIN-M's shape: a pair ending in ``USD``, then ``_PERP`` or ``_`` and six digits
   (``BTCUSD_PERP``, ``ETHUSD_240927``);
3. USD-M when the payload carries a field spot never sends: a ``depthUpdate`` with ``pu`` or ``T``, a
   ``bookTicker`` with ``e`` or ``T``, a ``trade`` with ``X``, a REST depth snapshot with ``T`` or ``E``;
4. otherwise spot.

COIN-M contracts
----------------
COIN-M quantities are contracts of a fixed USD value: 100 USD for BTC (pair ``BTCUSD``, e.g. ``BTCUSD_PERP``),
10 USD for every other pair (Binance's contract specifications). They are converted to base units at decode,
so the model keeps its units (sizes in base units): a trade's size is ``q * contract_usd / p``, a book level's
size ``qty * contract_usd / level_price``, a bookTicker's ``B * contract_usd / b`` and ``A * contract_usd / a``.
A COIN-M kline's ``v`` is in contracts and its ``q`` in the base asset, so ``volume = q`` (base) and
``quote_volume = v * contract_usd`` (USD).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from itertools import chain

from stream_processor.engine.exceptions import InvalidRecordError
from stream_processor.market.models import (
    BookTicker,
    DepthSnapshot,
    DepthUpdate,
    Kline,
    Level,
    MarketRecord,
    Trade,
)

VENUE = "binance"

MAX_PRICE = 1e15
"""Largest price accepted, in quote currency: no real market quotes above it (BTC in VND or IDR is ~1e9)."""
MAX_SIZE = 1e18
"""Largest size (base units) or volume accepted: far above any real order or day's volume."""
MAX_LEVELS = 5000
"""Most levels per side of one message: Binance's REST depth limit."""
MAX_ID = 2**63 - 1
"""Largest id (trade id, update id, trade count): a signed 64-bit integer, which orjson can encode."""
MAX_TIME_MS = 253_402_300_799_999
"""Latest time in ms since the Unix epoch: 9999-12-31T23:59:59.999Z."""
MARKETS = ("spot", "usdm", "coinm")
"""The Binance markets; the envelope's ``market`` key must be one of them."""
COINM_CONTRACT_USD_BTC = 100.0
"""USD value of one COIN-M contract of pair BTCUSD."""
COINM_CONTRACT_USD = 10.0
"""USD value of one COIN-M contract of any other pair."""

_PARTIAL_DEPTH = frozenset({"depth5", "depth10", "depth20"})
_MARKET_SET = frozenset(MARKETS)
_SYMBOL_RE = re.compile(r"[A-Za-z0-9._/:+\-]{1,64}").fullmatch
_INTERVAL_RE = re.compile(r"[1-9][0-9]{0,5}[smhdwM]").fullmatch
_COINM_RE = re.compile(r"[A-Z0-9]+USD_(?:PERP|[0-9]{6})").fullmatch
_CACHE_MAX = 4096  # validated symbols and intervals remembered (the hot path sees a handful)
_symbols: dict[str, str] = {}
_binance_symbols: dict[str, tuple[str, float]] = {}
_intervals: set[str] = set()


class FieldError(ValueError):
    """A field is present but its value is unusable; the message names the field."""


def show_value(value: object) -> str:
    """``repr(value)``, cut to 80 characters (an error message must stay small)."""
    r = repr(value)
    return r if len(r) <= 80 else r[:77] + "..."


def integer(value: object, field: str, lo: int, hi: int) -> int:
    """Return ``value`` as an int in ``[lo, hi]``, else raise FieldError naming ``field``.

    Accepted: a JSON integer (not a bool) or a string of ASCII decimal digits with an optional leading ``-``.
    Refused: floats (12.7, 1e20, even 12.0), bools, None, anything else, and values outside the bounds.
    """
    if type(value) is int:
        if lo <= value <= hi:
            return value
    elif (type(value) is str and 0 < len(value) <= 20 and value.isascii()
          and (value[1:] if value[0] == "-" else value).isdigit()):
        x = int(value)
        if lo <= x <= hi:
            return x
    else:
        raise FieldError(f"field '{field}' must be an integer, got {show_value(value)}")
    raise FieldError(f"field '{field}' must be an integer in [{lo}, {hi}], got {show_value(value)}")


def ident(value: object, field: str) -> int:
    """Return ``value`` as an id (trade id, update id, count): an integer in ``[0, MAX_ID]`` (see :func:`integer`)."""
    if type(value) is int and 0 <= value <= MAX_ID:
        return value
    return integer(value, field, 0, MAX_ID)


def ms(value: object, field: str) -> int:
    """Return ``value`` as a time in ms since the epoch: an integer in ``[0, MAX_TIME_MS]`` (see :func:`integer`)."""
    if type(value) is int and 0 <= value <= MAX_TIME_MS:
        return value
    return integer(value, field, 0, MAX_TIME_MS)


def _decimal(value: str) -> float | None:
    """``value`` as a float if it is a decimal string (ASCII digits, ``.``, sign, exponent; no ``_``), else None."""
    if value.isascii() and "_" not in value:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _number(value: object) -> float | int | None:
    """``value`` as a number if it is a JSON number (not a bool) or a decimal string, else None.

    The result may be NaN, inf or out of range: the caller checks the range.
    """
    t = type(value)
    if t is str:
        return _decimal(value)  # type: ignore[arg-type]
    if t is float or t is int:
        return value  # type: ignore[return-value]
    return None


def _bounded(lo: float, hi: float, refusal: str) -> Callable[[object, str], float]:
    """A parser of a JSON number or decimal string ``x`` with ``lo <= x <= hi``; ``refusal`` ends its message.

    A decimal string is ASCII text that ``float()`` reads, without ``_`` separators (``float()`` alone would take
    non-ASCII digits and ``"1_000"``); ``"NaN"`` and ``"inf"`` fail the range. Bools are refused.
    """

    def parse(value: object, field: str) -> float:
        try:
            x = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            raise FieldError(f"field '{field}' is not a number: {show_value(value)}") from None
        if type(value) is str and lo <= x <= hi and value.isascii() and "_" not in value:
            return x  # the fast path: a Binance decimal string
        x = _number(value)  # type: ignore[assignment]
        if x is None:
            raise FieldError(f"field '{field}' is not a number: {show_value(value)}")
        if lo <= x <= hi:
            return float(x)
        raise FieldError(f"field '{field}' must be {refusal}, got {show_value(value)}")

    return parse


#: ``value`` as a price, 0 < price <= MAX_PRICE (the smallest positive float is the lower bound), else FieldError.
price = _bounded(math.ulp(0.0), MAX_PRICE, f"a finite price, 0 < price <= {MAX_PRICE:g}")
#: ``value`` as a size, 0 <= size <= MAX_SIZE, else FieldError.
size = _bounded(0.0, MAX_SIZE, f"a finite size, 0 <= size <= {MAX_SIZE:g}")


def contracts_to_base(contracts: float, at_price: float, contract_usd: float, field: str) -> float:
    """Base units of ``contracts`` COIN-M contracts of ``contract_usd`` each at ``at_price``; FieldError if too big."""
    x = contracts * contract_usd / at_price
    if x <= MAX_SIZE:
        return x
    raise FieldError(f"field '{field}' is {contracts:g} contracts of {contract_usd:g} USD at {at_price:g}, "
                     f"{x:g} base units, more than {MAX_SIZE:g}")


def _levels_strict(raw: list, field: str) -> list[Level]:
    """:func:`levels` for the general case: each level checked on its own, the first bad one named."""
    out = []
    for i, lv in enumerate(raw):
        if type(lv) is not list or len(lv) != 2:
            raise FieldError(f"field '{field}' has a bad level at index {i}: {show_value(lv)} is not [price, size]")
        p, q = _number(lv[0]), _number(lv[1])
        if p is None or q is None:
            raise FieldError(f"field '{field}' has a bad level at index {i}: {show_value(lv)} is not [price, size] "
                             "numbers")
        if not 0.0 < p <= MAX_PRICE:
            raise FieldError(f"field '{field}' has a bad level at index {i}: {show_value(lv)}: price must be finite, "
                             f"0 < price <= {MAX_PRICE:g}")
        if not 0.0 <= q <= MAX_SIZE:
            raise FieldError(f"field '{field}' has a bad level at index {i}: {show_value(lv)}: size must be finite, "
                             f"0 <= size <= {MAX_SIZE:g}")
        out.append((float(p), float(q)))
    return out


def levels(raw: object, field: str, contract_usd: float = 0.0) -> list[Level]:
    """Return ``[[price, size], ...]`` as a list of ``(price, size)`` floats, else raise FieldError.

    At most MAX_LEVELS levels; each exactly ``[price, size]``, both JSON numbers or decimal strings (see
    :func:`price` and :func:`size`). With ``contract_usd`` (COIN-M) each size is a number of contracts,
    converted to base units: ``size * contract_usd / price``.
    """
    if type(raw) is not list:
        raise FieldError(f"field '{field}' is not a list of [price, size] levels: {show_value(raw)}")
    if len(raw) > MAX_LEVELS:
        raise FieldError(f"field '{field}' has {len(raw)} levels, more than {MAX_LEVELS}")
    out: list[Level] | None = None
    try:
        # fast path for Binance's all-string levels: the strings checked together in C (TypeError unless every
        # item of every level is a string), then converted in one comprehension that skips non-list levels
        joined = "".join(chain.from_iterable(raw))
        if joined.isascii() and "_" not in joined:
            out = [(float(p), float(q)) for lv in raw if type(lv) is list for p, q in (lv,)]  # ValueError: not 2
    except (TypeError, ValueError):
        out = None
    if out is not None:
        if len(out) != len(raw):
            out = None
        else:
            for p, q in out:
                if not (0.0 < p <= MAX_PRICE and 0.0 <= q <= MAX_SIZE):
                    out = None
                    break
    if out is None:
        out = _levels_strict(raw, field)
    if contract_usd:
        out = [(p, contracts_to_base(q, p, contract_usd, field) if q else q) for p, q in out]
    return out


def flag(value: object, field: str) -> bool:
    """Return ``value`` if it is a JSON boolean, else raise FieldError."""
    if value is True or value is False:
        return value
    raise FieldError(f"field '{field}' is not a boolean: {show_value(value)}")


def symbol(value: object, field: str) -> str:
    """Return ``value`` upper-cased if it is 1 to 64 ASCII letters, digits or ``. _ - / : +``, else FieldError."""
    if type(value) is str:
        known = _symbols.get(value)
        if known is not None:
            return known
        if value.isascii() and _SYMBOL_RE(value):
            known = value.upper()
            if len(_symbols) < _CACHE_MAX:
                _symbols[value] = known
            return known
    raise FieldError(f"field '{field}' is not a symbol (1 to 64 ASCII letters, digits or . _ - / : +): "
                     f"{show_value(value)}")


def contract_usd(sym: str) -> float:
    """USD value of one COIN-M contract of the (upper-case) symbol ``sym``: 100 for pair BTCUSD, else 10."""
    return COINM_CONTRACT_USD_BTC if sym.partition("_")[0] == "BTCUSD" else COINM_CONTRACT_USD


def _binance_symbol(value: object, field: str) -> tuple[str, float]:
    """:func:`symbol`, and the COIN-M contract size (USD) if the symbol has COIN-M's shape, else 0."""
    if type(value) is str:
        known = _binance_symbols.get(value)
        if known is not None:
            return known
    sym = symbol(value, field)
    known = (sym, contract_usd(sym) if _COINM_RE(sym) else 0.0)
    if len(_binance_symbols) < _CACHE_MAX:
        _binance_symbols[value] = known  # type: ignore[index]
    return known


def interval(value: object, field: str) -> str:
    """Return ``value`` if it is an interval ``<n><unit>`` (n > 0; unit s, m, h, d, w or M), else FieldError."""
    if type(value) is str:
        if value in _intervals:
            return value
        if value.isascii() and _INTERVAL_RE(value):
            if len(_intervals) < _CACHE_MAX:
                _intervals.add(value)
            return value
    raise FieldError(f"field '{field}' must be an interval <n><unit> with n > 0 and unit s, m, h, d, w or M "
                     f"(e.g. 1m, 4h, 1M), got {show_value(value)}")


def text(value: object, field: str) -> str:
    """Return ``value`` if it is a non-empty string, else raise FieldError."""
    if type(value) is str and value:
        return value
    raise FieldError(f"field '{field}' is not a non-empty string: {show_value(value)}")


def check_kline(o: float, h: float, low: float, c: float, open_ms: int, close_ms: int, names: tuple) -> None:
    """Raise FieldError unless ``low <= min(o, c)``, ``max(o, c) <= h`` and ``close_ms >= open_ms``.

    ``names`` gives the field names of (open, high, low, close, open time, close time) for the message.
    """
    if low > o or low > c:
        raise FieldError(f"field '{names[2]}' (low {low!r}) must be <= open {o!r} and close {c!r}")
    if h < o or h < c:
        raise FieldError(f"field '{names[1]}' (high {h!r}) must be >= open {o!r} and close {c!r}")
    if close_ms < open_ms:
        raise FieldError(f"field '{names[5]}' (close time {close_ms}) must be >= '{names[4]}' (open time {open_ms})")


def check_update_ids(first: int, last: int, prev: int | None, names: tuple) -> None:
    """Raise FieldError unless ``first <= last`` and (if given) ``prev <= last``; ``names`` as (first, last, prev)."""
    if first > last:
        raise FieldError(f"field '{names[0]}' ({first}) must be <= '{names[1]}' ({last})")
    if prev is not None and prev > last:
        raise FieldError(f"field '{names[2]}' ({prev}) must be <= '{names[1]}' ({last})")


PARSE_ERRORS = (KeyError, ValueError, TypeError, OverflowError)


def invalid(kind: str, exc: Exception) -> InvalidRecordError:
    """Turn a KeyError/ValueError/TypeError/OverflowError raised while parsing ``kind`` into an error."""
    if isinstance(exc, KeyError):
        return InvalidRecordError(f"{kind}: missing field {exc.args[0]!r}")
    if isinstance(exc, FieldError):
        return InvalidRecordError(f"{kind}: {exc}")
    return InvalidRecordError(f"{kind}: bad value ({exc})")


def _market(explicit: str | None, sym: str, coinm_usd: float, usdm: bool) -> tuple[str, float]:
    """``(market, COIN-M contract USD or 0)`` from the envelope's market, the symbol's shape and USD-M markers."""
    if explicit is None:
        if coinm_usd:
            return "coinm", coinm_usd
        return ("usdm" if usdm else "spot"), 0.0
    if explicit == "coinm":
        return explicit, coinm_usd or contract_usd(sym)
    return explicit, 0.0


def _trade(d: dict, stream: str | None, hint: str | None, market: str | None) -> Trade:
    s = d["s"]
    known = _binance_symbols.get(s) if type(s) is str else None
    sym, cusd = known if known is not None else _binance_symbol(s, "s")
    if market is None:
        market = "coinm" if cusd else ("usdm" if "X" in d else "spot")
    elif market != "coinm":
        cusd = 0.0
    elif not cusd:
        cusd = contract_usd(sym)
    p = price(d["p"], "p")
    q = size(d["q"], "q")
    if cusd:
        q = contracts_to_base(q, p, cusd, "q")
    return Trade(
        VENUE, sym, ident(d["t"], "t"), p, q, "sell" if flag(d["m"], "m") else "buy",
        ms(d["T"], "T"), ms(d["E"], "E"), market,
    )


def _agg_trade(d: dict, stream: str | None, hint: str | None, market: str | None) -> Trade:
    # spot's aggTrade has "M", USD-M's does not: no positive marker, so USD-M needs the envelope's market
    sym, cusd = _binance_symbol(d["s"], "s")
    market, cusd = _market(market, sym, cusd, False)
    p = price(d["p"], "p")
    q = size(d["q"], "q")
    if cusd:
        q = contracts_to_base(q, p, cusd, "q")
    return Trade(
        VENUE, sym, ident(d["a"], "a"), p, q, "sell" if flag(d["m"], "m") else "buy",
        ms(d["T"], "T"), ms(d["E"], "E"), market,
    )


def _depth_update(d: dict, stream: str | None, hint: str | None, market: str | None) -> DepthUpdate | DepthSnapshot:
    sym, cusd = _binance_symbol(d["s"], "s")
    market, cusd = _market(market, sym, cusd, "pu" in d or "T" in d)
    if stream is not None and stream.partition("@")[2].partition("@")[0] in _PARTIAL_DEPTH:
        # USD-M/COIN-M partial book depth (<sym>@depth5/10/20[@100ms]): the top N levels as of `u`, not a diff.
        return DepthSnapshot(
            VENUE, sym, ident(d["u"], "u"), levels(d["b"], "b", cusd), levels(d["a"], "a", cusd), ms(d["E"], "E"),
            market,
        )
    first, last = ident(d["U"], "U"), ident(d["u"], "u")
    pu = d.get("pu")
    prev = None if pu is None else ident(pu, "pu")
    check_update_ids(first, last, prev, ("U", "u", "pu"))
    return DepthUpdate(
        VENUE, sym, first, last, levels(d["b"], "b", cusd), levels(d["a"], "a", cusd), ms(d["E"], "E"), prev, market,
    )


def _book_ticker(d: dict, stream: str | None, hint: str | None, market: str | None) -> BookTicker:
    s = d["s"]
    known = _binance_symbols.get(s) if type(s) is str else None
    sym, cusd = known if known is not None else _binance_symbol(s, "s")
    if market is None and not cusd:
        market = "usdm" if "e" in d or "T" in d else "spot"
    else:
        market, cusd = _market(market, sym, cusd, False)
    e = d.get("E")
    bid, ask = price(d["b"], "b"), price(d["a"], "a")
    bid_size, ask_size = size(d["B"], "B"), size(d["A"], "A")
    if cusd:
        bid_size = contracts_to_base(bid_size, bid, cusd, "B")
        ask_size = contracts_to_base(ask_size, ask, cusd, "A")
    return BookTicker(
        VENUE, sym, ident(d["u"], "u"), bid, bid_size, ask, ask_size, None if e is None else ms(e, "E"), market,
    )


def _snapshot(d: dict, stream: str | None, hint: str | None, market: str | None) -> DepthSnapshot:
    if stream is not None:
        raw, field = stream.partition("@")[0], "stream"
    elif d.get("symbol") is not None:  # COIN-M's REST depth names its symbol
        raw, field = d["symbol"], "symbol"
    elif hint:
        raw, field = hint, "key"
    else:
        raise InvalidRecordError("depth snapshot: no symbol (no stream name and no symbol_hint)")
    sym, cusd = _binance_symbol(raw, field)
    market, cusd = _market(market, sym, cusd, "T" in d or "E" in d)
    e = d.get("E")
    return DepthSnapshot(
        VENUE, sym, ident(d["lastUpdateId"], "lastUpdateId"), levels(d["bids"], "bids", cusd),
        levels(d["asks"], "asks", cusd), None if e is None else ms(e, "E"), market,
    )


_KLINE_NAMES = ("k.o", "k.h", "k.l", "k.c", "k.t", "k.T")


def _kline(d: dict, stream: str | None, hint: str | None, market: str | None) -> Kline:
    sym, cusd = _binance_symbol(d["s"], "s")
    market, cusd = _market(market, sym, cusd, False)  # spot and USD-M klines look alike
    k = d["k"]
    if type(k) is not dict:
        raise FieldError(f"field 'k' is not an object: {show_value(k)}")
    try:
        o, h, low, c = price(k["o"], "k.o"), price(k["h"], "k.h"), price(k["l"], "k.l"), price(k["c"], "k.c")
        t_open, t_close = ms(k["t"], "k.t"), ms(k["T"], "k.T")
        check_kline(o, h, low, c, t_open, t_close, _KLINE_NAMES)
        if cusd:  # COIN-M: v is contracts, q is base-asset volume
            volume = size(k["q"], "k.q")
            quote_volume = size(k["v"], "k.v") * cusd
        else:
            volume, quote_volume = size(k["v"], "k.v"), size(k["q"], "k.q")
        return Kline(
            VENUE, sym, interval(k["i"], "k.i"), t_open, t_close, o, h, low, c, volume, flag(k["x"], "k.x"),
            quote_volume, ident(k["n"], "k.n"), ms(d["E"], "E"), market,
        )
    except KeyError as e:
        if e.args[0] == "E":
            raise
        raise KeyError(f"k.{e.args[0]}") from None


_BY_EVENT = {
    "trade": _trade,
    "aggTrade": _agg_trade,
    "depthUpdate": _depth_update,
    "bookTicker": _book_ticker,
    "kline": _kline,
}


def normalize_binance(payload: dict, symbol_hint: str | None = None) -> MarketRecord:
    """Normalize one Binance message, bare or in a combined-stream envelope ``{"stream", "data"[, "market"]}``.

    Kinds: ``trade`` and ``aggTrade`` -> Trade (``m`` true -> side "sell"; time_ms = T, event_time_ms = E);
    ``depthUpdate`` -> DepthUpdate (futures ``pu`` -> prev_update_id), or DepthSnapshot on a futures
    ``<sym>@depth5/10/20`` stream; ``bookTicker`` (spot has no ``e``: recognized by its keys
    u,s,b,B,a,A or a ``...bookTicker`` stream name) -> BookTicker; ``kline`` -> Kline; the REST depth
    snapshot or partial-depth payload ``{"lastUpdateId", "bids", "asks"}`` -> DepthSnapshot, whose symbol
    comes from the stream name, else the payload's ``symbol`` (COIN-M), else ``symbol_hint`` (e.g. the Kafka
    key). Decimal strings become floats; times stay ms since epoch. venue is always ``"binance"``; ``market``
    is ``"spot"``, ``"usdm"`` or ``"coinm"`` (see this module's docstring), and COIN-M contract quantities
    become base units.

    Raises InvalidRecordError (message starts with the kind, e.g. "trade: missing field 'p'", and names the
    field) for a non-object, an unknown event kind or market, a missing field, or a value the field parsers of
    this module refuse.
    """
    if type(payload) is not dict:
        raise InvalidRecordError(f"expected a JSON object, got {type(payload).__name__}")
    stream = payload.get("stream")
    market = None
    if stream is None:
        data = payload
    else:
        data = payload.get("data")
        if type(stream) is not str or type(data) is not dict:
            raise InvalidRecordError("envelope: 'stream' must be a string and 'data' an object")
        market = payload.get("market")
        if market is not None and (type(market) is not str or market not in _MARKET_SET):
            raise InvalidRecordError(f"envelope: field 'market' must be 'spot', 'usdm' or 'coinm', got "
                                     f"{show_value(market)}")
    event = data.get("e")
    if event is not None:
        parse = _BY_EVENT.get(event) if type(event) is str else None
        if parse is None:
            raise InvalidRecordError(f"unknown Binance event type {show_value(event)}")
        kind = event
    elif "lastUpdateId" in data:
        parse, kind = _snapshot, "depth snapshot"
    elif ("B" in data and "A" in data) or (stream is not None and stream.endswith("bookTicker")):
        parse, kind = _book_ticker, "bookTicker"
    else:
        raise InvalidRecordError("not a Binance market-data message (no 'e', not a snapshot or bookTicker)")
    try:
        return parse(data, stream, symbol_hint, market)
    except PARSE_ERRORS as e:
        raise invalid(kind, e) from None
