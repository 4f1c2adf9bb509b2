"""decode()/encode(): dispatch, error types and messages for malformed input, and a whole real feed file."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from stream_processor.engine.exceptions import DecodeError, InvalidRecordError, RecordError
from stream_processor.market.models import BookTicker, DepthSnapshot, DepthUpdate, Trade
from stream_processor.market.serde.decode import decode, encode
from stream_processor.market.serde.feed import iter_feed
from stream_processor.market.serde.normalized import to_normalized

SPOT_BTC = Path("/work/shared/data/feeds/binance-hftbacktest/spot/btcusdt_20240808.gz")

JUNK = [None, True, False, 0, -1, 1.5, "", "x", "-1", "NaN", [], [[]], [["1", "x"]], {}, {"a": 1}, 10**30,
        float("inf")]
TRADE = {"e": "trade", "E": 1723161255343, "s": "BTCUSDT", "t": 3735683259, "p": "61837.63000000",
         "q": "0.02000000", "T": 1723161255342, "m": True, "M": True}
DEPTH = {"e": "depthUpdate", "E": 1723161255208, "s": "BTCUSDT", "U": 10, "u": 12,
         "b": [["61737.63", "0.0"]], "a": [["61837.64", "1.5"]]}


def dumps(obj: object) -> bytes:
    return json.dumps(obj).encode()  # stdlib: unlike orjson it writes huge ints


def with_(base: dict, **changes: object) -> bytes:
    return dumps({**base, **changes})


def without(base: dict, key: str) -> bytes:
    return dumps({k: v for k, v in base.items() if k != key})


def mutations(obj: dict, junk_values: list | None = None) -> Iterator[dict]:
    """Every copy of ``obj`` with one key dropped or its value replaced by junk (``JUNK`` by default), nested
    dicts included."""
    junk_values = JUNK if junk_values is None else junk_values
    for key, value in obj.items():
        yield {k: v for k, v in obj.items() if k != key}
        for junk in junk_values:
            yield {**obj, key: junk}
        if type(value) is dict:
            for inner in mutations(value, junk_values):
                yield {**obj, key: inner}


def test_decodes_binance_trade_bytes() -> None:
    assert decode(dumps(TRADE)) == Trade(
        "binance", "BTCUSDT", 3735683259, 61837.63, 0.02, "sell", 1723161255342, 1723161255343)


def test_key_is_the_symbol_of_a_bare_snapshot() -> None:
    snap = dumps({"lastUpdateId": 7, "bids": [["1.5", "2"]], "asks": [["1.6", "3"]]})
    assert decode(snap, b"ethusdt") == DepthSnapshot("binance", "ETHUSDT", 7, [(1.5, 2.0)], [(1.6, 3.0)])
    with pytest.raises(InvalidRecordError, match="no symbol"):
        decode(snap)
    with pytest.raises(InvalidRecordError, match="no symbol"):
        decode(snap, b"")


def test_normalized_form_needs_type_and_venue() -> None:
    norm = {"type": "trade", "venue": "kraken", "symbol": "xbt/usd", "trade_id": 5, "price": 100,
            "size": "0.5", "side": "buy", "time_ms": 1000}
    assert decode(dumps(norm)) == Trade("kraken", "XBT/USD", 5, 100.0, 0.5, "buy", 1000, 1000)
    # "type" without "venue" is not the normalized form: it is read as Binance and rejected as such
    with pytest.raises(InvalidRecordError, match="not a Binance market-data message"):
        decode(without(norm, "venue"))


@pytest.mark.parametrize(("value", "reason"), [
    (b'{"e": "trade", "s": "\xff"}', "UTF-8"),
    (b"hello", "not JSON"),
    (b"", "not JSON"),
    (b'{"e": "trade"', "not JSON"),
    (b'{"p": NaN}', "not JSON"),
])
def test_undecodable_bytes(value: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason) as exc:
        decode(value)
    assert exc.value.reason == "undecodable"


def test_non_utf8_key_is_undecodable() -> None:
    with pytest.raises(DecodeError, match="key is not UTF-8"):
        decode(dumps(TRADE), b"\xff\xfe")


@pytest.mark.parametrize(("value", "message"), [
    (b"[1, 2]", "expected a JSON object, got list"),
    (b"42", "expected a JSON object, got int"),
    (b'"trade"', "expected a JSON object, got str"),
    (b"null", "expected a JSON object, got NoneType"),
    (with_(TRADE, e="liquidation"), "unknown Binance event type 'liquidation'"),
    (with_(TRADE, e=["trade"]), "unknown Binance event type"),
    (dumps({"foo": 1}), "not a Binance market-data message"),
    (without(TRADE, "p"), "^trade: missing field 'p'$"),
    (without(TRADE, "s"), "^trade: missing field 's'$"),
    (with_(TRADE, p="abc"), "^trade: field 'p' is not a number: 'abc'$"),
    (with_(TRADE, p=None), "^trade: field 'p' is not a number: None$"),
    (with_(TRADE, p="0"), "^trade: field 'p' must be a finite price, 0 < price <= 1e\\+15, got '0'$"),
    (with_(TRADE, q="-0.5"), "^trade: field 'q' must be a finite size, 0 <= size <= 1e\\+18, got '-0.5'$"),
    (with_(TRADE, p="NaN"), "^trade: field 'p' must be a finite price, 0 < price <= 1e\\+15, got 'NaN'$"),
    (with_(TRADE, q="nan"), "^trade: field 'q' must be a finite size"),
    (with_(TRADE, p="inf"), "^trade: field 'p' must be a finite price"),
    (with_(TRADE, q="-Infinity"), "^trade: field 'q' must be a finite size"),
    (with_(TRADE, m="false"), "^trade: field 'm' is not a boolean: 'false'$"),
    (with_(TRADE, t="x1"), "^trade: field 't' must be an integer, got 'x1'$"),
    (with_(TRADE, s=""), "^trade: field 's' is not a symbol"),
    (with_(DEPTH, b=[["NaN", "1"]]), "^depthUpdate: field 'b' has a bad level"),
    (with_(DEPTH, a=[["61837.64", "-1"]]), "^depthUpdate: field 'a' has a bad level"),
    (with_(DEPTH, a=[["61837.64"]]), "^depthUpdate: field 'a' has a bad level at index 0: \\['61837.64'\\] is not "
                                     "\\[price, size\\]$"),
    (with_(DEPTH, b="61737.63"), "^depthUpdate: field 'b' is not a list"),
    (without(DEPTH, "U"), "^depthUpdate: missing field 'U'$"),
    (dumps({"stream": "btcusdt@trade", "data": [TRADE]}), "^envelope:"),
    (dumps({"stream": 5, "data": TRADE}), "^envelope:"),
    (dumps({"stream": "btcusdt@trade", "data": {**TRADE, "p": "abc"}}), "^trade: field 'p'"),
])
def test_invalid_records(value: bytes, message: str) -> None:
    with pytest.raises(InvalidRecordError, match=message) as exc:
        decode(value)
    assert exc.value.reason == "invalid"


@pytest.mark.parametrize("base", [
    TRADE, DEPTH,
    {"u": 1, "s": "BTCUSDT", "b": "1.0", "B": "2", "a": "1.1", "A": "3"},
    {"lastUpdateId": 7, "bids": [["1.5", "2"]], "asks": [["1.6", "3"]]},
    {"e": "kline", "E": 2, "s": "BNBBTC", "k": {"t": 0, "T": 59999, "i": "1m", "o": "1", "c": "1", "h": "1",
                                                "l": "1", "v": "0", "n": 0, "x": True, "q": "0"}},
    {"type": "depth_update", "venue": "v", "symbol": "S", "first_update_id": 1, "last_update_id": 2,
     "bids": [[1, 2]], "asks": [], "event_time_ms": 3},
])
def test_only_record_errors_escape(base: dict) -> None:
    """Dropping or replacing any one field (nested ones too) gives a record or a RecordError, nothing else."""
    decode(dumps(base), b"BTCUSDT")
    n = 0
    for variant in mutations(base):
        n += 1
        try:
            decode(dumps(variant), b"BTCUSDT")
        except RecordError:
            pass
    assert n >= len(base) * (len(JUNK) + 1)


def test_encode_round_trips_a_record() -> None:
    rec = decode(dumps(DEPTH))
    assert type(rec) is DepthUpdate
    assert decode(encode(to_normalized(rec))) == rec
    obj = {"x": np.float64(1.5), "n": np.int64(3), "lv": [(1.0, 2.0)], "nan": float("nan")}
    assert encode(obj) == b'{"x":1.5,"n":3,"lv":[[1.0,2.0]],"nan":null}'


def test_whole_spot_btcusdt_file() -> None:
    """Every line decodes; trade count matches the README table (9,757) and trade ids strictly increase."""
    counts: collections.Counter[type] = collections.Counter()
    last_id = -1
    for _, raw in iter_feed(SPOT_BTC):
        rec = decode(raw, b"BTCUSDT")
        counts[type(rec)] += 1
        assert rec.symbol == "BTCUSDT"
        if type(rec) is Trade:
            assert rec.trade_id > last_id
            last_id = rec.trade_id
    assert counts == {Trade: 9757, DepthUpdate: 3451, BookTicker: 28040, DepthSnapshot: 1}
    assert last_id == 3735683259 + 9757 - 1  # the README's gap-free id range starts at 3735683259
