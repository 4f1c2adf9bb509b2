"""Streaming Smart Money Concepts detectors: swings, BOS/CHoCH, fair value gaps, order blocks, liquidity;
previous highs and lows of a higher time frame, sessions, retracements.

Each detector is fed one CLOSED candle at a time, keeps bounded state (``to_state()`` / ``from_state()``,
JSON-safe) and emits JSON-safe event dicts when a pattern is confirmed; nothing emitted at candle t depends on
a later candle. The definitions mirror ``smartmoneyconcepts`` 0.0.27 (a batch library that looks ahead); each
detector's docstring gives its confirmation delay and every difference from that reference.
``SmcDetector`` composes them for one symbol and interval.
"""

from stream_processor.market.smc.detector import SmcDetector
from stream_processor.market.smc.events import Candle, Event, as_candle, make_event
from stream_processor.market.smc.fvg import FairValueGaps
from stream_processor.market.smc.liquidity import Liquidity
from stream_processor.market.smc.order_blocks import OrderBlocks
from stream_processor.market.smc.previous_high_low import PreviousHighLow
from stream_processor.market.smc.retracements import Retracements
from stream_processor.market.smc.sessions import Sessions
from stream_processor.market.smc.structure import BosChoch
from stream_processor.market.smc.swings import SwingDetector

__all__ = [
    "BosChoch",
    "Candle",
    "Event",
    "FairValueGaps",
    "Liquidity",
    "OrderBlocks",
    "PreviousHighLow",
    "Retracements",
    "Sessions",
    "SmcDetector",
    "SwingDetector",
    "as_candle",
    "make_event",
]
