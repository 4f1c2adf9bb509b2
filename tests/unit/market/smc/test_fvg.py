"""FairValueGaps on hand-made candles: the reference's three-candle test and first-touch mitigation."""

from __future__ import annotations

import orjson
import pytest

from stream_processor.market.smc import Candle, FairValueGaps

# (open, high, low, close)
BARS = [
    (9.5, 10.0, 9.0, 9.8),
    (9.9, 12.5, 9.8, 12.0),  # bullish candle, high[0]=10.0 < low[2]=10.5: bullish gap at 1, top 10.5, bottom 10.0
    (12.0, 13.0, 10.5, 12.8),
    (12.8, 13.2, 11.0, 11.2),
    (11.2, 11.4, 10.5, 10.6),  # low 10.5 <= top 10.5: mitigates the gap at 1
    (10.6, 11.1, 9.0, 9.1),  # bearish candle, low[4]=10.5 > high[6]=8.5: bearish gap at 5, top 10.5, bottom 8.5
    (8.0, 8.5, 7.9, 8.4),
    (8.4, 8.45, 7.9, 8.0),
    (8.0, 9.0, 7.8, 8.9),  # high 9.0 >= bottom 8.5: mitigates the gap at 5
]


def _candles(bars=BARS) -> list[Candle]:
    return [Candle(o, h, lo, c, 0.0, 1_000 * i) for i, (o, h, lo, c) in enumerate(bars)]


def test_gaps_and_mitigations():
    det = FairValueGaps()
    out = [(t, e["type"], e["direction"], e["index"], e["top"], e["bottom"]) for t, c in enumerate(_candles())
           for e in det.update(c)]  # fmt: skip
    assert out == [
        (2, "fvg", 1, 1, 10.5, 10.0),
        (4, "fvg_mitigated", 1, 1, 10.5, 10.0),
        (6, "fvg", -1, 5, 10.5, 8.5),
        (8, "fvg_mitigated", -1, 5, 10.5, 8.5),
    ]
    assert det.open_gaps == 0


def test_the_middle_candle_must_close_in_the_gap_direction():
    bars = list(BARS)
    bars[1] = (12.0, 12.5, 9.8, 9.9)  # bearish middle candle: no bullish gap
    det = FairValueGaps()
    assert [e["index"] for c in _candles(bars) for e in det.update(c) if e["type"] == "fvg"] == [5]


def test_mitigation_starts_two_candles_after_the_gap():
    # Candle 2 itself reaches below the top (its low IS the top): that is not a mitigation.
    det = FairValueGaps()
    events = [e for c in _candles()[:4] for e in det.update(c)]
    assert [e["type"] for e in events] == ["fvg"]


def test_the_farthest_open_gap_is_dropped_beyond_max_open():
    bars = [(10.0 * i, 10.0 * i + 5, 10.0 * i, 10.0 * i + 5) for i in range(8)]  # a gap at every candle 1..6
    det = FairValueGaps(max_open=3)
    gaps = [e["index"] for c in _candles(bars) for e in det.update(c)]
    assert gaps == [1, 2, 3, 4, 5, 6]
    assert det.open_gaps == 3
    restored = FairValueGaps.from_state(orjson.loads(orjson.dumps(det.to_state())))
    # a fall through every gap mitigates the three kept (those with the highest tops) only
    fall = Candle(80.0, 80.0, 0.0, 0.5, 0.0, 1_000 * len(bars))
    assert [e["index"] for e in restored.update(fall)] == [4, 5, 6]


def test_time_must_increase():
    det = FairValueGaps()
    det.update(Candle(1.0, 1.0, 1.0, 1.0, 0.0, 5))
    with pytest.raises(ValueError):
        det.update(Candle(1.0, 1.0, 1.0, 1.0, 0.0, 5))
