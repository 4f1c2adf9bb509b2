"""PreviousHighLow: the reference's periods, its "second-to-last period before the candle", its broken flags."""

from __future__ import annotations

import warnings

import numpy as np
import orjson
import pandas as pd
import pytest

from stream_processor.market.smc import Candle, PreviousHighLow
from stream_processor.market.smc.events import f32

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from smartmoneyconcepts.smc import smc

MONDAY = 1_704_067_200_000  # 2024-01-01 00:00 UTC, a Monday
HOUR = 3_600_000
DAY = 24 * HOUR

# 6-hour candles over three days: (high, low)
BARS = [
    (10, 9), (11, 8), (12, 9), (11, 10),  # day 0: high 12, low 8
    (11, 9), (13, 9), (12, 7), (12, 10),  # day 1: high 13, low 7
    (12, 8), (12, 9), (14, 9), (11, 6),  # day 2
]  # fmt: skip


def _candles(bars=BARS, start=MONDAY, step=6 * HOUR) -> list[Candle]:
    return [Candle(lo, float(h), float(lo), h, 0.0, start + step * i) for i, (h, lo) in enumerate(bars)]


def _brief(values: list[dict]) -> list[tuple]:
    return [(v["previous_high"], v["previous_low"], v["broken_high"], v["broken_low"]) for v in values]


def _walk(n: int, seed: int, start: int, step_ms: int = 900_000, keep: float = 0.8) -> list[Candle]:
    """A random walk of candles every ``step_ms``, some missing (so some periods are empty)."""
    rng = np.random.default_rng(seed)
    out, price = [], 100.0
    for i in range(n):
        c = round(price + float(rng.normal(0, 1)), 1)
        h = round(max(price, c) + abs(float(rng.normal(0, 0.5))), 1)
        lo = round(min(price, c) - abs(float(rng.normal(0, 0.5))), 1)
        if rng.random() < keep:
            out.append(Candle(price, h, lo, c, 1.0, start + step_ms * i))
        price = c
    return out


def _reference(candles: list[Candle], time_frame: str) -> list[tuple]:
    index = pd.to_datetime([c.open_time_ms for c in candles], unit="ms")
    df = pd.DataFrame([c[:5] for c in candles], columns=["open", "high", "low", "close", "volume"], index=index)
    ref = smc.previous_high_low(df, time_frame=time_frame)
    return [
        (None if np.isnan(r.PreviousHigh) else float(r.PreviousHigh),
         None if np.isnan(r.PreviousLow) else float(r.PreviousLow), bool(r.BrokenHigh), bool(r.BrokenLow))
        for r in ref.itertuples()
    ]  # fmt: skip


def _ours(candles: list[Candle], time_frame: str) -> list[tuple]:
    det = PreviousHighLow(time_frame)
    return [
        (None if v["previous_high"] is None else f32(v["previous_high"]),
         None if v["previous_low"] is None else f32(v["previous_low"]), v["broken_high"], v["broken_low"])
        for v in (det.update(c) for c in candles)
    ]  # fmt: skip


def test_daily_previous_high_low_and_breaks():
    det = PreviousHighLow("1D")
    values = [det.update(c) for c in _candles()]
    none = (None, None, False, False)
    assert _brief(values) == [
        none, none, none, none,  # day 0: no previous day
        none,  # day 1 00:00: day 1's own label is not before the candle: only day 0 is, and it is the last one
        (12.0, 8.0, True, False), (12.0, 8.0, True, True), (12.0, 8.0, True, True),
        (12.0, 8.0, True, True),  # day 2 00:00: the reference gives the day before yesterday (same group as above)
        (13.0, 7.0, False, False), (13.0, 7.0, True, False), (13.0, 7.0, True, True),
    ]  # fmt: skip
    assert det.values == values[-1]
    assert _brief(values) == _reference(_candles(), "1D")


def test_weekly_is_the_week_before_last_except_on_sunday_after_midnight():
    # W = W-SUN: weeks Monday .. Sunday, labelled by their Sunday 00:00 (the week's end)
    bars = [(10 + i, 5 - i) for i in range(4)]
    times = [MONDAY, MONDAY + 7 * DAY, MONDAY + 13 * DAY + 12 * HOUR, MONDAY + 14 * DAY]  # 3rd: a Sunday noon
    candles = [Candle(lo, float(h), float(lo), h, 0.0, t) for (h, lo), t in zip(bars, times, strict=True)]
    det = PreviousHighLow("W")
    values = [det.update(c) for c in candles]
    assert _brief(values) == [
        (None, None, False, False),
        (None, None, False, False),  # week 2: only week 1 is labelled before it, and it is the last one
        (10.0, 5.0, True, True),  # Sunday noon of week 2: its label (Sunday 00:00) is before it: week 1
        (10.0, 5.0, True, True),  # Monday of week 3: the week before last (week 1), same group
    ]
    assert _brief(values) == _reference(candles, "W")


@pytest.mark.parametrize("time_frame", ["4h", "1D", "W", "5h", "90min", "2D", "W-WED", "1h"])
def test_equals_the_reference_library_with_missing_candles(time_frame):
    # starts at 05:15 on a Wednesday: the origin of the periods is the first day's midnight, like pandas'
    candles = _walk(4000, seed=5, start=MONDAY + 2 * DAY + 5 * HOUR + 15 * 60_000)
    assert _ours(candles, time_frame) == _reference(candles, time_frame)


def test_state_round_trip_mid_series_continues_identically():
    candles = _walk(1500, seed=2, start=MONDAY)
    for time_frame in ("4h", "W"):
        whole = PreviousHighLow(time_frame)
        expected = [whole.update(c) for c in candles]
        for cut in (1, 97, 700):
            det = PreviousHighLow(time_frame)
            head = [det.update(c) for c in candles[:cut]]
            restored = PreviousHighLow.from_state(orjson.loads(orjson.dumps(det.to_state())))
            assert restored.values == head[-1]
            assert head + [restored.update(c) for c in candles[cut:]] == expected


def test_no_lookahead_a_prefix_gets_the_same_values():
    candles = _walk(1000, seed=9, start=MONDAY)
    full = _ours(candles, "1D")
    for cut in (3, 150, 999):
        assert _ours(candles[:cut], "1D") == full[:cut]


@pytest.mark.parametrize("bad", ["", "1M", "2W", "0h", "W-XYZ", "4h-MON", "15s", "abc", None, 4])
def test_invalid_time_frames_raise(bad):
    with pytest.raises(ValueError, match="time_frame"):
        PreviousHighLow(bad)


def test_time_must_increase():
    det = PreviousHighLow()
    det.update(Candle(1.0, 1.0, 1.0, 1.0, 0.0, 5))
    with pytest.raises(ValueError):
        det.update(Candle(1.0, 1.0, 1.0, 1.0, 0.0, 5))
