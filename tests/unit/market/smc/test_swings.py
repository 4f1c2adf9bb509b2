"""SwingDetector on small hand-made series: the reference's window, its pruning made causal, candle 0."""

from __future__ import annotations

import orjson

from stream_processor.market.smc import Candle, SwingDetector
from stream_processor.market.smc.events import STARTUP_CANDLES


def _candles(highs: list[float], lows: list[float]) -> list[Candle]:
    pairs = enumerate(zip(highs, lows, strict=True))
    return [Candle((h + lo) / 2, h, lo, (h + lo) / 2, 1.0, 60_000 * i) for i, (h, lo) in pairs]


def _run(det: SwingDetector, candles: list[Candle]) -> list[dict]:
    return [e for c in candles for e in det.update(c)]


def _brief(events: list[dict]) -> list[tuple]:
    return [(e["type"], e["index"], e["level"], e["confirmed_index"]) for e in events]


def test_swing_high_and_low_are_confirmed_swing_length_candles_late():
    # L=2: candle i is a swing high when its high is the max of candles i-1 .. i+2 (and i >= 3).
    highs = [10, 11, 12, 13, 15, 14, 13, 12, 13, 16, 14, 13, 12, 11, 10]
    lows = [h - 1 for h in highs]
    events = _run(SwingDetector(2), _candles(highs, lows))
    assert _brief(events) == [
        ("swing_low", 0, 9, 6),  # synthetic: candle 0 takes the opposite type of the first swing
        ("swing_high", 4, 15, 6),
        ("swing_low", 7, 11, 9),
        ("swing_high", 9, 16, 11),
    ]
    assert [e["synthetic"] for e in events] == [True, False, False, False]
    assert [e["direction"] for e in events] == [-1, 1, -1, 1]
    assert events[1]["open_time_ms"] == 4 * 60_000 and events[1]["confirmed_time_ms"] == 6 * 60_000


def test_the_rolling_window_must_be_full():
    # Candle 2 is the highest of 1..4 but the reference's window needs i >= 2L-1 = 3.
    highs = [10, 11, 20, 13, 12, 11, 10, 9]
    lows = [h - 1 for h in highs]
    assert _run(SwingDetector(2), _candles(highs, lows)) == []


def test_a_more_extreme_swing_of_the_same_type_replaces_the_last_one():
    # Lows rise strictly: no swing low, so all the swing highs are one run; the reference keeps its highest.
    highs = [10, 11, 12, 13, 15, 14, 13, 14, 16, 15, 14, 15.5, 14, 16, 13, 12, 11]
    lows = [0.1 * i for i in range(len(highs))]
    events = _run(SwingDetector(2, mark_first_bar=False), _candles(highs, lows))
    assert _brief(events) == [
        ("swing_high", 4, 15, 6),
        ("swing_replaced", 4, 15, 10),
        ("swing_high", 8, 16, 10),
        # 11 (15.5) is lower and 13 (16) equal: dropped, the earlier one is kept like the reference does
    ]
    assert events[1]["replaced_by_index"] == 8 and events[1]["replaced_by_level"] == 16


def test_a_high_that_is_also_the_lowest_low_is_a_swing_high():
    highs = [10, 11, 12, 13, 20, 14, 13, 12, 11, 10]
    lows = [9.0, 9.1, 9.2, 9.3, 1.0, 9.5, 9.6, 9.7, 9.8, 9.9]
    events = _run(SwingDetector(2, mark_first_bar=False), _candles(highs, lows))
    assert _brief(events) == [("swing_high", 4, 20, 6)]


def test_no_candle_0_swing_when_the_first_swing_comes_too_late():
    n = STARTUP_CANDLES + 10
    highs = [100.0 + i for i in range(n)] + [50.0 - i for i in range(5)]
    lows = [h - 1 for h in highs]
    events = _run(SwingDetector(2), _candles(highs, lows))
    assert [e["index"] for e in events] == [n - 1]  # the peak only


def test_round_trip_keeps_a_swing_that_can_still_be_replaced():
    highs = [10, 11, 12, 13, 15, 14, 13, 14, 16, 15, 14, 13, 12]
    lows = [0.1 * i for i in range(len(highs))]
    candles = _candles(highs, lows)
    whole = SwingDetector(2)
    expected = [whole.update(c) for c in candles]
    det = SwingDetector(2)
    for c in candles[:7]:
        det.update(c)
    assert det.last_swing == {"direction": 1, "index": 4, "level": 15, "open_time_ms": 240_000}
    det = SwingDetector.from_state(orjson.loads(orjson.dumps(det.to_state())))
    assert [det.update(c) for c in candles[7:]] == expected[7:]
    assert det.unsettled() == (8, [])
