"""Sessions: the reference's session hours (UTC, both ends included), its running high/low, its time_zone meaning."""

from __future__ import annotations

import warnings

import numpy as np
import orjson
import pandas as pd
import pytest

from stream_processor.market.smc import Candle, Sessions
from stream_processor.market.smc.events import f32
from stream_processor.market.smc.sessions import SESSIONS

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from smartmoneyconcepts.smc import smc

JAN_1 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
JUN_3 = 1_717_372_800_000  # 2024-06-03 00:00 UTC
MINUTE = 60_000
HOUR = 60 * MINUTE


def _at(day_ms: int, hh: int, mm: int, high: float = 2.0, low: float = 1.0) -> Candle:
    return Candle(low, high, low, high, 0.0, day_ms + hh * HOUR + mm * MINUTE)


def _walk(n: int, seed: int, start: int, step_ms: int) -> list[Candle]:
    rng = np.random.default_rng(seed)
    out, price = [], 100.0
    for i in range(n):
        c = round(price + float(rng.normal(0, 1)), 2)
        h = round(max(price, c) + abs(float(rng.normal(0, 0.5))), 2)
        lo = round(min(price, c) - abs(float(rng.normal(0, 0.5))), 2)
        out.append(Candle(price, h, lo, c, 1.0, start + step_ms * i))
        price = c
    return out


def _ours(det: Sessions, candles: list[Candle]) -> list[tuple]:
    return [(int(v["active"]), f32(v["high"] or 0.0), f32(v["low"] or 0.0)) for v in (det.update(c) for c in candles)]


def _reference(candles: list[Candle], session: str, time_zone: str = "UTC", start="", end="") -> list[tuple]:
    index = pd.to_datetime([c.open_time_ms for c in candles], unit="ms")
    df = pd.DataFrame([c[:5] for c in candles], columns=["open", "high", "low", "close", "volume"], index=index)
    ref = smc.sessions(df, session, start_time=start, end_time=end, time_zone=time_zone)
    return [(int(r.Active), float(r.High), float(r.Low)) for r in ref.itertuples()]


def test_london_includes_both_ends_and_keeps_the_running_high_and_low():
    det = Sessions("London")
    candles = [
        _at(JAN_1, 6, 45, 5.0, 1.0),
        _at(JAN_1, 7, 0, 2.0, 1.5),
        _at(JAN_1, 12, 0, 3.0, 1.2),
        _at(JAN_1, 16, 0, 2.5, 0.9),
        _at(JAN_1, 16, 15, 9.0, 0.1),
        _at(JAN_1 + 24 * HOUR, 7, 0, 2.2, 2.0),  # the next day starts over
    ]
    values = [det.update(c) for c in candles]
    assert [(v["active"], v["high"], v["low"]) for v in values] == [
        (False, None, None),
        (True, 2.0, 1.5),
        (True, 3.0, 1.2),
        (True, 3.0, 0.9),
        (False, None, None),
        (True, 2.2, 2.0),
    ]
    assert {v["session"] for v in values} == {"London"}
    assert det.values == values[-1]


def test_a_session_through_midnight_and_seconds_dropped():
    det = Sessions("Sydney")  # 21:00 .. 06:00
    times = [(20, 59), (21, 0), (23, 45), (0, 0), (6, 0), (6, 1)]
    assert [det.update(_at(JAN_1, hh, mm))["active"] for hh, mm in times[:3]] == [False, True, True]
    assert [det.update(_at(JAN_1 + 24 * HOUR, hh, mm))["active"] for hh, mm in times[3:]] == [True, True, False]
    det = Sessions("London")
    assert det.update(Candle(1.0, 1.0, 1.0, 1.0, 0.0, JAN_1 + 16 * HOUR + 30_000))["active"]  # 16:00:30 -> 16:00


def test_time_zone_offsets_have_the_reference_posix_sign():
    # "UTC+2" is the reference's Etc/GMT+2: a clock two hours BEHIND UTC, so wall 05:00 is 07:00 UTC.
    assert Sessions("London", time_zone="UTC+2").update(_at(JAN_1, 5, 0))["active"]
    assert not Sessions("London", time_zone="UTC+2").update(_at(JAN_1, 4, 45))["active"]  # 06:45 UTC
    assert not Sessions("London", time_zone="GMT-1").update(_at(JAN_1, 7, 30))["active"]  # 06:30 UTC
    assert Sessions("London", time_zone="GMT-1").update(_at(JAN_1, 8, 0))["active"]  # 07:00 UTC


def test_iana_zones_follow_daylight_saving():
    # A candle clock in London time: 08:00 BST (summer) is 07:00 UTC, 07:30 BST is 06:30 UTC; in winter 07:00 GMT
    assert Sessions("London", time_zone="Europe/London").update(_at(JUN_3, 8, 0))["active"]
    assert not Sessions("London", time_zone="Europe/London").update(_at(JUN_3, 7, 30))["active"]
    assert Sessions("London", time_zone="Europe/London").update(_at(JAN_1, 7, 0))["active"]
    # a wall time that the spring change skips (01:30 on 2024-03-31) takes the offset before it: 01:30 UTC
    skipped = _at(JAN_1 + 90 * 24 * HOUR, 1, 30)
    assert Sessions("Custom", "01:30", "01:31", time_zone="Europe/London").update(skipped)["active"]
    assert not Sessions("Custom", "00:30", "00:31", time_zone="Europe/London").update(skipped)["active"]
    assert Sessions("London", time_zone="Etc/UTC").update(_at(JAN_1, 7, 0))["active"]


@pytest.mark.parametrize("session", [*SESSIONS, "Custom"])
@pytest.mark.parametrize("time_zone", ["UTC", "GMT+2", "UTC-3", "Asia/Tokyo", "America/New_York"])
def test_equals_the_reference_library(session, time_zone):
    candles = _walk(800, seed=len(session), start=JUN_3 + 7 * MINUTE, step_ms=450_000)  # no DST change in range
    start, end = ("22:30", "01:15") if session == "Custom" else ("", "")
    det = Sessions(session, start or None, end or None, time_zone=time_zone)
    assert _ours(det, candles) == _reference(candles, session, time_zone, start, end)


def test_custom_start_equal_to_end_is_always_active_like_the_reference():
    candles = _walk(200, seed=1, start=JAN_1, step_ms=15 * MINUTE)
    det = Sessions("Custom", start="10:00", end="10:00")
    assert _ours(det, candles) == _reference(candles, "Custom", start="10:00", end="10:00")
    assert all(a == 1 for a, _, _ in _ours(Sessions("Custom", "10:00", "10:00"), candles))


def test_state_round_trip_mid_series_continues_identically():
    candles = _walk(600, seed=4, start=JAN_1, step_ms=15 * MINUTE)
    custom = {"session": "Custom", "start": "23:00", "end": "2:00", "time_zone": "GMT+3"}
    for kwargs in ({"session": "New York"}, custom):
        whole = Sessions(**kwargs)
        expected = [whole.update(c) for c in candles]
        for cut in (1, 57, 300):
            det = Sessions(**kwargs)
            head = [det.update(c) for c in candles[:cut]]
            restored = Sessions.from_state(orjson.loads(orjson.dumps(det.to_state())))
            assert head + [restored.update(c) for c in candles[cut:]] == expected


def test_no_lookahead_a_prefix_gets_the_same_values():
    candles = _walk(500, seed=8, start=JAN_1, step_ms=15 * MINUTE)
    full = _ours(Sessions("Tokyo"), candles)
    for cut in (5, 250, 499):
        assert _ours(Sessions("Tokyo"), candles[:cut]) == full[:cut]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"session": "Frankfurt"}, "session"),
        ({"session": "london"}, "session"),
        ({"session": "Custom"}, "start"),
        ({"session": "Custom", "start": "07:00"}, "end"),
        ({"session": "Custom", "start": "25:00", "end": "08:00"}, "start"),
        ({"session": "Custom", "start": "07:00", "end": "8h"}, "end"),
        ({"session": "London", "start": "07:00", "end": "08:00"}, "start"),
        ({"session": "London", "time_zone": "Mars/Olympus"}, "time_zone"),
        ({"session": "London", "time_zone": "UTC+2:30"}, "time_zone"),
        ({"session": "London", "time_zone": ""}, "time_zone"),
    ],
)
def test_invalid_parameters_raise_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Sessions(**kwargs)


def test_time_must_increase():
    det = Sessions()
    det.update(Candle(1.0, 1.0, 1.0, 1.0, 0.0, 5))
    with pytest.raises(ValueError):
        det.update(Candle(1.0, 1.0, 1.0, 1.0, 0.0, 5))
