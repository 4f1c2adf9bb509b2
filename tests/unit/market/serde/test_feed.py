"""Feed-file reading and topic/key routing helpers, on the real hftbacktest captures."""

from __future__ import annotations

import collections
import gzip
import itertools
from pathlib import Path

import orjson
import pytest

from stream_processor.engine.exceptions import InvalidRecordError
from stream_processor.market.serde.feed import iter_feed, record_symbol, stream_kind

FEEDS = Path("/work/shared/data/feeds/binance-hftbacktest")
SPOT_BTC = FEEDS / "spot/btcusdt_20240808.gz"
USDM_BTC = FEEDS / "usdm/btcusdt_20240808.gz"


def test_iter_feed_reads_the_gzip_capture() -> None:
    lines = list(iter_feed(SPOT_BTC))
    assert len(lines) == 41249  # README table
    ts, raw = lines[0]
    assert ts == 1723161253937085768
    assert raw.startswith(b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161255208,')
    assert raw.endswith(b"}}")
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(lines))  # monotonic local clock
    assert lines[7][1].startswith(b'{"lastUpdateId":50093239218,')  # the snapshot is line 8


def test_iter_feed_reads_plain_text_and_skips_blank_lines(tmp_path: Path) -> None:
    plain = tmp_path / "feed.txt"
    plain.write_bytes(b'1 {"a":1}\n\n2 {"b": 2}\r\n')
    assert list(iter_feed(plain)) == [(1, b'{"a":1}'), (2, b'{"b": 2}')]
    gz = tmp_path / "feed.data"  # gzip is detected by content, not by name
    gz.write_bytes(gzip.compress(plain.read_bytes()))
    assert list(iter_feed(gz)) == [(1, b'{"a":1}'), (2, b'{"b": 2}')]


@pytest.mark.parametrize("bad", [b'{"a":1}\n', b"12\n", b"x1 {}\n"])
def test_iter_feed_rejects_malformed_lines(tmp_path: Path, bad: bytes) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"1 {}\n" + bad)
    with pytest.raises(ValueError, match=r"bad.txt:2: "):
        list(iter_feed(path))


@pytest.mark.parametrize(("path", "trades", "orderbook"), [
    (SPOT_BTC, 9757, 3451 + 28040 + 1),
    (USDM_BTC, 21313, 6551 + 66089 + 1),
])
def test_stream_kind_and_symbol_over_a_whole_file(path: Path, trades: int, orderbook: int) -> None:
    kinds: collections.Counter[str] = collections.Counter()
    symbols: collections.Counter[str | None] = collections.Counter()
    for _, raw in iter_feed(path):
        msg = orjson.loads(raw)
        kinds[stream_kind(msg)] += 1
        symbols[record_symbol(msg)] += 1
        assert stream_kind(raw) == stream_kind(msg)
    assert kinds == {"trades": trades, "orderbook": orderbook}
    assert symbols == {"BTCUSDT": trades + orderbook - 1, None: 1}  # the bare REST snapshot has no symbol


KLINE = {"e": "kline", "E": 1, "s": "BNBBTC", "k": {"t": 0, "T": 59999, "s": "BNBBTC", "i": "1m"}}


@pytest.mark.parametrize(("msg", "kind", "symbol"), [
    ({"stream": "bnbbtc@kline_1m", "data": KLINE}, "klines", "BNBBTC"),
    (KLINE, "klines", "BNBBTC"),
    ({"e": "aggTrade", "s": "ethusdt", "a": 1}, "trades", "ETHUSDT"),
    ({"u": 1, "s": "BTCUSDT", "b": "1", "B": "1", "a": "2", "A": "1"}, "orderbook", "BTCUSDT"),
    ({"stream": "ethusdt@depth5@100ms", "data": {"lastUpdateId": 1, "bids": [], "asks": []}}, "orderbook",
     "ETHUSDT"),
    ({"type": "kline", "venue": "ftx", "symbol": "btc-perp"}, "klines", "BTC-PERP"),
    ({"type": "book_ticker", "venue": "coinbase", "symbol": "BTC-USD"}, "orderbook", "BTC-USD"),
    ({"type": "trade", "venue": "coinbase", "symbol": "BTC-USD"}, "trades", "BTC-USD"),
])
def test_classify_hand_written(msg: dict, kind: str, symbol: str) -> None:
    assert stream_kind(msg) == kind
    assert stream_kind(orjson.dumps(msg)) == kind
    assert record_symbol(msg) == symbol


@pytest.mark.parametrize("raw", [
    b'{"e": "liquidation"}', b'{"foo": 1}', b'{"type": "quote", "venue": "x"}', b"[1]", b"nope",
    b'{"stream": "btcusdt@trade", "data": 5}',
])
def test_stream_kind_unknown(raw: bytes) -> None:
    with pytest.raises(InvalidRecordError):
        stream_kind(raw)
