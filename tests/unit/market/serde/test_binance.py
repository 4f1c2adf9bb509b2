"""Binance payloads -> model records: real feed lines (spot and USD-M) plus documented aggTrade/kline."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream_processor.engine.exceptions import InvalidRecordError
from stream_processor.market.models import BookTicker, DepthSnapshot, DepthUpdate, Kline, Trade
from stream_processor.market.serde.binance import normalize_binance
from stream_processor.market.serde.feed import iter_feed

FEEDS = Path("/work/shared/data/feeds/binance-hftbacktest")
SPOT = FEEDS / "spot/btcusdt_20240808.gz"
USDM = FEEDS / "usdm/btcusdt_20240808.gz"


def first(path: Path, channel: str | None) -> dict:
    """The first line of ``path`` whose stream is ``btcusdt@<channel>``, or the first one without a stream."""
    for _, raw in iter_feed(path):
        msg = orjson.loads(raw)
        if msg.get("stream") == (None if channel is None else f"btcusdt@{channel}"):
            return msg
    raise AssertionError(f"no {channel} line in {path}")


def both(envelope: dict) -> tuple:
    """The record from the enveloped message and from its bare ``data``."""
    return normalize_binance(envelope), normalize_binance(envelope["data"])


def test_spot_trade() -> None:
    expected = Trade("binance", "BTCUSDT", 3735683259, 61837.63, 0.02, "sell", 1723161255342, 1723161255343)
    assert both(first(SPOT, "trade")) == (expected, expected)


def test_usdm_trade() -> None:
    expected = Trade("binance", "BTCUSDT", 5266583935, 61800.30, 0.006, "buy", 1723161256322, 1723161256322,
                     "usdm")
    assert both(first(USDM, "trade")) == (expected, expected)  # "X" marks a USD-M trade


def test_spot_book_ticker_has_no_event_kind_or_time() -> None:
    msg = first(SPOT, "bookTicker")
    assert "e" not in msg["data"]
    expected = BookTicker("binance", "BTCUSDT", 50093239212, 61837.63, 3.78826, 61837.64, 1.54698, None)
    assert both(msg) == (expected, expected)


def test_usdm_book_ticker() -> None:
    expected = BookTicker("binance", "BTCUSDT", 5123107839020, 61800.20, 2.507, 61800.30, 2.510,
                          1723161256313, "usdm")
    assert both(first(USDM, "bookTicker")) == (expected, expected)


def test_book_ticker_recognized_by_stream_name_when_keys_are_missing() -> None:
    msg = first(SPOT, "bookTicker")
    del msg["data"]["B"]
    with pytest.raises(InvalidRecordError, match=r"^bookTicker: missing field 'B'$"):
        normalize_binance(msg)


def test_spot_depth_update() -> None:
    msg = first(SPOT, "depth@100ms")
    for rec in both(msg):
        assert type(rec) is DepthUpdate
        assert (rec.venue, rec.symbol) == ("binance", "BTCUSDT")
        assert (rec.first_update_id, rec.last_update_id) == (50093239189, 50093239202)
        assert rec.prev_update_id is None
        assert rec.event_time_ms == 1723161255208
        assert rec.bids[:2] == [(61737.63, 0.0), (61730.17, 0.0)]
        assert rec.asks[0] == (61837.64, 1.54698)
        assert rec.bids == [(float(p), float(q)) for p, q in msg["data"]["b"]]
        assert rec.asks == [(float(p), float(q)) for p, q in msg["data"]["a"]]


def test_usdm_depth_update_has_prev_update_id() -> None:
    msg = first(USDM, "depth@0ms")
    for rec in both(msg):
        assert type(rec) is DepthUpdate
        assert (rec.first_update_id, rec.last_update_id) == (5123107832006, 5123107837557)
        assert rec.prev_update_id == 5123107831937
        assert rec.event_time_ms == 1723161256299
        assert rec.bids[0] == (58710.20, 0.014)
        assert len(rec.bids) == len(msg["data"]["b"]) and len(rec.asks) == len(msg["data"]["a"])


def test_spot_rest_snapshot_needs_a_symbol() -> None:
    snap = first(SPOT, None)
    with pytest.raises(InvalidRecordError, match="no symbol"):
        normalize_binance(snap)
    rec = normalize_binance(snap, symbol_hint="btcusdt")
    assert type(rec) is DepthSnapshot
    assert (rec.venue, rec.symbol, rec.last_update_id, rec.event_time_ms) == (
        "binance", "BTCUSDT", 50093239218, None)
    assert len(rec.bids) == len(rec.asks) == 1000
    assert rec.bids[0] == (61837.63, 3.78826)
    assert rec.asks[0] == (61837.64, 1.54698)
    assert rec.bids[0][0] < rec.asks[0][0]


def test_snapshot_in_a_partial_depth_envelope_takes_the_stream_symbol() -> None:
    snap = first(SPOT, None)
    rec = normalize_binance({"stream": "btcusdt@depth20@100ms", "data": snap}, symbol_hint="ETHUSDT")
    assert type(rec) is DepthSnapshot
    assert (rec.symbol, rec.last_update_id) == ("BTCUSDT", 50093239218)


def test_usdm_rest_snapshot_has_event_time() -> None:
    rec = normalize_binance(first(USDM, None), "BTCUSDT")
    assert type(rec) is DepthSnapshot
    assert (rec.symbol, rec.last_update_id, rec.event_time_ms) == ("BTCUSDT", 5123107852948, 1723161256501)
    assert rec.bids[0] == (61800.20, 2.909)


def test_usdm_partial_depth_stream_is_a_snapshot() -> None:
    data = {"e": "depthUpdate", "E": 1571889248277, "T": 1571889248276, "s": "BTCUSDT", "U": 390497796,
            "u": 390497878, "pu": 390497794, "b": [["7403.89", "0.002"]], "a": [["7405.96", "3.340"]]}
    rec = normalize_binance({"stream": "btcusdt@depth5@100ms", "data": data})
    assert rec == DepthSnapshot("binance", "BTCUSDT", 390497878, [(7403.89, 0.002)], [(7405.96, 3.34)],
                                1571889248277, "usdm")
    assert type(normalize_binance({"stream": "btcusdt@depth@100ms", "data": data})) is DepthUpdate


AGG_TRADE = {  # Binance spot docs layout
    "e": "aggTrade", "E": 1672515782136, "s": "BNBBTC", "a": 12345, "p": "0.001", "q": "100",
    "f": 100, "l": 105, "T": 1672515782135, "m": True, "M": True,
}


def test_agg_trade_uses_agg_id() -> None:
    expected = Trade("binance", "BNBBTC", 12345, 0.001, 100.0, "sell", 1672515782135, 1672515782136)
    assert normalize_binance(AGG_TRADE) == expected
    assert normalize_binance({"stream": "bnbbtc@aggTrade", "data": AGG_TRADE}) == expected
    assert normalize_binance({**AGG_TRADE, "m": False}).side == "buy"


KLINE = {  # Binance spot docs layout (the docs' low, 0.0015, is above their open: 0.0009 here)
    "e": "kline", "E": 1672515782136, "s": "BNBBTC",
    "k": {"t": 1672515780000, "T": 1672515839999, "s": "BNBBTC", "i": "1m", "f": 100, "L": 200,
          "o": "0.0010", "c": "0.0020", "h": "0.0025", "l": "0.0009", "v": "1000", "n": 100, "x": False,
          "q": "1.0000", "V": "500", "Q": "0.500", "B": "123456"},
}


def test_kline() -> None:
    expected = Kline("binance", "BNBBTC", "1m", 1672515780000, 1672515839999, 0.001, 0.0025, 0.0009, 0.002,
                     1000.0, False, 1.0, 100, 1672515782136)
    assert normalize_binance(KLINE) == expected
    assert normalize_binance({"stream": "bnbbtc@kline_1m", "data": KLINE}) == expected
    closed = normalize_binance({**KLINE, "k": {**KLINE["k"], "x": True}})
    assert closed.is_closed is True


def test_lower_case_symbol_is_upper_cased() -> None:
    assert normalize_binance({**AGG_TRADE, "s": "bnbbtc"}).symbol == "BNBBTC"
