"""TradeIdWindow: runs, bounds, state, and the duplicate executions of the real bitFlyer polled tape.

The bitFlyer files (``trades/bitflyer-kazamidori``, no license stated) are read in place from the shared data
folder, in row order (each minute's poll batch in descending id order, batches overlapping): the re-sent rows are
the duplicates. The expected counts are computed independently with a set.
"""

from __future__ import annotations

import csv
import gzip
import random
from functools import cache

import orjson
import pytest

from stream_processor.engine.exceptions import InvalidRecordError, RecordError
from stream_processor.market.dedup import MAX_ID, RUN_BYTES, STATE_OVERHEAD_BYTES, TradeIdWindow
from tests.unit.market.klines import SHARED_DATA, require

BITFLYER = SHARED_DATA / "trades" / "bitflyer-kazamidori"


def restored(w: TradeIdWindow) -> TradeIdWindow:
    return TradeIdWindow.from_state(orjson.loads(orjson.dumps(w.to_state())))


def state_bytes(w: TradeIdWindow) -> int:
    return len(orjson.dumps(w.to_state()))


def test_runs_merge_and_split() -> None:
    w = TradeIdWindow(1_000)
    assert (w.floor, w.largest, w.runs) == (0, None, [])
    assert not w.seen(0)
    for i in (5, 7):
        w.add(i)
    assert w.runs == [(5, 5), (7, 7)]
    w.add(6)  # bridges two runs: they merge
    assert w.runs == [(5, 7)]
    w.add(4)  # extends a run downwards
    w.add(8)  # and upwards
    assert w.runs == [(4, 8)]
    w.add(6)  # already there: nothing changes
    w.add(20)
    w.add(1)
    w.add(14)  # between two runs, adjacent to neither
    assert w.runs == [(1, 1), (4, 8), (14, 14), (20, 20)]
    assert [i for i in range(25) if w.seen(i)] == [1, 4, 5, 6, 7, 8, 14, 20]
    assert (w.floor, w.largest) == (0, 20)
    # The window cuts a run in two: the part below the floor is forgotten.
    w.add(1_006)  # floor = 1_006 - 1_000 + 1 = 7
    assert w.floor == 7
    assert w.runs == [(7, 8), (14, 14), (20, 20), (1_006, 1_006)]
    assert not w.seen(6) and not w.seen(1) and w.seen(7)  # below the floor: not seen (we cannot know)
    w.add(3)  # below the floor: ignored
    assert w.runs == [(7, 8), (14, 14), (20, 20), (1_006, 1_006)]
    w.add(1_007)
    w.add(1_100)
    assert w.floor == 101 and w.runs == [(1_006, 1_007), (1_100, 1_100)]


def test_seen_changes_nothing() -> None:
    w = TradeIdWindow(100, 4)
    for i in (10, 12, 30):
        w.add(i)
    before = w.to_state()
    assert [w.seen(i) for i in (9, 10, 11, 12, 30, 31, 10**9)] == [False, True, False, True, True, False, False]
    assert w.to_state() == before


def test_a_gap_free_tape_costs_one_run() -> None:
    w = TradeIdWindow(10_000)
    start = 3_735_683_259  # Binance spot BTCUSDT's first id in the shared tape
    for i in range(start, start + 50_000):
        assert not w.seen(i)
        w.add(i)
    assert w.runs == [(start + 40_000, start + 49_999)]  # exactly the last `window` ids
    assert w.floor == start + 40_000
    assert w.seen(start + 40_000) and not w.seen(start + 39_999)


def test_more_than_max_runs_forgets_the_oldest() -> None:
    w = TradeIdWindow(1_000, max_runs=3)
    for i in (0, 2, 4, 6):
        w.add(i)
    assert w.runs == [(2, 2), (4, 4), (6, 6)] and w.floor == 1
    w.add(3)  # merges: 2 runs
    assert w.runs == [(2, 4), (6, 6)]
    w.add(9)
    w.add(12)  # 4 runs: [2, 4] goes
    assert w.runs == [(6, 6), (9, 9), (12, 12)] and w.floor == 5
    w.add(7)  # below the largest, creates no run: it merges
    w.add(10)
    assert w.runs == [(6, 7), (9, 10), (12, 12)]
    w.add(0)  # below the floor
    assert not w.seen(4) and w.seen(6)
    # A new run older than every kept run is itself the oldest: it goes at once, and the floor passes it.
    w = TradeIdWindow(1_000, max_runs=2)
    for i in (10, 20, 5):
        w.add(i)
    assert w.runs == [(10, 10), (20, 20)] and w.floor == 6


@pytest.mark.parametrize(
    "name",
    ["every other id", "every other id at the top", "random sparse", "descending every other", "one per window"],
)
def test_state_size_stays_below_the_bound_for_adversarial_sequences(name: str) -> None:
    rng = random.Random(name)
    n = 20_000
    ids = {
        "every other id": [2 * i for i in range(n)],
        "every other id at the top": [MAX_ID - 2 * (n - i) for i in range(n)],
        "random sparse": [rng.randrange(MAX_ID - 10**6, MAX_ID) for _ in range(n)],
        "descending every other": [MAX_ID - 2 * i for i in range(n)],
        "one per window": [MAX_ID - 10_001 * (n - i) for i in range(n)],
    }[name]
    w = TradeIdWindow()
    bound = RUN_BYTES * w.max_runs + STATE_OVERHEAD_BYTES
    assert bound == 10_952
    biggest = 0
    for k, i in enumerate(ids):
        w.add(i)
        assert len(w.runs) <= 256
        if k % 97 == 0 or k > n - 300:
            biggest = max(biggest, state_bytes(w))
    assert biggest <= bound
    if name in ("every other id at the top", "descending every other"):
        assert biggest > 0.9 * bound  # the bound is nearly reached: 256 runs of 19-digit ids
    print(f"{name}: {biggest} bytes of state at most (bound {bound}), floor {w.floor}, largest {w.largest}")


def test_invalid_ids_are_refused_without_change() -> None:
    w = TradeIdWindow()
    w.add(5)
    before = w.to_state()
    for bad in (-1, MAX_ID + 1, "6", 6.0, True, None):
        for call in (w.seen, w.add):
            with pytest.raises(InvalidRecordError) as info:
                call(bad)  # type: ignore[arg-type]
            assert isinstance(info.value, RecordError)
    assert w.to_state() == before
    w.add(MAX_ID)
    w.add(0)  # far below the floor now
    assert w.seen(MAX_ID) and w.runs == [(MAX_ID, MAX_ID)]
    for bad_window in (0, -5, 1.5, True, MAX_ID + 1):
        with pytest.raises(ValueError):
            TradeIdWindow(bad_window)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TradeIdWindow(10, 0)


def test_matches_a_brute_force_model() -> None:
    """Random id sequences: seen() is exactly 'added and >= floor'; floor is the window floor until runs overflow."""
    rng = random.Random(11)
    for _ in range(400):
        window, max_runs = rng.randint(1, 60), rng.randint(1, 8)
        w = TradeIdWindow(window, max_runs)
        added: set[int] = set()
        overflowed = False
        for _ in range(rng.randint(1, 80)):
            x = rng.randint(0, 100) if rng.random() < 0.5 else (w.largest or 0) + rng.randint(1, 4)
            floor = w.floor
            assert [q for q in range(220) if w.seen(q)] == sorted(q for q in added if q >= floor)
            w.add(x)
            if x >= floor:
                added.add(x)
            runs = w.runs
            assert len(runs) <= max_runs and runs[-1][1] == w.largest and runs[0][0] >= w.floor
            assert all(b + 1 < c for (_, b), (c, _) in zip(runs, runs[1:], strict=False))
            overflowed |= len(runs) == max_runs
            if not overflowed:
                assert w.floor == max(0, w.largest - window + 1)
            assert restored(w).to_state() == w.to_state()


def test_round_trip_continues_identically() -> None:
    rng = random.Random(3)
    ids = [rng.randrange(10**6, 10**6 + 3_000) for _ in range(5_000)]
    a = TradeIdWindow(2_000, 64)
    for i in ids[:2_500]:
        a.add(i)
    raw = orjson.dumps(a.to_state())
    b = TradeIdWindow.from_state(orjson.loads(raw))
    assert orjson.dumps(b.to_state()) == raw
    assert (b.window, b.max_runs, b.floor, b.largest, b.runs) == (a.window, a.max_runs, a.floor, a.largest, a.runs)
    out_a, out_b = [], []
    for i in ids[2_500:]:
        out_a.append(a.seen(i))
        a.add(i)
        out_b.append(b.seen(i))
        b.add(i)
    assert out_a == out_b and any(out_a) and not all(out_a)
    assert a.to_state() == b.to_state()


def test_from_state_refuses_foreign_or_malformed_state() -> None:
    w = TradeIdWindow(100)
    for i in (1, 2, 3, 7, 9):
        w.add(i)
    state = w.to_state()
    assert state["_runs"] == [[1, 3], [7, 7], [9, 9]]
    with pytest.raises(ValueError, match="misses"):
        TradeIdWindow.from_state({k: v for k, v in state.items() if k != "_runs"})
    for runs in (
        [[1, 3], [4, 9]],  # adjacent: should be one run
        [[7, 7], [1, 3], [9, 9]],  # not sorted
        [[1, 3], [2, 9]],  # overlapping
        [[3, 1], [9, 9]],  # first > last
        [[1, 3], [7, 7]],  # does not end at the largest
        [[1, 3], [7, 7], [9, 10]],  # past the largest
        [[1, 3.0], [9, 9]],  # not ints
        [[1, 3, 4], [9, 9]],
        [[i, i] for i in range(1, 520, 2)][-257:],  # more than max_runs
    ):
        with pytest.raises(ValueError):
            TradeIdWindow.from_state({**state, "_runs": runs})
    with pytest.raises(ValueError):
        TradeIdWindow.from_state({**state, "_floor": 2})  # a run below the floor
    with pytest.raises(ValueError):
        TradeIdWindow.from_state({**state, "window": 0})


@cache
def bitflyer_ids(name: str) -> list[int]:
    """Execution ids of one bitFlyer file in row order (read in place; never copied)."""
    with gzip.open(require(BITFLYER / f"bitflyer.execution.{name}.csv.gz"), "rt", newline="") as f:
        return [int(row["id"]) for row in csv.DictReader(f)]


def expected_duplicates(ids: list[int], window: int) -> tuple[int, int]:
    """Independently: (all re-sent rows, re-sent rows whose id is within ``window`` of the largest id so far)."""
    seen: set[int] = set()
    largest = -1
    total = within = 0
    for i in ids:
        if i in seen:
            total += 1
            within += i >= largest - window + 1
        seen.add(i)
        largest = max(largest, i)
    return total, within


@pytest.mark.parametrize(
    ("name", "rows", "total", "within_10k"),
    [
        pytest.param("20180121.BTC_JPY", 143_107, 96, 96, marks=pytest.mark.slow),  # 5 s on the 2-core machine
        ("20180125.BTC_JPY", 115_008, 47, 47),
        ("20180128.ETH_BTC", 5_331, 1_269, 695),
    ],
)
def test_bitflyer_duplicates_are_found_exactly(name: str, rows: int, total: int, within_10k: int) -> None:
    ids = bitflyer_ids(name)
    assert len(ids) == rows
    assert expected_duplicates(ids, 10_000) == (total, within_10k)  # the README's counts, and those in the window

    # Window only (runs never overflow): exactly the duplicates within the window.
    w = TradeIdWindow(10_000, max_runs=1_000_000)
    found = 0
    for i in ids:
        found += w.seen(i)
        w.add(i)
    assert found == within_10k
    assert w.floor == w.largest - 10_000 + 1  # no run was forgotten
    print(f"{name}: {found} of {total} duplicates within 10,000 ids, {len(w.runs)} runs at the end")

    # The defaults (10,000 ids, 256 runs), and a window of 100,000 ids: every row is judged exactly against the
    # floor (no false positive; no miss above the floor); the count found is what the floor allows.
    for window, expect in ((10_000, within_10k), (100_000, total)):
        w = TradeIdWindow(window)
        added: set[int] = set()
        found = 0
        half = len(ids) // 2
        for k, i in enumerate(ids):
            if k == half:
                w = restored(w)  # a restore mid-file changes nothing
            dup = w.seen(i)
            assert dup == (i in added and i >= w.floor)
            found += dup
            if i >= w.floor:
                added.add(i)
            w.add(i)
            assert len(w.runs) <= 256
        assert found == expect, (window, found)
        assert state_bytes(w) <= RUN_BYTES * 256 + STATE_OVERHEAD_BYTES
