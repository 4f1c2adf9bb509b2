"""FairValueGaps(join_consecutive=True): runs of same-direction gaps joined on their last candle, streamed."""

from __future__ import annotations

import warnings

import numpy as np
import orjson
import pandas as pd
import pytest

from bench.smc_parity import rebuild_fvg
from stream_processor.market.smc import Candle, FairValueGaps
from stream_processor.market.smc.events import EVENT_TYPES

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from smartmoneyconcepts.smc import smc

# (open, high, low, close): three bullish gaps in a row (candles 1, 2, 3), then a fall into the joined gap
STAIRS = [
    (10.0, 11.0, 9.0, 10.5),
    (11.0, 13.0, 10.8, 12.8),  # gap: high[0]=11 < low[2]=12 -> top 12, bottom 11
    (12.9, 15.0, 12.0, 14.8),  # gap: high[1]=13 < low[3]=14 -> top 14, bottom 13; joined: 14 / 11
    (14.9, 17.0, 14.0, 16.8),  # gap: high[2]=15 < low[4]=16 -> top 16, bottom 15; joined: 16 / 11
    (16.9, 17.5, 16.0, 17.2),
    (17.0, 17.2, 15.5, 15.6),  # low 15.5 <= 16: mitigates the joined gap at 3
]


def _candles(bars) -> list[Candle]:
    return [Candle(o, h, lo, c, 0.0, 60_000 * i) for i, (o, h, lo, c) in enumerate(bars)]


def _run(det: FairValueGaps, candles: list[Candle]) -> list[dict]:
    return [e for c in candles for e in det.update(c)]


def _walk(n: int, seed: int, step_ms: int = 900_000) -> list[Candle]:
    """A random walk on a 0.1 grid with opening gaps (they make runs of FVGs)."""
    rng = np.random.default_rng(seed)
    out, prev = [], 100.0
    for i in range(n):
        o = prev
        c = round(o + float(rng.normal(0, 1)), 1)
        h = round(max(o, c) + abs(float(rng.normal(0, 0.3))), 1)
        lo = round(min(o, c) - abs(float(rng.normal(0, 0.3))), 1)
        out.append(Candle(o, h, lo, c, 1.0, step_ms * i))
        prev = c if rng.random() < 0.7 else round(c + float(rng.normal(0, 1.5)), 1)
    return out


def test_a_run_of_gaps_is_joined_on_its_last_candle():
    events = _run(FairValueGaps(join_consecutive=True), _candles(STAIRS))
    brief = [(e["confirmed_index"], e["type"], e["index"], e["top"], e["bottom"]) for e in events]
    assert brief == [
        (2, "fvg", 1, 12.0, 11.0),
        (3, "fvg_replaced", 1, 12.0, 11.0),
        (3, "fvg", 2, 14.0, 11.0),
        (4, "fvg_replaced", 2, 14.0, 11.0),
        (4, "fvg", 3, 16.0, 11.0),
        (5, "fvg_mitigated", 3, 16.0, 11.0),
    ]
    assert [e["first_index"] for e in events if e["type"] == "fvg"] == [1, 1, 1]
    replaced = [e for e in events if e["type"] == "fvg_replaced"]
    assert [(e["replaced_by_index"], e["replaced_by_top"], e["replaced_by_bottom"]) for e in replaced] == [
        (2, 14.0, 11.0),
        (3, 16.0, 11.0),
    ]
    assert {e["type"] for e in events} <= EVENT_TYPES
    assert (
        rebuild_fvg(events, len(STAIRS))
        == [(None, None, None, 0)] * 3 + [(1, 16.0, 11.0, 5)] + [(None, None, None, 0)] * 2
    )


def test_without_joining_the_events_are_unchanged():
    events = _run(FairValueGaps(), _candles(STAIRS))
    assert [(e["type"], e["index"], e["top"], e["bottom"]) for e in events] == [
        ("fvg", 1, 12.0, 11.0),
        ("fvg", 2, 14.0, 13.0),
        ("fvg", 3, 16.0, 15.0),
        ("fvg_mitigated", 3, 16.0, 15.0),
    ]
    assert all("first_index" not in e for e in events)


def test_a_gap_replaced_on_the_candle_that_reaches_it_is_not_mitigated():
    bars = [
        (10.0, 11.0, 9.0, 10.5),
        (11.0, 13.0, 10.8, 12.8),  # gap at 1: top = low[2] = 13.5, bottom = high[0] = 11
        (13.5, 15.0, 13.5, 14.8),  # gap at 2: high[1] = 13 < low[3] = 13.2: top 13.2, bottom 13
        (14.8, 15.5, 13.2, 15.0),  # low 13.2 <= 13.5 reaches gap 1, but gap 1 is joined into 2 first
    ]
    det = FairValueGaps(join_consecutive=True)
    events = _run(det, _candles(bars))
    assert [(e["type"], e["index"]) for e in events] == [("fvg", 1), ("fvg_replaced", 1), ("fvg", 2)]
    assert det.unmitigated() == [(1, 13.5, 11.0, 2, 120_000)]
    plain = _run(FairValueGaps(), _candles(bars))  # without joining, candle 3 mitigates gap 1
    assert [(e["type"], e["index"]) for e in plain] == [("fvg", 1), ("fvg_mitigated", 1), ("fvg", 2)]


def test_unmitigated_lists_open_gaps_of_both_directions_by_index():
    bars = [
        (10.0, 11.0, 9.0, 10.5),
        (11.0, 13.0, 10.8, 12.8),  # bullish gap at 1: 12 / 11
        (12.9, 15.0, 12.0, 14.8),  # bullish gap at 2: 14 / 13
        (14.9, 17.0, 14.0, 16.8),
        (16.5, 16.6, 14.5, 14.6),  # bearish gap at 4: low[3] = 14 > high[5] = 13.95
        (13.9, 13.95, 13.6, 13.7),  # low 13.6 <= 14 mitigates gap 2 (not gap 1: 13.6 > 12)
    ]
    for join in (False, True):  # the gaps at 1 and 2 are consecutive: joined into 2 (14 / 11) when joining
        det = FairValueGaps(join_consecutive=join)
        _run(det, _candles(bars))
        expected = [(1, 12.0, 11.0, 1, 60_000)] if not join else []
        assert det.unmitigated() == [*expected, (-1, 14.0, 13.95, 4, 240_000)]
        assert det.open_gaps == len(expected) + 1


def test_joined_gaps_equal_the_reference_library_on_a_random_walk():
    candles = _walk(3000, seed=7)
    df = pd.DataFrame([c[:5] for c in candles], columns=["open", "high", "low", "close", "volume"])
    ref = smc.fvg(df, join_consecutive=True)
    ours = rebuild_fvg(_run(FairValueGaps(join_consecutive=True), candles), len(candles))
    theirs = [
        (None, None, None, 0) if np.isnan(r.FVG) else (int(r.FVG), r.Top, r.Bottom, int(r.MitigatedIndex))
        for r in ref.itertuples()
    ]
    assert sum(1 for r in theirs if r[0] is not None) > 200
    assert ours[:-1] == theirs[:-1]


def test_state_round_trip_mid_series_continues_identically():
    candles = _walk(600, seed=3)
    full = _run(FairValueGaps(join_consecutive=True, max_open=20), candles)
    for cut in (1, 2, 3, 50, 301, 599):
        det = FairValueGaps(join_consecutive=True, max_open=20)
        head = _run(det, candles[:cut])
        restored = FairValueGaps.from_state(orjson.loads(orjson.dumps(det.to_state())))
        assert restored.join_consecutive is True
        assert head + _run(restored, candles[cut:]) == full


def test_a_snapshot_from_before_joining_existed_restores():
    det = FairValueGaps()
    _run(det, _candles(STAIRS[:3]))
    state = det.to_state()
    del state["join_consecutive"], state["_last"]
    restored = FairValueGaps.from_state(state)
    assert restored.join_consecutive is False
    assert _run(restored, _candles(STAIRS)[3:]) == _run(det, _candles(STAIRS)[3:])


def test_no_lookahead_a_prefix_gets_the_same_events():
    candles = _walk(400, seed=11)
    full = FairValueGaps(join_consecutive=True)
    per_candle = [full.update(c) for c in candles]
    for cut in (10, 123, 399):
        det = FairValueGaps(join_consecutive=True)
        assert [det.update(c) for c in candles[:cut]] == per_candle[:cut]


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_join_consecutive_must_be_a_bool(bad):
    with pytest.raises(ValueError, match="join_consecutive"):
        FairValueGaps(join_consecutive=bad)
