"""All the SMC detectors of one symbol and interval, fed one closed candle at a time."""

from __future__ import annotations

from stream_processor.market.models import Kline
from stream_processor.market.smc.events import Candle, Event, Stateful, as_candle
from stream_processor.market.smc.fvg import FairValueGaps
from stream_processor.market.smc.liquidity import Liquidity
from stream_processor.market.smc.order_blocks import OrderBlocks
from stream_processor.market.smc.structure import BosChoch
from stream_processor.market.smc.swings import SwingDetector


class SmcDetector(Stateful):
    """Swings, BOS/CHoCH, fair value gaps, order blocks and liquidity of one candle series (one symbol+interval).

    ``update(candle)`` takes the next CLOSED candle (a closed ``Kline`` or ``(open, high, low, close, volume,
    open_time_ms)``; see ``events.as_candle``) and returns every event it confirms, in this order: swings, structure,
    order blocks, liquidity, fair value gaps. Each event is a JSON-safe dict with ``type``, ``direction``,
    ``index``, ``open_time_ms``, ``confirmed_index``, ``confirmed_time_ms`` (= this candle) and its levels; see
    each detector for its events, definition (the ``smartmoneyconcepts`` 0.0.27 reference) and confirmation delay:
    ``SwingDetector`` (swing_length), ``BosChoch``, ``FairValueGaps`` (1 candle), ``OrderBlocks``
    (swing_length - 1), ``Liquidity``. Nothing emitted at candle t depends on a later candle.

    Parameters: ``swing_length`` (candles on each side of a swing, the reference's default for its tests: 5),
    ``close_break`` (BOS/CHoCH broken by the close, else the high/low), ``close_mitigation`` (order blocks
    mitigated by the body, else the wick), ``range_percent`` and ``pip_range`` (liquidity range; see
    ``Liquidity``), ``mark_first_bar`` (emit the reference's synthetic swing on candle 0).

    Raises ValueError for invalid parameters, an open or non-finite candle, or a candle not later than the last.
    State: ``to_state()`` / ``from_state()``, JSON-safe; a restored detector continues with identical events.
    """

    __slots__ = (
        "swing_length", "close_break", "close_mitigation", "range_percent", "pip_range", "mark_first_bar",
        "swings", "structure", "fvg", "order_blocks", "liquidity",
    )  # fmt: skip
    _params = ("swing_length", "close_break", "close_mitigation", "range_percent", "pip_range", "mark_first_bar")

    def __init__(
        self,
        swing_length: int = 5,
        close_break: bool = True,
        close_mitigation: bool = False,
        range_percent: float = 0.01,
        pip_range: float | None = None,
        mark_first_bar: bool = True,
    ) -> None:
        self.swing_length = swing_length
        self.close_break = close_break
        self.close_mitigation = close_mitigation
        self.range_percent = range_percent
        self.pip_range = pip_range
        self.mark_first_bar = mark_first_bar
        self.swings = SwingDetector(swing_length, mark_first_bar)
        self.structure = BosChoch(swing_length, close_break)
        self.fvg = FairValueGaps()
        self.order_blocks = OrderBlocks(swing_length, close_mitigation)
        self.liquidity = Liquidity(swing_length, range_percent, pip_range)

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
        return events
