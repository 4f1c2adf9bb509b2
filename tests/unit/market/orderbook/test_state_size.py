"""The changelog record of an OrderBook (``to_state()`` as JSON) stays under a bound set by its parameters alone.

A broker refuses a record over its limit (Kafka: 1 MB by default) and the partition can then never commit
again, so no sequence of records may grow the state past ``max_state_bytes(depth, max_pending_bytes)``.
"""

from __future__ import annotations

import math
import random
import struct

import orjson
import pytest

from stream_processor.market.models import BookTicker, DepthSnapshot, DepthUpdate
from stream_processor.market.orderbook import (
    MAX_DEFERRED_TICKERS,
    RESYNC_POLICIES,
    BookMetrics,
    BookStatus,
    OrderBook,
    diff_state_bytes,
    max_state_bytes,
)
from stream_processor.market.orderbook.book import (
    DIFF_FIXED_BYTES,
    LEVEL_BYTES,
    MAX_SYMBOL_LENGTH,
    STATE_FIXED_BYTES,
    TICKER_BYTES,
)

KAFKA_MAX_RECORD = 1_048_576
#: Floats orjson writes at their longest (23 characters: 17 significant digits and a 3-digit exponent,
#: or "0.0000" and 17 digits) and other awkward ones: subnormals, the largest, long decimals, -0.0.
ADVERSARIAL = [
    1.2345678901234567e-300,
    1.2345678901234568e-05,
    9.999999999999998e-301,
    1.7976931348623157e308,
    2.2250738585072014e-308,
    5e-324,
    4.9406564584124654e-324,
    float("0.1234567890123456789012345"),
    float("60123.456789012345678901234"),
    float("0.000012345678901234567890"),
    0.1 + 0.2,
    1 / 3,
    123456789012345.67,
    -0.0,
    0.0,
]
LONG = [f for f in ADVERSARIAL if len(orjson.dumps(f)) == 23]
ID_MAX, ID_MIN = 2**64 - 1, -(2**63)  # 20 characters each, orjson's range
NASTY_VENUE = '\x01"\\é\u2028' * 4  # control character (6 bytes), escapes (2), 2- and 3-byte UTF-8


def _long_float(i: int, exponent: int = -300) -> float:
    """Distinct floats written with 23 characters (17 digits), for level prices and sizes."""
    return float(f"1.{i % 10**16:016d}e{exponent}")


def _levels(n: int, start: int = 0) -> list[tuple[float, float]]:
    return [(_long_float(start + i), _long_float(start + i, -301)) for i in range(n)]


def _diff(u: int, levels: int, venue: str = "binance", symbol: str = "X", start: int = 0) -> DepthUpdate:
    return DepthUpdate(venue, symbol, u, u, _levels(levels, start), _levels(levels, start + levels), ID_MIN)


def _size(book: OrderBook) -> int:
    return len(orjson.dumps(book.to_state()))


def test_default_configuration_stays_under_a_kafka_record() -> None:
    assert LEVEL_BYTES == 52 and TICKER_BYTES == 123 and DIFF_FIXED_BYTES == 128 and MAX_DEFERRED_TICKERS == 256
    bound = max_state_bytes(1000, 262_144)
    assert bound == 2048 + 104 * 1000 + 262_144 + 123 * 256 == 399_680 < KAFKA_MAX_RECORD


def test_float_and_level_bounds_hold_for_adversarial_and_random_floats() -> None:
    longest = max(len(orjson.dumps(x)) for x in ADVERSARIAL)
    rng = random.Random(7)
    for _ in range(200_000):  # any finite double, as a bit pattern
        x = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        if math.isfinite(x):
            longest = max(longest, len(orjson.dumps(x)))
    for exponent in range(-324, 309):  # every decimal exponent with a 17-digit mantissa
        x = float(f"1.2345678901234567e{exponent}")
        if math.isfinite(x) and x:
            longest = max(longest, len(orjson.dumps(x)))
    print(f"longest orjson float: {longest} characters (a level is charged {LEVEL_BYTES} bytes)")
    assert longest == 24  # a sign and 23 characters: the 24 the bound assumes is reached, never passed
    assert all(len(orjson.dumps([p, q])) + 1 <= LEVEL_BYTES for p in ADVERSARIAL for q in ADVERSARIAL)


@pytest.mark.parametrize("venue", ["binance", NASTY_VENUE, ""])
@pytest.mark.parametrize(("n_bids", "n_asks"), [(0, 0), (1, 0), (3, 7), (150, 150)])
def test_diff_state_bytes_is_an_upper_bound_of_the_diff_in_the_state(venue: str, n_bids: int, n_asks: int) -> None:
    combos = [(p, q) for p in ADVERSARIAL if p > 0 for q in ADVERSARIAL]
    diffs = [
        DepthUpdate(venue, "X", ID_MIN, ID_MAX, combos[:n_bids], combos[-n_asks:] if n_asks else [], ID_MIN, ID_MAX),
        DepthUpdate(venue, "X", ID_MAX, ID_MAX, _levels(n_bids), _levels(n_asks, 9_000), ID_MIN, None),
        DepthUpdate(venue, "X", 1, 2, [(60123.45, 0.5)] * n_bids, [(60123.46, 0.00001234)] * n_asks, 1, 0),
    ]
    book = OrderBook("X", max_pending_bytes=10**9)
    for d in diffs:
        assert book.apply(d) is BookStatus.BUFFERED
    entries = book.to_state()["pending"]
    for d, entry in zip(diffs, entries, strict=True):
        written = len(orjson.dumps(entry)) + 1  # and its comma in the list
        assert written <= diff_state_bytes(d)
    assert len(orjson.dumps(entries)) - 2 <= book.pending_bytes == sum(map(diff_state_bytes, diffs))
    if n_bids == n_asks == 150:
        written = len(orjson.dumps(entries[1])) + 1
        print(f"150 + 150 levels of 23-character floats: {written} bytes written, {diff_state_bytes(diffs[1])} charged")


def test_ticker_and_fixed_part_bounds() -> None:
    book = OrderBook("\x00" * MAX_SYMBOL_LENGTH, 2**63 - 1, 2**63 - 1, 2**63 - 1, "unsynced")
    p = LONG[0]
    book.apply(DepthSnapshot(NASTY_VENUE, book.symbol, ID_MIN, [(p, p)], [(p, p)], ID_MIN))
    for k in book._counts:
        book._counts[k] = ID_MAX  # counters can only grow: take them at 20 digits
    book._sync_id = book._last_update_id = ID_MIN
    fixed = _size(book) - 2 * len(orjson.dumps([p, p]))
    print(f"fixed part at its largest: {fixed} bytes (bound {STATE_FIXED_BYTES})")
    assert fixed <= STATE_FIXED_BYTES
    for i in range(MAX_DEFERRED_TICKERS + 10):
        t = BookTicker(NASTY_VENUE, book.symbol, ID_MAX - 300 + i, LONG[0], LONG[-1], LONG[-1], LONG[0], ID_MIN)
        assert book.apply(t) is BookStatus.DEFERRED
    tickers = book.to_state()["tickers"]
    assert len(tickers) == MAX_DEFERRED_TICKERS
    assert all(len(orjson.dumps(t)) + 1 <= TICKER_BYTES for t in tickers)
    assert _size(book) <= STATE_FIXED_BYTES + 2 * LEVEL_BYTES + MAX_DEFERRED_TICKERS * TICKER_BYTES


@pytest.mark.parametrize("resync", RESYNC_POLICIES)
def test_600_diffs_of_150_levels_before_the_first_snapshot(resync: str) -> None:
    """The broker incident: the buffer held 500 such diffs (count bound) and the record passed 1 MB."""
    book = OrderBook("BTCUSDT", resync=resync)  # the default depth 1000, max_pending 500, 262,144 bytes
    price = 60000.0
    unbounded = 2  # the JSON the count-only buffer would have written for its diffs
    for u in range(1, 601):
        bids = [(round(price - i * 0.01 - u * 1e-8, 8), 0.12345678 + i) for i in range(150)]
        asks = [(round(price + 0.01 + i * 0.01 + u * 1e-8, 8), 1.23456789 + i) for i in range(150)]
        diff = DepthUpdate("binance", "BTCUSDT", u, u, bids, asks, 1_723_161_600_000 + u)
        status = book.apply(diff)
        assert status is (BookStatus.BUFFERED if resync == "snapshot" else BookStatus.UNSYNCED)
        if u > 100:
            unbounded += len(orjson.dumps(book.to_state()["pending"][-1])) + 1
        if u % 50 == 0:
            assert _size(book) <= max_state_bytes(1000, 262_144)
    size = _size(book)
    counts = book.counts
    print(
        f"{resync}: state {size} bytes, {book.pending} diffs buffered ({book.pending_bytes} charged); count-only "
        f"buffer of 500: {unbounded} bytes of diffs; counts {counts}"
    )
    assert unbounded > KAFKA_MAX_RECORD  # what the count bound alone let through
    assert size <= max_state_bytes(1000, 262_144) < KAFKA_MAX_RECORD
    assert book.pending_bytes <= 262_144 and counts["buffered"] == 600 and counts["dropped"] == 600 - book.pending
    kept = book.to_state()["pending"]
    assert [d["u"] for d in kept] == list(range(601 - book.pending, 601))  # the newest, the oldest dropped first
    # A snapshot at the oldest kept diff's id - 1 resyncs: the newest diffs are the ones a snapshot needs.
    snap = DepthSnapshot("binance", "BTCUSDT", 600 - book.pending, [(59000.0, 1.0)], [(61000.0, 1.0)])
    assert book.apply(snap) is BookStatus.SNAPSHOT and book.in_sync and book.last_update_id == 600


@pytest.mark.parametrize("resync", RESYNC_POLICIES)
def test_5000_level_records_keep_the_state_under_the_bound(resync: str) -> None:
    depth, budget = 1000, 262_144
    bound = max_state_bytes(depth, budget)
    book = OrderBook("X", depth=depth, max_pending_bytes=budget, resync=resync)
    big = _diff(1, 5000)
    assert diff_state_bytes(big) > budget
    status = book.apply(big)  # over the whole budget: not buffered, counted
    assert status is (BookStatus.DROPPED if resync == "snapshot" else BookStatus.UNSYNCED)
    assert book.pending == 0 and book.counts["oversized"] == 1
    for i in range(MAX_DEFERRED_TICKERS):
        book.apply(BookTicker("b", "X", 10**6 + i, LONG[0], LONG[0], LONG[0], LONG[0]))
    for u in range(2, 60):  # fill the byte budget with the longest floats
        book.apply(_diff(u, 100, venue=NASTY_VENUE, start=u * 200))
        assert _size(book) <= bound
    oldest = book.to_state()["pending"][0]["U"]  # the budget holds the newest 24 of them
    assert book.pending == 24 and book.counts["dropped"] == 58 - 24
    book.apply(DepthSnapshot("b", "X", oldest - 1, _levels(5000), _levels(5000, 5000)))  # replays them
    assert book.in_sync and len(book.bids) == len(book.asks) == depth
    for u in range(60, 70):
        assert book.apply(_diff(u, 5000, start=u * 10_000)) is BookStatus.APPLIED  # in sync: applied, trimmed
    book.apply(_diff(75, 100))  # a gap
    for u in range(76, 200):
        book.apply(_diff(u, 100 if u % 7 else 3000, venue=NASTY_VENUE, start=u * 7_000))
    size = _size(book)
    print(f"{resync}: {size} bytes of at most {bound}, {book.pending} pending, counts {book.counts}")
    assert size <= bound
    # The bound is near: full buffer, full ticker queue, and under "unsynced" two full sides (kept after the gap).
    reachable = bound - (2 * depth * LEVEL_BYTES if resync == "snapshot" else 0)
    assert size > 0.85 * reachable
    assert len(book.bids) == len(book.asks) == (depth if resync == "unsynced" else 0)


@pytest.mark.parametrize("resync", RESYNC_POLICIES)
@pytest.mark.parametrize("seed", range(4))
def test_any_sequence_of_records_keeps_the_state_under_the_bound(resync: str, seed: int) -> None:
    """Random snapshots, diffs (in order, gapped, stale, oversized) and tickers of the longest floats."""
    rng = random.Random(seed)
    depth, budget = rng.choice([1, 5, 40]), rng.choice([200, 3_000, 20_000])
    bound = max_state_bytes(depth, budget)
    book = OrderBook("X", depth=depth, max_pending=rng.choice([1, 10, 500]), max_pending_bytes=budget, resync=resync)
    metrics = BookMetrics(imbalance_levels=3, wall_levels=3)
    u = 100
    largest = 0
    for step in range(3000):
        kind = rng.random()
        n = rng.choice([0, 1, 3, 10, 60, 400])
        if kind < 0.05:
            record = DepthSnapshot("v", "X", u - rng.randint(0, 20), _levels(n, step), _levels(n, step + n))
        elif kind < 0.35:
            record = BookTicker("v", "X", u + rng.randint(-5, 30), LONG[0], LONG[1], LONG[1], LONG[0])
        else:
            first = u + 1 if rng.random() < 0.9 else u + rng.randint(-10, 10)
            u = max(u, first + rng.randint(0, 3))
            record = DepthUpdate(NASTY_VENUE, "X", first, u, _levels(n, step * 900), _levels(n, step * 900 + 450), u)
        book.apply(record)
        out = metrics.compute(book)
        assert out is None or orjson.loads(orjson.dumps(out)) == out
        if step % 10 == 0:
            size = _size(book)
            largest = max(largest, size)
            assert size <= bound
            assert book.pending_bytes <= budget and len(book.bids) <= depth and len(book.asks) <= depth
    print(f"{resync} seed {seed}: depth {depth}, budget {budget}: largest state {largest} of {bound}; {book.counts}")
