"""Streaming break of structure (BOS) and change of character (CHoCH) over the swing events, without lookahead."""

from __future__ import annotations

from typing import Any, Self

from stream_processor.engine.snapshot import Snapshot
from stream_processor.market.models import Kline
from stream_processor.market.smc.events import STARTUP_CANDLES, Candle, CandleWindow, Event, as_candle, f32
from stream_processor.market.smc.swings import check_swing_length

# Swing record: [direction, index, level, open_time_ms, float32 level, broken_index, broken_time_ms, decided]
_DIR, _IDX, _LVL, _TIME, _THR, _BRK, _BRKT, _DECIDED = range(8)
# Structure record: [kind, direction, index, level, open_time_ms, float32 level, broken_index, broken_time_ms]
_KIND, _SDIR, _SIDX, _SLVL, _STIME, _STHR, _SBRK, _SBRKT = range(8)
# Last break record: [kind, direction, index, level, open_time_ms, broken_index, broken_time_ms,
#                     confirmed_index, confirmed_time_ms]
_LAST_KEYS = (
    "type", "direction", "index", "level", "open_time_ms", "broken_index", "broken_time_ms",
    "confirmed_index", "confirmed_time_ms",
)  # fmt: skip


class BosChoch(Snapshot):
    """BOS and CHoCH of ``smartmoneyconcepts.smc.bos_choch(ohlc, swings, close_break)`` (v0.0.27), streamed.

    Input: each closed candle with the swing events ``SwingDetector`` emitted for it (``update(candle, swing_events)``).

    Definition (the reference's): over the alternating swings s1, s2, ..., each time a swing s_k arrives the last
    four (levels l4 = s_{k-3}, l3 = s_{k-2}, l2 = s_{k-1}, l1 = s_k) are tested and the result is written on the
    candle of s_{k-2}, with level l3:

    - bullish BOS: low, high, low, high with ``l4 < l2 < l3 < l1`` (higher low, higher high);
    - bullish CHoCH: low, high, low, high with ``l1 > l3 > l4 > l2`` (a lower low, then a higher high);
    - bearish BOS: high, low, high, low with ``l4 > l2 > l3 > l1``;
    - bearish CHoCH: high, low, high, low with ``l1 < l3 < l4 < l2``.

    The level is "broken" at the first candle ``j >= index + 2`` whose close (``close_break=True``; the high / low
    otherwise) is above a bullish level, below a bearish one. The reference keeps a structure only if it is broken,
    and removes structure k when a later-indexed one i > k is broken no later than k (``broken_i <= broken_k``).
    Like the reference, the break is tested against the level rounded to float32 (its ``level`` array is float32).

    Streaming: the pattern is tested when s_k is confirmed and again when s_k is replaced by a more extreme swing
    (a replacement can turn a failed test into a pass, never the reverse, so a pass is final). Event ``bos`` /
    ``choch`` is emitted at the later of the pass and the break (``confirmed_index``; delay: swing_length candles
    after s_k at the soonest, with no upper bound). When a later structure is broken no later than an already
    emitted one, a ``bos_cancelled`` / ``choch_cancelled`` event (``by_index``) retracts the older one; a
    structure that is already retracted when it would be emitted is never emitted. The events left after the
    retractions are the reference's set over the candles seen so far (the reference additionally leaves
    ``BrokenIndex`` on rows it removed; those are not events here).

    Event fields: ``type``, ``direction`` (+1 bullish, -1 bearish), ``index`` / ``open_time_ms`` (the swing whose
    level is broken), ``confirmed_index``, ``confirmed_time_ms``, ``level`` (quote currency, float64),
    ``broken_index``, ``broken_time_ms``; the cancellations add ``by_index``.

    Bounds: positive but not yet broken structures wait in a list of at most ``max_pending`` (the oldest is
    dropped beyond that); cost per candle O(pending + 4).

    Read-only accessors: ``last_break()`` (the latest emitted BOS/CHoCH not cancelled: the current trend) and
    ``last_swing(direction)`` (the latest swing high / low). ``last_break`` needs one slot, ``_last_break``, that
    the events do not depend on; a snapshot written before it existed restores it from the emitted structures
    still held (confirmation unknown: None), or as None when none is held.
    """

    __slots__ = (
        "swing_length", "close_break", "max_pending",
        "_count", "_window", "_swings", "_pending", "_emitted", "_last_break",
    )  # fmt: skip
    _params = ("swing_length", "close_break", "max_pending")

    def __init__(self, swing_length: int = 5, close_break: bool = True, max_pending: int = 256) -> None:
        self.swing_length = check_swing_length(swing_length)
        self.close_break = bool(close_break)
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
            raise ValueError(f"max_pending must be an int >= 1, got {max_pending!r}")
        self.max_pending = max_pending
        self._count = 0
        self._window = CandleWindow(swing_length + 1, STARTUP_CANDLES)
        self._swings: list[list] = []  # the last 4 swings
        self._pending: list[list] = []  # passed the pattern test, not broken yet
        self._emitted: list[list] = []  # emitted, still possibly cancelled by a later structure
        self._last_break: list | None = None  # the latest emitted structure, not cancelled (see _LAST_KEYS)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """``Snapshot.from_state``; accepts a snapshot written before ``_last_break`` existed.

        Such a snapshot gets the last structure it still holds in ``_emitted`` (in emission order, not cancelled;
        its confirming candle unknown: None), or None when that list is empty (the trend is then unknown until
        the next BOS/CHoCH). Events are unaffected either way: ``_last_break`` is only read by ``last_break()``.
        """
        if "_last_break" not in state:
            emitted = state.get("_emitted") or []
            last = None
            if emitted:
                r = emitted[-1]
                last = [r[_KIND], r[_SDIR], r[_SIDX], r[_SLVL], r[_STIME], r[_SBRK], r[_SBRKT], None, None]
            state = {**state, "_last_break": last}
        return super().from_state(state)

    def last_break(self) -> dict | None:
        """The latest BOS/CHoCH emitted and not cancelled since, or None before the first one.

        A dict with ``type`` ("bos" / "choch"), ``direction`` (+1 bullish / -1 bearish), ``index`` /
        ``open_time_ms`` (the swing whose level was broken), ``level`` (quote currency), ``broken_index`` /
        ``broken_time_ms`` (the breaking candle) and ``confirmed_index`` / ``confirmed_time_ms`` (the candle whose
        close emitted the event; None after a restore from a snapshot older than this accessor). A cancellation
        always comes with the emission of a later-indexed structure at the same candle, which becomes the last
        break, so this is the last ``bos`` / ``choch`` event of the stream that no ``*_cancelled`` event retracted.
        """
        last = self._last_break
        return None if last is None else dict(zip(_LAST_KEYS, last, strict=True))

    def last_swing(self, direction: int) -> tuple[float, int, int] | None:
        """``(level, index, open_time_ms)`` of the latest swing high (``direction`` 1) or low (-1), or None.

        The swings as they stand after the candle's swing events (a replaced swing is gone). O(1).
        """
        swings = self._swings
        for s in swings[-1:-3:-1]:
            if s[_DIR] == direction:
                return s[_LVL], s[_IDX], s[_TIME]
        return None

    def unsettled(self) -> tuple[int, list[int]]:
        """``(first, indices)``: the rows (candle indices) whose BOS/CHoCH may still change with later candles.

        Every row >= ``first`` (the swings whose test still depends on a swing that can be replaced or is to
        come), and the rows in ``indices``: structures that passed the test but wait for their break, and
        emitted ones that a later structure could still cancel. Every other row is final.
        """
        swings = self._swings
        first = swings[-3][_IDX] if len(swings) >= 3 else 0
        return first, sorted({r[_SIDX] for r in self._pending} | {r[_SIDX] for r in self._emitted})

    def update(self, candle: Candle | Kline | tuple, swing_events: list[Event]) -> list[Event]:
        """Consume the next closed candle and its swing events; return the BOS/CHoCH events it confirms.

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
        price_up = c.close if self.close_break else c.high
        price_down = c.close if self.close_break else c.low

        ready: list[list] = []
        for s in self._swings:
            if s[_BRK] is None and t >= s[_IDX] + 2:
                if price_up > s[_THR] if s[_DIR] == 1 else price_down < s[_THR]:
                    s[_BRK], s[_BRKT] = t, c.open_time_ms
        if self._pending:
            still = []
            for p in self._pending:
                if price_up > p[_STHR] if p[_SDIR] == 1 else price_down < p[_STHR]:
                    p[_SBRK], p[_SBRKT] = t, c.open_time_ms
                    ready.append(p)
                else:
                    still.append(p)
            self._pending = still

        for ev in swing_events:
            self._on_swing(ev, t, ready)
        if swing_events and not window.bounded:
            window.bound()
        events = self._resolve(ready, t, c.open_time_ms) if ready else []
        swings = self._swings
        if len(swings) >= 3:
            horizon = swings[-3][_IDX] + 2
            self._emitted = [e for e in self._emitted if e[_SBRK] >= horizon]
        return events

    def _on_swing(self, ev: Event, t: int, ready: list[list]) -> None:
        swings = self._swings
        kind = ev["type"]
        if kind == "swing_replaced":
            if not swings or swings[-1][_IDX] != ev["index"]:
                raise ValueError(f"swing_replaced of candle {ev['index']} does not name the latest swing")
            swings.pop()
            return
        if kind not in ("swing_high", "swing_low"):
            raise ValueError(f"not a swing event: {kind!r}")
        direction, index, level = ev["direction"], ev["index"], ev["level"]
        if swings and swings[-1][_DIR] == direction:
            raise ValueError(f"two consecutive swings of direction {direction} without a swing_replaced")
        broken = broken_ms = None
        window = self._window
        threshold = f32(level)
        col = 3 if self.close_break else (1 if direction == 1 else 2)
        for j in range(index + 2, t + 1):
            row = window.row(j)
            x = row[col]
            if x > threshold if direction == 1 else x < threshold:
                broken, broken_ms = j, row[5]
                break
        swings.append([direction, index, level, ev["open_time_ms"], threshold, broken, broken_ms, False])
        if len(swings) > 4:
            del swings[0]
        if len(swings) == 4:
            self._test(t, ready)

    def _test(self, t: int, ready: list[list]) -> None:
        s4, s3, s2, s1 = self._swings
        if s3[_DECIDED]:
            return
        l4, l3, l2, l1 = s4[_LVL], s3[_LVL], s2[_LVL], s1[_LVL]
        if s3[_DIR] == 1:  # low, high, low, high
            if l4 < l2 < l3 < l1:
                kind = "bos"
            elif l1 > l3 > l4 > l2:
                kind = "choch"
            else:
                return
        elif l4 > l2 > l3 > l1:  # high, low, high, low
            kind = "bos"
        elif l1 < l3 < l4 < l2:
            kind = "choch"
        else:
            return
        s3[_DECIDED] = True
        record = [kind, s3[_DIR], s3[_IDX], l3, s3[_TIME], s3[_THR], s3[_BRK], s3[_BRKT]]
        if record[_SBRK] is not None:
            ready.append(record)
        else:
            self._pending.append(record)
            if len(self._pending) > self.max_pending:
                del self._pending[0]

    def _resolve(self, ready: list[list], t: int, t_ms: int) -> list[Event]:
        """Emit the newly broken positives; apply the reference's removal rule to them and to earlier ones."""
        ready.sort(key=lambda r: r[_SIDX])
        # Within the batch, k is removed by a later-indexed i broken no later than k.
        survivors = [r for n, r in enumerate(ready) if not any(q[_SBRK] <= r[_SBRK] for q in ready[n + 1 :])]
        events: list[Event] = []
        for r in survivors:
            events.append(self._event(r[_KIND], r, t, t_ms))
            index, broken = r[_SIDX], r[_SBRK]
            # Pending k < i are broken after t >= broken_i: the reference removes them.
            self._pending = [p for p in self._pending if p[_SIDX] > index]
            keep = []
            for e in self._emitted:
                if e[_SIDX] < index and e[_SBRK] >= broken:
                    events.append(self._event(e[_KIND] + "_cancelled", e, t, t_ms, by_index=index))
                else:
                    keep.append(e)
            keep.append(r)
            self._emitted = keep
            self._last_break = [
                r[_KIND], r[_SDIR], r[_SIDX], r[_SLVL], r[_STIME], r[_SBRK], r[_SBRKT], t, t_ms,
            ]  # fmt: skip
        return events

    @staticmethod
    def _event(kind: str, r: list, t: int, t_ms: int, **extra) -> Event:
        return {
            "type": kind,
            "direction": r[_SDIR],
            "index": r[_SIDX],
            "open_time_ms": r[_STIME],
            "confirmed_index": t,
            "confirmed_time_ms": t_ms,
            "level": r[_SLVL],
            "broken_index": r[_SBRK],
            "broken_time_ms": r[_SBRKT],
            **extra,
        }
