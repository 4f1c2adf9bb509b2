"""BookMetrics on hand-made books with known answers, and against a numpy recomputation on real Binance books."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from stream_processor.market.models import BookTicker, DepthSnapshot, DepthUpdate
from stream_processor.market.orderbook import BookMetrics, OrderBook
from tests.unit.market.orderbook import book_records

BIDS = [(100.0, 1.0), (99.5, 2.0), (99.0, 3.0), (90.0, 1.0)]
ASKS = [(101.0, 3.0), (101.5, 1.0), (102.0, 2.0), (110.0, 1.0)]


def _book(bids=BIDS, asks=ASKS, depth: int = 1000) -> OrderBook:
    book = OrderBook("X", depth=depth)
    book.apply(DepthSnapshot("test", "X", 7, list(bids), list(asks), 1_700_000_000_000))
    return book


def test_known_answers() -> None:
    out = BookMetrics(bands_bps=(100.0, 1000.0), imbalance_levels=2, wall_levels=4, wall_multiple=1.5).compute(_book())
    assert orjson.loads(orjson.dumps(out)) == out  # JSON-safe as it is
    assert out["symbol"] == "X" and out["update_id"] == 7 and out["event_time_ms"] == 1_700_000_000_000
    assert out["state"] == "ok"
    assert (out["best_bid"], out["best_bid_size"], out["best_ask"], out["best_ask_size"]) == (100.0, 1.0, 101.0, 3.0)
    assert out["mid"] == 100.5 and out["spread"] == 1.0
    assert out["spread_bps"] == pytest.approx(1.0 / 100.5 * 1e4, rel=1e-15)  # 99.5025 bps
    # Weighted mid leans to the side with less size: (100 * 3 + 101 * 1) / (1 + 3).
    assert out["microprice"] == 100.25
    narrow, wide = out["bands"]
    # 100 bps of 100.5: bids >= 99.495 (100, 99.5), asks <= 101.505 (101, 101.5).
    assert narrow == {"bps": 100.0, "bid_size": 3.0, "bid_notional": 299.0, "ask_size": 4.0, "ask_notional": 404.5}
    # 1000 bps: bids >= 90.45 lie inside the proven depth (down to 90); asks <= 110.55 reach past 110: unknown.
    assert wide == {"bps": 1000.0, "bid_size": 6.0, "bid_notional": 596.0, "ask_size": None, "ask_notional": None}
    assert out["imbalance"] == pytest.approx((3.0 - 4.0) / 7.0, rel=1e-15)
    # Top 4 sizes: bids 1, 2, 3, 1 (median 1.5, threshold 2.25); asks 3, 1, 2, 1 (median 1.5).
    assert out["bid_walls"] == [[99.0, 3.0]] and out["ask_walls"] == [[101.0, 3.0]]
    assert (out["bid_levels"], out["ask_levels"], out["bid_horizon"], out["ask_horizon"]) == (4, 4, 90.0, 110.0)


def test_not_enough_proven_levels_gives_none() -> None:
    out = BookMetrics(imbalance_levels=5, wall_levels=5).compute(_book())
    # Four levels per side and the snapshot may have been cut after them: a fifth could exist.
    assert out["imbalance"] is None and out["bid_walls"] is None and out["ask_walls"] is None
    whole = _book(asks=[])  # an empty side in a snapshot is known empty; the other is cut after 4 levels
    out = BookMetrics(imbalance_levels=4, wall_levels=4).compute(whole)
    assert out["state"] == "incomplete" and out["imbalance"] == 1.0 and out["ask_walls"] == []
    assert out["best_ask"] is None and out["mid"] is None and out["best_bid"] == 100.0


@pytest.mark.parametrize(("bid", "ask", "state"), [(101.0, 100.0, "crossed"), (100.0, 100.0, "locked")])
def test_crossed_and_locked_books_report_no_mid(bid: float, ask: float, state: str) -> None:
    book = _book(bids=[(bid, 2.0), (95.0, 1.0)], asks=[(ask, 1.0), (105.0, 1.0)])
    out = BookMetrics(bands_bps=(10.0,), imbalance_levels=1).compute(book)
    assert out["state"] == state
    assert out["best_bid"] == bid and out["best_ask"] == ask
    assert out["mid"] is None and out["spread"] is None and out["spread_bps"] is None and out["microprice"] is None
    assert out["bands"] == [
        {"bps": 10.0, "bid_size": None, "bid_notional": None, "ask_size": None, "ask_notional": None}
    ]
    assert out["imbalance"] == pytest.approx(1.0 / 3.0, rel=1e-15)  # needs no mid


def test_out_of_sync_book_emits_nothing() -> None:
    metrics = BookMetrics()
    assert metrics.compute(OrderBook("X")) is None
    book = _book()
    book.apply(DepthUpdate("test", "X", 9, 9, [], [], 1))  # U must be 8
    assert not book.in_sync and metrics.compute(book) is None  # the "snapshot" policy (default)
    assert book.resync == "snapshot"


def test_unsynced_book_reports_its_levels_with_state_unsynced() -> None:
    metrics = BookMetrics(bands_bps=(100.0, 1000.0), imbalance_levels=2, wall_levels=4, wall_multiple=1.5)
    book = OrderBook("X", resync="unsynced")
    book.apply(DepthSnapshot("test", "X", 7, list(BIDS), list(ASKS), 1_700_000_000_000))
    synced = metrics.compute(book)
    book.apply(DepthUpdate("test", "X", 9, 9, [], [], 1_700_000_000_001))  # U must be 8: a gap, levels kept
    out = metrics.compute(book)
    assert not book.in_sync and out["state"] == "unsynced" and out["update_id"] == 9
    assert orjson.loads(orjson.dumps(out)) == out
    assert {k: v for k, v in out.items() if k not in ("state", "update_id", "event_time_ms")} == {
        k: v for k, v in synced.items() if k not in ("state", "update_id", "event_time_ms")
    }  # the same levels give the same numbers (test_known_answers)
    # Crossed while unsynced: reported, never averaged; the flag stays "unsynced".
    book.apply(DepthUpdate("test", "X", 11, 11, [(101.5, 1.0)], [], 3))
    out = metrics.compute(book)
    assert out["state"] == "unsynced" and out["best_bid"] == 101.5 and out["best_ask"] == 101.0
    assert out["mid"] is None and out["microprice"] is None and out["bands"][0]["bid_size"] is None
    # The proven-depth rules still apply: a bid below the snapshot's worst is not proven.
    book.apply(DepthUpdate("test", "X", 12, 12, [(101.5, 0.0), (100.0, 0.0), (99.5, 0.0), (99.0, 0.0)], [], 4))
    assert metrics.compute(book)["bid_levels"] == 1  # 90, the snapshot's last bid
    book.apply(DepthUpdate("test", "X", 13, 13, [(90.0, 0.0), (80.0, 1.0)], [], 5))
    out = metrics.compute(book)
    assert out["best_bid"] is None and out["bid_levels"] == 0 and out["bid_horizon"] == 90.0
    # A snapshot resyncs: the normal states again.
    book.apply(DepthSnapshot("test", "X", 20, list(BIDS), list(ASKS), 6))
    assert metrics.compute(book)["state"] == "ok"


def test_unproven_best_level_is_incomplete_until_confirmed() -> None:
    book = _book(depth=4)
    book.apply(
        DepthUpdate("test", "X", 8, 8, [(100.0, 0.0), (99.5, 0.0), (99.0, 0.0), (90.0, 0.0), (89.0, 4.0)], [], 2)
    )
    out = BookMetrics().compute(book)
    assert out["state"] == "incomplete" and out["best_bid"] is None and out["bid_levels"] == 0
    book.apply(BookTicker("test", "X", 8, 89.0, 4.0, 101.0, 3.0))
    out = BookMetrics().compute(book)
    assert out["state"] == "ok" and out["best_bid"] == 89.0 and out["bid_horizon"] == 89.0


def test_parameters_are_checked() -> None:
    for kwargs in (
        {"bands_bps": (0.0,)},
        {"bands_bps": (math.inf,)},
        {"imbalance_levels": 0},
        {"wall_levels": 2.5},
        {"wall_multiple": 0.0},
        {"wall_multiple": math.nan},
    ):
        with pytest.raises(ValueError):
            BookMetrics(**kwargs)


# -- real data: every output against an independent numpy recomputation ------------------------------


def _numpy_metrics(book: OrderBook, bands: tuple[float, ...], n: int, m: int, k: float) -> dict:
    """The same definitions over the book's proven levels, vectorized."""
    hb, ha = book.bids.horizon, book.asks.horizon
    b = np.array([lv for lv in book.bids.levels() if hb is None or lv[0] >= hb])
    a = np.array([lv for lv in book.asks.levels() if ha is None or lv[0] <= ha])
    bp, bq, ap, aq = b[0, 0], b[0, 1], a[0, 0], a[0, 1]
    mid = (bp + ap) / 2
    out = {
        "mid": mid,
        "spread": ap - bp,
        "spread_bps": (ap - bp) / mid * 1e4,
        "microprice": (bp * aq + ap * bq) / (bq + aq),
    }
    for bps in bands:
        lo, hi = mid * (1 - bps / 1e4), mid * (1 + bps / 1e4)
        if hb is None or lo >= hb:
            sel = b[b[:, 0] >= lo]
            out[f"bid_size_{bps}"], out[f"bid_notional_{bps}"] = sel[:, 1].sum(), (sel[:, 0] * sel[:, 1]).sum()
        if ha is None or hi <= ha:
            sel = a[a[:, 0] <= hi]
            out[f"ask_size_{bps}"], out[f"ask_notional_{bps}"] = sel[:, 1].sum(), (sel[:, 0] * sel[:, 1]).sum()
    if len(b) >= n and len(a) >= n:
        bv, av = b[:n, 1].sum(), a[:n, 1].sum()
        out["imbalance"] = (bv - av) / (bv + av)
    for name, lv in (("bid_walls", b), ("ask_walls", a)):
        if len(lv) >= m:
            top = lv[:m]
            out[name] = top[top[:, 1] > k * np.median(top[:, 1])].tolist()
    return out


def test_matches_numpy_on_real_books() -> None:
    symbol, records = book_records("spot-btcusdt")
    bands, n, m, k = (2.0, 5.0, 10.0), 10, 20, 4.0
    metrics = BookMetrics(bands_bps=bands, imbalance_levels=n, wall_levels=m, wall_multiple=k)
    book = OrderBook(symbol)
    errors: dict[str, list[float]] = {}
    states: dict[str, int] = {}
    walls = walls_agree = diffs = 0
    for r in records:
        book.apply(r)
        if type(r) is not DepthUpdate:
            continue
        out = metrics.compute(book)
        if out is None:  # the diffs before the snapshot
            assert not book.in_sync
            continue
        diffs += 1
        states[out["state"]] = states.get(out["state"], 0) + 1
        if out["state"] != "ok" or diffs % 8:
            continue
        assert out["best_bid"] < out["microprice"] < out["best_ask"] and out["spread"] > 0
        assert out["imbalance"] is None or -1.0 <= out["imbalance"] <= 1.0
        ref = _numpy_metrics(book, bands, n, m, k)
        ours = {key: out[key] for key in ("mid", "spread", "spread_bps", "microprice", "imbalance")}
        sizes = [0.0, 0.0]
        for band in out["bands"]:
            for side in ("bid", "ask"):
                for what in ("size", "notional"):
                    ours[f"{side}_{what}_{band['bps']}"] = band[f"{side}_{what}"]
            assert band["bid_size"] is None or band["bid_size"] >= sizes[0]  # wider bands hold more
            sizes[0] = band["bid_size"] or sizes[0]
        assert {key for key, v in ours.items() if v is not None} == {key for key in ref if "walls" not in key}
        for key, v in ref.items():
            if "walls" in key:
                walls += 1
                walls_agree += out[key] == v
                continue
            err = abs(ours[key] - v)
            errors.setdefault(key, []).append(err / abs(v) if v else err)
    print(f"states over {diffs} diffs: {states}; walls agree {walls_agree}/{walls}")
    worst = {key: max(v) for key, v in errors.items()}
    for key, v in sorted(worst.items()):
        print(f"  {key:24s} compared {len(errors[key]):5d}x  max rel err {v:.2e}")
    assert states["ok"] > 6000 and set(states) <= {"ok", "incomplete"}
    assert walls > 1500 and walls_agree == walls
    assert len(errors["bid_size_10.0"]) > 500 and len(errors["imbalance"]) > 700
    assert max(worst.values()) < 1e-12
