"""All the SMC detectors of one symbol and interval, fed one closed candle at a time."""

from __future__ import annotations

from typing import Any, Self

from stream_processor.engine.snapshot import Snapshot
from stream_processor.market.models import Kline
from stream_processor.market.smc.context import smc_context
from stream_processor.market.smc.events import Candle, Event, as_candle
from stream_processor.market.smc.fvg import FairValueGaps
from stream_processor.market.smc.liquidity import Liquidity
from stream_processor.market.smc.order_blocks import OrderBlocks
from stream_processor.market.smc.previous_high_low import PreviousHighLow
from stream_processor.market.smc.retracements import Retracements
from stream_processor.market.smc.sessions import Sessions
from stream_processor.market.smc.structure import BosChoch
from stream_processor.market.smc.swings import SwingDetector

#: Sessions a detector follows unless told otherwise (the reference's names; see ``Sessions``).
DEFAULT_SESSIONS = ("Sydney", "Tokyo", "London", "New York")
#: Higher time frames whose previous high and low a detector follows unless told otherwise.
DEFAULT_PREVIOUS = ("1D",)


class SmcDetector(Snapshot):
    """Every SMC detector of one candle series (one symbol+interval), fed one closed candle at a time.

    ``update(candle)`` takes the next CLOSED candle (a closed ``Kline`` or ``(open, high, low, close, volume,
    open_time_ms)``; see ``events.as_candle``) and returns every event it confirms, in this order: swings, structure,
    order blocks, liquidity, fair value gaps. Each event is a JSON-safe dict with ``type``, ``direction``,
    ``index``, ``open_time_ms``, ``confirmed_index``, ``confirmed_time_ms`` (= this candle) and its levels; see
    each detector for its events, definition (the ``smartmoneyconcepts`` 0.0.27 reference) and confirmation delay:
    ``SwingDetector`` (swing_length), ``BosChoch``, ``FairValueGaps`` (1 candle), ``OrderBlocks``
    (swing_length - 1), ``Liquidity``. Nothing emitted at candle t depends on a later candle.

    The per-candle values of the other reference functions are kept for :meth:`context`: ``PreviousHighLow`` per
    time frame of ``previous_high_low``, ``Sessions`` per name of ``sessions``, ``Retracements``.

    Parameters: ``swing_length`` (candles on each side of a swing, the reference's default for its tests: 5),
    ``close_break`` (BOS/CHoCH broken by the close, else the high/low), ``close_mitigation`` (order blocks
    mitigated by the body, else the wick), ``range_percent`` and ``pip_range`` (liquidity range; see
    ``Liquidity``), ``mark_first_bar`` (emit the reference's synthetic swing on candle 0), ``fvg_join_consecutive``
    (the reference's ``join_consecutive``), ``previous_high_low`` (time frames, e.g. ``["4h", "1D", "W"]``),
    ``sessions`` (session names of ``Sessions``), ``retracements``.

    Raises ValueError for invalid parameters, an open or non-finite candle, or a candle not later than the last.
    State: ``to_state()`` / ``from_state()``, JSON-safe; a restored detector continues with identical events. A
    snapshot written before the previous highs and lows, sessions and retracements existed restores with those
    started afresh.
    """

    __slots__ = (
        "swing_length", "close_break", "close_mitigation", "range_percent", "pip_range", "mark_first_bar",
        "fvg_join_consecutive", "previous_high_low", "sessions", "retracements",
        "swings", "structure", "fvg", "order_blocks", "liquidity", "previous", "session_detectors", "retracement",
        "last_time_ms",
    )  # fmt: skip
    _params = ("swing_length", "close_break", "close_mitigation", "range_percent", "pip_range", "mark_first_bar",
               "fvg_join_consecutive", "previous_high_low", "sessions", "retracements")

    def __init__(
        self,
        swing_length: int = 5,
        close_break: bool = True,
        close_mitigation: bool = False,
        range_percent: float = 0.01,
        pip_range: float | None = None,
        mark_first_bar: bool = True,
        fvg_join_consecutive: bool = False,
        previous_high_low: list[str] | tuple[str, ...] = DEFAULT_PREVIOUS,
        sessions: list[str] | tuple[str, ...] = DEFAULT_SESSIONS,
        retracements: bool = True,
    ) -> None:
        self.swing_length = swing_length
        self.close_break = close_break
        self.close_mitigation = close_mitigation
        self.range_percent = range_percent
        self.pip_range = pip_range
        self.mark_first_bar = mark_first_bar
        self.fvg_join_consecutive = bool(fvg_join_consecutive)
        self.previous_high_low = list(previous_high_low)
        self.sessions = list(sessions)
        self.retracements = bool(retracements)
        self.swings = SwingDetector(swing_length, mark_first_bar)
        self.structure = BosChoch(swing_length, close_break)
        self.fvg = FairValueGaps(join_consecutive=self.fvg_join_consecutive)
        self.order_blocks = OrderBlocks(swing_length, close_mitigation)
        self.liquidity = Liquidity(swing_length, range_percent, pip_range)
        self.previous = {tf: PreviousHighLow(tf) for tf in self.previous_high_low}
        self.session_detectors = {name: Sessions(name) for name in self.sessions}
        self.retracement = Retracements(swing_length) if self.retracements else None
        self.last_time_ms: int | None = None

    @property
    def count(self) -> int:
        """Number of candles consumed."""
        return self.swings.count

    def update(self, candle: Candle | Kline | tuple) -> list[Event]:
        """Consume the next closed candle; return the events of all the detectors it confirms (often none)."""
        c = as_candle(candle)
        swing_events = self.swings.step(c)
        events = list(swing_events)
        events += self.structure.step(c, swing_events)
        events += self.order_blocks.step(c, swing_events)
        events += self.liquidity.step(c, swing_events)
        events += self.fvg.step(c)
        for previous in self.previous.values():
            previous.step(c)
        for session in self.session_detectors.values():
            session.step(c)
        if self.retracement is not None:
            self.retracement.step(c, swing_events)
        self.last_time_ms = c.open_time_ms
        return events

    def context(self, price: float) -> dict[str, Any]:
        """Where ``price`` (quote currency) stands in this series' structure after its latest candle: the fields of
        :func:`~stream_processor.market.smc.context.smc_context`, then ``previous_high_low`` (per time frame:
        ``high``, ``low``, ``broken_high``, ``broken_low``), ``sessions`` (the active ones: name -> ``high``,
        ``low`` so far) and the retracement (``retracement_direction``, ``current_retracement_pct``,
        ``deepest_retracement_pct``)."""
        out = smc_context(self, price)
        out["previous_high_low"] = {tf: _previous(p.values) for tf, p in self.previous.items()}
        active = {}
        for name, session in self.session_detectors.items():
            values = session.values
            if values and values.get("active"):
                active[name] = {"high": values.get("high"), "low": values.get("low")}
        out["sessions"] = active
        if self.retracement is not None:
            values = self.retracement.values or {}
            out["retracement_direction"] = values.get("direction")
            out["current_retracement_pct"] = values.get("current_retracement_pct")
            out["deepest_retracement_pct"] = values.get("deepest_retracement_pct")
        return out

    def to_state(self) -> dict[str, Any]:
        state = super().to_state()
        state["previous"] = {tf: p.to_state() for tf, p in self.previous.items()}
        state["session_detectors"] = {name: d.to_state() for name, d in self.session_detectors.items()}
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """Rebuild from ``to_state()``; a snapshot of the detector before previous highs and lows, sessions and
        retracements existed gets them fresh (they fill in from the next candles)."""
        if "previous" not in state:
            fresh = cls(**{name: state[name] for name in cls._params if name in state}).to_state()
            state = {**fresh, **state, "fvg": {**fresh["fvg"], **state["fvg"]}}
        nested = {"previous": state["previous"], "session_detectors": state["session_detectors"]}
        obj = super().from_state({**state, "previous": {}, "session_detectors": {}})
        obj.previous = {tf: PreviousHighLow.from_state(v) for tf, v in nested["previous"].items()}
        obj.session_detectors = {name: Sessions.from_state(v) for name, v in nested["session_detectors"].items()}
        return obj


def _previous(values: dict[str, Any] | None) -> dict[str, Any]:
    values = values or {}
    return {"high": values.get("previous_high"), "low": values.get("previous_low"),
            "broken_high": values.get("broken_high"), "broken_low": values.get("broken_low")}
