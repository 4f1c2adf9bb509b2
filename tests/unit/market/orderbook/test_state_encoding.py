"""The order book's changelog encoding (``params.state_encoding``): a base, a head and segments of changed levels.

Whatever the records, the commits and the restores, a book rebuilt from the compacted changelog equals the live
one (levels, every field, metrics) and continues with the same outputs; a changelog written in the layout before
``delta`` (the whole book under its key) restores and continues; no record passes ``max_state_bytes``; and a commit
writes a fraction of what the whole book took.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from stream_processor.engine.exceptions import StateRestoreError
from stream_processor.engine.processor import ProcessorContext
from stream_processor.engine.registry import build_processor
from stream_processor.engine.state import STORE_PREFIX, TaskStores
from stream_processor.market.models import BookTicker, DepthSnapshot, DepthUpdate
from stream_processor.market.orderbook import OrderBook, max_state_bytes
from stream_processor.market.processors.orderbook import LOG_STORE, MAX_SEGMENTS, OrderbookProcessor, segment_key

from ..processors import shipped
from . import book_records

KEY = "binance/spot/X"
LOG_PREFIX = STORE_PREFIX + LOG_STORE.encode() + b"\x00"
#: The fields of ``OrderBook.to_state()`` in the order written before ``delta`` existed (less the ``kind`` and
#: ``version`` of the market's layout 1): ``full`` writes them so.
STATE_FIELDS = ["symbol", "depth", "max_pending", "max_pending_bytes", "resync", "in_sync",
                "fresh", "last_update_id", "sync_id", "event_time_ms", "pending_bytes", "bids", "asks", "pending",
                "tickers", "counts"]


class Task:
    """One task of the order-book processor without a broker, as the runtime runs it: records processed into an
    open transaction, committed (``TaskStores.changelog_records``) into a compacted changelog, or lost in a crash
    (the stores rebuilt from the changelog, the records since the last commit processed again)."""

    def __init__(self, changelog: dict[bytes, bytes | None] | None = None, entry: dict[str, Any] | None = None,
                 **params: Any) -> None:
        self.entry, self.params = entry, params
        self.proc: OrderbookProcessor = build_processor("orderbook", shipped("orderbook", entry, **params))
        self.stores = TaskStores(self.proc.stores(), self.proc.settings.state_errors)
        self.changelog: dict[bytes, bytes | None] = {}
        for key, value in (changelog or {}).items():
            self.stores.load(key, value)
            self.changelog[key] = value
        self.ctx = ProcessorContext("orderbook", 0, self.stores)
        self.ctx.topic, self.ctx.partition = "raw_orderbook", 0
        self.proc.init(self.ctx)
        self.open: list[tuple[int, Any]] = []  # (offset, record) processed since the last commit
        self.written: list[tuple[bytes, bytes | None]] = []  # every changelog record, in order

    def process(self, offset: int, record: Any, check: bool = False) -> list[bytes]:
        """Process one record; its outputs. ``check``: as the runtime's check mode, encode the record's dirty keys
        on their own first (``take_dirty``, ``check_dirty``, ``merge_dirty``)."""
        before = self.stores.take_dirty() if check else None
        self.ctx.offset = offset
        self.proc.process(record, self.ctx)
        if before is not None:
            self.stores.check_dirty(None)
            self.stores.merge_dirty(before)
        self.open.append((offset, record))
        out = [value for _, _, value, *_ in self.ctx.outputs]
        self.ctx.outputs.clear()
        return out

    def commit(self) -> int:
        """Write the dirty keys to the changelog; the bytes written."""
        size = 0
        for key, value in self.stores.changelog_records():
            limit = max_state_bytes(self.proc.params.depth_levels, self.proc.params.max_pending_bytes)
            assert value is None or len(value) <= limit, f"{key!r}: {len(value)} bytes above {limit}"
            self.changelog.pop(key, None)  # compaction keeps the last record of each key, in write order
            self.changelog[key] = value
            self.written.append((key, value))
            size += len(key) + len(value or b"")
        self.open = []
        return size

    def restored(self) -> Task:
        """A new task rebuilt from the compacted changelog (uncommitted changes lost)."""
        return Task(self.changelog, self.entry, **self.params)

    def crash(self) -> tuple[Task, dict[int, list[bytes]]]:
        """The task after a crash: restored, the uncommitted records processed again; their outputs by offset."""
        task = self.restored()
        task.written = self.written
        return task, {offset: task.process(offset, record) for offset, record in self.open}

    @property
    def books(self) -> dict[str, OrderBook]:
        return self.stores[""].data


def same_books(a: Task, b: Task) -> None:
    """Both tasks hold the same books: the same state, levels and metrics."""
    assert a.books.keys() == b.books.keys()
    for key, book in a.books.items():
        other = b.books[key]
        assert orjson.dumps(book.to_state()) == orjson.dumps(other.to_state()), key
        assert book.bids.levels() == other.bids.levels() and book.asks.levels() == other.asks.levels()
        assert orjson.dumps(a.proc.metrics.compute(book)) == orjson.dumps(b.proc.metrics.compute(other))


# -- random books ---------------------------------------------------------------------------------------------------


def random_records(rng: random.Random, n: int, symbols: tuple[str, ...] = ("X", "Y")) -> list[Any]:
    """Snapshots, chained diffs (inserts, size changes, removals, levels past the depth), an occasional gap, and
    bookTickers (at the book's id: matching or not; ahead: deferred) of a few symbols."""
    ids = dict.fromkeys(symbols, 0)
    best: dict[str, dict[str, dict[float, float]]] = {s: {"b": {}, "a": {}} for s in symbols}
    out: list[Any] = []

    def levels(side: str, count: int) -> list[tuple[float, float]]:
        sign = -1 if side == "b" else 1
        return [(round(100 + sign * rng.randint(1, 120) * 0.01, 2), 0.0 if rng.random() < 0.3 else
                 round(rng.uniform(0.001, 50), 4)) for _ in range(count)]

    for _ in range(n):
        s = rng.choice(symbols)
        r = rng.random()
        if r < 0.01 or ids[s] == 0:
            ids[s] += rng.randint(1, 3)
            bids = [lv for lv in levels("b", rng.randint(0, 60)) if lv[1]]
            asks = [lv for lv in levels("a", rng.randint(0, 60)) if lv[1]]
            out.append(DepthSnapshot("binance", s, ids[s], sorted(set(dict(bids).items()), reverse=True),
                                     sorted(set(dict(asks).items())), 1))
            best[s] = {"b": dict(bids), "a": dict(asks)}
        elif r < 0.75:
            first = ids[s] + (2 if rng.random() < 0.005 else 1)  # now and then a gap
            ids[s] = first + rng.randint(0, 4)
            bids, asks = levels("b", rng.randint(0, 12)), levels("a", rng.randint(0, 12))
            out.append(DepthUpdate("binance", s, first, ids[s], bids, asks, 1_700_000_000_000 + len(out)))
            for side, lvls in (("b", bids), ("a", asks)):
                for p, q in lvls:
                    if q:
                        best[s][side][p] = q
                    else:
                        best[s][side].pop(p, None)
        else:
            b = max(best[s]["b"].items(), default=(99.0, 1.0))
            a = min(best[s]["a"].items(), default=(101.0, 1.0))
            ahead = rng.random() < 0.2
            if rng.random() < 0.05:
                b = (b[0], b[1] + 1)  # a mismatch: the book must resync
            out.append(BookTicker("binance", s, ids[s] + ahead, b[0], b[1], a[0], a[1]))
    return out


@pytest.mark.parametrize("resync", ["snapshot", "unsynced"])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.slow  # 4-11 s each on the 2-core machine
def test_random_books_restore_identically_after_any_commit_and_crash(seed: int, resync: str) -> None:
    rng = random.Random(seed)
    records = random_records(rng, 5000)
    params = {"depth_levels": 25, "resync": resync}  # a shallow book: levels past the depth, dropped proofs
    live, twin = Task(**params), Task(**params)  # twin: never restored
    expected: dict[int, list[bytes]] = {}
    crashes = 0
    for offset, record in enumerate(records):
        expected[offset] = twin.process(offset, record)
        assert live.process(offset, record, check=rng.random() < 0.05) == expected[offset]
        if rng.random() < 0.2:
            live.commit()
        if rng.random() < 0.01:  # a crash: the records since the last commit are processed again, same outputs
            live, again = live.crash()
            assert again == {o: expected[o] for o in again}
            same_books(live, twin)
            crashes += 1
        if rng.random() < 0.02:  # write, restore: identical
            live.commit()
            same_books(live.restored(), twin)
    live.commit()
    same_books(live.restored(), twin)
    same_books(live, twin)
    assert crashes > 20
    kinds = {("segment" if b"#" in k else "head") if k.startswith(LOG_PREFIX) else "base" for k, _ in live.written}
    assert kinds == {"base", "head", "segment"}  # every kind of record was written, and restored from
    assert any(v is None for k, v in live.written if b"#" in k)  # and generations ended (segments tombstoned)

# -- the real feed ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def btc() -> list[Any]:
    return list(book_records("spot-btcusdt")[1][:30_000])


def test_the_real_book_restores_identically_and_a_commit_writes_a_fraction(btc: list[Any]) -> None:
    task = Task()
    full = Task(state_encoding="full")
    delta_bytes = full_bytes = 0
    for offset, record in enumerate(btc):
        task.process(offset, record)
        full.process(offset, record)
        if offset % 40 == 39:  # about 100 ms of this feed (bookTickers and a diff per 100 ms)
            delta_bytes += task.commit()
            full_bytes += full.commit()
        if offset % 2_000 == 1_999:
            same_books(task.restored(), full)
            same_books(full.restored(), task)
    task.commit()
    same_books(task.restored(), task)
    print(f"{len(btc)} records: full {full_bytes:,} bytes, delta {delta_bytes:,} bytes "
          f"({full_bytes / delta_bytes:.1f}x less)")
    assert delta_bytes * 5 < full_bytes


def test_full_writes_the_layout_before_delta_and_delta_reads_it(btc: list[Any]) -> None:
    """A changelog of the layout before ``delta`` (the whole book under its key, versioned or bare) restores under
    ``delta`` and the book continues as if never stopped; ``full`` still writes that layout byte for byte."""
    half, key = 12_000, b"binance/spot/BTCUSDT"
    book = OrderBook("BTCUSDT")  # what the processor kept before: the bare book, written whole
    for record in btc[:half]:
        book.apply(record)
    state = book.to_state()
    assert list(state) == STATE_FIELDS
    old = orjson.dumps({"v": OrderBook.STATE_VERSION, "state": state})
    full = Task(state_encoding="full")
    for offset, record in enumerate(btc[:half]):
        full.process(offset, record)
    full.commit()
    assert full.changelog == {key: old}
    layout_1 = {"kind": "OrderBook", "version": 2, **state}  # as the code of df71527 wrote it
    for written in (old, orjson.dumps({"v": 1, "state": layout_1}), orjson.dumps(layout_1)):  # layouts 2, 1, 0
        task, whole = Task({key: written}), Task()
        assert orjson.dumps(task.books[key.decode()].to_state()) == orjson.dumps(state)
        for offset, record in enumerate(btc[:half]):
            whole.process(offset, record)
        for offset, record in enumerate(btc[half : half + 3_000], half):
            assert task.process(offset, record) == whole.process(offset, record)
            if offset % 40 == 0:
                task.commit()
        task.commit()
        same_books(task, whole)
        assert orjson.loads(task.changelog[key])["state"]["epoch"] >= 1  # the new layout took over
        assert any(k.startswith(LOG_PREFIX) for k in task.changelog)
        same_books(task.restored(), whole)


def test_full_reads_a_delta_changelog_and_ends_its_log(btc: list[Any]) -> None:
    delta = Task()
    for offset, record in enumerate(btc[:8_000]):
        delta.process(offset, record)
        if offset % 40 == 0:
            delta.commit()
    delta.commit()
    assert any(k.startswith(LOG_PREFIX) and v for k, v in delta.changelog.items())
    full = Task(delta.changelog, state_encoding="full")
    same_books(full, delta)
    for offset, record in enumerate(btc[8_000:9_000], 8_000):
        assert full.process(offset, record) == delta.process(offset, record)
    full.commit()
    delta.commit()
    log = {k: v for k, v in full.changelog.items() if k.startswith(LOG_PREFIX)}
    assert log and all(v is None for v in log.values())  # every log record tombstoned
    assert "epoch" not in orjson.loads(full.changelog[b"binance/spot/BTCUSDT"])["state"]
    same_books(full.restored(), delta)
    back = Task(full.changelog)  # and "delta" again: the stale log is not replayed
    same_books(back, delta)


# -- the log's own rules ----------------------------------------------------------------------------------------------


def _committed_task() -> Task:
    """A task whose changelog holds a book's base, head and a few segments."""
    task = Task(depth_levels=25)
    for offset, record in enumerate(random_records(random.Random(3), 5000, symbols=("X",))):
        task.process(offset, record)
        if offset % 5 == 0:
            task.commit()
            if offset > 500 and _head(task)["segments"] >= 3:
                return task
    raise AssertionError("no head with 3 segments")


def _head(task: Task) -> dict[str, Any]:
    return orjson.loads(task.changelog[LOG_PREFIX + KEY.encode()])["state"]


def test_a_head_of_another_generation_is_not_replayed_and_is_tombstoned() -> None:
    task = _committed_task()
    head = _head(task)
    assert head["segments"] > 0
    base = orjson.loads(task.changelog[KEY.encode()])
    stale = dict(task.changelog)
    base["state"]["epoch"] += 1  # a newer base: its log is another generation's
    stale[KEY.encode()] = orjson.dumps(base)
    restored = Task(stale, depth_levels=25)
    book = restored.books[KEY]
    assert orjson.dumps(book.to_state()) == orjson.dumps(OrderBook.from_state(base["state"]).to_state())
    restored.process(10**6, BookTicker("binance", "X", 1, 1.0, 1.0, 2.0, 1.0))
    restored.commit()
    segments = [segment_key(KEY, seq).encode() for seq in range(head["segments"])]
    assert all(restored.changelog[LOG_PREFIX + k] is None for k in segments)  # tombstoned with the new base
    assert orjson.loads(restored.changelog[KEY.encode()])["state"]["epoch"] == base["state"]["epoch"] + 1


@pytest.mark.parametrize("damage", ["missing", "other_generation"])
def test_a_log_that_cannot_be_replayed_resets_the_book_or_fails(damage: str) -> None:
    task = _committed_task()
    head = _head(task)
    broken = dict(task.changelog)
    name = LOG_PREFIX + segment_key(KEY, head["segments"] - 1).encode()
    if damage == "missing":
        del broken[name]
    else:
        segment = orjson.loads(broken[name])
        segment["state"]["epoch"] -= 1
        broken[name] = orjson.dumps(segment)
    reset = Task(broken, depth_levels=25)
    assert reset.books == {} and reset.proc.events["state_reset"] == 1
    reset.commit()
    assert reset.changelog[KEY.encode()] is None  # the base is not read again without its log
    with pytest.raises(StateRestoreError, match=KEY):
        Task(broken, {"state_errors": "fail"}, depth_levels=25)

def test_no_record_passes_the_state_bound_and_a_huge_diff_starts_a_base() -> None:
    """Levels of the longest floats, diffs of 5,000 levels a side: every record written stays under
    ``max_state_bytes`` (``Task.commit`` checks it), and a segment never holds more than twice the depth."""
    depth = 300
    task = Task(depth_levels=depth)

    def lf(i: int, e: int = -300) -> float:
        return float(f"1.{i % 10**16:016d}e{e}")

    task.process(0, DepthSnapshot("binance", "X", 1, [(lf(i), lf(i, -301)) for i in range(depth, 0, -1)],
                                  [(lf(10_000 + i), lf(i, -301)) for i in range(depth)], 1))
    task.commit()
    for u in range(2, 40):
        n = 5000 if u % 9 == 0 else 150
        bids = [(lf(u * 20_000 + i), lf(i, -302)) for i in range(n)]
        asks = [(lf(u * 20_000 + 10_000 + i), lf(i, -302)) for i in range(n)]
        task.process(u, DepthUpdate("binance", "X", u, u, bids, asks, 1))
        task.commit()
    for key, value in task.written:
        if b"#" in key and value is not None:
            state = orjson.loads(value)["state"]
            assert len(state["bids"]) + len(state["asks"]) <= 2 * depth
    same_books(task.restored(), task)


def test_a_generation_has_at_most_max_segments() -> None:
    task = Task(depth_levels=5000)
    task.process(0, DepthSnapshot("binance", "X", 1, [(float(10_000 - i), 1.0) for i in range(2000)],
                                  [(float(10_001 + i), 1.0) for i in range(2000)], 1))
    for u in range(2, 400):  # 32 new prices a diff: one segment each
        task.process(u, DepthUpdate("binance", "X", u, u, [(7_900.5 - u - i / 100, 2.0) for i in range(32)], [], 1))
        task.commit()
        book = task.books[KEY]
        assert book.open_segment <= MAX_SEGMENTS
    assert max(int(k.rpartition(b"#")[2]) for k, _ in task.written if b"#" in k) == MAX_SEGMENTS - 1
    same_books(task.restored(), task)
