"""The SMC context join: context records decoded, kept per symbol and interval, chosen without lookahead, re-priced."""

from __future__ import annotations

import orjson
import pytest

from stream_processor.engine.exceptions import InvalidRecordError
from stream_processor.market.context import KEEP, decode_context, lookup, project, remember, zone


def record(close_time_ms: int, interval: str = "1m", symbol: str = "BTCUSDT", **context: object) -> bytes:
    return orjson.dumps({"venue": "binance", "market": "spot", "symbol": symbol, "interval": interval,
                         "open_time_ms": close_time_ms - 59_999, "close_time_ms": close_time_ms, "close": 100.0,
                         "context": {"price": 100.0, **context}})


def test_decode_names_the_state_key_and_refuses_what_is_not_a_context() -> None:
    rec = decode_context(record(59_999), b"BTCUSDT")
    assert (rec.key, rec.interval, rec.close_time_ms) == ("binance/spot/BTCUSDT", "1m", 59_999)
    with pytest.raises(InvalidRecordError, match="not JSON"):
        decode_context(b"{", b"BTCUSDT")
    with pytest.raises(InvalidRecordError, match="close_time_ms"):
        decode_context(orjson.dumps({"venue": "v", "market": "m", "symbol": "S", "interval": "1m",
                                     "close_time_ms": "x", "context": {}}), b"S")
    with pytest.raises(InvalidRecordError, match="key"):
        decode_context(record(59_999), b"ETHUSDT")


def test_remember_keeps_the_newest_in_order_and_ignores_a_resent_one() -> None:
    data: dict = {}
    for t in range(1, KEEP + 3):
        remember(data, decode_context(record(t * 60_000 - 1, ref=t), b"BTCUSDT"))
    remember(data, decode_context(record(60_000 - 1, ref=99), b"BTCUSDT"))  # older: a re-sent record
    kept = data["binance/spot/BTCUSDT"]["1m"]
    assert [c for c, _ in kept] == [t * 60_000 - 1 for t in range(3, KEEP + 3)]


def test_lookup_takes_the_newest_kline_closed_before_the_record() -> None:
    data: dict = {}
    for t in (1, 2, 3):
        remember(data, decode_context(record(t * 60_000 - 1, ref=t), b"BTCUSDT"))
    remember(data, decode_context(record(5 * 60_000 - 1, interval="5m", ref=50), b"BTCUSDT"))
    intervals = data["binance/spot/BTCUSDT"]
    # A trade in the third minute (120,000..179,999) sees the second minute's kline, not its own.
    got = lookup(intervals, 150_000, None)
    assert got is not None and got["1m"]["ref"] == 2 and "5m" not in got
    assert lookup(intervals, 180_000, None)["1m"]["ref"] == 3  # type: ignore[index]
    assert lookup(intervals, 300_000, None)["5m"]["ref"] == 50  # type: ignore[index]
    assert lookup(intervals, 10, None) is None  # before every kept kline closed
    assert lookup(intervals, None, None)["1m"]["ref"] == 3  # type: ignore[index]
    assert lookup(None, 1, 1.0) is None


def test_project_remeasures_distances_and_zone_from_the_new_price() -> None:
    context = {"price": 100.0, "ob_above_bottom": 110.0, "ob_above_bps": 1000.0, "fvg_below_top": 95.0,
               "fvg_below_bps": 500.0, "liquidity_above_level": 120.0, "liquidity_above_bps": 2000.0,
               "range_high": 120.0, "range_low": 80.0, "zone": "premium", "range_position": 0.5}
    moved = project(context, 112.0)
    assert moved["price"] == 112.0
    assert moved["ob_above_bps"] == pytest.approx(1e4 * (110 - 112) / 112)  # crossed since the close: negative
    assert moved["fvg_below_bps"] == pytest.approx(1e4 * (112 - 95) / 112)
    assert moved["liquidity_above_bps"] == pytest.approx(1e4 * 8 / 112)
    assert (moved["zone"], moved["range_position"]) == ("premium", pytest.approx(0.8))
    assert context["price"] == 100.0 and project(context, None) is context and project(context, 100.0) is context
    assert zone(90.0, 120.0, 80.0) == (0.25, "discount")
    assert zone(100.0, 120.0, 80.0) == (0.5, "equilibrium")
    assert zone(100.0, 100.0, 100.0) == (None, None) == zone(100.0, 90.0, 110.0)
