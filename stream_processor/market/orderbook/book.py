"""A bounded per-symbol L2 order book kept in sync from Binance-style depth snapshots and diffs.

Sequencing follows Binance's "How to manage a local order book correctly" (spot and USD-M futures
WebSocket docs): a snapshot sets the book at ``lastUpdateId``; diffs with ``u <= lastUpdateId`` are
stale; the first diff applied after a snapshot must bracket it (``U <= lastUpdateId + 1 <= u``); later
diffs must chain (spot: ``U == previous u + 1``; USD-M, when ``pu`` is given: ``pu == previous u``).
Anything else is a gap, and a bookTicker at the book's update id that disagrees with the book is a
mismatch: either way the book goes out of sync and buffers diffs until the next snapshot, which replays
the buffered ones. What the book does meanwhile is its resync policy (``OrderBook(resync=...)``):

- ``"snapshot"`` (the default): the book drops its levels and applies nothing until a snapshot resyncs
  it; nothing may be read from it meanwhile (``BookMetrics.compute`` returns None). A venue that sends
  no more snapshots loses the book for good.
- ``"unsynced"``: the book keeps its levels and applies every later diff as it comes, without the chain
  check (a stale one, ``u <=`` the book's update id, is still ignored), flagged unsynced
  (``BookStatus.UNSYNCED``, ``in_sync`` False; ``BookMetrics`` reports ``state: "unsynced"``). Before the
  first snapshot it applies diffs to an empty book in the same way. The levels are the venue's as far as
  the diffs seen tell, nothing more: a lost diff's changes are missing until a later diff sets those
  prices again. A bookTicker at the unsynced book's update id still checks each side's best level: one
  that agrees becomes proven (as in sync), one that disagrees makes that side prove nothing until a
  later ticker agrees (``unsynced_checks`` and ``unsynced_matches`` count them); neither resyncs the
  book, and a MISMATCH that unsyncs it does the same to the side that disagrees.

Both policies buffer the same diffs and defer the same bookTickers while out of sync, so a snapshot
resyncs both to the same book by the same procedure; GAP and MISMATCH are returned under both at the
moment the book loses sync, so a caller can count and log them.

The buffer of diffs is bounded by count (``max_pending``) and by bytes (``max_pending_bytes``): each
diff is charged ``diff_state_bytes(diff)``, a cheap upper bound of its size in ``to_state()`` JSON
(fixed overhead, 6 bytes per character of the venue, 52 bytes per level: a level is ``[price,size],``
and orjson writes no float longer than 23 characters, 17 significant digits and an exponent like
``e-308``). The oldest diffs go first; a diff over the whole byte budget is not buffered. So the state
written to the changelog stays under ``max_state_bytes(depth, max_pending_bytes)`` (see ``OrderBook``),
whatever the records: no record can make it exceed a broker's record size limit.

Truncation. A book that keeps at most N levels per side (and a REST snapshot, which holds at most
its ``limit`` levels) cannot know a level beyond its last one that never changes afterwards: when
the levels in front of it are deleted (the market moves, or orders are cancelled) such a level can
surface inside the top N and the book does not have it (Binance's docs: "you won't learn the
quantities for the levels outside of the initial snapshot unless they change"). On the 2024-08-08
BTCUSDT spot capture a 500-level book meets exactly that about 8 minutes in: the price falls
through its levels and a bid it had cut off (the snapshot's 587th; its last change came while it
was still beyond the 500) becomes the best. Each side therefore carries a *proven
depth* (``BookSide.horizon``): the book equals the venue's book exactly at every price at least as
good as the horizon; beyond it, stored levels are exact at their own price but levels may be missing
between them. The horizon is the worst level of the last snapshot (an empty snapshot side proves
the side empty: no horizon), it moves inwards to the new worst level whenever the N-level bound
drops a proven level, and it moves outwards to the best level when a bookTicker with the book's own
update id confirms that level (nothing can hide in front of the venue's best). A side that never had a
snapshot proves nothing (an unsynced book built from diffs alone). Analytics read only the proven part
(``stream_processor.market.orderbook.analytics``); in an unsynced book "proven" holds only as far as no diff
was lost.

Prices are kept as floats. The venue sends decimal strings; ``float()`` rounds each correctly and
monotonically, so one string always gives one float, distinct prices of up to 15 significant digits
give distinct floats, and float order is price order: sorting is exact. orjson writes the shortest
repr that reads back to the same float, so a snapshot of the state restores every key bit for bit
(strings would round-trip too, but would need a decimal sort key and a float conversion on every
metric).

The changelog log. ``to_state()`` is the whole book, 33-44 KB of JSON for 1,000 levels a side, while a commit
interval changes a few dozen levels. ``start_log(epoch)`` begins a generation: the full state written next is its
base, and from then on each side records the prices a diff set or the depth bound dropped (``_touched``), in
segments that ``close_segment()`` freezes. ``segment_state(seq)`` is a segment as ``[price, size]`` pairs read
from the book when called (size 0: no level there now), ``head_state()`` everything but the levels. A book rebuilt
from the base (``from_state``) and given the head and every segment in order (``apply_log``) is the book: each
price ends with the size of the last segment that names it, written at or after its last change, or the base's.
When to begin a generation, close a segment and write what is the caller's choice
(``stream_processor/market/processors/orderbook.py``); a book that is not logging tracks nothing.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right, insort
from collections import deque
from enum import StrEnum
from typing import Any, ClassVar, Self

from stream_processor.market.models import BookTicker, DepthSnapshot, DepthUpdate, Level
from stream_processor.market.snapshot import MarketSnapshot

_INF = float("inf")
#: Deferred bookTickers kept while waiting for the diff that ends at their update id. Binance spot
#: diffs come in 100 ms batches while bookTicker is real time; the 2024-08-08/09 captures held at most
#: 192 tickers (USD-M BTCUSDT) between two diffs. Losing one only skips a check.
MAX_DEFERRED_TICKERS = 256
#: Longest symbol a book takes (characters); the symbol is written once in the state.
MAX_SYMBOL_LENGTH = 64
#: The resync policies (see the module docstring).
RESYNC_POLICIES = ("snapshot", "unsynced")

# Worst-case JSON sizes (orjson) the state-size bound is built from. Update ids, event times and
# counters are ints in orjson's range [-2**63, 2**64): at most 20 characters. A finite float is at
# most 23 characters (17 significant digits, a point and an exponent such as "e-308", or
# "0.0000" and 17 digits), 24 with a sign. A str takes at most 6 bytes per character ("\u001f").
_INT_BYTES = 20
_FLOAT_BYTES = 24
_ID_MIN, _ID_MAX = -(2**63), 2**64
#: ``[price,size],`` in a list of levels.
LEVEL_BYTES = 2 * _FLOAT_BYTES + 4
#: ``{"venue":"","U":,"u":,"pu":,"E":,"b":[],"a":[]},`` around a buffered diff's 4 ints and venue.
DIFF_FIXED_BYTES = 48 + 4 * _INT_BYTES
#: ``[u,bid,bid_size,ask,ask_size],``: one deferred bookTicker.
TICKER_BYTES = _INT_BYTES + 4 * _FLOAT_BYTES + 7
#: Everything in the state but levels, buffered diffs and deferred tickers (the symbol at its longest,
#: every int at 20 characters: 1,272 bytes, see tests/unit/market/orderbook/test_state_size.py), rounded up.
STATE_FIXED_BYTES = 2048


def diff_state_bytes(diff: DepthUpdate) -> int:
    """Upper bound of the bytes ``diff`` takes in ``OrderBook.to_state()`` JSON as a buffered diff (O(1))."""
    return DIFF_FIXED_BYTES + 6 * len(diff.venue) + LEVEL_BYTES * (len(diff.bids) + len(diff.asks))


def max_state_bytes(depth: int, max_pending_bytes: int) -> int:
    """Upper bound of ``len(orjson.dumps(book.to_state()))`` for any book of these parameters, any records.

    ``STATE_FIXED_BYTES + 2 * depth * LEVEL_BYTES + max_pending_bytes + MAX_DEFERRED_TICKERS * TICKER_BYTES``
    = ``2048 + 104 * depth + max_pending_bytes + 123 * 256``; 399,680 bytes for depth 1000 and 262,144.
    """
    return STATE_FIXED_BYTES + 2 * depth * LEVEL_BYTES + max_pending_bytes + MAX_DEFERRED_TICKERS * TICKER_BYTES


class BookStatus(StrEnum):
    """What ``OrderBook.apply`` did with one record (a str: JSON-safe)."""

    SNAPSHOT = "snapshot"  #: the book was replaced by a snapshot (and buffered diffs replayed); in sync
    APPLIED = "applied"  #: a diff was applied; in sync
    UNSYNCED = "unsynced"  #: out of sync, policy "unsynced": the diff was applied (and buffered for replay)
    STALE = "stale"  #: a diff (u <= last update id) or a snapshot older than the in-sync book: ignored
    BUFFERED = "buffered"  #: out of sync, policy "snapshot": the diff was kept for replay after the next snapshot
    DROPPED = "dropped"  #: out of sync, policy "snapshot": the diff alone exceeds max_pending_bytes, not kept
    GAP = "gap"  #: a sequence break: the book is now out of sync (diff buffered if it fits; "unsynced": applied)
    MATCH = "match"  #: a bookTicker at the book's update id agreed with the book's best bid and ask
    MISMATCH = "mismatch"  #: a bookTicker at the book's update id disagreed: the book is now out of sync
    DEFERRED = "deferred"  #: a bookTicker ahead of the book, kept to check the diff that reaches its id
    UNCHECKED = "unchecked"  #: a bookTicker behind the book or out of order: nothing to compare


class BookSide:
    """One side of the book: sizes (base units) by price (quote currency), best level first.

    Internally a price is stored under the key ``sign * price`` (``sign`` -1 for bids, +1 for asks),
    so the sorted key list runs best first on both sides: best level = ``keys[0]`` in O(1), a level
    is found, inserted or removed by ``bisect`` in O(log n) plus a memmove of at most n pointers.
    Proven region: keys ``<= _horizon`` (``inf`` = the whole side is known, ``-inf`` = nothing is: a
    side that never had a snapshot). ``_touched``: the keys a diff set or the depth bound dropped since the
    book's open changelog segment began (None: not tracked, see ``OrderBook.start_log``).
    """

    __slots__ = ("sign", "_keys", "_sizes", "_horizon", "_touched")

    def __init__(self, sign: float) -> None:
        self.sign = sign
        self._keys: list[float] = []
        self._sizes: dict[float, float] = {}
        self._horizon = -_INF
        self._touched: set[float] | None = None

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def horizon(self) -> float | None:
        """Worst price (quote currency) up to which this side is proven complete; None = whole side.

        ``inf`` for bids (``-inf`` for asks) when nothing is proven: no price is at least as good.
        """
        h = self._horizon
        return None if h == _INF else self.sign * h

    def best(self) -> Level | None:
        """The best level as ``(price, size)``, proven or not; None if the side is empty."""
        if not self._keys:
            return None
        k = self._keys[0]
        return (self.sign * k, self._sizes[k])

    def best_is_proven(self) -> bool:
        """True if the side has a level and its best level lies inside the proven depth."""
        return bool(self._keys) and self._keys[0] <= self._horizon

    def top(self, n: int) -> list[Level]:
        """Up to ``n`` stored levels ``(price, size)``, best first (proven or not)."""
        s, sizes = self.sign, self._sizes
        return [(s * k, sizes[k]) for k in self._keys[:n]]

    def levels(self) -> list[Level]:
        """Every stored level ``(price, size)``, best first."""
        return self.top(len(self._keys))

    def proven_count(self) -> int:
        """Number of stored levels inside the proven depth (O(log n))."""
        if self._horizon == _INF:
            return len(self._keys)
        return bisect_right(self._keys, self._horizon)

    def proven_top(self, n: int) -> list[Level] | None:
        """The ``n`` best levels if they are all proven (fewer if the whole side is known), else None."""
        count = self.proven_count()
        if count < n and self._horizon != _INF:
            return None
        return self.top(n)

    def within(self, limit_price: float) -> tuple[float, float] | None:
        """``(size, notional)`` of the levels at least as good as ``limit_price`` (inclusive).

        Size in base units, notional = sum(price * size) in quote currency. None when the range
        reaches beyond the proven depth (the sum could miss levels).
        """
        limit = self.sign * limit_price
        if limit > self._horizon:
            return None
        keys, sizes, s = self._keys, self._sizes, self.sign
        size = notional = 0.0
        for k in keys[: bisect_right(keys, limit)]:
            q = sizes[k]
            size += q
            notional += s * k * q
        return size, notional

    # -- mutation (OrderBook only) --------------------------------------------------------------

    def _load(self, levels: list[Level], depth: int) -> None:
        s = self.sign
        sizes = {s * p: q for p, q in levels if q != 0.0}
        keys = sorted(sizes)
        if len(keys) > depth:
            for k in keys[depth:]:
                del sizes[k]
            del keys[depth:]
        self._keys, self._sizes = keys, sizes
        self._horizon = keys[-1] if keys else _INF

    def _clear(self) -> None:
        self._keys, self._sizes, self._horizon = [], {}, -_INF

    def _update(self, levels: list[Level], depth: int) -> None:
        s, keys, sizes = self.sign, self._keys, self._sizes
        for p, q in levels:
            k = s * p
            if q == 0.0:
                if k in sizes:
                    del sizes[k]
                    del keys[bisect_left(keys, k)]
            elif k in sizes:
                sizes[k] = q
            else:
                sizes[k] = q
                insort(keys, k)
        touched = self._touched
        if touched is not None:
            touched.update([s * p for p, _ in levels])
        # A diff's levels all hold as of its last update id: trim once, after all of them.
        if len(keys) > depth:
            if keys[depth] <= self._horizon:  # a proven level goes: the proof now ends at the new worst
                self._horizon = keys[depth - 1]
            for k in keys[depth:]:
                del sizes[k]
            if touched is not None:
                touched.update(keys[depth:])
            del keys[depth:]

    def _confirm_best(self) -> None:
        if self._keys and self._keys[0] > self._horizon:
            self._horizon = self._keys[0]

    def _state(self, levels: bool = True) -> dict[str, Any]:
        h = "none" if self._horizon == -_INF else self.horizon
        return {"levels": [list(lv) for lv in self.levels()], "horizon": h} if levels else {"horizon": h}

    def _restore(self, state: dict[str, Any]) -> None:
        s = self.sign
        self._sizes = {s * float(p): float(q) for p, q in state["levels"]}
        self._keys = sorted(self._sizes)
        self._restore_horizon(state)

    def _restore_horizon(self, state: dict[str, Any]) -> None:
        h = state["horizon"]
        self._horizon = _INF if h is None else -_INF if h == "none" else self.sign * float(h)

    def _changes(self, keys: set[float] | array[float]) -> list[list[float]]:
        """``[price, size]`` of each key, best first, size 0.0 for a key no longer stored (a changelog segment)."""
        s, get = self.sign, self._sizes.get
        return [[s * k, get(k, 0.0)] for k in (keys if type(keys) is array else sorted(keys))]

    def _apply_changes(self, levels: list[list[float]]) -> None:
        """Set the sizes of a changelog segment (0 removes the level); the caller sorts the keys after."""
        s, sizes = self.sign, self._sizes
        for p, q in levels:
            k = s * float(p)
            if q == 0:
                sizes.pop(k, None)
            else:
                sizes[k] = float(q)


def _check_levels(levels: list[Level], what: str) -> None:
    for p, q in levels:
        if not (0.0 < p < _INF and 0.0 <= q < _INF):
            raise ValueError(f"{what}: bad level [{p!r}, {q!r}] (need 0 < price < inf, 0 <= size < inf)")


def _check_ids(what: str, *values: int | None) -> None:
    """Update ids and event times must fit orjson's ints (else the state could not be written)."""
    for v in values:
        if v is not None and not (_ID_MIN <= v < _ID_MAX):
            raise ValueError(f"{what}: id or time {v!r} out of range [-2**63, 2**64)")


def _check_int(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not (minimum <= value < 2**63):
        raise ValueError(f"{name} must be an int in [{minimum}, 2**63), got {value!r}")
    return value


#: A deferred bookTicker: ``(update_id, (bid, bid_size), (ask, ask_size))`` (its venue and time are not needed).
_Ticker = tuple[int, Level, Level]


class OrderBook(MarketSnapshot):
    """A bounded L2 book of one symbol, fed with DepthSnapshot, DepthUpdate and BookTicker records.

    Parameters: ``symbol`` (the records' ``symbol``, e.g. "BTCUSDT", at most ``MAX_SYMBOL_LENGTH``
    characters); ``depth`` (N >= 1, the most levels kept per side; deeper ones are dropped and the proven
    depth shrinks, see the module docstring); ``max_pending`` (>= 1, diffs buffered while out of sync)
    and ``max_pending_bytes`` (>= 1, the most ``diff_state_bytes`` they may take together): the oldest
    are dropped first (counted in ``dropped``), after which the next snapshot may have to be newer to
    resync; a diff over ``max_pending_bytes`` on its own is not buffered (counted in ``oversized``);
    ``resync``: "snapshot" or "unsynced", what the book does while out of sync (module docstring).

    State size: ``len(orjson.dumps(book.to_state())) <= max_state_bytes(depth, max_pending_bytes)``
    = ``2048 + 104 * depth + max_pending_bytes + 123 * MAX_DEFERRED_TICKERS`` (fixed part with the
    symbol, 2 sides of ``depth`` levels at 52 bytes, the buffered diffs, the deferred tickers at 123
    bytes), after any sequence of records: 399,680 bytes for depth 1000, max_pending_bytes 262,144.

    ``apply(record)`` returns a ``BookStatus``:

    - ``DepthSnapshot``: replaces the book (levels with size 0 are skipped, the best N kept), sets
      the update id, is in sync, checks a deferred ticker at its id, then replays the buffered diffs
      through the rules below: SNAPSHOT, or GAP if they do not chain onto it (a newer snapshot is
      needed), or MISMATCH. A snapshot older than the in-sync book's update id is STALE (replacing
      the book with it would break the chain for the next diff).
    - ``DepthUpdate``: in sync, ``u <= update id`` is STALE; the first diff after a snapshot must have
      ``U <= id + 1`` (or, USD-M, ``pu <= id``: the ids of the previous event are in the snapshot),
      later ones ``U == id + 1`` (spot) or ``pu == id`` (``prev_update_id`` given); then each level
      sets the new size, 0 removes it (APPLIED). A break is a GAP: out of sync, the diff buffered.
      Out of sync (also before the first snapshot) every diff is buffered, and then, under "snapshot",
      BUFFERED (DROPPED if too large to buffer); under "unsynced", applied without the chain check:
      UNSYNCED, or STALE if ``u <=`` the book's update id. Under "snapshot" losing sync drops the
      levels; under "unsynced" they are kept and the GAP diff is applied too.
    - ``BookTicker``: never changes a level. At the book's update id (in sync) its best bid and ask
      (price and size) must equal the book's: MATCH (the best levels become proven) or MISMATCH
      (the book is wrong: out of sync). A ticker ahead of the book is DEFERRED and checked when a
      diff ends at its id (that diff then returns MISMATCH instead of APPLIED if they disagree);
      one behind is UNCHECKED. Out of sync, "ahead" and "behind" refer to the last in-sync update id
      under both policies, so the same tickers wait for the snapshot's replay; under "unsynced" a
      ticker at the unsynced book's id is also compared with it (module docstring), statuses unchanged.

    Deliberate differences from Binance's recipes: USD-M drops only ``u < lastUpdateId`` and wants
    the first event to hold ``U <= lastUpdateId <= u``; here ``u == lastUpdateId`` is dropped as stale
    too (its levels are already in the snapshot) and the next event is accepted by ``pu <= id``
    (USD-M ids are not contiguous between events, so ``U <= id + 1`` can fail on a sound stream).
    Spot's newer recipe accepts any ``U <= id + 1``; this book wants ``U == id + 1`` exactly.

    Raises ValueError for a record of another symbol, a level with a price not in (0, inf) or a size
    not in [0, inf), an update id or event time outside [-2**63, 2**64) (checked before any change),
    and TypeError for another record type.
    Cost: O(k log n) per diff of k levels on an n-level side (plus list memmoves); memory O(N).
    """

    __slots__ = (
        "symbol",
        "depth",
        "max_pending",
        "max_pending_bytes",
        "resync",
        "bids",
        "asks",
        "_in_sync",
        "_fresh",
        "_last_update_id",
        "_sync_id",
        "_event_time_ms",
        "_pending",
        "_pending_bytes",
        "_tickers",
        "_counts",
        "log_epoch",
        "log_keys",
        "_segments",
        "_closed_levels",
        "_rewrite",
    )
    _params: ClassVar[tuple[str, ...]] = ("symbol", "depth", "max_pending", "max_pending_bytes", "resync")
    _COUNTS: ClassVar[tuple[str, ...]] = (
        "snapshots",
        "applied",
        "unsynced",
        "stale",
        "buffered",
        "dropped",
        "oversized",
        "gaps",
        "checks",
        "matches",
        "mismatches",
        "unsynced_checks",
        "unsynced_matches",
    )

    def __init__(
        self,
        symbol: str,
        depth: int = 1000,
        max_pending: int = 500,
        max_pending_bytes: int = 262_144,
        resync: str = "snapshot",
    ) -> None:
        if type(symbol) is not str or not 0 < len(symbol) <= MAX_SYMBOL_LENGTH:
            raise ValueError(f"symbol must be a str of 1 to {MAX_SYMBOL_LENGTH} characters, got {symbol!r:.80}")
        if resync not in RESYNC_POLICIES:
            raise ValueError(f"resync must be one of {RESYNC_POLICIES}, got {resync!r}")
        self.symbol = symbol
        self.depth = _check_int(depth, "depth", 1)
        self.max_pending = _check_int(max_pending, "max_pending", 1)
        self.max_pending_bytes = _check_int(max_pending_bytes, "max_pending_bytes", 1)
        self.resync = str(resync)
        self.bids = BookSide(-1.0)
        self.asks = BookSide(1.0)
        self._in_sync = False
        self._fresh = True
        self._last_update_id: int | None = None
        self._sync_id: int | None = None
        self._event_time_ms: int | None = None
        self._pending: deque[DepthUpdate] = deque()
        self._pending_bytes = 0
        self._tickers: deque[_Ticker] = deque(maxlen=MAX_DEFERRED_TICKERS)
        self._counts = dict.fromkeys(self._COUNTS, 0)
        # The changelog log (see "State in the changelog"): what the caller keeps, not part of the book's state.
        self.log_epoch: int | None = None  #: generation of the last base written; None: none with a generation
        self.log_keys = 0  #: segments 0 .. log_keys - 1 may have records in the changelog (tombstoned at start_log)
        # The closed segments' keys (bids, asks), sorted: 8 bytes a price (a set takes about 60 with its floats).
        self._segments: list[tuple[array[float], array[float]]] = []
        self._closed_levels = 0
        self._rewrite = False

    # -- read side --------------------------------------------------------------------------------

    @property
    def in_sync(self) -> bool:
        """True when the book is in sync: a snapshot was applied and no gap or mismatch seen since.

        Under the "snapshot" policy only an in-sync book may be read; under "unsynced" one that is not
        holds the levels the diffs seen since tell (see the module docstring).
        """
        return self._in_sync

    @property
    def last_update_id(self) -> int | None:
        """Update id the book is at (the last applied diff's ``u`` or the snapshot's), None before any."""
        return self._last_update_id

    @property
    def event_time_ms(self) -> int | None:
        """Venue event time (ms since epoch, UTC) of the last applied diff or snapshot, if known."""
        return self._event_time_ms

    @property
    def counts(self) -> dict[str, int]:
        """Counters since creation: snapshots, applied (in sync), unsynced (applied out of sync), stale,
        buffered, dropped (from the buffer, oldest first), oversized (not buffered), gaps, checks, matches,
        mismatches (in sync), unsynced_checks, unsynced_matches (bookTickers compared while unsynced)."""
        return dict(self._counts)

    @property
    def pending(self) -> int:
        """Number of diffs buffered for the next snapshot."""
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        """Sum of ``diff_state_bytes`` of the buffered diffs (<= ``max_pending_bytes``)."""
        return self._pending_bytes

    # -- write side -------------------------------------------------------------------------------

    def apply(self, record: DepthSnapshot | DepthUpdate | BookTicker) -> BookStatus:
        """Feed one record of this symbol; return what was done with it (see the class docstring)."""
        kind = type(record)
        if kind is DepthUpdate or kind is DepthSnapshot or kind is BookTicker:
            if record.symbol != self.symbol:
                raise ValueError(f"OrderBook({self.symbol!r}) got a record of {record.symbol!r}")
        else:
            raise TypeError(f"OrderBook.apply takes DepthSnapshot, DepthUpdate or BookTicker, got {kind.__name__}")
        if kind is DepthUpdate:
            _check_levels(record.bids, "depth update bids")
            _check_levels(record.asks, "depth update asks")
            _check_ids(
                "depth update",
                record.first_update_id,
                record.last_update_id,
                record.prev_update_id,
                record.event_time_ms,
            )
            if not self._in_sync:
                return self._out_of_sync(record)
            return self._step(record)
        if kind is DepthSnapshot:
            return self._snapshot(record)
        return self._ticker(record)

    def _buffer(self, diff: DepthUpdate) -> bool:
        """Keep ``diff`` for the next snapshot's replay, within both bounds; False if it alone is too large."""
        size = diff_state_bytes(diff)
        if size > self.max_pending_bytes:
            self._counts["oversized"] += 1
            return False
        pending = self._pending
        pending.append(diff)
        self._pending_bytes += size
        self._counts["buffered"] += 1
        while len(pending) > self.max_pending or self._pending_bytes > self.max_pending_bytes:
            self._pending_bytes -= diff_state_bytes(pending.popleft())
            self._counts["dropped"] += 1
        return True

    def _out_of_sync(self, diff: DepthUpdate) -> BookStatus:
        kept = self._buffer(diff)
        if self.resync == "snapshot":
            return BookStatus.BUFFERED if kept else BookStatus.DROPPED
        last = self._last_update_id
        if last is not None and diff.last_update_id <= last:
            self._counts["stale"] += 1
            return BookStatus.STALE
        self._apply_levels(diff)
        self._counts["unsynced"] += 1
        u, tickers = diff.last_update_id, self._tickers
        i = bisect_left(tickers, (u,))  # deferred tickers stay for the replay; the one at u is compared
        if i < len(tickers) and tickers[i][0] == u:
            self._check_unsynced(tickers[i])
        return BookStatus.UNSYNCED

    def _apply_levels(self, diff: DepthUpdate) -> None:
        self.bids._update(diff.bids, self.depth)
        self.asks._update(diff.asks, self.depth)
        self._last_update_id = diff.last_update_id
        self._event_time_ms = diff.event_time_ms

    def _desync(self) -> None:
        self._in_sync = False
        self._fresh = True
        if self.resync == "snapshot":
            self.bids._clear()
            self.asks._clear()
            self._rewrite = True

    def _step(self, diff: DepthUpdate) -> BookStatus:
        last = self._last_update_id
        u = diff.last_update_id
        if u <= last:
            self._counts["stale"] += 1
            return BookStatus.STALE
        pu = diff.prev_update_id
        if self._fresh:
            ok = diff.first_update_id <= last + 1 or (pu is not None and pu <= last)
        elif pu is not None:
            ok = pu == last
        else:
            ok = diff.first_update_id == last + 1
        if not ok:
            self._counts["gaps"] += 1
            self._desync()
            self._out_of_sync(diff)
            return BookStatus.GAP
        self._apply_levels(diff)
        self._sync_id = u
        self._fresh = False
        self._counts["applied"] += 1
        tickers = self._tickers
        while tickers and tickers[0][0] < u:
            tickers.popleft()
        if tickers and tickers[0][0] == u and not self._check(tickers.popleft()):
            return BookStatus.MISMATCH
        return BookStatus.APPLIED

    def _snapshot(self, snap: DepthSnapshot) -> BookStatus:
        _check_levels(snap.bids, "depth snapshot bids")
        _check_levels(snap.asks, "depth snapshot asks")
        _check_ids("depth snapshot", snap.last_update_id, snap.event_time_ms)
        if self._in_sync and snap.last_update_id < self._last_update_id:
            self._counts["stale"] += 1
            return BookStatus.STALE
        self.bids._load(snap.bids, self.depth)
        self.asks._load(snap.asks, self.depth)
        self._rewrite = True
        self._last_update_id = self._sync_id = snap.last_update_id
        self._event_time_ms = snap.event_time_ms
        self._in_sync = True
        self._fresh = True
        self._counts["snapshots"] += 1
        tickers = self._tickers
        while tickers and tickers[0][0] < snap.last_update_id:
            tickers.popleft()
        status = BookStatus.SNAPSHOT
        if tickers and tickers[0][0] == snap.last_update_id and not self._check(tickers.popleft()):
            status = BookStatus.MISMATCH
        buffered, self._pending, self._pending_bytes = self._pending, deque(), 0
        counts = self._counts
        for diff in buffered:
            if self._in_sync:
                if (step := self._step(diff)) is BookStatus.GAP or step is BookStatus.MISMATCH:
                    status = step
                continue
            # Out of sync again: the rest waits for a newer snapshot (applied as it comes under "unsynced").
            before = counts["buffered"]
            self._out_of_sync(diff)
            counts["buffered"] = before  # kept again, not newly buffered
        return status

    def _ticker(self, ticker: BookTicker) -> BookStatus:
        for what, p, q in (("bid", ticker.bid_price, ticker.bid_size), ("ask", ticker.ask_price, ticker.ask_size)):
            if not (0.0 < p < _INF and 0.0 <= q < _INF):
                raise ValueError(f"book ticker {what}: bad level [{p!r}, {q!r}]")
        _check_ids("book ticker", ticker.update_id)
        u = ticker.update_id
        last = self._sync_id  # out of sync under "unsynced", the book's own id moves on: not this one
        t = (u, (ticker.bid_price, ticker.bid_size), (ticker.ask_price, ticker.ask_size))
        if self._in_sync and u == last:
            return BookStatus.MATCH if self._check(t) else BookStatus.MISMATCH
        if not self._in_sync and u == self._last_update_id and self.resync == "unsynced":
            self._check_unsynced(t)  # behind or ahead of the in-sync id, the status below says the same
        if last is not None and u <= last:
            return BookStatus.UNCHECKED
        tickers = self._tickers
        if tickers and u <= tickers[-1][0]:
            return BookStatus.UNCHECKED
        tickers.append(t)
        return BookStatus.DEFERRED

    def _check(self, ticker: _Ticker) -> bool:
        """Compare a ticker at the book's update id with the book's best levels; desync on mismatch."""
        self._counts["checks"] += 1
        if self.bids.best() == ticker[1] and self.asks.best() == ticker[2]:
            self._counts["matches"] += 1
            self.bids._confirm_best()
            self.asks._confirm_best()
            return True
        self._counts["mismatches"] += 1
        self._desync()
        if self.resync == "unsynced":
            self._check_unsynced(ticker, count=False)
        return False

    def _check_unsynced(self, ticker: _Ticker, count: bool = True) -> None:
        """Unsynced book, ticker at its update id: each side's best becomes proven if it agrees, else nothing is."""
        ok = True
        for side, level in ((self.bids, ticker[1]), (self.asks, ticker[2])):
            if side.best() == level:
                side._confirm_best()
            else:
                side._horizon = -_INF
                ok = False
        if count:
            self._counts["unsynced_checks"] += 1
            self._counts["unsynced_matches"] += ok

    # -- state ------------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """Snapshot of the full state as a JSON-safe dict (survives an orjson round trip).

        Levels are ``[price, size]`` float pairs best first; a side's horizon is a price, None (the
        whole side is known) or "none" (nothing is proven); buffered diffs are stored with their fields,
        deferred tickers as ``[update_id, bid, bid_size, ask, ask_size]``. Its JSON size is bounded by
        ``max_state_bytes(depth, max_pending_bytes)``.
        """
        return self._state(levels=True)

    def _state(self, levels: bool) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "depth": self.depth,
            "max_pending": self.max_pending,
            "max_pending_bytes": self.max_pending_bytes,
            "resync": self.resync,
            "in_sync": self._in_sync,
            "fresh": self._fresh,
            "last_update_id": self._last_update_id,
            "sync_id": self._sync_id,
            "event_time_ms": self._event_time_ms,
            "pending_bytes": self._pending_bytes,
            "bids": self.bids._state(levels),
            "asks": self.asks._state(levels),
            "pending": [
                {
                    "venue": d.venue,
                    "U": d.first_update_id,
                    "u": d.last_update_id,
                    "pu": d.prev_update_id,
                    "E": d.event_time_ms,
                    "b": [list(lv) for lv in d.bids],
                    "a": [list(lv) for lv in d.asks],
                }
                for d in self._pending
            ],
            "tickers": [[u, b[0], b[1], a[0], a[1]] for u, b, a in self._tickers],
            "counts": dict(self._counts),
        }

    _FIELDS: ClassVar[tuple[str, ...]] = (
        "in_sync",
        "fresh",
        "last_update_id",
        "sync_id",
        "event_time_ms",
        "pending_bytes",
        "bids",
        "asks",
        "pending",
        "tickers",
        "counts",
    )

    @classmethod
    def _check_state(cls, state: dict[str, Any], what: str = "state") -> None:
        if type(state) is not dict:
            raise ValueError(f"{cls.__name__} {what} must be a JSON object, got {type(state).__name__}")
        missing = [name for name in (*cls._params, *cls._FIELDS) if name not in state]
        if missing:
            raise ValueError(f"{cls.__name__} {what} misses {missing}")

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild a book from ``to_state()``; it continues with statuses and levels identical to the original.

        Raises ValueError when the snapshot misses a field, or its
        buffered diffs do not add up to its ``pending_bytes``.
        """
        cls._check_state(state)
        book = cls(**{name: state[name] for name in cls._params})
        book.bids._restore(state["bids"])
        book.asks._restore(state["asks"])
        book._restore_fields(state)
        return book

    def _restore_fields(self, state: dict[str, Any]) -> None:
        """Everything of a ``_state`` but the parameters and the levels."""
        self._in_sync = bool(state["in_sync"])
        self._fresh = bool(state["fresh"])
        self._last_update_id = state["last_update_id"]
        self._sync_id = state["sync_id"]
        self._event_time_ms = state["event_time_ms"]
        self.bids._restore_horizon(state["bids"])
        self.asks._restore_horizon(state["asks"])
        sym = self.symbol
        self._pending = deque(
            DepthUpdate(
                d["venue"],
                sym,
                d["U"],
                d["u"],
                [(float(p), float(q)) for p, q in d["b"]],
                [(float(p), float(q)) for p, q in d["a"]],
                d["E"],
                d["pu"],
            )
            for d in state["pending"]
        )
        self._pending_bytes = sum(map(diff_state_bytes, self._pending))
        if self._pending_bytes != state["pending_bytes"]:
            raise ValueError(
                f"{type(self).__name__} state: buffered diffs take {self._pending_bytes} bytes, "
                f"the state says {state['pending_bytes']}"
            )
        self._tickers = deque(
            ((u, (float(bp), float(bs)), (float(ap), float(asz))) for u, bp, bs, ap, asz in state["tickers"]),
            maxlen=MAX_DEFERRED_TICKERS,
        )
        self._counts = dict.fromkeys(self._COUNTS, 0)
        self._counts.update({name: int(state["counts"].get(name, 0)) for name in self._COUNTS})

    # -- the changelog log (see "State in the changelog" in the module docstring) -------------------

    @property
    def logging(self) -> bool:
        """True while level changes are tracked into segments (from ``start_log`` until the book is rebuilt)."""
        return self.bids._touched is not None

    def start_log(self, epoch: int) -> None:
        """Begin generation ``epoch``: the full state written next is its base, later level changes go to segments.

        Drops the segments of the previous generation (the caller tombstones their records: ``log_keys``)."""
        self.log_epoch = epoch
        self.log_keys = 0
        self._segments = []
        self._closed_levels = 0
        self.bids._touched, self.asks._touched = set(), set()
        self._rewrite = False

    @property
    def rewrite_due(self) -> bool:
        """True if a snapshot or a loss of sync replaced the levels wholesale since ``start_log``: a segment would
        be as large as the base."""
        return self._rewrite

    @property
    def open_segment(self) -> int:
        """The sequence number of the segment level changes go to now."""
        return len(self._segments)

    def open_levels(self) -> int:
        """Prices in the open segment (0 when not logging)."""
        touched = self.bids._touched
        return 0 if touched is None else len(touched) + len(self.asks._touched)  # type: ignore[arg-type]

    def logged_levels(self) -> int:
        """Prices in every segment of the generation (a price changed in two segments counts twice)."""
        return self._closed_levels + self.open_levels()

    def segment_count(self) -> int:
        """Segments of the generation that hold a change (the closed ones and a non-empty open one)."""
        return len(self._segments) + (self.open_levels() > 0)

    def close_segment(self) -> None:
        """Freeze the open segment; later changes go to the next one."""
        bids, asks = self.bids, self.asks
        if bids._touched is None or asks._touched is None:
            raise ValueError("close_segment: the book is not logging (call start_log first)")
        self._segments.append((array("d", sorted(bids._touched)), array("d", sorted(asks._touched))))
        self._closed_levels += len(bids._touched) + len(asks._touched)
        bids._touched, asks._touched = set(), set()

    def segment_state(self, seq: int) -> dict[str, Any]:
        """Segment ``seq`` of the generation: ``{"epoch", "seq", "bids", "asks"}``, each side the ``[price, size]``
        now stored at every price the segment changed (0.0: removed), best first.

        Sizes are read when called: a closed segment written again later holds newer sizes, which a later segment
        sets again anyway, so replaying the segments in order gives the book (see the module docstring)."""
        if seq < len(self._segments):
            bid_keys, ask_keys = self._segments[seq]
        elif seq == len(self._segments) and self.bids._touched is not None:
            bid_keys, ask_keys = self.bids._touched, self.asks._touched  # type: ignore[assignment]
        else:
            raise ValueError(f"no segment {seq} (the generation has {len(self._segments) + 1})")
        return {"epoch": self.log_epoch, "seq": seq, "bids": self.bids._changes(bid_keys),
                "asks": self.asks._changes(ask_keys)}

    def head_state(self) -> dict[str, Any]:
        """Everything of ``to_state()`` but the levels (each side keeps its ``horizon``), with ``epoch`` (the
        generation) and ``segments`` (how many segments of it hold changes)."""
        state = self._state(levels=False)
        state["epoch"] = self.log_epoch
        state["segments"] = self.segment_count()
        return state

    def apply_log(self, head: dict[str, Any], segments: list[dict[str, Any]]) -> None:
        """Bring a book rebuilt from its generation's base up to date: replay ``segments`` (0 ..
        ``head["segments"] - 1``, in order), then take every other field from ``head``. Logging stops: the
        next full state written must be a new base.

        Raises ValueError when the head is not of this book and its generation, or a segment is missing or of
        another generation (the book unchanged), or a field cannot be read (the book half updated: drop it).
        """
        self._check_state(head, "log head")
        epoch = head.get("epoch")
        if epoch is None or epoch != self.log_epoch:
            raise ValueError(f"log head of generation {epoch!r} cannot update a base of generation {self.log_epoch!r}")
        if any(head[name] != getattr(self, name) for name in self._params):
            raise ValueError(f"log head of {[head[n] for n in self._params]} cannot update the book "
                             f"{[getattr(self, n) for n in self._params]}")
        if len(segments) != head["segments"]:
            raise ValueError(f"log head names {head['segments']} segments, {len(segments)} given")
        for seq, segment in enumerate(segments):
            if segment.get("epoch") != epoch or segment.get("seq") != seq:
                raise ValueError(f"segment {seq} of generation {epoch}: got segment {segment.get('seq')!r} of "
                                 f"generation {segment.get('epoch')!r}")
        self._restore_fields(head)  # first: it checks what it reads
        for segment in segments:
            self.bids._apply_changes(segment["bids"])
            self.asks._apply_changes(segment["asks"])
        for side in (self.bids, self.asks):
            side._keys = sorted(side._sizes)
            side._touched = None
        self._segments, self._closed_levels, self._rewrite = [], 0, False

    def __repr__(self) -> str:
        return (
            f"OrderBook({self.symbol!r}, depth={self.depth}, resync={self.resync!r}) in_sync={self._in_sync} "
            f"update_id={self._last_update_id} levels={len(self.bids)}/{len(self.asks)} pending={len(self._pending)}"
        )
