"""BosChoch on a hand-made swing sequence, checked against the reference library's bos_choch on the same swings."""

from __future__ import annotations

import warnings

import numpy as np
import orjson
import pandas as pd
import pytest

from stream_processor.market.smc import BosChoch, Candle, make_event

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from smartmoneyconcepts.smc import smc

# Swings (swing_length=1: each is confirmed one candle later): low 1.0 at 1, high 2.0 at 3, low 1.5 at 5,
# high 2.5 at 7 -> bullish BOS on candle 3 (higher low, higher high), level 2.0; then low 1.2 at 11 ->
# bearish CHoCH on candle 5 (lower low after a higher high), level 1.5.
SWINGS = [(1, -1, 1.0), (3, 1, 2.0), (5, -1, 1.5), (7, 1, 2.5), (11, -1, 1.2)]
#         0    1    2    3    4    5    6    7    8    9    10   11   12   13
CLOSES = [1.2, 1.0, 1.6, 1.9, 1.7, 1.5, 1.9, 1.4, 1.8, 2.1, 1.6, 1.2, 1.4, 1.45]


def _feed(det: BosChoch, closes: list[float], swings=SWINGS) -> list[list[dict]]:
    by_confirmation = {i + 1: (i, d, lvl) for i, d, lvl in swings}
    out = []
    for t, c in enumerate(closes):
        evs = []
        if t in by_confirmation:
            i, d, lvl = by_confirmation[t]
            kind = "swing_high" if d == 1 else "swing_low"
            evs.append(make_event(kind, d, i, 1000 * i, t, 1000 * t, level=lvl, synthetic=False))
        out.append(det.update(Candle(c, c + 0.05, c - 0.05, c, 0.0, 1000 * t), evs))
    return out


def _library(closes: list[float], swings=SWINGS) -> pd.DataFrame:
    n = len(closes)
    ohlc = pd.DataFrame({"open": closes, "high": closes, "low": closes, "close": closes})
    high_low, level = np.full(n, np.nan), np.full(n, np.nan)
    for i, d, lvl in swings:
        high_low[i], level[i] = d, lvl
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return smc.bos_choch(ohlc, pd.DataFrame({"HighLow": high_low, "Level": level}), close_break=True)


def _brief(per_candle: list[list[dict]]) -> list[tuple]:
    return [(t, e["type"], e["direction"], e["index"], e["level"], e["broken_index"]) for t, evs in
            enumerate(per_candle) for e in evs]  # fmt: skip


def test_a_later_structure_broken_first_cancels_an_emitted_one():
    out = _brief(_feed(BosChoch(1), CLOSES))
    assert out == [
        (9, "bos", 1, 3, 2.0, 9),  # passed at 8 (high 2.5 confirmed), broken at 9 (close 2.1 > 2.0)
        (12, "choch", -1, 5, 1.5, 7),  # passed at 12, already broken at 7 (close 1.4 < 1.5)
        (12, "bos_cancelled", 1, 3, 2.0, 9),  # 5 > 3 and broken at 7 <= 9: the reference removes 3
    ]
    ref = _library(CLOSES)
    assert ref["CHOCH"].tolist()[5] == -1 and ref["BrokenIndex"].tolist()[5] == 7
    assert ref["BOS"].isna().all() and ref["CHOCH"].notna().sum() == 1
    assert ref["BrokenIndex"].tolist()[3] == 9  # the reference's ghost: removed, BrokenIndex left


def test_a_waiting_structure_is_dropped_when_a_later_one_breaks_first():
    closes = list(CLOSES)
    closes[9] = 1.9
    closes[13] = 2.1  # 3 would break at 13, after 5 broke (at 7)
    out = _brief(_feed(BosChoch(1), closes))
    assert out == [(12, "choch", -1, 5, 1.5, 7)]
    ref = _library(closes)
    assert ref["BOS"].isna().all() and ref["BrokenIndex"].tolist()[3] == 13


def test_break_is_tested_two_candles_after_the_swing_and_on_the_float32_level():
    closes = list(CLOSES)
    closes[4] = 2.05  # one candle after the high at 3: too early to break it
    closes[9] = 1.9
    closes[10] = 2.0000000001  # above 2.0 in float64 and in float32(2.0) = 2.0
    out = _brief(_feed(BosChoch(1), closes))
    assert out[0] == (10, "bos", 1, 3, 2.0, 10)
    # A level that float32 rounds down: a close equal to the level breaks it, as in the reference.
    level = 2.0000001
    swings = [(1, -1, 1.0), (3, 1, level), (5, -1, 1.5), (7, 1, 2.5), (11, -1, 1.2)]
    closes = list(CLOSES)
    closes[6] = level
    assert float(np.float32(level)) == 2.0 < level
    out = _brief(_feed(BosChoch(1), closes, swings))
    assert out[0] == (8, "bos", 1, 3, level, 6)
    assert _library(closes, swings)["BrokenIndex"].tolist()[3] == 6


def test_unsettled_rows_and_round_trip():
    det = BosChoch(1)
    expected = _feed(BosChoch(1), CLOSES)
    head = _feed(det, CLOSES[:10])
    assert head == expected[:10]
    # swings 1, 3, 5, 7: the test of 5 waits for the next swing; 3 is emitted but 5 or 7 could cancel it
    assert det.unsettled() == (3, [3])
    restored = BosChoch.from_state(orjson.loads(orjson.dumps(det.to_state())))
    by_confirmation = {i + 1: (i, d, lvl) for i, d, lvl in SWINGS}
    for t in range(10, len(CLOSES)):
        c = CLOSES[t]
        evs = []
        if t in by_confirmation:
            i, d, lvl = by_confirmation[t]
            evs.append(make_event("swing_low" if d < 0 else "swing_high", d, i, 1000 * i, t, 1000 * t, level=lvl))
        assert restored.update(Candle(c, c + 0.05, c - 0.05, c, 0.0, 1000 * t), evs) == expected[t]


def test_swing_events_out_of_order_are_refused():
    det = BosChoch(1)
    det.update(Candle(1.0, 1.0, 1.0, 1.0, 0.0, 0), [])
    high = make_event("swing_high", 1, 0, 0, 1, 1000, level=1.0)
    det.update(Candle(1.0, 1.0, 1.0, 1.0, 0.0, 1000), [high])
    with pytest.raises(ValueError):
        det.update(Candle(1.0, 1.0, 1.0, 1.0, 0.0, 2000), [make_event("swing_high", 1, 1, 1000, 2, 2000, level=2.0)])
    with pytest.raises(ValueError):
        det.update(Candle(1.0, 1.0, 1.0, 1.0, 0.0, 3000), [make_event("swing_replaced", -1, 5, 0, 3, 3000)])
