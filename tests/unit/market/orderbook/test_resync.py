"""The two resync policies: "snapshot" (nothing until the next snapshot) and "unsynced" (keep applying, flagged).

By hand on small books, then on the real Binance spot BTCUSDT depth stream (2024-08-08 23:54 .. 08-09 00:05 UTC)
with a diff taken out and a REST-like snapshot put in.
"""

from __future__ import annotations

import math

import orjson
import pytest

from stream_processor.market.models import BookTicker, DepthSnapshot, DepthUpdate
from stream_processor.market.orderbook import RESYNC_POLICIES, BookMetrics, BookStatus, OrderBook, diff_state_bytes
from tests.unit.market.orderbook import book_records
from tests.unit.market.orderbook import diff as _diff
from tests.unit.market.orderbook import snap as _snap
from tests.unit.market.orderbook import tick as _tick


def _round_trip(book: OrderBook) -> OrderBook:
    return OrderBook.from_state(orjson.loads(orjson.dumps(book.to_state())))


# -- by hand ------------------------------------------------------------------------------------------------


def test_unsynced_applies_diffs_before_the_first_snapshot_but_proves_nothing() -> None:
    book = OrderBook("X", resync="unsynced")
    metrics = BookMetrics(imbalance_levels=1, wall_levels=1)
    assert book.apply(_diff(5, 9, bids=[(100.0, 1.0)], asks=[(101.0, 2.0)])) is BookStatus.UNSYNCED
    assert book.apply(_diff(7, 8, bids=[(100.0, 5.0)])) is BookStatus.STALE  # u <= 9: ignored (but buffered)
    assert book.apply(_diff(12, 12, bids=[(99.0, 3.0)])) is BookStatus.UNSYNCED  # no chain check
    assert not book.in_sync and book.last_update_id == 12 and book.event_time_ms == 120 and book.pending == 3
    assert book.bids.levels() == [(100.0, 1.0), (99.0, 3.0)] and book.asks.levels() == [(101.0, 2.0)]
    # Levels that never changed are unknown at any price: nothing is proven, no best level is reported.
    assert book.bids.proven_count() == 0 and not book.bids.best_is_proven() and book.bids.horizon == float("inf")
    out = metrics.compute(book)
    assert orjson.loads(orjson.dumps(out)) == out
    assert out["state"] == "unsynced" and out["update_id"] == 12
    assert out["best_bid"] is None and out["mid"] is None and out["imbalance"] is None and out["bid_walls"] is None
    assert (out["bid_levels"], out["ask_levels"], out["bid_horizon"], out["ask_horizon"]) == (0, 0, None, None)
    assert _round_trip(book).to_state() == book.to_state()
    # A bookTicker at the book's id proves each side's best level that agrees (it stays deferred for the replay).
    assert book.apply(_tick(12, bid=(100.0, 1.0), ask=(101.0, 3.0))) is BookStatus.DEFERRED
    assert book.bids.horizon == 100.0 and book.asks.horizon == float("-inf")  # the ask disagrees: nothing proven
    assert book.counts["unsynced_checks"] == 1 and book.counts["unsynced_matches"] == 0
    out = metrics.compute(book)
    assert (out["state"], out["best_bid"], out["best_ask"], out["bid_levels"]) == ("unsynced", 100.0, None, 1)
    # The snapshot resyncs by the normal procedure: load, replay the buffered diffs that follow it.
    assert book.apply(_snap(8)) is BookStatus.GAP  # replays 5..9 (brackets 9); 7..8 stale; 12 is a gap
    assert not book.in_sync and book.counts["gaps"] == 1 and book.pending == 1  # 12 waits for a newer snapshot
    # 12 was applied unsynced onto the snapshot's book: the ticker at 12 agrees with its bid, not its ask.
    assert book.counts["unsynced_checks"] == 2 and book.asks.best() == (101.0, 2.0)
    assert book.apply(_snap(11, asks=[(101.0, 3.0)])) is BookStatus.SNAPSHOT and book.in_sync
    assert book.last_update_id == 12 and book.counts["matches"] == 1  # the replay checked the ticker at 12
    assert book.bids.levels() == [(100.0, 1.0), (99.0, 3.0)] and book.asks.levels() == [(101.0, 3.0)]
    assert metrics.compute(book)["state"] == "ok"


@pytest.mark.parametrize("resync", RESYNC_POLICIES)
def test_gap_and_mismatch_are_returned_when_sync_is_lost(resync: str) -> None:
    unsynced = resync == "unsynced"
    book = OrderBook("X", resync=resync)
    metrics = BookMetrics(imbalance_levels=2, wall_levels=2)
    book.apply(_snap(10))
    assert book.apply(_diff(11, 12, bids=[(100.5, 1.0)])) is BookStatus.APPLIED
    assert book.apply(_diff(14, 15, asks=[(101.0, 0.0)])) is BookStatus.GAP  # U must be 13
    assert not book.in_sync and book.counts["gaps"] == 1 and book.pending == 1
    if unsynced:  # levels kept, the gapped diff applied too
        assert book.asks.levels() == [(102.0, 2.0)] and book.last_update_id == 15
        out = metrics.compute(book)
        assert out["state"] == "unsynced" and out["update_id"] == 15
        assert (out["best_bid"], out["best_ask"], out["mid"]) == (100.5, 102.0, 101.25)
        assert out["bid_levels"] == 3 and out["ask_levels"] == 1 and out["imbalance"] is None  # asks prove 1 level
    else:  # nothing until the next snapshot
        assert len(book.bids) == len(book.asks) == 0 and book.last_update_id == 12
        assert metrics.compute(book) is None
    later = book.apply(_diff(20, 21, bids=[(100.5, 0.0)]))
    assert later is (BookStatus.UNSYNCED if unsynced else BookStatus.BUFFERED)
    assert book.apply(_diff(16, 17)) is (BookStatus.STALE if unsynced else BookStatus.BUFFERED)
    # Tickers out of sync are judged against the last in-sync id (12) under both policies: deferred for the replay.
    assert book.apply(_tick(13)) is BookStatus.DEFERRED and book.apply(_tick(12)) is BookStatus.UNCHECKED
    assert book.pending == 3 and book.counts["buffered"] == 3
    # A snapshot at 13 checks the ticker at 13, replays 14..15 (in arrival order), then 20..21 is a gap.
    assert book.apply(_snap(13, bids=[(100.0, 1.0)])) is BookStatus.GAP
    assert book.counts["gaps"] == 2 and book.counts["matches"] == 1 and not book.in_sync
    assert book.last_update_id == (21 if unsynced else 15) and book.pending == 2
    assert book.apply(_snap(21, bids=[(100.0, 4.0)])) is BookStatus.SNAPSHOT and book.in_sync
    assert book.pending == 0 and book.bids.levels() == [(100.0, 4.0)]
    # A bookTicker that disagrees at the book's id: MISMATCH, then the policy applies.
    assert book.apply(_tick(21, bid=(100.0, 3.0))) is BookStatus.MISMATCH and not book.in_sync
    assert book.counts["mismatches"] == 1
    assert (len(book.bids) == 1) is unsynced
    assert book.apply(_diff(22, 22, bids=[(99.0, 1.0)])) is (BookStatus.UNSYNCED if unsynced else BookStatus.BUFFERED)
    out = metrics.compute(book)
    assert (out is None) is not unsynced
    if unsynced:  # the venue's best bid is not the book's: that side proves nothing, the ask side agreed
        assert out["state"] == "unsynced" and out["best_bid"] is None and out["best_ask"] == 101.0
        assert book.apply(_tick(22, bid=(100.0, 4.0))) is BookStatus.DEFERRED  # agrees at the book's id 22
        out = metrics.compute(book)
        assert (out["best_bid"], out["best_bid_size"], out["bid_levels"]) == (100.0, 4.0, 1)
        assert book.counts["unsynced_checks"] == 1 and book.counts["unsynced_matches"] == 1


def test_a_mismatch_on_a_diff_keeps_that_diff_under_unsynced() -> None:
    book = OrderBook("X", resync="unsynced")
    book.apply(_snap(10))
    assert book.apply(_tick(12, bid=(100.0, 3.0))) is BookStatus.DEFERRED
    assert book.apply(_diff(11, 12, bids=[(100.0, 2.0)])) is BookStatus.MISMATCH  # the ticker says 3.0
    assert not book.in_sync and book.last_update_id == 12 and book.bids.best() == (100.0, 2.0)
    assert book.apply(_diff(13, 13, bids=[(100.0, 3.0)])) is BookStatus.UNSYNCED and book.bids.best() == (100.0, 3.0)


def test_pending_buffer_is_bounded_in_bytes_oldest_first() -> None:
    one = diff_state_bytes(_diff(1, 1, bids=[(1.0, 1.0)] * 10))
    for resync in RESYNC_POLICIES:
        book = OrderBook("X", max_pending_bytes=3 * one, resync=resync)
        for u in range(11, 16):
            book.apply(_diff(u, u, bids=[(float(u), 1.0)] * 10))
        assert book.pending == 3 and book.pending_bytes == 3 * one
        assert book.counts["buffered"] == 5 and book.counts["dropped"] == 2
        assert [d["u"] for d in book.to_state()["pending"]] == [13, 14, 15]
        huge = _diff(16, 16, bids=[(1.0, 1.0)] * 40)
        assert book.apply(huge) is (BookStatus.DROPPED if resync == "snapshot" else BookStatus.UNSYNCED)
        assert book.pending == 3 and book.counts["oversized"] == 1
        assert book.apply(_snap(12)) is BookStatus.SNAPSHOT and book.last_update_id == 15  # replays 13..15
        assert book.apply(_diff(17, 17)) is BookStatus.GAP  # 16 was not kept: the chain breaks after 15
        assert book.apply(_snap(17)) is BookStatus.SNAPSHOT and book.in_sync and book.pending == 0
        # In sync an oversized diff is applied like any; only a gap buffers, and one too large is still a GAP.
        assert book.apply(_diff(18, 18, bids=[(2.0, 1.0)] * 40)) is BookStatus.APPLIED
        assert book.apply(_diff(20, 20, bids=[(3.0, 1.0)] * 40)) is BookStatus.GAP and book.pending == 0
        assert book.counts["oversized"] == 2 and book.counts["gaps"] == 2


def test_count_bound_still_holds() -> None:
    book = OrderBook("X", max_pending=2, resync="unsynced")
    for u in (11, 12, 13):
        assert book.apply(_diff(u, u)) is BookStatus.UNSYNCED
    assert book.pending == 2 and book.counts["dropped"] == 1
    assert book.apply(_snap(10)) is BookStatus.GAP  # diff 11 was dropped from the buffer
    assert book.apply(_snap(12)) is BookStatus.SNAPSHOT and book.last_update_id == 13


# -- real data ------------------------------------------------------------------------------------------------


def test_clean_stream_gives_the_same_book_under_both_policies() -> None:
    """No gap: the policies differ only on the diffs before the snapshot (buffered, or applied unsynced)."""
    symbol, records = book_records("spot-btcusdt")
    metrics = BookMetrics()
    books = {p: OrderBook(symbol, resync=p) for p in RESYNC_POLICIES}
    before_snapshot = True
    for r in records:
        a, b = (books[p].apply(r) for p in RESYNC_POLICIES)
        before_snapshot &= type(r) is not DepthSnapshot
        if type(r) is BookTicker:
            assert a is b
        elif before_snapshot:
            assert (a, b) == (BookStatus.BUFFERED, BookStatus.UNSYNCED) if type(r) is DepthUpdate else a is b
            assert metrics.compute(books["snapshot"]) is None
            assert metrics.compute(books["unsynced"])["state"] == "unsynced"
        else:
            assert a is b
            assert metrics.compute(books["snapshot"]) == metrics.compute(books["unsynced"])
    snap, uns = books["snapshot"], books["unsynced"]
    assert snap.counts["gaps"] == 0 and snap.counts["mismatches"] == 0 and snap.counts["applied"] == 6493
    pre = sum(
        type(r) is DepthUpdate for r in records[: next(i for i, r in enumerate(records) if type(r) is DepthSnapshot)]
    )
    assert {**uns.counts, "unsynced_checks": 0, "unsynced_matches": 0} == {**snap.counts, "unsynced": pre}
    assert pre == 3
    assert snap.bids.levels() == uns.bids.levels() and snap.asks.levels() == uns.asks.levels()


def _levels(book: OrderBook) -> tuple[tuple[list, float], tuple[list, float]]:
    """Each side's levels and horizon (None, the whole side, as the worst possible price)."""
    hb, ha = book.bids.horizon, book.asks.horizon
    return (book.bids.levels(), -math.inf if hb is None else hb), (book.asks.levels(), math.inf if ha is None else ha)


def test_injected_gap_then_snapshot_under_both_policies() -> None:
    """A diff is lost: "snapshot" emits nothing until a snapshot comes, "unsynced" goes on flagged "unsynced"."""
    symbol, records = book_records("spot-btcusdt")
    diff_at = [i for i, r in enumerate(records) if type(r) is DepthUpdate]
    dropped, resume = diff_at[3000], diff_at[3041]
    metrics = BookMetrics()
    ref = OrderBook(symbol)  # sees every diff
    books = {p: OrderBook(symbol, resync=p) for p in RESYNC_POLICIES}
    snap_at = next(i for i, r in enumerate(records) if type(r) is DepthSnapshot)
    for i, r in enumerate(records[:dropped]):
        status = ref.apply(r)
        assert books["snapshot"].apply(r) is status
        unsynced = books["unsynced"].apply(r)
        assert unsynced is status or (i < snap_at and unsynced is BookStatus.UNSYNCED)
    lost = records[dropped]
    ref.apply(lost)
    statuses: dict[str, list[BookStatus]] = {p: [] for p in RESYNC_POLICIES}
    snapshot = None
    emitted = agree = 0
    for i in range(dropped + 1, resume):
        r = records[i]
        ref.apply(r)
        for p, book in books.items():
            statuses[p].append(book.apply(r))
        if type(r) is not DepthUpdate:
            continue
        assert metrics.compute(books["snapshot"]) is None  # nothing after the gap
        out = metrics.compute(books["unsynced"])
        assert out["state"] == "unsynced" and out["update_id"] == r.last_update_id
        emitted += 1
        expected = metrics.compute(ref)
        agree += (out["best_bid"], out["best_ask"]) == (expected["best_bid"], expected["best_ask"])
        if i == diff_at[3030]:
            snapshot = DepthSnapshot("binance", symbol, ref.last_update_id, ref.bids.levels(), ref.asks.levels())
    print(f"unsynced: {emitted} metrics emitted after the gap, top of book right in {agree}; {books['unsynced']}")
    assert emitted == 40 and agree > 30
    for p, expect in (("snapshot", BookStatus.BUFFERED), ("unsynced", BookStatus.UNSYNCED)):
        diffs = [s for s in statuses[p] if s not in (BookStatus.DEFERRED, BookStatus.UNCHECKED)]
        assert diffs == [BookStatus.GAP] + [expect] * 39
        assert books[p].counts["gaps"] == 1 and books[p].pending == 40
    # The unsynced book differs from the true one only where the lost diff changed a level no later diff set.
    touched = {p for p, _ in lost.bids} | {p for p, _ in lost.asks}
    later = {p for r in records[dropped + 1 : resume] if type(r) is DepthUpdate for p, _ in (*r.bids, *r.asks)}
    wrong = set()
    for ours, true, sign in zip(_levels(books["unsynced"]), _levels(ref), (-1.0, 1.0), strict=True):
        horizon = min(sign * ours[1], sign * true[1])  # in the part both prove
        ours_d, true_d = (dict(lv for lv in x[0] if sign * lv[0] <= horizon) for x in (ours, true))
        wrong |= {p for p in ours_d.keys() | true_d.keys() if ours_d.get(p) != true_d.get(p)}
    print(f"levels wrong in the unsynced book: {sorted(wrong)}")
    assert wrong and wrong <= touched - later
    # Both buffered the same diffs and deferred the same tickers: a snapshot resyncs both to the same book.
    a, b = (books[p].to_state() for p in RESYNC_POLICIES)
    assert (a["pending"], a["tickers"], a["sync_id"]) == (b["pending"], b["tickers"], b["sync_id"])
    for book in books.values():
        assert book.apply(snapshot) is BookStatus.SNAPSHOT and book.in_sync and book.pending == 0
        assert book.bids.levels() == ref.bids.levels() and book.asks.levels() == ref.asks.levels()
    for r in records[resume:]:
        status = ref.apply(r)
        assert all(book.apply(r) is status for book in books.values())
        if type(r) is DepthUpdate:
            assert metrics.compute(books["snapshot"]) == metrics.compute(books["unsynced"])
    a, b = (books[p].to_state() for p in RESYNC_POLICIES)
    for state in (a, b):
        del state["resync"], state["counts"]
    assert a == b and books["unsynced"].counts["matches"] == books["unsynced"].counts["checks"] > 300
    out, expected = metrics.compute(books["unsynced"]), metrics.compute(ref)
    for key in ("state", "best_bid", "best_bid_size", "best_ask", "best_ask_size", "mid", "spread", "microprice"):
        assert out[key] == expected[key]


@pytest.mark.parametrize("resync", RESYNC_POLICIES)
def test_a_book_that_never_gets_another_snapshot(resync: str) -> None:
    """After the gap a venue sends no snapshot: "snapshot" loses the book for good, "unsynced" goes on."""
    symbol, records = book_records("spot-btcusdt")
    dropped = [i for i, r in enumerate(records) if type(r) is DepthUpdate][1000]
    book = OrderBook(symbol, resync=resync)
    metrics = BookMetrics()
    states: dict[str | None, int] = {}
    for r in records[:dropped] + records[dropped + 1 :]:
        book.apply(r)
        if type(r) is DepthUpdate:
            out = metrics.compute(book)
            key = None if out is None else out["state"]
            states[key] = states.get(key, 0) + 1
    counts = book.counts
    print(f"{resync}: states after each diff {states}; {counts}")
    assert counts["gaps"] == 1 and not book.in_sync and 0 < book.pending_bytes <= 262_144  # the newest diffs wait
    if resync == "snapshot":
        assert states[None] > 5400 and "unsynced" not in states
    else:
        assert states["unsynced"] == counts["unsynced"] > 5400 and None not in states
        # every diff from the snapshot on but the lost one, and the 3 before the snapshot (replayed: 1 applied)
        assert counts["applied"] + counts["unsynced"] == 6492 + 3
        # The tickers at the book's ids kept proving its best levels: its top of book is the venue's.
        assert counts["unsynced_checks"] > 150 and counts["unsynced_matches"] > 0.9 * counts["unsynced_checks"]
        out = metrics.compute(book)
        assert out["best_bid"] < out["best_ask"] and out["bid_levels"] > 0
        ref = OrderBook(symbol)  # every diff, in sync
        for r in records:
            ref.apply(r)
        assert ref.last_update_id == book.last_update_id and ref.in_sync
        assert (out["best_bid"], out["best_ask"]) == (ref.bids.best()[0], ref.asks.best()[0])
