"""Binance markets (spot, USD-M, COIN-M): how ``market`` is decided, and COIN-M contracts turned into base units.

The COIN-M payloads follow the layouts of Binance's COIN-M futures docs; expected sizes are computed by hand:
a BTCUSD contract is 100 USD, any other pair's 10 USD, so ``base = contracts * contract_usd / price``.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import orjson
import pytest

from stream_processor.engine.exceptions import InvalidRecordError
from stream_processor.market.models import BookTicker, DepthSnapshot, DepthUpdate, Kline, Trade
from stream_processor.market.serde.binance import contract_usd, normalize_binance
from stream_processor.market.serde.decode import decode
from stream_processor.market.serde.feed import iter_feed, record_symbol

FEEDS = Path("/work/shared/data/feeds/binance-hftbacktest")
FILES = sorted(FEEDS.glob("*/*.gz"))


def first(path: Path, channel: str) -> dict:
    for _, raw in iter_feed(path):
        msg = orjson.loads(raw)
        if msg.get("stream") == f"btcusdt@{channel}":
            return msg
    raise AssertionError(f"no {channel} line in {path}")


def envelope(stream: str, data: dict, market: str | None = None) -> dict:
    out = {"stream": stream, "data": data}
    if market is not None:
        out["market"] = market
    return out


# --------------------------------------------------------------------------------------------- market detection

def test_same_symbol_on_spot_and_usdm_has_two_markets() -> None:
    spot = normalize_binance(first(FEEDS / "spot/btcusdt_20240808.gz", "trade"))
    usdm = normalize_binance(first(FEEDS / "usdm/btcusdt_20240808.gz", "trade"))
    assert (spot.venue, spot.symbol, spot.market) == ("binance", "BTCUSDT", "spot")
    assert (usdm.venue, usdm.symbol, usdm.market) == ("binance", "BTCUSDT", "usdm")
    for channel in ("bookTicker", "depth@100ms"):
        assert normalize_binance(first(FEEDS / "spot/btcusdt_20240808.gz", channel)).market == "spot"
    for channel in ("bookTicker", "depth@0ms"):
        assert normalize_binance(first(FEEDS / "usdm/btcusdt_20240808.gz", channel)).market == "usdm"


SPOT_TRADE = {"e": "trade", "E": 1723161255343, "s": "BTCUSDT", "t": 1, "p": "61837.63", "q": "0.02",
              "T": 1723161255342, "m": True, "M": True}
AGG = {"e": "aggTrade", "E": 1672515782136, "s": "BTCUSDT", "a": 5, "p": "61800.3", "q": "0.5", "f": 100,
       "l": 105, "T": 1672515782135, "m": False}  # USD-M's aggTrade: spot's plus "M"
DIFF = {"e": "depthUpdate", "E": 1723161255208, "s": "BTCUSDT", "U": 10, "u": 12, "b": [["1.5", "1"]], "a": []}
TICKER = {"u": 7, "s": "BTCUSDT", "b": "1.5", "B": "2", "a": "1.6", "A": "3"}
SNAP = {"lastUpdateId": 7, "bids": [["1.5", "2"]], "asks": [["1.6", "3"]]}
KLINE = {"e": "kline", "E": 2, "s": "BTCUSDT", "k": {"t": 0, "T": 59999, "i": "1m", "o": "1", "c": "1", "h": "1",
                                                     "l": "1", "v": "3", "n": 1, "x": True, "q": "3"}}


@pytest.mark.parametrize(("data", "market"), [
    (SPOT_TRADE, "spot"),
    ({**SPOT_TRADE, "X": "MARKET"}, "usdm"),  # USD-M trade: "X"
    (AGG, "spot"),  # a USD-M aggTrade has no positive marker: spot unless the envelope says otherwise
    ({**AGG, "M": True}, "spot"),
    (DIFF, "spot"),
    ({**DIFF, "pu": 9}, "usdm"),
    ({**DIFF, "T": 1723161255207}, "usdm"),
    (TICKER, "spot"),
    ({**TICKER, "e": "bookTicker"}, "usdm"),
    ({**TICKER, "T": 5}, "usdm"),
    (SNAP, "spot"),
    ({**SNAP, "E": 5}, "usdm"),
    ({**SNAP, "T": 5}, "usdm"),
    (KLINE, "spot"),  # spot and USD-M klines look alike
])
def test_market_from_the_payload(data: dict, market: str) -> None:
    assert normalize_binance(data, "BTCUSDT").market == market
    assert decode(orjson.dumps(data), b"BTCUSDT").market == market


@pytest.mark.parametrize("data", [SPOT_TRADE, {**SPOT_TRADE, "X": "MARKET"}, AGG, DIFF, {**DIFF, "pu": 9}, TICKER,
                                  {**TICKER, "e": "bookTicker"}, SNAP, {**SNAP, "E": 5}, KLINE])
@pytest.mark.parametrize("market", ["spot", "usdm"])
def test_the_envelope_market_wins(data: dict, market: str) -> None:
    assert normalize_binance(envelope("btcusdt@x", data, market)).market == market


def test_the_envelope_market_tells_a_usdm_agg_trade() -> None:
    rec = decode(orjson.dumps(envelope("btcusdt@aggTrade", AGG, "usdm")))
    assert rec == Trade("binance", "BTCUSDT", 5, 61800.3, 0.5, "buy", 1672515782135, 1672515782136, "usdm")
    assert decode(orjson.dumps(envelope("btcusdt@aggTrade", AGG))).market == "spot"
    assert decode(orjson.dumps(envelope("btcusdt@aggTrade", AGG, None))).market == "spot"


@pytest.mark.parametrize("market", ["margin", "USDM", "", 1, True, ["usdm"]])
def test_an_unknown_envelope_market_is_invalid(market: object) -> None:
    with pytest.raises(InvalidRecordError, match="^envelope: field 'market' must be 'spot', 'usdm' or 'coinm', got "):
        decode(json.dumps(envelope("btcusdt@trade", SPOT_TRADE, market)).encode())  # type: ignore[arg-type]


@pytest.mark.parametrize(("sym", "coinm"), [
    ("BTCUSD_PERP", True), ("ETHUSD_PERP", True), ("ETHUSD_240927", True), ("btcusd_250328", True),
    ("1000SHIBUSD_PERP", True),
    ("BTCUSD", False), ("BTCUSDT", False), ("BTCUSDT_PERP", False), ("BTCUSD_PERPX", False),
    ("BTCUSD_24092", False), ("BTCUSD_2409270", False), ("USD_PERP", False), ("BTCUSDT_240927", False),
])
def test_coinm_symbol_shape(sym: str, coinm: bool) -> None:
    rec = normalize_binance({**SPOT_TRADE, "s": sym, "p": "50000", "q": "10"})
    assert rec.market == ("coinm" if coinm else "spot")
    # 10 contracts x 100 USD (BTCUSD) or 10 USD (other pairs) / 50000
    assert rec.size == (0.02 if coinm and sym.upper().startswith("BTCUSD_") else 0.002 if coinm else 10.0)


def test_contract_sizes() -> None:
    assert contract_usd("BTCUSD_PERP") == 100.0
    assert contract_usd("BTCUSD_240927") == 100.0
    assert contract_usd("ETHUSD_PERP") == 10.0
    assert contract_usd("BTCUSDT") == 10.0  # not pair BTCUSD


# --------------------------------------------------------------------------------------- COIN-M in base units

COINM_TRADE = {"e": "trade", "E": 1591677567872, "T": 1591677567870, "s": "BTCUSD_PERP", "t": 88, "p": "50000",
               "q": "10", "X": "MARKET", "m": True}
COINM_AGG = {"e": "aggTrade", "E": 1591261134288, "a": 424951, "s": "ETHUSD_240927", "p": "2500.00", "q": "5",
             "f": 606073, "l": 606073, "T": 1591261134199, "m": False}
COINM_DIFF = {"e": "depthUpdate", "E": 1591270260907, "T": 1591270260891, "s": "BTCUSD_PERP", "ps": "BTCUSD",
              "U": 17285681, "u": 17285702, "pu": 17285675,
              "b": [["40000", "8"], ["20000", "3"], ["39999.9", "0"]], "a": [["62500", "10"]]}
COINM_TICKER = {"e": "bookTicker", "u": 17242169, "s": "ETHUSD_PERP", "ps": "ETHUSD", "b": "2000", "B": "40",
                "a": "2500", "A": "5", "T": 1591268628155, "E": 1591268628166}
COINM_KLINE = {"e": "kline", "E": 1591261542539, "s": "BTCUSD_PERP",
               "k": {"t": 1591261500000, "T": 1591261559999, "s": "BTCUSD_PERP", "i": "1m", "f": 606400,
                     "L": 606430, "o": "40000.0", "c": "40100.0", "h": "40200.0", "l": "39900.0",
                     "v": "1000", "n": 31, "x": False, "q": "2.5", "V": "400", "Q": "1.0", "B": "0"}}
COINM_SNAP = {"lastUpdateId": 16769853, "symbol": "BTCUSD_PERP", "pair": "BTCUSD", "E": 1591250106370,
              "T": 1591250106368, "bids": [["50000", "10"]], "asks": [["62500", "5"]]}


def test_coinm_trade() -> None:
    # 10 contracts x 100 USD / 50000 USD per BTC = 0.02 BTC
    expected = Trade("binance", "BTCUSD_PERP", 88, 50000.0, 0.02, "sell", 1591677567870, 1591677567872, "coinm")
    assert normalize_binance(COINM_TRADE) == expected
    assert decode(orjson.dumps(envelope("btcusd_perp@trade", COINM_TRADE))) == expected


def test_coinm_agg_trade() -> None:
    # 5 contracts x 10 USD / 2500 USD per ETH = 0.02 ETH
    expected = Trade("binance", "ETHUSD_240927", 424951, 2500.0, 0.02, "buy", 1591261134199, 1591261134288, "coinm")
    assert normalize_binance(COINM_AGG) == expected


def test_coinm_depth_update() -> None:
    # 8 x 100 / 40000 = 0.02; 3 x 100 / 20000 = 0.015; 0 stays 0 (level removed); 10 x 100 / 62500 = 0.016
    expected = DepthUpdate("binance", "BTCUSD_PERP", 17285681, 17285702,
                           [(40000.0, 0.02), (20000.0, 0.015), (39999.9, 0.0)], [(62500.0, 0.016)],
                           1591270260907, 17285675, "coinm")
    assert normalize_binance(COINM_DIFF) == expected
    assert normalize_binance(envelope("btcusd_perp@depth@100ms", COINM_DIFF)) == expected


def test_coinm_partial_depth_is_a_snapshot_in_base_units() -> None:
    rec = normalize_binance(envelope("btcusd_perp@depth5@100ms", COINM_DIFF))
    assert rec == DepthSnapshot("binance", "BTCUSD_PERP", 17285702,
                                [(40000.0, 0.02), (20000.0, 0.015), (39999.9, 0.0)], [(62500.0, 0.016)],
                                1591270260907, "coinm")


def test_coinm_book_ticker() -> None:
    # 40 x 10 / 2000 = 0.2 ETH; 5 x 10 / 2500 = 0.02 ETH
    expected = BookTicker("binance", "ETHUSD_PERP", 17242169, 2000.0, 0.2, 2500.0, 0.02, 1591268628166, "coinm")
    assert normalize_binance(COINM_TICKER) == expected


def test_coinm_kline() -> None:
    # v = 1000 contracts -> quote volume 1000 x 100 = 100000 USD; q = 2.5 BTC is the base volume
    expected = Kline("binance", "BTCUSD_PERP", "1m", 1591261500000, 1591261559999, 40000.0, 40200.0, 39900.0, 40100.0,
                     2.5, False, 100000.0, 31, 1591261542539, "coinm")
    assert normalize_binance(COINM_KLINE) == expected


def test_coinm_rest_snapshot_names_its_symbol() -> None:
    # 10 x 100 / 50000 = 0.02; 5 x 100 / 62500 = 0.008
    expected = DepthSnapshot("binance", "BTCUSD_PERP", 16769853, [(50000.0, 0.02)], [(62500.0, 0.008)],
                             1591250106370, "coinm")
    assert normalize_binance(COINM_SNAP) == expected
    assert decode(orjson.dumps(COINM_SNAP), b"BTCUSD_PERP") == expected


def test_envelope_coinm_converts_any_symbol_and_usdm_converts_none() -> None:
    # an explicit "coinm" on a symbol without the COIN-M shape: 10 USD contracts (not pair BTCUSD)
    rec = normalize_binance(envelope("ethusd@trade", {**COINM_TRADE, "s": "ETHUSD", "p": "2000", "q": "4"}, "coinm"))
    assert (rec.market, rec.size) == ("coinm", 0.02)  # 4 x 10 / 2000
    # an explicit "usdm" wins over the COIN-M shape: no conversion
    rec = normalize_binance(envelope("btcusd_perp@trade", COINM_TRADE, "usdm"))
    assert (rec.market, rec.size) == ("usdm", 10.0)


def test_coinm_size_too_large_in_base_units_is_invalid() -> None:
    with pytest.raises(InvalidRecordError, match="^trade: field 'q' is 1e\\+17 contracts of 100 USD at 1e-06, "):
        normalize_binance({**COINM_TRADE, "p": "0.000001", "q": "1e17"})
    with pytest.raises(InvalidRecordError, match="^depthUpdate: field 'b' is 1e\\+17 contracts"):
        normalize_binance({**COINM_DIFF, "b": [["0.000001", "1e17"]]})


# ----------------------------------------------------------------------------------------------- the real files

@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.name}" for p in FILES])
def test_every_real_record_decodes_with_its_market(path: Path) -> None:
    """Every line of every hftbacktest capture decodes; spot files give market spot, usdm files usdm."""
    market = path.parent.name
    assert market in ("spot", "usdm")
    file_symbol = path.name.partition("_")[0].upper().encode()
    counts: collections.Counter[type] = collections.Counter()
    for _, raw in iter_feed(path):
        key = record_symbol(raw)
        rec = decode(raw, file_symbol if key is None else key.encode())
        assert rec.market == market
        assert rec.venue == "binance"
        counts[type(rec)] += 1
    assert counts[Trade] > 0 and counts[DepthUpdate] > 0 and counts[BookTicker] > 0
    assert set(counts) <= {Trade, DepthUpdate, BookTicker, DepthSnapshot}


def test_the_real_files_are_all_there() -> None:
    assert [f"{p.parent.name}/{p.name}" for p in FILES] == [
        "spot/btcusdt_20240808.gz", "spot/btcusdt_20240809.gz", "spot/ethusdt_20240808.gz",
        "spot/ethusdt_20240809.gz", "usdm/btcusdt_20240808.gz"]
