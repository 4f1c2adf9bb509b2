"""Streaming order blocks, breaker blocks and their invalidation over the swing events, without lookahead."""

from __future__ import annotations

from bisect import insort

from stream_processor.engine.snapshot import Snapshot
from stream_processor.market.models import Kline
from stream_processor.market.smc.events import STARTUP_CANDLES, Candle, CandleWindow, Event, as_candle, f32
from stream_processor.market.smc.swings import check_swing_length

# Swing record: [index, level, open_time_ms, crossed, then of the candle with the extreme low (bullish) or high
# (bearish) among the candles after the swing tested so far: its index, low, high, open_time_ms]
_IDX, _LVL, _TIME, _CROSSED, _EXT_IDX, _EXT_LOW, _EXT_HIGH, _EXT_TIME = range(8)
# Block record: [index, open_time_ms, top, bottom, float32 top, float32 bottom, breaker, swing index,
#                formed index, volume, percentage, mitigated index, sequence number]
_B_IDX, _B_TIME, _B_TOP, _B_BOT, _B_TOP32, _B_BOT32, _B_BREAKER, _B_SWING, _B_FORMED, _B_VOL, _B_PCT, _B_MIT, _B_SEQ = (
    range(13)
)
_O, _H, _L, _C, _V, _T = range(6)


class OrderBlocks(Snapshot):
    """Order blocks of ``smartmoneyconcepts.smc.ob(ohlc, swings, close_mitigation)`` (v0.0.27), streamed.

    Input: each closed candle with the swing events ``SwingDetector`` emitted for it (``update(candle, swing_events)``).

    Definition (the reference's, bullish; bearish mirrored): at candle ``c``, let ``p`` be the last swing high
    with index < c. If ``close[c] > high[p]`` and p has not been crossed before, p is crossed and the block is the
    candle with the lowest low in ``p+1 .. c-1`` (the last one on a tie; candle ``c-1`` when that range is
    empty), with ``top`` = its high, ``bottom`` = its low, ``volume`` = volume of c, c-1 and c-2, ``percentage``
    = min(vol[c-2], vol[c] + vol[c-1]) / max(...) * 100 (100 when both are 0). Then, candle by candle, an
    unmitigated bullish block is mitigated (becomes a breaker block) when the low (``close_mitigation``: the
    lower of open and close) goes below ``bottom``; the reference records ``MitigatedIndex`` = that candle - 1
    for bullish blocks but = that candle for bearish ones (kept here as ``mitigated_index``; the real candle is
    ``mitigating_index``). A bullish breaker block whose high later goes above ``top`` is removed from the
    reference's output. Bearish: swing lows, ``close < low[p]``, the highest high in between, mitigated when the
    high (the higher of open and close) goes above ``top``, removed when the low goes below ``bottom``. Like the
    reference, prices are compared against ``top``/``bottom`` rounded to float32.

    Streaming: swings are known ``swing_length`` (L) candles late, so the block test of candle c runs at the close
    of candle ``c + L - 1`` (confirmation delay: L-1 candles; by then every swing before c is known); a block found
    then is replayed over candles ``c+1 ..`` now for its mitigation. Mitigation and invalidation of known blocks
    are tested at every close (no delay).

    Swing pruning: the reference uses its final swings. When the latest swing ``p`` is replaced by a more extreme
    one ``p2`` (``swing_replaced``), the reference has no swing at p: the block found from p, if any, is retracted
    (``order_block_cancelled``), and candles ``p+1 .. p2`` are tested again against the swing before p (the
    previous swing of that type, which is final), which can yield a block late. For that the detector keeps the
    candles since the latest swing (at most ``STARTUP_CANDLES``; a replacement further back than that is not
    replayed).

    Events: ``order_block`` (``top``, ``bottom``, ``volume``, ``percentage``, ``swing_index``, ``formed_index`` =
    c), ``order_block_mitigated`` (``mitigated_index``, ``mitigating_index``), ``breaker_invalidated``
    (``invalidated_index``), ``order_block_cancelled`` (``replaced_by_index``); all carry ``top``, ``bottom``,
    ``swing_index``, ``formed_index``, ``mitigated_index``.

    Quirk kept: when the block is the candle right after the swing (only possible for the synthetic candle-0
    swing of ``SwingDetector(mark_first_bar=True)``), the reference's bullish block has ``top`` = that candle's
    low and ``bottom`` = its high; so does this one.

    Difference from the reference, by design: the reference runs the bullish pass over all candles, then the
    bearish pass, over shared arrays, so a candle holding both a bullish and a bearish block shows only the
    bearish one, and a bearish block inherits the breaker flag the bullish pass left on its candle (set at any
    time, even later); here the two directions are independent.

    Bounds: at most ``max_active`` live (unremoved) blocks per direction, the oldest dropped beyond that
    without an event. Live blocks are kept sorted by the price that mitigates (breakers: invalidates) them, so a
    candle costs O(log n + blocks it touches) plus list inserts; memory O(live blocks + candles since the
    latest swing).
    """

    __slots__ = (
        "swing_length", "close_mitigation", "max_active",
        "_count", "_window", "_started", "_cursor", "_queue", "_last_swing",
        "_top", "_top_prev", "_btm", "_btm_prev", "_seq",
        "_bull_live", "_bull_breakers", "_bear_live", "_bear_breakers",
    )  # fmt: skip
    _params = ("swing_length", "close_mitigation", "max_active")

    def __init__(self, swing_length: int = 5, close_mitigation: bool = False, max_active: int = 1000) -> None:
        self.swing_length = check_swing_length(swing_length)
        self.close_mitigation = bool(close_mitigation)
        if isinstance(max_active, bool) or not isinstance(max_active, int) or max_active < 1:
            raise ValueError(f"max_active must be an int >= 1, got {max_active!r}")
        self.max_active = max_active
        self._count = 0
        self._window = CandleWindow(STARTUP_CANDLES, STARTUP_CANDLES)
        self._started = False
        self._cursor = 0  # next candle to test for a new block
        self._queue: list[list] = []  # known swings not yet before the cursor: [direction, index, level, time]
        self._last_swing = 0  # index of the latest swing (the one that can still be replaced)
        self._top: list | None = None  # last swing high before the cursor
        self._top_prev: list | None = None  # the swing high before it (final)
        self._btm: list | None = None  # last swing low before the cursor
        self._btm_prev: list | None = None
        self._seq = 0  # blocks found so far
        # Entries [key, sequence number, block], sorted: unmitigated bullish blocks by float32 bottom, bullish
        # breakers by float32 top, unmitigated bearish blocks by float32 top, bearish breakers by float32 bottom.
        self._bull_live: list[list] = []
        self._bull_breakers: list[list] = []
        self._bear_live: list[list] = []
        self._bear_breakers: list[list] = []

    @property
    def live_blocks(self) -> int:
        """Number of blocks not removed yet (both directions, breakers included)."""
        return len(self._bull_live) + len(self._bull_breakers) + len(self._bear_live) + len(self._bear_breakers)

    def active(self) -> list[tuple[int, float, float, int, int]]:
        """Every unmitigated block (not a breaker, not removed) as ``(direction, top, bottom, index, open_time_ms)``.

        ``direction`` +1 bullish / -1 bearish, ``top`` / ``bottom`` as in the ``order_block`` event (quote
        currency, float64; the candle-0 quirk block can have ``top < bottom``, see above), ``index`` /
        ``open_time_ms`` the block's candle; bullish blocks first, each direction in the order of the price that
        mitigates it (float32 bottom ascending / float32 top ascending). A new list: read only. O(live blocks).
        """
        blocks = [(1, e[2][_B_TOP], e[2][_B_BOT], e[2][_B_IDX], e[2][_B_TIME]) for e in self._bull_live]
        blocks += [(-1, e[2][_B_TOP], e[2][_B_BOT], e[2][_B_IDX], e[2][_B_TIME]) for e in self._bear_live]
        return blocks

    def nearest(self, price: float) -> tuple[tuple | None, tuple | None, tuple | None]:
        """``(above, inside, below)``: the unmitigated blocks (those of ``active()``) nearest to ``price``.

        Each is None or ``(direction, top, bottom, index, open_time_ms)`` with ``top >= bottom`` (the candle-0
        quirk block's bounds put in order). A block spans the closed range ``[bottom, top]``: ``inside`` holds
        ``price`` (the latest such block: highest ``index``), ``above`` is the one with the lowest ``bottom >
        price``, ``below`` the one with the highest ``top < price``; ties: the highest ``index``, then bullish.
        Read only; O(live blocks), no copy.
        """
        inf = float("inf")
        a_bot, a, i_idx, inside, b_top, b = inf, None, -1, None, -inf, None
        for direction, entries in ((1, self._bull_live), (-1, self._bear_live)):
            for e in entries:
                blk = e[2]
                top, bottom, index = blk[_B_TOP], blk[_B_BOT], blk[_B_IDX]
                if top < bottom:
                    top, bottom = bottom, top
                if bottom > price:
                    if bottom < a_bot or (bottom == a_bot and index > a[3]):
                        a_bot, a = bottom, (direction, top, bottom, index, blk[_B_TIME])
                elif top < price:
                    if top > b_top or (top == b_top and index > b[3]):
                        b_top, b = top, (direction, top, bottom, index, blk[_B_TIME])
                elif index > i_idx:
                    i_idx, inside = index, (direction, top, bottom, index, blk[_B_TIME])
        return a, inside, b

    def update(self, candle: Candle | Kline | tuple, swing_events: list[Event]) -> list[Event]:
        """Consume the next closed candle and its swing events; return the order-block events it confirms.

        Raises ValueError for an invalid candle (see ``as_candle``), one not later than the previous one, or
        swing events that do not follow the swing stream.
        """
        return self.step(as_candle(candle), swing_events)

    def step(self, c: Candle, swing_events: list[Event]) -> list[Event]:
        """``update`` for a ``Candle`` already validated by ``as_candle`` (what ``SmcDetector`` passes)."""
        window = self._window
        window.append(c)
        t = self._count
        self._count = t + 1
        events: list[Event] = []
        if self.live_blocks:
            self._scan(window.row(t), t, c.open_time_ms, events)
        for ev in swing_events:
            self._on_swing(ev, t, c.open_time_ms, events)
        if swing_events:
            self._started = True
        if self._started:
            last = t - self.swing_length + 1
            while self._cursor <= last:
                self._advance(self._cursor, t, c.open_time_ms, events)
                self._cursor += 1
            window.bound()
            # Keep candles c-2 .. t for the block test, and the latest swing's p-1 .. for a replay after it.
            window.drop_before(min(self._cursor, self._last_swing) - 2)
        return events

    def _on_swing(self, ev: Event, t: int, t_ms: int, events: list[Event]) -> None:
        kind = ev["type"]
        direction = ev["direction"]
        if kind == "swing_replaced":
            last = self._top if direction == 1 else self._btm
            if last is None or last[_IDX] != ev["index"]:
                raise ValueError(f"swing_replaced of candle {ev['index']} does not name the latest swing")
            for entries in self._lists(direction):
                found = next((e for e in entries if e[2][_B_SWING] == ev["index"]), None)
                if found is not None:
                    entries.remove(found)
                    new = ev["replaced_by_index"]
                    events.append(
                        self._event("order_block_cancelled", direction, found[2], t, t_ms, replaced_by_index=new)
                    )
                    break
            prev = self._top_prev if direction == 1 else self._btm_prev
            if prev is not None and not prev[_CROSSED] and self._window.start <= ev["index"] - 1:
                for cur in range(ev["index"] + 1, ev["replaced_by_index"] + 1):
                    self._test(direction, prev, cur, t, t_ms, events)
            if direction == 1:
                self._top = None
            else:
                self._btm = None
        elif kind in ("swing_high", "swing_low"):
            self._queue.append([direction, ev["index"], ev["level"], ev["open_time_ms"]])
            self._last_swing = ev["index"]
        else:
            raise ValueError(f"not a swing event: {kind!r}")

    def _advance(self, cur: int, t: int, t_ms: int, events: list[Event]) -> None:
        """The reference's step for candle ``cur`` (after its swings before ``cur`` are known)."""
        queue = self._queue
        while queue and queue[0][1] < cur:
            direction, index, level, time_ms = queue.pop(0)
            rec = [index, level, time_ms, False, None, 0.0, 0.0, 0]
            if direction == 1:
                if self._top is not None:
                    self._top_prev = self._top
                self._top = rec
            else:
                if self._btm is not None:
                    self._btm_prev = self._btm
                self._btm = rec
        if self._top is not None:
            self._test(1, self._top, cur, t, t_ms, events)
        if self._btm is not None:
            self._test(-1, self._btm, cur, t, t_ms, events)

    def _test(self, direction: int, rec: list, cur: int, t: int, t_ms: int, events: list[Event]) -> None:
        """Test candle ``cur`` against swing ``rec`` (a block when it closes beyond it first), then track extremes."""
        window = self._window
        row = window.row(cur)
        close = row[_C]
        if not rec[_CROSSED] and (close > rec[_LVL] if direction == 1 else close < rec[_LVL]):
            rec[_CROSSED] = True
            if cur - rec[_IDX] > 1:
                ob = rec[_EXT_IDX:]
            else:
                # The block is the swing's own candle. The reference swaps top and bottom there for a bullish
                # block (kept, for parity); only the synthetic candle-0 swing can get here: a real swing high
                # is at least as high as the next candle's close.
                prev = window.row(cur - 1)
                low, high = (prev[_H], prev[_L]) if direction == 1 else (prev[_L], prev[_H])
                ob = [cur - 1, low, high, prev[_T]]
            self._new_block(direction, ob, rec[_IDX], cur, t, t_ms, events)
        # the extreme of candles index+1 .. cur (ties: the last one), for the test of the next candle
        if rec[_EXT_IDX] is None or (row[_L] <= rec[_EXT_LOW] if direction == 1 else row[_H] >= rec[_EXT_HIGH]):
            rec[_EXT_IDX:] = [cur, row[_L], row[_H], row[_T]]

    def _new_block(self, direction: int, ob: list, swing: int, cur: int, t: int, t_ms: int, events: list) -> None:
        """Record the block ``ob`` = [index, low, high, open_time_ms] found at candle ``cur``; replay it to ``t``."""
        window = self._window
        vol_cur = window.row(cur)[_V]
        vol_prev1 = window.row(cur - 1)[_V]
        vol_prev2 = window.row(cur - 2)[_V] if cur >= 2 else 0.0
        if direction == 1:
            low_vol, high_vol = vol_prev2, vol_cur + vol_prev1
        else:
            low_vol, high_vol = vol_cur + vol_prev1, vol_prev2
        big = max(high_vol, low_vol)
        pct = min(high_vol, low_vol) / big * 100.0 if big != 0 else 100.0
        index, bottom, top, time_ms = ob
        volume = vol_cur + vol_prev1 + vol_prev2
        block = [index, time_ms, top, bottom, f32(top), f32(bottom), False, swing, cur, volume, pct, None, self._seq]
        self._seq += 1
        events.append(self._event("order_block", direction, block, t, t_ms, volume=volume, percentage=pct))
        for j in range(cur + 1, t + 1):
            if self._touch(block, direction, window.row(j), j, t, t_ms, events):
                return
        self._insert(direction, block)
        lists = self._lists(direction)
        if len(lists[0]) + len(lists[1]) > self.max_active:
            oldest = min((e for entries in lists for e in entries), key=lambda e: e[1])
            next(entries for entries in lists if oldest in entries).remove(oldest)

    def _lists(self, direction: int) -> tuple[list[list], list[list]]:
        if direction == 1:
            return self._bull_live, self._bull_breakers
        return self._bear_live, self._bear_breakers

    def _insert(self, direction: int, b: list) -> None:
        if b[_B_BREAKER]:
            entries, key = (self._bull_breakers, b[_B_TOP32]) if direction == 1 else (self._bear_breakers, b[_B_BOT32])
        else:
            entries, key = (self._bull_live, b[_B_BOT32]) if direction == 1 else (self._bear_live, b[_B_TOP32])
        insort(entries, [key, b[_B_SEQ], b])

    def _scan(self, row: list, t: int, t_ms: int, events: list[Event]) -> None:
        """Apply candle ``t`` to the live blocks: invalidated breakers, then newly mitigated blocks."""
        high, low = row[_H], row[_L]
        if self.close_mitigation:
            body_low, body_high = min(row[_O], row[_C]), max(row[_O], row[_C])
        else:
            body_low, body_high = low, high
        touched: list[tuple[int, int, list]] = []  # (sequence, direction, entry)
        entries = self._bull_breakers  # invalidated when the high goes above the top
        n = 0
        while n < len(entries) and entries[n][0] < high:
            n += 1
        touched += [(e[1], 1, e) for e in entries[:n]]
        del entries[:n]
        entries = self._bear_breakers  # invalidated when the low goes below the bottom
        while entries and entries[-1][0] > low:
            e = entries.pop()
            touched.append((e[1], -1, e))
        entries = self._bull_live  # mitigated when the low goes below the bottom
        while entries and entries[-1][0] > body_low:
            e = entries.pop()
            touched.append((e[1], 1, e))
        entries = self._bear_live  # mitigated when the high goes above the top
        n = 0
        while n < len(entries) and entries[n][0] < body_high:
            n += 1
        touched += [(e[1], -1, e) for e in entries[:n]]
        del entries[:n]
        touched.sort(key=lambda x: x[0])
        for _, direction, e in touched:
            if not self._touch(e[2], direction, row, t, t, t_ms, events):
                self._insert(direction, e[2])

    def _touch(self, b: list, direction: int, row: list, j: int, t: int, t_ms: int, events: list[Event]) -> bool:
        """Apply candle ``j`` to block ``b``; True when the block is removed (a breaker gone through)."""
        if b[_B_BREAKER]:
            if row[_H] > b[_B_TOP32] if direction == 1 else row[_L] < b[_B_BOT32]:
                events.append(self._event("breaker_invalidated", direction, b, t, t_ms, invalidated_index=j))
                return True
            return False
        if direction == 1:
            x = min(row[_O], row[_C]) if self.close_mitigation else row[_L]
            hit = x < b[_B_BOT32]
        else:
            x = max(row[_O], row[_C]) if self.close_mitigation else row[_H]
            hit = x > b[_B_TOP32]
        if hit:
            b[_B_BREAKER] = True
            b[_B_MIT] = j - 1 if direction == 1 else j
            events.append(self._event("order_block_mitigated", direction, b, t, t_ms, mitigating_index=j))
        return False

    @staticmethod
    def _event(kind: str, direction: int, b: list, t: int, t_ms: int, **extra) -> Event:
        return {
            "type": kind,
            "direction": direction,
            "index": b[_B_IDX],
            "open_time_ms": b[_B_TIME],
            "confirmed_index": t,
            "confirmed_time_ms": t_ms,
            "top": b[_B_TOP],
            "bottom": b[_B_BOT],
            "swing_index": b[_B_SWING],
            "formed_index": b[_B_FORMED],
            "mitigated_index": b[_B_MIT],
            **extra,
        }
