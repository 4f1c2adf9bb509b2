"""Recognize re-sent trades: a bounded memory of the trade ids of ONE symbol already seen."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any, Self

from stream_processor.engine.exceptions import InvalidRecordError
from stream_processor.engine.snapshot import Snapshot

MAX_ID = 2**63 - 1

#: ``len(orjson.dumps(to_state()))`` never exceeds ``RUN_BYTES * max_runs + STATE_OVERHEAD_BYTES``: a run is at most
#: ``[<19 digits>,<19 digits>],`` and the rest of the state (names, version, parameters, floor, largest) is below 200.
RUN_BYTES = 42
STATE_OVERHEAD_BYTES = 200


def _first(run: list[int]) -> int:
    return run[0]


def _last(run: list[int]) -> int:
    return run[1]


def _check_id(trade_id: Any) -> int:
    if type(trade_id) is not int or not 0 <= trade_id <= MAX_ID:
        raise InvalidRecordError(f"trade id must be an int in [0, 2**63 - 1], got {trade_id!r}")
    return trade_id


class TradeIdWindow(Snapshot):
    """The trade ids of one symbol seen recently, to recognize a trade the venue (or a polled tape) sends again.

    What it remembers: the ids ``>= floor`` that were passed to :meth:`add`, exactly (no false positive, no false
    negative above the floor). ``floor`` rises for two reasons only:

    - the window: ``floor >= largest - window + 1``, where ``largest`` is the largest id added; so with a gap-free
      tape the last ``window`` ids are remembered;
    - the run budget: the ids are stored as sorted disjoint runs ``[first, last]`` (adjacent runs merge, so a gap-free
      tape such as Binance's costs one run); when there would be more than ``max_runs`` runs, the oldest runs are
      forgotten and ``floor`` becomes the last forgotten id + 1. With a sparse tape (every other id, or one product's
      ids among a venue-wide sequence) the window effectively covers the last ``max_runs`` runs.

    :meth:`seen` reports an id below ``floor`` as NOT seen: we cannot know, and what to do with such a trade
    (accept it as new, drop it, count it) is the caller's choice; compare with :attr:`floor`. :meth:`add` of an id
    below ``floor`` changes nothing.

    Ids are ints in ``[0, 2**63 - 1]``; anything else raises :class:`InvalidRecordError` (a ``RecordError``: the
    caller dead-letters the record) and changes nothing. Cost per call: a binary search over the runs (O(log runs)),
    plus, when a run is created or removed, a list insert/delete of at most ``max_runs`` references.

    Size bound: at most ``max_runs`` runs, so the state JSON is at most ``RUN_BYTES * max_runs +
    STATE_OVERHEAD_BYTES`` bytes (10,952 with the default 256 runs) whatever the id sequence.
    State: ``to_state`` / ``from_state`` (from :class:`Snapshot`; ``from_state`` also checks the runs' invariants).
    """

    __slots__ = ("window", "max_runs", "_floor", "_largest", "_runs")
    _params = ("window", "max_runs")

    def __init__(self, window: int = 10_000, max_runs: int = 256) -> None:
        if type(window) is not int or not 1 <= window <= MAX_ID:
            raise ValueError(f"window must be an int in [1, 2**63 - 1], got {window!r}")
        if type(max_runs) is not int or max_runs < 1:
            raise ValueError(f"max_runs must be an int >= 1, got {max_runs!r}")
        self.window = window
        self.max_runs = max_runs
        self._floor = 0
        self._largest: int | None = None
        self._runs: list[list[int]] = []

    @property
    def floor(self) -> int:
        """The smallest id this window can vouch for: ids below it are reported as not seen (unknown)."""
        return self._floor

    @property
    def largest(self) -> int | None:
        """The largest id added, None before the first."""
        return self._largest

    @property
    def runs(self) -> list[tuple[int, int]]:
        """The remembered ids as sorted disjoint, non-adjacent ``(first, last)`` runs (a copy)."""
        return [(a, b) for a, b in self._runs]

    def seen(self, trade_id: int) -> bool:
        """True if ``trade_id`` was added and is not below :attr:`floor`; changes nothing."""
        largest = self._largest
        if type(trade_id) is int and largest is not None and largest < trade_id <= MAX_ID:
            return False  # the usual case, a new largest id: answered before any search
        _check_id(trade_id)
        if trade_id < self._floor or self._largest is None or trade_id > self._largest:
            return False
        runs = self._runs
        i = bisect_right(runs, trade_id, key=_first) - 1
        return i >= 0 and runs[i][1] >= trade_id

    def add(self, trade_id: int) -> None:
        """Remember ``trade_id`` (no-op if already remembered or below :attr:`floor`)."""
        largest = self._largest
        if type(trade_id) is int and largest is not None and trade_id == largest + 1 and trade_id <= MAX_ID:
            runs = self._runs  # the gap-free tape: extend the last run (it ends at largest)
            if len(runs) == 1:
                last = runs[0]
                last[1] = self._largest = trade_id
                floor = trade_id - self.window + 1
                if floor > self._floor:
                    self._floor = floor
                    if last[0] < floor:
                        last[0] = floor
                return
        _check_id(trade_id)
        if trade_id < self._floor:
            return
        runs = self._runs
        largest = self._largest
        if largest is not None and trade_id > largest:  # the usual case: a new largest id (runs end at largest)
            if trade_id == largest + 1:
                runs[-1][1] = trade_id
            else:
                runs.append([trade_id, trade_id])
            self._largest = trade_id
            floor = trade_id - self.window + 1
            if floor > self._floor and runs[0][0] < floor:
                self._raise_floor(floor)
            elif floor > self._floor:
                self._floor = floor
            if len(runs) > self.max_runs:
                self._raise_floor(runs[len(runs) - self.max_runs - 1][1] + 1)
            return
        i = bisect_right(runs, trade_id, key=_first)
        left = runs[i - 1] if i > 0 else None
        if left is not None and left[1] >= trade_id:
            return  # already remembered
        right = runs[i] if i < len(runs) else None
        joins_left = left is not None and left[1] + 1 == trade_id
        joins_right = right is not None and right[0] - 1 == trade_id
        if joins_left and joins_right:
            left[1] = right[1]  # type: ignore[index]
            del runs[i]
        elif joins_left:
            left[1] = trade_id  # type: ignore[index]
        elif joins_right:
            right[0] = trade_id  # type: ignore[index]
        else:
            runs.insert(i, [trade_id, trade_id])
        if self._largest is None or trade_id > self._largest:
            self._largest = trade_id
            if trade_id - self.window + 1 > self._floor:
                self._raise_floor(trade_id - self.window + 1)
        excess = len(runs) - self.max_runs
        if excess > 0:
            self._raise_floor(runs[excess - 1][1] + 1)

    def _raise_floor(self, floor: int) -> None:
        """Forget every id below ``floor`` (> the current floor)."""
        self._floor = floor
        runs = self._runs
        k = bisect_left(runs, floor, key=_last)  # the first run with last >= floor
        if k:
            del runs[:k]
        if runs and runs[0][0] < floor:
            runs[0][0] = floor

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild from ``to_state()``. Raises ValueError for a missing field, or runs that are not sorted, disjoint,
        non-adjacent ``[first, last]`` int pairs within ``[floor, largest]``, at most ``max_runs`` of them."""
        obj = super().from_state(state)
        runs, floor, largest = obj._runs, obj._floor, obj._largest
        name = cls.__name__
        if type(floor) is not int or not 0 <= floor <= MAX_ID:
            raise ValueError(f"{name}: bad floor {floor!r}")
        if largest is not None and (type(largest) is not int or not 0 <= largest <= MAX_ID):
            raise ValueError(f"{name}: bad largest {largest!r}")
        if not isinstance(runs, list) or len(runs) > obj.max_runs:
            raise ValueError(f"{name}: runs must be a list of at most {obj.max_runs}")
        prev = floor - 2
        for run in runs:
            if (
                not isinstance(run, list)
                or len(run) != 2
                or any(type(v) is not int for v in run)
                or not prev + 1 < run[0] <= run[1]
                or largest is None
                or run[1] > largest
            ):
                raise ValueError(f"{name}: malformed run {run!r} (after {prev}, floor {floor}, largest {largest})")
            prev = run[1]
        if (runs[-1][1] if runs else None) != largest:
            raise ValueError(f"{name}: the last run must end at the largest id {largest}")
        return obj

    def __repr__(self) -> str:
        return (
            f"TradeIdWindow(window={self.window}, max_runs={self.max_runs}) floor={self._floor} "
            f"largest={self._largest} runs={len(self._runs)}"
        )
