"""Strict field parsing: every bad value is refused with an error of the right type naming the field.

Each rejection row gives the record, the expected message (a regex anchored at both ends unless noted) and so
the field it names. Values are written with the stdlib json (which, unlike orjson, writes huge ints), then
decoded by ``decode()`` exactly as the runtime does.
"""

from __future__ import annotations

import json
import math
import re

import orjson
import pytest

from stream_processor.engine.exceptions import DecodeError, InvalidRecordError
from stream_processor.market.models import BookTicker, DepthSnapshot, DepthUpdate, Kline, Trade
from stream_processor.market.serde import binance
from stream_processor.market.serde.binance import MAX_LEVELS, MAX_PRICE, MAX_SIZE, FieldError
from stream_processor.market.serde.decode import decode, encode
from stream_processor.market.serde.normalized import to_normalized
from tests.unit.market.serde.test_decode import mutations

TRADE = {"e": "trade", "E": 1723161255343, "s": "BTCUSDT", "t": 3735683259, "p": "61837.63000000",
         "q": "0.02000000", "T": 1723161255342, "m": True, "M": True}
AGG = {"e": "aggTrade", "E": 1672515782136, "s": "BNBBTC", "a": 12345, "p": "0.001", "q": "100",
       "f": 100, "l": 105, "T": 1672515782135, "m": True, "M": True}
DEPTH = {"e": "depthUpdate", "E": 1723161255208, "s": "BTCUSDT", "U": 10, "u": 12,
         "b": [["61737.63", "0.0"]], "a": [["61837.64", "1.5"]]}
TICKER = {"u": 50093239212, "s": "BTCUSDT", "b": "61837.63", "B": "3.78826", "a": "61837.64", "A": "1.54698"}
SNAPSHOT = {"lastUpdateId": 7, "bids": [["1.5", "2"]], "asks": [["1.6", "3"]]}
K = {"t": 1672515780000, "T": 1672515839999, "s": "BNBBTC", "i": "1m", "f": 100, "L": 200, "o": "0.0010",
     "c": "0.0020", "h": "0.0025", "l": "0.0009", "v": "1000", "n": 100, "x": False, "q": "1.0", "V": "500",
     "Q": "0.5", "B": "0"}
KLINE = {"e": "kline", "E": 1672515782136, "s": "BNBBTC", "k": K}

N_TRADE = {"type": "trade", "venue": "coinbase", "symbol": "BTC-USD", "trade_id": 172000123, "price": "61837.63",
           "size": "0.02", "side": "sell", "time_ms": 1723161255342, "event_time_ms": 1723161255343}
N_TICKER = {"type": "book_ticker", "venue": "coinbase", "symbol": "BTC-USD", "update_id": 9001, "bid_price": 1.0,
            "bid_size": 2.0, "ask_price": 1.1, "ask_size": 3.0}
N_DEPTH = {"type": "depth_update", "venue": "bybit", "symbol": "XRPUSDT", "first_update_id": 101,
           "last_update_id": 105, "prev_update_id": 100, "bids": [["0.5123", "1200"]], "asks": [["0.5125", "8"]],
           "event_time_ms": 1733011200691}
N_SNAPSHOT = {"type": "depth_snapshot", "venue": "bybit", "symbol": "XRPUSDT", "last_update_id": 100,
              "bids": [["0.5123", "1000"]], "asks": [["0.5125", "800.5"]]}
N_KLINE = {"type": "kline", "venue": "ftx", "symbol": "BTC-PERP", "interval": "1m", "open_time_ms": 1640991660000,
           "close_time_ms": 1640991719999, "open": 46200.5, "high": 46250.0, "low": 46180.0, "close": 46240.0,
           "volume": 12.5, "is_closed": True, "quote_volume": 577500.0, "trade_count": 310}


def dumps(obj: object) -> bytes:
    return json.dumps(obj).encode()


def with_(base: dict, **changes: object) -> bytes:
    return dumps({**base, **changes})


def kline(**changes: object) -> bytes:
    return dumps({**KLINE, "k": {**K, **changes}})


def without(base: dict, key: str) -> bytes:
    return dumps({k: v for k, v in base.items() if k != key})


def SYM(tail: str) -> re.Pattern:  # noqa: N802
    """The message refusing field 's' as a symbol, then ``tail`` (a regex)."""
    return re.compile(r"trade: field 's' is not a symbol \(1 to 64 ASCII letters, digits or \. _ - / : \+\)" + tail)


LEVELS_TOO_MANY = [["1.5", "1"]] * (MAX_LEVELS + 1)

# (kind of bad input, record bytes, expected message); every message names the field it refuses.
INVALID = [
    # prices and sizes
    ("price is a bool", with_(TRADE, p=True), "trade: field 'p' is not a number: True"),
    ("size is a bool", with_(TRADE, q=False), "trade: field 'q' is not a number: False"),
    ("price is null", with_(TRADE, p=None), "trade: field 'p' is not a number: None"),
    ("price is a list", with_(TRADE, p=[1]), "trade: field 'p' is not a number: [1]"),
    ("price is not a number", with_(TRADE, p="abc"), "trade: field 'p' is not a number: 'abc'"),
    ("price has non-ASCII digits", with_(TRADE, p="\u0661\u0662"), "trade: field 'p' is not a number: '\u0661\u0662'"),
    ("price has _ separators", with_(TRADE, p="61_837.63"), "trade: field 'p' is not a number: '61_837.63'"),
    ("price is 0", with_(TRADE, p="0"), "trade: field 'p' must be a finite price, 0 < price <= 1e+15, got '0'"),
    ("price is negative", with_(TRADE, p=-1), "trade: field 'p' must be a finite price, 0 < price <= 1e+15, got -1"),
    ("price is NaN", with_(TRADE, p="NaN"), "trade: field 'p' must be a finite price, 0 < price <= 1e+15, got 'NaN'"),
    ("price is inf", with_(TRADE, p="inf"), "trade: field 'p' must be a finite price, 0 < price <= 1e+15, got 'inf'"),
    ("price > MAX_PRICE", with_(TRADE, p="1e16"),
     "trade: field 'p' must be a finite price, 0 < price <= 1e+15, got '1e16'"),
    ("size is negative", with_(TRADE, q="-0.5"),
     "trade: field 'q' must be a finite size, 0 <= size <= 1e+18, got '-0.5'"),
    ("size > MAX_SIZE", with_(TRADE, q=1e19), "trade: field 'q' must be a finite size, 0 <= size <= 1e+18, got 1e+19"),
    ("size is -inf", with_(TRADE, q="-Infinity"),
     "trade: field 'q' must be a finite size, 0 <= size <= 1e+18, got '-Infinity'"),
    # ids and times
    ("id is a float", with_(TRADE, t=12.7), "trade: field 't' must be an integer, got 12.7"),
    ("id is an integral float", with_(TRADE, t=12.0), "trade: field 't' must be an integer, got 12.0"),
    ("id is a bool", with_(TRADE, t=True), "trade: field 't' must be an integer, got True"),
    ("id is a decimal string", with_(TRADE, t="12.5"), "trade: field 't' must be an integer, got '12.5'"),
    ("id has non-ASCII digits", with_(TRADE, t="\uff11\uff12"), "trade: field 't' must be an integer, got '１２'"),
    ("id is negative", with_(TRADE, t=-1), "trade: field 't' must be an integer in [0, 9223372036854775807], got -1"),
    ("id above 2**63-1", with_(TRADE, t=2**63),
     "trade: field 't' must be an integer in [0, 9223372036854775807], got 9223372036854775808"),
    ("id above 64 bits (orjson: a float)", with_(TRADE, t=10**30), "trade: field 't' must be an integer, got 1e+30"),
    ("time in exponent form", b'{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"1","q":"1","T":1e20,"m":true}',
     "trade: field 'T' must be an integer, got 1e+20"),
    ("time after year 9999", with_(TRADE, T=253402300800000),
     "trade: field 'T' must be an integer in [0, 253402300799999], got 253402300800000"),
    ("time is negative", with_(TRADE, E=-5), "trade: field 'E' must be an integer in [0, 253402300799999], got -5"),
    ("time is null", with_(TRADE, T=None), "trade: field 'T' must be an integer, got None"),
    ("time is a string of digits, too long", with_(TRADE, E="9" * 30),
     "trade: field 'E' must be an integer, got '999999999999999999999999999999'"),
    ("aggTrade id is a float", with_(AGG, a=1.5), "aggTrade: field 'a' must be an integer, got 1.5"),
    # flags and sides
    ("m is not a bool", with_(TRADE, m=1), "trade: field 'm' is not a boolean: 1"),
    # symbols
    ("symbol is empty", with_(TRADE, s=""),
     "trade: field 's' is not a symbol (1 to 64 ASCII letters, digits or . _ - / : +): ''"),
    ("symbol has a NUL", with_(TRADE, s="BTC\x00USDT"), SYM(r": 'BTC\\x00USDT'")),
    ("symbol has a control char", with_(TRADE, s="BTCUSDT\n"), SYM(r": .*")),
    ("symbol has an RTL mark", with_(TRADE, s="BTC\u200fUSDT"), SYM(r": .*")),
    ("symbol has a Cyrillic letter", with_(TRADE, s="BTCUSD\u0422"), SYM(r": .*")),
    ("symbol has a space", with_(TRADE, s="BTC USDT"), SYM(r": 'BTC USDT'")),
    ("symbol is too long", with_(TRADE, s="A" * 65), SYM(r": .*")),
    ("symbol is a number", with_(TRADE, s=5), SYM(r": 5")),
    # book levels
    ("levels not a list", with_(DEPTH, b="61737.63"),
     "depthUpdate: field 'b' is not a list of [price, size] levels: '61737.63'"),
    ("too many levels", with_(DEPTH, b=LEVELS_TOO_MANY), "depthUpdate: field 'b' has 5001 levels, more than 5000"),
    ("level of 1 item", with_(DEPTH, a=[["61837.64"]]),
     "depthUpdate: field 'a' has a bad level at index 0: ['61837.64'] is not [price, size]"),
    ("level of 3 items", with_(DEPTH, a=[["1", "2"], ["1", "2", "3"]]),
     "depthUpdate: field 'a' has a bad level at index 1: ['1', '2', '3'] is not [price, size]"),
    ("level is a 2-char string", with_(DEPTH, a=["12"]),
     "depthUpdate: field 'a' has a bad level at index 0: '12' is not [price, size]"),
    ("level is an object", with_(DEPTH, a=[{"1": 1, "2": 2}]),
     "depthUpdate: field 'a' has a bad level at index 0: {'1': 1, '2': 2} is not [price, size]"),
    ("level with a bool", with_(DEPTH, b=[[True, "1"]]),
     "depthUpdate: field 'b' has a bad level at index 0: [True, '1'] is not [price, size] numbers"),
    ("level size with _", with_(DEPTH, b=[["1", "1_0"]]),
     "depthUpdate: field 'b' has a bad level at index 0: ['1', '1_0'] is not [price, size] numbers"),
    ("level price NaN", with_(DEPTH, b=[["NaN", "1"]]),
     "depthUpdate: field 'b' has a bad level at index 0: ['NaN', '1']: price must be finite, 0 < price <= 1e+15"),
    ("level price > MAX_PRICE", with_(DEPTH, b=[[1e16, 1]]),
     "depthUpdate: field 'b' has a bad level at index 0: [1e+16, 1]: price must be finite, 0 < price <= 1e+15"),
    ("level size negative", with_(DEPTH, a=[["61837.64", "-1"]]),
     "depthUpdate: field 'a' has a bad level at index 0: ['61837.64', '-1']: size must be finite, "
     "0 <= size <= 1e+18"),
    ("snapshot levels too many", with_(SNAPSHOT, asks=LEVELS_TOO_MANY),
     "depth snapshot: field 'asks' has 5001 levels, more than 5000"),
    # update ids
    ("U > u", with_(DEPTH, U=13), "depthUpdate: field 'U' (13) must be <= 'u' (12)"),
    ("pu > u", with_(DEPTH, pu=13, T=1), "depthUpdate: field 'pu' (13) must be <= 'u' (12)"),
    ("u is a float", with_(DEPTH, u=12.0), "depthUpdate: field 'u' must be an integer, got 12.0"),
    ("snapshot id not an integer", with_(SNAPSHOT, lastUpdateId="x"),
     "depth snapshot: field 'lastUpdateId' must be an integer, got 'x'"),
    ("bookTicker id is a float", with_(TICKER, u=1.5), "bookTicker: field 'u' must be an integer, got 1.5"),
    ("bookTicker price is a bool", with_(TICKER, b=True), "bookTicker: field 'b' is not a number: True"),
    ("bookTicker size negative", with_(TICKER, A="-1"),
     "bookTicker: field 'A' must be a finite size, 0 <= size <= 1e+18, got '-1'"),
    # klines
    ("interval 7x", kline(i="7x"), "kline: field 'k.i' must be an interval <n><unit> with n > 0 and unit s, m, h, "
                                   "d, w or M (e.g. 1m, 4h, 1M), got '7x'"),
    ("interval 0m", kline(i="0m"), re.compile(r"kline: field 'k.i' must be an interval .*, got '0m'")),
    ("interval 1y", kline(i="1y"), re.compile(r"kline: field 'k.i' must be an interval .*, got '1y'")),
    ("interval empty", kline(i=""), re.compile(r"kline: field 'k.i' must be an interval .*, got ''")),
    ("interval a number", kline(i=1), re.compile(r"kline: field 'k.i' must be an interval .*, got 1")),
    ("open below low", kline(o="0.0008"), "kline: field 'k.l' (low 0.0009) must be <= open 0.0008 and close 0.002"),
    ("close below low", kline(c="0.0001"), "kline: field 'k.l' (low 0.0009) must be <= open 0.001 and close 0.0001"),
    ("close above high", kline(c="0.003"), "kline: field 'k.h' (high 0.0025) must be >= open 0.001 and close 0.003"),
    ("high below low", kline(h="0.0005"), "kline: field 'k.h' (high 0.0005) must be >= open 0.001 and close 0.002"),
    ("close time before open time", kline(T=1672515779999),
     "kline: field 'k.T' (close time 1672515779999) must be >= 'k.t' (open time 1672515780000)"),
    ("trade count is a float", kline(n=1.5), "kline: field 'k.n' must be an integer, got 1.5"),
    ("trade count negative", kline(n=-1), "kline: field 'k.n' must be an integer in [0, 9223372036854775807], got -1"),
    ("kline volume a bool", kline(v=True), "kline: field 'k.v' is not a number: True"),
    ("kline open time a float", kline(t=1.5e12), "kline: field 'k.t' must be an integer, got 1500000000000.0"),
    ("kline k not an object", with_(KLINE, k=[1]), "kline: field 'k' is not an object: [1]"),
    ("kline field missing", dumps({**KLINE, "k": {k: v for k, v in K.items() if k != "o"}}),
     "kline: missing field 'k.o'"),
    ("kline E missing", without(KLINE, "E"), "kline: missing field 'E'"),
    # envelope market
    ("envelope market unknown", dumps({"stream": "btcusdt@trade", "data": TRADE, "market": "margin"}),
     "envelope: field 'market' must be 'spot', 'usdm' or 'coinm', got 'margin'"),
    ("envelope market not a string", dumps({"stream": "btcusdt@trade", "data": TRADE, "market": 1}),
     "envelope: field 'market' must be 'spot', 'usdm' or 'coinm', got 1"),
    ("envelope market upper-case", dumps({"stream": "btcusdt@trade", "data": TRADE, "market": "USDM"}),
     "envelope: field 'market' must be 'spot', 'usdm' or 'coinm', got 'USDM'"),
    # normalized form
    ("normalized time_ms null", with_(N_TRADE, time_ms=None), "trade: field 'time_ms' must be an integer, got None"),
    ("normalized trade_id a float", with_(N_TRADE, trade_id=12.7), "trade: field 'trade_id' must be an integer, "
                                                                   "got 12.7"),
    ("normalized event time 1e20", with_(N_TRADE, event_time_ms=1e20),
     "trade: field 'event_time_ms' must be an integer, got 1e+20"),
    ("normalized price a bool", with_(N_TRADE, price=True), "trade: field 'price' is not a number: True"),
    ("normalized side", with_(N_TRADE, side="BUY"), "trade: field 'side' must be 'buy' or 'sell', got 'BUY'"),
    ("normalized side a list", with_(N_TRADE, side=["buy"]),
     "trade: field 'side' must be 'buy' or 'sell', got ['buy']"),
    ("normalized symbol with NUL", with_(N_TRADE, symbol="BTC\x00"),
     re.compile(r"trade: field 'symbol' is not a symbol .*")),
    ("venue empty", with_(N_TRADE, venue=""), "trade: field 'venue' must be 1 to 32 of a-z 0-9 . _ -, got ''"),
    ("venue with a space", with_(N_TRADE, venue="coin base"),
     "trade: field 'venue' must be 1 to 32 of a-z 0-9 . _ -, got 'coin base'"),
    ("venue with a slash", with_(N_TRADE, venue="a/b"), "trade: field 'venue' must be 1 to 32 of a-z 0-9 . _ -, "
                                                        "got 'a/b'"),
    ("venue non-ASCII", with_(N_TRADE, venue="coinb\u00e4se"),
     re.compile(r"trade: field 'venue' must be 1 to 32 of .*")),
    ("venue too long", with_(N_TRADE, venue="v" * 33), re.compile(r"trade: field 'venue' must be 1 to 32 of .*")),
    ("venue not a string", with_(N_TRADE, venue=1), "trade: field 'venue' must be 1 to 32 of a-z 0-9 . _ -, got 1"),
    ("market with a colon", with_(N_TRADE, market="perp:1"),
     "trade: field 'market' must be 1 to 32 of a-z 0-9 . _ -, got 'perp:1'"),
    ("market empty", with_(N_TRADE, market=""), "trade: field 'market' must be 1 to 32 of a-z 0-9 . _ -, got ''"),
    ("normalized update_id negative", with_(N_TICKER, update_id=-1),
     "book_ticker: field 'update_id' must be an integer in [0, 9223372036854775807], got -1"),
    ("normalized first > last", with_(N_DEPTH, first_update_id=106),
     "depth_update: field 'first_update_id' (106) must be <= 'last_update_id' (105)"),
    ("normalized prev > last", with_(N_DEPTH, prev_update_id=106),
     "depth_update: field 'prev_update_id' (106) must be <= 'last_update_id' (105)"),
    ("normalized levels too many", with_(N_SNAPSHOT, bids=LEVELS_TOO_MANY),
     "depth_snapshot: field 'bids' has 5001 levels, more than 5000"),
    ("normalized interval", with_(N_KLINE, interval="7x"),
     re.compile(r"kline: field 'interval' must be an interval .*'7x'")),
    ("normalized open above high", with_(N_KLINE, open=46300),
     "kline: field 'high' (high 46250.0) must be >= open 46300.0 and close 46240.0"),
    ("normalized close below low", with_(N_KLINE, close=46000),
     "kline: field 'low' (low 46180.0) must be <= open 46200.5 and close 46000.0"),
    ("normalized close time before open", with_(N_KLINE, close_time_ms=1640991659999),
     "kline: field 'close_time_ms' (close time 1640991659999) must be >= 'open_time_ms' (open time 1640991660000)"),
    ("normalized trade_count a float", with_(N_KLINE, trade_count=1.5),
     "kline: field 'trade_count' must be an integer, got 1.5"),
    ("normalized quote_volume a bool", with_(N_KLINE, quote_volume=True),
     "kline: field 'quote_volume' is not a number: True"),
]


@pytest.mark.parametrize(("value", "message"), [row[1:] for row in INVALID], ids=[row[0] for row in INVALID])
def test_invalid(value: bytes, message: str | re.Pattern) -> None:
    with pytest.raises(InvalidRecordError) as exc:
        decode(value, b"BTCUSDT")
    assert exc.value.reason == "invalid"
    text = str(exc.value)
    if isinstance(message, re.Pattern):
        assert message.fullmatch(text), text
    else:
        assert text == message


def test_every_rejection_names_a_field() -> None:
    for name, value, _ in INVALID:
        with pytest.raises(InvalidRecordError) as exc:
            decode(value, b"BTCUSDT")
        assert "field '" in str(exc.value), name


def test_bad_key_as_snapshot_symbol() -> None:
    with pytest.raises(InvalidRecordError, match=r"^depth snapshot: field 'key' is not a symbol .*: 'BTC USDT'$"):
        decode(dumps(SNAPSHOT), b"BTC USDT")
    with pytest.raises(InvalidRecordError, match=r"^depth snapshot: field 'stream' is not a symbol"):
        decode(dumps({"stream": "btc\u200fusdt@depth5", "data": SNAPSHOT}))


@pytest.mark.parametrize(("value", "message"), [
    (None, "tombstone: the record has no value"),
    ("{}", "value must be bytes, got str"),
    (bytearray(b"{}"), "value must be bytes, got bytearray"),
    (memoryview(b"{}"), "value must be bytes, got memoryview"),
    (42, "value must be bytes, got int"),
])
def test_tombstone_and_non_bytes_are_undecodable(value: object, message: str) -> None:
    with pytest.raises(DecodeError) as exc:
        decode(value)  # type: ignore[arg-type]
    assert str(exc.value) == message
    assert exc.value.reason == "undecodable"


def test_long_values_are_cut_in_messages() -> None:
    with pytest.raises(InvalidRecordError) as exc:
        decode(with_(TRADE, p="x" * 10_000))
    assert len(str(exc.value)) < 200
    assert str(exc.value).endswith("...")


# ----------------------------------------------------------------------------------------------- accepted values

def test_accepted_edge_values() -> None:
    rec = decode(with_(TRADE, t="42", T="1723161255342", E=0, p=MAX_PRICE, q=MAX_SIZE))
    assert (rec.trade_id, rec.time_ms, rec.event_time_ms, rec.price, rec.size) == (
        42, 1723161255342, 0, MAX_PRICE, MAX_SIZE)
    assert type(rec.price) is float and type(rec.size) is float
    rec = decode(with_(TRADE, t=2**63 - 1, T=253402300799999, p=1, q=0))
    assert (rec.trade_id, rec.time_ms, rec.price, rec.size) == (2**63 - 1, 253402300799999, 1.0, 0.0)
    assert type(rec.price) is float and type(rec.size) is float
    assert decode(with_(TRADE, p="1e3", q="5.")).price == 1000.0
    assert decode(with_(TRADE, s="btcusdt.0")).symbol == "BTCUSDT.0"


@pytest.mark.parametrize("sym", ["BTCUSDT.0", "BTC-PERP", "XBT/USD", "ETH:USD", "A+B", "x_y", "A" * 64])
def test_accepted_symbols(sym: str) -> None:
    assert decode(with_(N_TRADE, symbol=sym)).symbol == sym.upper()


@pytest.mark.parametrize("interval", ["1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h",
                                      "1d", "3d", "1w", "1M"])
def test_every_binance_interval(interval: str) -> None:
    assert decode(kline(i=interval)).interval == interval


def test_venue_is_lower_cased_and_market_defaults_to_spot() -> None:
    rec = decode(with_(N_TRADE, venue="Coinbase"))
    assert (rec.venue, rec.market) == ("coinbase", "spot")
    rec = decode(with_(N_TRADE, venue="bybit", market="Linear"))
    assert (rec.venue, rec.market) == ("bybit", "linear")
    assert decode(with_(N_TRADE, market=None)).market == "spot"


def test_levels_accept_numbers_and_strings() -> None:
    rec = decode(with_(N_DEPTH, bids=[[1, 2], ["1.5", 0], [2.5, "3"]], asks=[]))
    assert rec.bids == [(1.0, 2.0), (1.5, 0.0), (2.5, 3.0)]
    assert all(type(x) is float for lv in rec.bids for x in lv)
    assert decode(with_(DEPTH, b=[["1", "2"]] * MAX_LEVELS)).bids == [(1.0, 2.0)] * MAX_LEVELS


def test_parsers_directly() -> None:
    assert binance.integer("-5", "x", -10, 10) == -5
    with pytest.raises(FieldError, match="^field 'x' must be an integer, got '-'$"):
        binance.integer("-", "x", -10, 10)
    with pytest.raises(FieldError, match="^field 'x' must be an integer in \\[-10, 10\\], got '11'$"):
        binance.integer("11", "x", -10, 10)
    with pytest.raises(FieldError, match="^field 'p' is not a number: 10000"):
        binance.price(10**400, "p")
    with pytest.raises(FieldError, match="^field 'q' is 1e\\+17 contracts of 100 USD at 1e-06"):
        binance.contracts_to_base(1e17, 1e-6, 100.0, "q")


# ------------------------------------------------------------ nothing decoded can break JSON or the indicators

JUNK = [None, True, False, 0, -1, 1.5, 12.0, 12.7, 1e20, 10**30, 2**63, 2**64 - 1, "", "x", "-1", "NaN", "inf",
        "1_0", "\u0661", " 1", "9" * 25, [], [[]], [["1", "x"]], [[True, "1"]], ["12"], {}, {"a": 1}]
BASES = [
    TRADE, AGG, DEPTH, {**DEPTH, "pu": 9, "T": 1}, TICKER, SNAPSHOT, KLINE,
    {"stream": "btcusd_perp@trade", "data": {**TRADE, "s": "BTCUSD_PERP"}, "market": "coinm"},
    N_TRADE, N_TICKER, N_DEPTH, N_SNAPSHOT, N_KLINE,
]




def _finite_and_bounded(rec: object) -> None:
    for name in rec.__slots__:  # type: ignore[attr-defined]
        v = getattr(rec, name)
        if type(v) is float:
            assert math.isfinite(v), name
        elif type(v) is int:
            assert 0 <= v <= 2**63 - 1, name
        elif type(v) is list:
            for p, q in v:
                assert type(p) is float and type(q) is float and 0 < p <= MAX_PRICE and 0 <= q <= MAX_SIZE
        elif type(v) is str:
            assert v.isascii() and v.isprintable() and v, name
        else:
            assert v is None or type(v) is bool, name


@pytest.mark.parametrize("base", BASES, ids=lambda b: b.get("e") or b.get("type") or "other")
def test_every_decoded_mutation_is_json_safe(base: dict) -> None:
    """Any one field dropped or replaced by junk: a RecordError, or a record that encodes and round-trips."""
    decoded = 0
    for variant in mutations(base, JUNK):
        try:
            rec = decode(dumps(variant), b"BTCUSDT")
        except InvalidRecordError as e:
            assert str(e)
            continue
        decoded += 1
        assert type(rec) in (Trade, BookTicker, DepthUpdate, DepthSnapshot, Kline)
        _finite_and_bounded(rec)
        assert decode(encode(to_normalized(rec))) == rec
        orjson.dumps(to_normalized(rec))
    assert decoded > 0
