"""OrderBlocks on hand-made candles and swings, checked against the reference library's ob on the same swings."""

from __future__ import annotations

import warnings

import numpy as np
import orjson
import pandas as pd

from stream_processor.market.smc import Candle, OrderBlocks, make_event
from stream_processor.market.smc.events import f32

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from smartmoneyconcepts.smc import smc

# (open, high, low, close, volume)
BARS = [
    (9.0, 9.5, 8.9, 9.2, 1.0),
    (9.2, 9.8, 9.1, 9.6, 2.0),
    (9.6, 10.0, 9.4, 9.7, 3.0),  # swing high 10.0
    (9.7, 9.8, 9.0, 9.1, 4.0),
    (9.1, 9.3, 8.7, 9.0, 5.0),  # swing low 8.7: the lowest low between the high at 2 and its break
    (9.0, 9.7, 8.9, 9.6, 6.0),
    (9.6, 10.1, 9.5, 9.8, 7.0),  # swing high 10.1 (later replaced by the one at 9)
    (9.8, 10.0, 9.7, 9.9, 8.0),
    (9.9, 10.2, 9.8, 10.15, 9.0),  # closes above 10.1 (the high at 6) and above 10.0 (the high at 2)
    (10.15, 10.6, 10.1, 10.5, 10.0),  # swing high 10.6: replaces the one at 6
    (10.5, 10.55, 10.3, 10.4, 11.0),
]


def _candles(bars=BARS) -> list[Candle]:
    return [Candle(o, h, lo, c, v, 1000 * i) for i, (o, h, lo, c, v) in enumerate(bars)]


def _swing_events(t: int, swings: list[tuple]) -> list[dict]:
    """Swing events confirmed at ``t`` (swing_length=1): (index, direction, level, replaces index or None)."""
    out = []
    for i, d, lvl, replaces in swings:
        if i + 1 == t:
            if replaces is not None:
                old = next(s for s in swings if s[0] == replaces)
                out.append(make_event("swing_replaced", d, replaces, 1000 * replaces, t, 1000 * t, level=old[2],
                                      replaced_by_index=i, replaced_by_level=lvl))  # fmt: skip
            out.append(make_event("swing_high" if d == 1 else "swing_low", d, i, 1000 * i, t, 1000 * t, level=lvl))
    return out


def _library(bars, final_swings) -> pd.DataFrame:
    df = pd.DataFrame(bars, columns=["open", "high", "low", "close", "volume"])
    high_low, level = np.full(len(bars), np.nan), np.full(len(bars), np.nan)
    for i, d, lvl in final_swings:
        high_low[i], level[i] = d, lvl
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smc.ob(df, pd.DataFrame({"HighLow": high_low, "Level": level}), close_mitigation=False)


SWINGS = [(2, 1, 10.0, None), (4, -1, 8.7, None), (6, 1, 10.1, None), (9, 1, 10.6, 6)]


def test_block_of_a_replaced_swing_is_cancelled_and_the_previous_swing_replayed():
    det = OrderBlocks(1)
    out = []
    for t, c in enumerate(_candles()):
        for e in det.update(c, _swing_events(t, SWINGS)):
            out.append((t, e["type"], e["direction"], e["index"], e["top"], e["bottom"], e["swing_index"],
                        e["formed_index"]))  # fmt: skip
    assert out == [
        (8, "order_block", 1, 7, 10.0, 9.7, 6, 8),  # close 10.15 > 10.1: the high at 6, block = lowest low in 7..7
        (10, "order_block_cancelled", 1, 7, 10.0, 9.7, 6, 8),  # the high at 6 is pruned: no block from it
        (10, "order_block", 1, 4, 9.3, 8.7, 2, 8),  # candles 7..9 against the high at 2: crossed at 8
    ]
    ref = _library(BARS, [(2, 1, 10.0), (4, -1, 8.7), (9, 1, 10.6)])
    assert ref["OB"].tolist()[4] == 1 and ref["OB"].notna().sum() == 1
    assert (ref["Top"].tolist()[4], ref["Bottom"].tolist()[4]) == (f32(9.3), f32(8.7))
    assert ref["OBVolume"].tolist()[4] == 9.0 + 8.0 + 7.0


def test_mitigation_then_breaker_invalidation():
    bars = BARS[:6] + [
        (9.6, 9.9, 9.5, 9.8, 7.0),
        (9.8, 10.3, 9.7, 10.2, 8.0),  # closes above the high at 2
        (10.2, 10.3, 8.6, 8.8, 9.0),  # low 8.6 < bottom 8.7: mitigated, a breaker block now
        (8.8, 9.5, 8.6, 9.3, 10.0),  # high 9.5 > top 9.3: the breaker is gone through
    ]
    swings = [(2, 1, 10.0, None), (4, -1, 8.7, None)]
    det = OrderBlocks(1)
    got = [(t, e["type"], e["index"], e["mitigated_index"], e.get("mitigating_index"))
           for t, c in enumerate(_candles(bars)) for e in det.update(c, _swing_events(t, swings))]  # fmt: skip
    assert got == [
        (7, "order_block", 4, None, None),
        (8, "order_block_mitigated", 4, 7, 8),  # the reference records the candle before, for bullish blocks
        (9, "breaker_invalidated", 4, 7, None),
    ]
    assert det.live_blocks == 0
    ref = _library(bars[:9], [(2, 1, 10.0), (4, -1, 8.7)])
    assert ref["OB"].tolist()[4] == 1 and ref["MitigatedIndex"].tolist()[4] == 7
    assert _library(bars, [(2, 1, 10.0), (4, -1, 8.7)])["OB"].isna().all()


def test_round_trip_between_the_replaced_swing_and_its_replay():
    candles = _candles()
    whole = OrderBlocks(1)
    expected = [whole.update(c, _swing_events(t, SWINGS)) for t, c in enumerate(candles)]
    det = OrderBlocks(1)
    for t, c in enumerate(candles[:9]):
        det.update(c, _swing_events(t, SWINGS))
    det = OrderBlocks.from_state(orjson.loads(orjson.dumps(det.to_state())))
    assert [det.update(c, _swing_events(t, SWINGS)) for t, c in enumerate(candles) if t >= 9] == expected[9:]
