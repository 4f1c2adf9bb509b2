"""Liquidity on hand-made candles and swings, checked against the reference library's liquidity on the same."""

from __future__ import annotations

import warnings

import numpy as np
import orjson
import pandas as pd
import pytest

from stream_processor.market.smc import Candle, Liquidity, make_event
from stream_processor.market.smc.events import f32

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from smartmoneyconcepts.smc import smc

BARS = [  # (open, high, low, close)
    (9.5, 9.8, 9.4, 9.6),
    (9.6, 10.0, 9.5, 9.7),  # swing high 10.0: anchors the range 9.9 .. 10.1 (pip range 0.1)
    (9.7, 9.75, 9.0, 9.2),  # swing low 9.0
    (9.2, 9.9, 9.15, 9.8),
    (9.8, 10.05, 9.7, 9.9),  # swing high 10.05: in the range, joins
    (9.9, 9.95, 9.5, 9.6),  # swing low 9.5
    (9.6, 9.9, 9.55, 9.85),
    (9.85, 10.0, 9.8, 9.95),
    (9.95, 10.08, 9.9, 10.0),  # swing high 10.08: joins
    (10.0, 10.02, 9.3, 9.4),  # swing low 9.3
    (9.4, 9.9, 9.35, 9.8),
    (9.8, 10.2, 9.75, 10.1),  # high 10.2 >= 10.1: swept
    (10.1, 10.1, 8.2, 8.3),  # makes the frame's range 2.0, so the reference's 5% is 0.1 too
]
SWINGS = [(1, 1, 10.0), (2, -1, 9.0), (4, 1, 10.05), (5, -1, 9.5), (8, 1, 10.08), (9, -1, 9.3)]


def _feed(det: Liquidity, bars=BARS) -> list[list[dict]]:
    at = {i + 1: (i, d, lvl) for i, d, lvl in SWINGS}  # swing_length=1
    out = []
    for t, (o, h, lo, c) in enumerate(bars):
        evs = []
        if t in at:
            i, d, lvl = at[t]
            evs.append(make_event("swing_high" if d == 1 else "swing_low", d, i, 1000 * i, t, 1000 * t, level=lvl))
        out.append(det.update(Candle(o, h, lo, c, 0.0, 1000 * t), evs))
    return out


def test_group_grows_as_its_members_become_final_then_is_swept():
    per_candle = _feed(Liquidity(1, pip_range=0.1))
    got = [(t, e["type"], e["index"], e["level"], e.get("end_index"), e.get("members"), e["swept_index"])
           for t, evs in enumerate(per_candle) for e in evs]  # fmt: skip
    assert got == [
        (6, "liquidity", 1, (10.0 + 10.05) / 2, 4, 2, None),  # the high at 4 is final once the low at 5 is known
        (10, "liquidity", 1, (10.0 + 10.05 + 10.08) / 3, 8, 3, None),
        (11, "liquidity_swept", 1, (10.0 + 10.05 + 10.08) / 3, 8, None, 11),
    ]
    df = pd.DataFrame(BARS, columns=["open", "high", "low", "close"])
    high_low, level = np.full(len(BARS), np.nan), np.full(len(BARS), np.nan)
    for i, d, lvl in SWINGS:
        high_low[i], level[i] = d, lvl
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = smc.liquidity(df, pd.DataFrame({"HighLow": high_low, "Level": level}), range_percent=0.05)
    assert ref["Liquidity"].notna().sum() == 1
    row = ref.iloc[1]
    assert (row["Liquidity"], row["Level"], row["End"], row["Swept"]) == (1, f32(got[-1][3]), 8, 11)


def test_causal_range_is_fixed_when_the_anchor_is_confirmed():
    per_candle = _feed(Liquidity(1, range_percent=0.05))
    got = [(t, e["type"], e["index"], e.get("end_index")) for t, evs in enumerate(per_candle) for e in evs]
    # The high at 1, confirmed at 2, gets 5% of the range of candles 0..2 (1.0): 10.0 +- 0.05, and candle 4's
    # high (10.05) sweeps it before any member joins. The high at 4, confirmed at 5, gets 5% of 1.05: the
    # high at 8 (10.08) joins it. (With the whole frame's range, 2.0, the high at 1 takes both.)
    assert got == [(10, "liquidity", 4, 8), (11, "liquidity_swept", 4, 8)]
    first = per_candle[10][0]
    pip = 0.05 * (10.05 - 9.0)
    assert (first["range_low"], first["range_high"]) == pytest.approx((10.05 - pip, 10.05 + pip), abs=1e-15)


def test_unsettled_and_round_trip():
    det = Liquidity(1, pip_range=0.1)
    expected = _feed(Liquidity(1, pip_range=0.1))
    head = _feed(det, BARS[:8])
    assert head == expected[:8]
    # final swings up to 4 (the low at 5 waits for the next high); open anchors: the highs at 1 and the low at 2
    assert det.unsettled() == (5, [1, 2])
    restored = Liquidity.from_state(orjson.loads(orjson.dumps(det.to_state())))
    at = {i + 1: (i, d, lvl) for i, d, lvl in SWINGS}
    for t in range(8, len(BARS)):
        o, h, lo, c = BARS[t]
        evs = []
        if t in at:
            i, d, lvl = at[t]
            evs.append(make_event("swing_high" if d == 1 else "swing_low", d, i, 1000 * i, t, 1000 * t, level=lvl))
        assert restored.update(Candle(o, h, lo, c, 0.0, 1000 * t), evs) == expected[t]
