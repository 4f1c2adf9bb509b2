"""Real Binance book records (snapshot, diffs, bookTickers) for the order-book tests, decoded once per session."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest

from stream_processor.market.models import BookTicker, DepthSnapshot, DepthUpdate
from stream_processor.market.serde.decode import decode
from stream_processor.market.serde.feed import iter_feed

REPO_ROOT = Path(__file__).resolve().parents[4]
SHARED_DATA = Path(os.environ.get("SHARED_DATA", REPO_ROOT / ".." / "shared" / "data"))
FEEDS = SHARED_DATA / "feeds" / "binance-hftbacktest"

#: name -> (symbol, files replayed in order: 0808 holds the REST snapshot, 0809 carries on from it)
FEED_FILES = {
    "spot-btcusdt": ("BTCUSDT", ("spot/btcusdt_20240808.gz", "spot/btcusdt_20240809.gz")),
    "spot-ethusdt": ("ETHUSDT", ("spot/ethusdt_20240808.gz", "spot/ethusdt_20240809.gz")),
    "usdm-btcusdt": ("BTCUSDT", ("usdm/btcusdt_20240808.gz",)),
}

BookRecord = DepthSnapshot | DepthUpdate | BookTicker


def shared_file(*parts: str) -> Path:
    """Path of a file under the shared data folder; fails the test (never skips) if it is missing."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.is_file():
        pytest.fail(f"shared market data missing: {path} (set SHARED_DATA)")
    return path


@cache
def book_records(name: str) -> tuple[str, tuple[BookRecord, ...]]:
    """``(symbol, records)`` of one feed of ``FEED_FILES``: its book records in file order, trades left out.

    The symbol is passed as the Kafka key so the bare REST snapshot line decodes too.
    """
    symbol, files = FEED_FILES[name]
    key = symbol.encode()
    out: list[BookRecord] = []
    for file in files:
        for _, raw in iter_feed(shared_file("feeds", "binance-hftbacktest", *file.split("/"))):
            if b"@trade" in raw:
                continue
            record = decode(raw, key)
            if type(record) in (DepthSnapshot, DepthUpdate, BookTicker):
                out.append(record)
    return symbol, tuple(out)


def snap(uid: int, bids=((100.0, 1.0), (99.0, 2.0)), asks=((101.0, 1.0), (102.0, 2.0))) -> DepthSnapshot:
    """A hand-made snapshot of symbol X at update id ``uid``."""
    return DepthSnapshot("binance", "X", uid, list(bids), list(asks), 1)


def diff(first: int, last: int, bids=(), asks=(), pu: int | None = None) -> DepthUpdate:
    """A hand-made diff of symbol X covering ``first..last``."""
    return DepthUpdate("binance", "X", first, last, list(bids), list(asks), last * 10, pu)


def tick(uid: int, bid=(100.0, 1.0), ask=(101.0, 1.0)) -> BookTicker:
    """A hand-made bookTicker of symbol X at update id ``uid``."""
    return BookTicker("binance", "X", uid, bid[0], bid[1], ask[0], ask[1])
