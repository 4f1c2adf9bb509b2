"""OrderBook on real Binance spot and USD-M depth streams (2024-08-08 23:54 .. 08-09 00:05 UTC) and by hand."""

from __future__ import annotations

import dataclasses
import gzip
import time

import orjson
import pytest

from stream_processor.market.models import BookTicker, DepthSnapshot, DepthUpdate, Trade
from stream_processor.market.orderbook import BookMetrics, BookStatus, OrderBook
from stream_processor.market.serde.decode import decode
from tests.unit.market.orderbook import book_records, shared_file
from tests.unit.market.orderbook import diff as _diff
from tests.unit.market.orderbook import snap as _snap
from tests.unit.market.orderbook import tick as _tick

# The data README counts these diffs from the snapshot on (spot) and after it (USD-M pu chain).
EXPECTED_APPLIED = {"spot-btcusdt": 6493, "spot-ethusdt": 6468, "usdm-btcusdt": 6547}


class ReferenceBook:
    """Unbounded dict book, Binance's recipe written out plainly: the independent reference."""

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}
        self.update_id: int | None = None
        self.buffered: list[DepthUpdate] = []

    def snapshot(self, s: DepthSnapshot) -> None:
        self.bids = {p: q for p, q in s.bids if q}
        self.asks = {p: q for p, q in s.asks if q}
        self.update_id = s.last_update_id
        for d in self.buffered:
            self.diff(d)

    def diff(self, d: DepthUpdate) -> bool:
        if self.update_id is None:
            self.buffered.append(d)
            return False
        if d.last_update_id <= self.update_id:
            return False
        for side, levels in ((self.bids, d.bids), (self.asks, d.asks)):
            for p, q in levels:
                if q:
                    side[p] = q
                else:
                    side.pop(p, None)
        self.update_id = d.last_update_id
        return True

    def best(self) -> tuple[tuple[float, float], tuple[float, float]]:
        b, a = max(self.bids), min(self.asks)
        return (b, self.bids[b]), (a, self.asks[a])


def _proven_levels(book: OrderBook) -> tuple[list, list]:
    bids = [lv for lv in book.bids.levels() if book.bids.horizon is None or lv[0] >= book.bids.horizon]
    asks = [lv for lv in book.asks.levels() if book.asks.horizon is None or lv[0] <= book.asks.horizon]
    return bids, asks


def _reference_levels(ref: ReferenceBook, book: OrderBook) -> tuple[list, list]:
    hb, ha = book.bids.horizon, book.asks.horizon
    bids = sorted(((p, q) for p, q in ref.bids.items() if hb is None or p >= hb), reverse=True)
    asks = sorted((p, q) for p, q in ref.asks.items() if ha is None or p <= ha)
    return bids, asks


def _snapshot_of(book: OrderBook) -> DepthSnapshot:
    """A DepthSnapshot of everything ``book`` holds, as a venue's REST snapshot at its update id."""
    return DepthSnapshot("binance", book.symbol, book.last_update_id, book.bids.levels(), book.asks.levels())


def _round_trip(book: OrderBook) -> OrderBook:
    return OrderBook.from_state(orjson.loads(orjson.dumps(book.to_state())))


# -- real data: sequencing and parity with bookTicker -------------------------------------------------


@pytest.mark.parametrize("feed", sorted(EXPECTED_APPLIED))
def test_replay_has_no_gap_and_matches_every_book_ticker(feed: str) -> None:
    symbol, records = book_records(feed)
    book = OrderBook(symbol)
    statuses = [book.apply(r) for r in records]
    counts = book.counts
    assert counts["snapshots"] == 1
    assert counts["gaps"] == 0 and BookStatus.GAP not in statuses
    assert counts["mismatches"] == 0 and BookStatus.MISMATCH not in statuses
    assert counts["applied"] == EXPECTED_APPLIED[feed]
    assert book.in_sync and book.pending == 0
    # Same update id on both sides: the diff's last id (or the snapshot's) equals the ticker's id.
    snap = next(r for r in records if type(r) is DepthSnapshot)
    diff_ids = {r.last_update_id for r in records if type(r) is DepthUpdate and r.last_update_id > snap.last_update_id}
    diff_ids.add(snap.last_update_id)
    same_id = len(diff_ids & {r.update_id for r in records if type(r) is BookTicker})
    print(
        f"{feed}: {counts['checks']} bookTicker comparisons at equal update ids ({same_id} ids shared), "
        f"{counts['matches']} matched; {counts}"
    )
    assert counts["matches"] == counts["checks"]
    # Spot tickers come before the 100 ms diff that ends at their id (checked when it lands); USD-M
    # tickers come before or after their 0 ms diff. Either way every shared id is compared once.
    assert counts["checks"] == same_id > 600


@pytest.mark.parametrize(("feed", "depth"), [("spot-btcusdt", 1000), ("usdm-btcusdt", 1000), ("spot-btcusdt", 500)])
def test_proven_part_equals_an_unbounded_reference(feed: str, depth: int) -> None:
    """Within the proven depth the bounded book is the full book; a proven best level is the true best."""
    symbol, records = book_records(feed)
    book, ref = OrderBook(symbol, depth=depth), ReferenceBook()
    compared = proven_tops = unproven_tops = 0
    for r in records:
        status = book.apply(r)
        if type(r) is DepthSnapshot:
            ref.snapshot(r)
            continue
        if type(r) is not DepthUpdate or not ref.diff(r) or not book.in_sync:
            continue
        assert book.last_update_id == ref.update_id
        assert len(book.bids) <= depth and len(book.asks) <= depth
        if ref.update_id % 3 == 0:  # a sample (the reference's best costs a scan of its dict)
            ref_bid, ref_ask = ref.best()
            for side, true_best in ((book.bids, ref_bid), (book.asks, ref_ask)):
                if side.best_is_proven():
                    assert side.best() == true_best
                    proven_tops += 1
                else:
                    unproven_tops += 1
        if status is BookStatus.APPLIED and ref.update_id % 17 == 0:  # a sample of full comparisons
            assert _proven_levels(book) == _reference_levels(ref, book)
            compared += 1
    assert compared > 200 and proven_tops > 2000
    if depth == 1000:
        assert book.in_sync and book.counts["mismatches"] == 0
        assert _proven_levels(book) == _reference_levels(ref, book)
    else:
        # 500 levels of BTCUSDT span about $100 and the price fell through them: a bid the book had cut
        # off (the snapshot's 587th, last changed while still beyond the 500) surfaced as the best.
        # The proof had ended above it (proven bests were all true above), and the bookTicker check
        # caught it: out of sync.
        assert unproven_tops > 0 and book.counts["mismatches"] == 1 and not book.in_sync
        assert book.counts["applied"] > 4000
    print(
        f"{feed} depth={depth}: {compared} full comparisons, best proven {proven_tops}x, unproven "
        f"{unproven_tops}x, counts {book.counts}"
    )


def test_gap_makes_the_book_unusable_until_a_new_snapshot() -> None:
    symbol, records = book_records("spot-btcusdt")
    diff_at = [i for i, r in enumerate(records) if type(r) is DepthUpdate]
    dropped = diff_at[3000]
    metrics = BookMetrics()
    ref, book = OrderBook(symbol), OrderBook(symbol)
    for r in records[:dropped]:
        ref.apply(r)
        book.apply(r)
    assert book.in_sync and metrics.compute(book) is not None
    ref.apply(records[dropped])  # the book never sees this diff
    # Forty diffs go by out of sync; a REST snapshot taken at the 30th arrives after the 40th.
    resume = diff_at[3041]
    snapshot = mid_gap = None
    statuses = []
    for i in range(dropped + 1, resume):
        r = records[i]
        ref.apply(r)
        statuses.append(book.apply(r))
        if i > diff_at[3000 + 1] or type(r) is DepthUpdate:  # the next diff reveals the gap
            assert not book.in_sync and metrics.compute(book) is None
        if mid_gap is not None:
            assert mid_gap.apply(r) is statuses[-1]
        if i == diff_at[3030]:
            snapshot = _snapshot_of(ref)
            mid_gap = _round_trip(book)  # a copy saved and restored while out of sync, with pending diffs
    assert statuses.count(BookStatus.GAP) == 1
    assert statuses.count(BookStatus.BUFFERED) == 39 and BookStatus.APPLIED not in statuses
    assert book.counts["gaps"] == 1 and book.pending == 40
    # A snapshot older than the gap cannot resync: the buffered diffs do not chain onto it.
    too_old = dataclasses.replace(snapshot, last_update_id=records[dropped].first_update_id - 1)
    assert book.apply(too_old) is BookStatus.GAP and not book.in_sync
    assert mid_gap.apply(too_old) is BookStatus.GAP
    assert book.apply(snapshot) is BookStatus.SNAPSHOT
    assert book.in_sync and book.pending == 0 and book.last_update_id == ref.last_update_id
    assert book.bids.levels() == ref.bids.levels() and book.asks.levels() == ref.asks.levels()
    assert metrics.compute(book)["best_bid"] == metrics.compute(ref)["best_bid"]
    assert mid_gap.apply(snapshot) is BookStatus.SNAPSHOT
    for r in records[resume:]:
        assert ref.apply(r) is book.apply(r) is mid_gap.apply(r)
    assert book.in_sync and book.counts["gaps"] == 2 and book.counts["mismatches"] == 0
    assert book.counts["checks"] > 300 and book.counts["matches"] == book.counts["checks"]
    assert _proven_levels(book)[0] == [lv for lv in ref.bids.levels() if lv[0] >= book.bids.horizon]
    out, expected = metrics.compute(book), metrics.compute(ref)
    for key in ("state", "best_bid", "best_bid_size", "best_ask", "best_ask_size", "mid", "spread", "microprice"):
        assert out[key] == expected[key]
    assert mid_gap.to_state() == book.to_state()


@pytest.mark.parametrize("resync", ["snapshot", "unsynced"])
@pytest.mark.parametrize("feed", ["spot-btcusdt", "usdm-btcusdt"])
def test_state_round_trip_mid_stream_continues_identically(feed: str, resync: str) -> None:
    symbol, records = book_records(feed)
    metrics = BookMetrics()
    book = OrderBook(symbol, resync=resync)
    cut = len(records) // 2
    for r in records[:cut]:
        book.apply(r)
    state = book.to_state()
    assert state["tickers"], "cut where tickers wait for their diff, so they are in the state"
    restored = OrderBook.from_state(orjson.loads(orjson.dumps(state)))
    assert restored.to_state() == state
    emitted = 0
    for r in records[cut:]:
        assert book.apply(r) is restored.apply(r)
        if type(r) is DepthUpdate:
            out = metrics.compute(book)
            assert out == metrics.compute(restored)
            emitted += out is not None
    assert emitted > 2000
    assert restored.to_state() == book.to_state()


@pytest.mark.parametrize("resync", ["snapshot", "unsynced"])
def test_state_round_trips_at_several_points_continue_identically(resync: str) -> None:
    """Spot BTCUSDT with a diff lost and a snapshot put in: before the snapshot, in sync, out of sync (pending
    diffs, deferred tickers, under "unsynced" a book applied unsynced), just after the resync, at the end."""
    symbol, records = book_records("spot-btcusdt")
    diff_at = [i for i, r in enumerate(records) if type(r) is DepthUpdate]
    ref = OrderBook(symbol)
    for r in records[: diff_at[3030] + 1]:
        ref.apply(r)
    snapshot = _snapshot_of(ref)
    stream = [*records[: diff_at[3000]], *records[diff_at[3000] + 1 : diff_at[3041]], snapshot]
    stream += records[diff_at[3041] : diff_at[3600]]
    snap_at = next(i for i, r in enumerate(stream) if type(r) is DepthSnapshot)
    gap, injected = diff_at[3000], diff_at[3041] - 1  # indices in ``stream``: the diff after the lost one, the snapshot
    assert stream[injected] is snapshot and stream[gap] is records[gap + 1]
    cuts = [snap_at - 1, snap_at + 10_000, gap, gap + 1, gap + 60, injected, injected + 1, len(stream) - 5000]
    metrics = BookMetrics()
    book = OrderBook(symbol, max_pending_bytes=100_000, resync=resync)
    copies: list[OrderBook] = []
    states_seen = set()
    for i, r in enumerate(stream):
        if i in cuts:
            state = book.to_state()
            states_seen.add((book.in_sync, book.pending > 0, len(state["tickers"]) > 0))
            copies.append(OrderBook.from_state(orjson.loads(orjson.dumps(state))))
            assert copies[-1].to_state() == state
        status = book.apply(r)
        is_diff = type(r) is DepthUpdate
        out = metrics.compute(book) if is_diff else None
        for copy in copies:
            assert copy.apply(r) is status
            if is_diff:
                assert metrics.compute(copy) == out
    assert len(copies) == len(cuts) and {(False, True, True), (True, False, True)} <= states_seen
    assert book.in_sync and book.counts["gaps"] == 1 and book.counts["mismatches"] == 0
    assert all(copy.to_state() == book.to_state() for copy in copies)


def test_state_round_trip_before_the_first_snapshot() -> None:
    symbol, records = book_records("spot-btcusdt")
    snap_at = next(i for i, r in enumerate(records) if type(r) is DepthSnapshot)
    book = OrderBook(symbol)
    for r in records[:snap_at]:
        assert book.apply(r) in (BookStatus.BUFFERED, BookStatus.DEFERRED)
    assert book.pending == 3 and book.last_update_id is None and BookMetrics().compute(book) is None
    restored = _round_trip(book)
    for r in records[snap_at : snap_at + 5000]:
        assert book.apply(r) is restored.apply(r)
    assert restored.to_state() == book.to_state() and book.in_sync


def test_microseconds_per_diff_on_real_data() -> None:
    symbol, records = book_records("spot-btcusdt")
    diffs = [r for r in records if type(r) is not BookTicker]
    levels = sum(len(r.bids) + len(r.asks) for r in diffs)
    book = OrderBook(symbol)
    t0 = time.perf_counter()
    for r in diffs:
        book.apply(r)
    elapsed = time.perf_counter() - t0
    per_diff = elapsed / len(diffs) * 1e6
    print(f"OrderBook: {per_diff:.1f} us per diff ({elapsed / levels * 1e9:.0f} ns per level), {len(diffs)} diffs")
    assert book.counts["applied"] == EXPECTED_APPLIED["spot-btcusdt"]
    assert per_diff < 1000  # generous: a shared CI core; measured ~30 us


# -- another venue through the normalized form: Bybit linear XRPUSDT orderbook.500 -------------------


def _bybit_records() -> list[DepthSnapshot | DepthUpdate]:
    """The Bybit file turned into normalized-form JSON (our own small parser) and decoded by the serde."""
    path = shared_file("orderbook", "bybit-ob500-nautilus", "2024-12-01_XRPUSDT_ob500.data.gz")
    out = []
    with gzip.open(path, "rb") as f:
        for line in f:
            msg = orjson.loads(line)
            data = msg["data"]
            common = {
                "venue": "bybit",
                "symbol": data["s"],
                "bids": data["b"],
                "asks": data["a"],
                "event_time_ms": msg["ts"],
            }
            if msg["type"] == "snapshot":
                obj = {"type": "depth_snapshot", "last_update_id": data["u"], **common}
            else:  # Bybit's u counts the messages of the stream: one update id per delta
                obj = {"type": "depth_update", "first_update_id": data["u"], "last_update_id": data["u"], **common}
            out.append(decode(orjson.dumps(obj)))
    return out


def test_bybit_snapshot_and_deltas_through_the_normalized_form() -> None:
    records = _bybit_records()
    assert type(records[0]) is DepthSnapshot and len(records) == 50
    book, ref = OrderBook("XRPUSDT", depth=500), ReferenceBook()
    metrics = BookMetrics(bands_bps=(5.0, 20.0))
    for r in records:
        status = book.apply(r)
        assert status is (BookStatus.SNAPSHOT if type(r) is DepthSnapshot else BookStatus.APPLIED)
        if type(r) is DepthSnapshot:
            ref.snapshot(r)
        else:
            ref.diff(r)
        out = metrics.compute(book)
        assert out["state"] == "ok" and out["best_bid"] < out["microprice"] < out["best_ask"]
        assert (out["best_bid"], out["best_bid_size"]) == ref.best()[0]
        assert _proven_levels(book) == _reference_levels(ref, book)
    assert book.counts["applied"] == 49 and book.counts["gaps"] == 0
    assert book.bids.proven_count() > 300 and out["bands"][0]["bid_size"] > 0
    skipped = dataclasses.replace(
        records[10], first_update_id=records[-1].last_update_id + 2, last_update_id=records[-1].last_update_id + 2
    )
    assert book.apply(skipped) is BookStatus.GAP and metrics.compute(book) is None


# -- sequencing rules on hand-made records ------------------------------------------------------------




def test_spot_sequence_rules() -> None:
    book = OrderBook("X")
    assert book.apply(_diff(5, 9)) is BookStatus.BUFFERED and not book.in_sync
    assert book.apply(_snap(10)) is BookStatus.SNAPSHOT and book.pending == 0  # the buffered diff was stale
    assert book.apply(_diff(8, 10)) is BookStatus.STALE
    assert book.apply(_diff(9, 12, bids=[(100.0, 0.0), (99.5, 4.0)])) is BookStatus.APPLIED  # brackets 11
    assert book.bids.levels() == [(99.5, 4.0), (99.0, 2.0)] and book.event_time_ms == 120
    assert book.apply(_diff(12, 14)) is BookStatus.GAP  # overlaps: spot needs U == 13 exactly
    assert not book.in_sync and len(book.bids) == 0 and book.pending == 1
    assert book.apply(_diff(15, 16)) is BookStatus.BUFFERED
    assert book.apply(_snap(13)) is BookStatus.SNAPSHOT  # replays 12..14 (brackets 14) then 15..16
    assert book.in_sync and book.last_update_id == 16 and book.pending == 0
    assert book.apply(_snap(15)) is BookStatus.STALE  # older than the in-sync book
    assert book.apply(_snap(20)) is BookStatus.SNAPSHOT
    assert book.apply(_diff(22, 25)) is BookStatus.GAP  # the first diff after it must bracket 21


def test_usdm_pu_chain() -> None:
    book = OrderBook("X")
    book.apply(_snap(100))
    assert book.apply(_diff(90, 100, pu=80)) is BookStatus.STALE  # u == lastUpdateId: already in it
    assert book.apply(_diff(130, 140, pu=100)) is BookStatus.APPLIED  # pu == lastUpdateId: ids not contiguous
    assert book.apply(_diff(150, 160, pu=140)) is BookStatus.APPLIED
    assert book.apply(_diff(141, 170, pu=150)) is BookStatus.GAP  # pu must equal the previous u (160)
    book.apply(_snap(165))
    # The buffered 141..170 (pu 150 <= 165) was replayed onto the snapshot; the next one chains on 170.
    assert book.apply(_diff(175, 180, pu=170)) is BookStatus.APPLIED
    assert book.last_update_id == 180


def test_pending_buffer_overflow_needs_a_newer_snapshot() -> None:
    book = OrderBook("X", max_pending=2)
    for u in (11, 12, 13):
        book.apply(_diff(u, u))
    assert book.pending == 2
    assert book.apply(_snap(10)) is BookStatus.GAP  # diff 11 was dropped from the buffer
    assert book.apply(_snap(12)) is BookStatus.SNAPSHOT and book.last_update_id == 13


def test_truncation_shrinks_the_proven_depth() -> None:
    book = OrderBook("X", depth=3)
    book.apply(_snap(1, bids=[(100.0, 1.0), (99.0, 1.0), (98.0, 1.0), (97.0, 1.0)]))
    assert book.bids.levels() == [(100.0, 1.0), (99.0, 1.0), (98.0, 1.0)] and book.bids.horizon == 98.0
    book.apply(_diff(2, 2, bids=[(99.5, 2.0)]))  # 98 is pushed out: the proof now ends at 99
    assert book.bids.horizon == 99.0 and book.bids.proven_count() == 3
    book.apply(_diff(3, 3, bids=[(100.0, 0.0), (99.5, 0.0), (99.0, 0.0), (96.0, 5.0)]))
    # 97 (never seen) may sit above 96: the side holds one level and none of it is proven.
    assert book.bids.levels() == [(96.0, 5.0)] and book.bids.proven_count() == 0
    assert not book.bids.best_is_proven() and BookMetrics().compute(book)["state"] == "incomplete"
    assert book.apply(_tick(3, bid=(96.0, 5.0))) is BookStatus.MATCH  # the venue says 96 is the best
    assert book.bids.horizon == 96.0 and BookMetrics().compute(book)["state"] == "ok"
    assert book.apply(_tick(3, bid=(97.0, 1.0))) is BookStatus.MISMATCH and not book.in_sync


def test_empty_snapshot_side_is_known_empty() -> None:
    book = OrderBook("X", depth=2)
    book.apply(_snap(1, bids=[], asks=[(101.0, 1.0)]))
    assert book.bids.horizon is None and book.asks.horizon == 101.0
    book.apply(_diff(2, 2, bids=[(100.0, 1.0), (99.0, 1.0), (98.0, 1.0)]))
    assert book.bids.levels() == [(100.0, 1.0), (99.0, 1.0)] and book.bids.horizon == 99.0


def test_book_ticker_checks() -> None:
    book = OrderBook("X")
    assert book.apply(_tick(5)) is BookStatus.DEFERRED  # before any snapshot: kept
    book.apply(_snap(10))
    assert book.apply(_tick(10)) is BookStatus.MATCH
    assert book.apply(_tick(9)) is BookStatus.UNCHECKED
    assert book.apply(_tick(12, bid=(100.0, 3.0))) is BookStatus.DEFERRED
    assert book.apply(_tick(12)) is BookStatus.UNCHECKED  # not newer than the deferred one
    assert book.apply(_tick(14, bid=(100.0, 3.0))) is BookStatus.DEFERRED
    assert book.apply(_diff(11, 12, bids=[(100.0, 3.0)])) is BookStatus.APPLIED  # checked the ticker at 12
    assert book.counts["checks"] == 2 and book.counts["matches"] == 2
    assert book.apply(_diff(13, 14, bids=[(100.0, 2.0)])) is BookStatus.MISMATCH  # ticker at 14 says 3.0
    assert not book.in_sync and book.counts["mismatches"] == 1 and BookMetrics().compute(book) is None


def test_bad_input_is_refused_before_any_change() -> None:
    book = OrderBook("X")
    book.apply(_snap(1))
    before = book.to_state()
    with pytest.raises(ValueError, match="bad level"):
        book.apply(_diff(2, 2, bids=[(99.0, 1.0), (98.0, float("nan"))]))
    with pytest.raises(ValueError, match="bad level"):
        book.apply(_snap(5, asks=[(0.0, 1.0)]))
    with pytest.raises(ValueError, match="bad level"):
        book.apply(_tick(1, ask=(101.0, -1.0)))
    with pytest.raises(ValueError, match="'Y'"):
        book.apply(dataclasses.replace(_diff(2, 2), symbol="Y"))
    with pytest.raises(TypeError, match="Trade"):
        book.apply(Trade("binance", "X", 1, 100.0, 1.0, "buy", 1, 1))
    assert book.to_state() == before
    for diff in (_diff(2, 2**64), _diff(2, 2, pu=-(2**63) - 1), dataclasses.replace(_diff(2, 2), event_time_ms=2**70)):
        with pytest.raises(ValueError, match="out of range"):  # the state could not be written
            book.apply(diff)
    with pytest.raises(ValueError, match="out of range"):
        book.apply(_tick(2**64))
    assert book.to_state() == before
    for kwargs in (
        {"depth": 0},
        {"max_pending": True},
        {"symbol": ""},
        {"symbol": "X" * 65},
        {"max_pending_bytes": 0},
        {"depth": 2**63},
        {"resync": "never"},
    ):
        with pytest.raises(ValueError):
            OrderBook(**{"symbol": "X", **kwargs})
    assert OrderBook("X" * 64).depth == 1000


def test_from_state_refuses_foreign_or_partial_state() -> None:
    state = OrderBook("X").to_state()
    with pytest.raises(ValueError, match="JSON object"):
        OrderBook.from_state([state])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="misses"):
        OrderBook.from_state({k: v for k, v in state.items() if k != "pending"})
    book = OrderBook("X")
    book.apply(_diff(5, 6, bids=[(1.0, 1.0)]))
    with pytest.raises(ValueError, match="bytes"):
        OrderBook.from_state({**book.to_state(), "pending_bytes": 1})
