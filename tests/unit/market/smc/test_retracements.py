"""Retracements: the reference's percentages from the last swings, with swings known swing_length candles late."""

from __future__ import annotations

import warnings

import numpy as np
import orjson
import pandas as pd
import pytest

from bench.smc_parity import rebuild_retracements, retracement_rows
from stream_processor.market.smc import Candle, Retracements, SwingDetector

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from smartmoneyconcepts.smc import smc

NONE = (None, None, None)


def _candles(highs: list[float], lows: list[float]) -> list[Candle]:
    pairs = enumerate(zip(highs, lows, strict=True))
    return [Candle((h + lo) / 2, h, lo, (h + lo) / 2, 1.0, 60_000 * i) for i, (h, lo) in pairs]


def _walk(n: int, seed: int) -> list[Candle]:
    rng = np.random.default_rng(seed)
    out, price = [], 100.0
    for i in range(n):
        c = round(price + float(rng.normal(0, 1)), 2)
        h = round(max(price, c) + abs(float(rng.normal(0, 0.4))), 2)
        lo = round(min(price, c) - abs(float(rng.normal(0, 0.4))), 2)
        out.append(Candle(price, h, lo, c, 1.0, 900_000 * i))
        price = c
    return out


def _run(candles: list[Candle], length: int) -> tuple[list[dict], list[int | None], list[dict]]:
    swings, det = SwingDetector(length), Retracements(length)
    values, anchors, events = [], [], []
    for c in candles:
        ev = swings.update(c)
        events += ev
        values.append(det.update(c, ev))
        anchors.append(det.swing_index)
    return values, anchors, events


def _brief(values: list[dict]) -> list[tuple]:
    return [(v["direction"], v["current_retracement_pct"], v["deepest_retracement_pct"]) for v in values]


def _reference(candles: list[Candle], length: int) -> list[tuple]:
    df = pd.DataFrame([c[:5] for c in candles], columns=["open", "high", "low", "close", "volume"])
    ref = smc.retracements(df, smc.swing_highs_lows(df, swing_length=length))
    return [(int(r[1]), float(r[2]), float(r[3])) for r in ref.itertuples()]


HIGHS = [10, 11, 12, 13, 15, 14, 13, 12, 13, 16, 14, 13, 12, 11, 10]
LOWS = [h - 1 for h in HIGHS]


def test_hand_made_series():
    # L=2: synthetic low at 0 (9), swing high at 4 (15, known at 6), low at 7 (11, known at 9), high at 9 (16, at 11)
    values, anchors, _ = _run(_candles(HIGHS, LOWS), 2)
    assert _brief(values) == [NONE] * 9 + [
        (-1, 125.0, 125.0),  # t=9: low at 7 known, replayed over 7..9: high 16 is 25% beyond the swing high 15
        (-1, 75.0, 125.0),  # t=10: 100 - (14 - 15) / (11 - 15) * 100
        (1, 80.0, 80.0),  # t=11: high at 9 known: 100 - (12 - 11) / (16 - 11) * 100, replayed from 9 (0) and 10 (60)
        (1, 100.0, 100.0),
        (1, 120.0, 120.0),
        (1, 140.0, 140.0),
    ]
    assert anchors == [None] * 6 + [4, 4, 4, 7, 7, 9, 9, 9, 9]
    # the reference's row t+1 is candle t: equal on the settled candles 11..13 (the reference marks candle 14)
    ref = _reference(_candles(HIGHS, LOWS), 2)
    assert rebuild_retracements(values)[12:15] == ref[12:15]
    # candle 9 is not settled: the reference already has the swing high at 9 there (its values are 0 on it)
    assert rebuild_retracements(values)[10] != ref[10]


def test_warm_up_is_none_until_two_real_swings():
    values, _, events = _run(_candles(HIGHS, LOWS), 2)
    first_values = next(i for i, v in enumerate(values) if v["direction"] is not None)
    real = [e["confirmed_index"] for e in events if e["type"].startswith("swing_") and not e.get("synthetic")]
    assert first_values == real[1] == 9


@pytest.mark.parametrize(("seed", "length"), [(1, 5), (2, 5), (3, 3), (4, 8)])
def test_equals_the_reference_library_on_settled_candles(seed, length):
    candles = _walk(3000, seed)
    n = len(candles)
    values, anchors, events = _run(candles, length)
    ours, theirs = rebuild_retracements(values), _reference(candles, length)
    _, settled = retracement_rows(anchors, events, n)
    # past the reference's zeroed start (through its 3rd real swing at most: it depends on where the data ends)
    real = sorted(e["index"] for e in events if e["type"] in ("swing_high", "swing_low") and not e["synthetic"])
    rows = [r for r in settled if r - 1 > real[2]]
    assert len(rows) > 0.3 * n
    assert [ours[r] for r in rows] == [theirs[r] for r in rows]


def test_state_round_trip_mid_series_continues_identically():
    candles = _walk(800, 6)
    expected = _brief(_run(candles, 5)[0])
    for cut in (1, 13, 400, 799):
        swings, det = SwingDetector(5), Retracements(5)
        head = [det.update(c, swings.update(c)) for c in candles[:cut]]
        swings = SwingDetector.from_state(orjson.loads(orjson.dumps(swings.to_state())))
        det = Retracements.from_state(orjson.loads(orjson.dumps(det.to_state())))
        assert det.values == head[-1]
        tail = [det.update(c, swings.update(c)) for c in candles[cut:]]
        assert _brief(head + tail) == expected


def test_no_lookahead_a_prefix_gets_the_same_values():
    candles = _walk(600, 12)
    full = _run(candles, 5)[0]
    for cut in (20, 333, 599):
        assert _run(candles[:cut], 5)[0] == full[:cut]


@pytest.mark.parametrize("bad", [0, -1, 2.5, "5", True, None])
def test_invalid_swing_length_raises(bad):
    with pytest.raises(ValueError, match="swing_length"):
        Retracements(bad)


def test_swing_events_of_another_length_raise():
    candles = _candles(HIGHS, LOWS)
    swings, det = SwingDetector(2), Retracements(3)
    with pytest.raises(ValueError, match="SwingDetector"):
        for c in candles:
            det.update(c, swings.update(c))


def test_time_must_increase():
    det = Retracements()
    det.update(Candle(1.0, 1.0, 1.0, 1.0, 0.0, 5), [])
    with pytest.raises(ValueError):
        det.update(Candle(1.0, 1.0, 1.0, 1.0, 0.0, 5), [])
