"""KlineVWAP against pandas_ta.vwap(anchor="D") on real klines with volume."""

from __future__ import annotations

import math

import pandas_ta as ta
import pytest

from stream_processor.market.indicators.kline_vwap import KlineVWAP
from tests.unit.market.klines import load_klines, parity, restored

DAY_MS = 86_400_000


@pytest.mark.parametrize("name", ["ftx", "eurusd"])  # gbpusd has no volume
def test_vwap_matches_pandas_ta_on_real_bars(name: str) -> None:
    bars = load_klines(name)
    assert bars.volume is not None
    vwap = KlineVWAP()
    streamed = [
        vwap.update(h, lo, c, v, t)
        for h, lo, c, v, t in zip(bars.high, bars.low, bars.close, bars.volume, bars.open_time_ms, strict=True)
    ]
    df = bars.frame().set_index(bars.utc_index())
    reference = ta.vwap(df["high"], df["low"], df["close"], df["volume"], anchor="D")

    p = parity(streamed, reference)
    days = len({t // DAY_MS for t in bars.open_time_ms})
    print(f"KlineVWAP {name}: {p} over {days} UTC days")
    assert p.warmup == 0
    assert p.max_rel <= 1e-9
    assert days > 30  # the daily anchor is exercised
    # The first bar of each UTC day restarts the session: its VWAP is its own typical price (tp * v / v).
    for i in range(1, len(bars)):
        if bars.open_time_ms[i] // DAY_MS != bars.open_time_ms[i - 1] // DAY_MS:
            tp = (bars.high[i] + bars.low[i] + bars.close[i]) / 3.0
            assert streamed[i] == pytest.approx(tp, rel=5e-16, abs=0)


def test_vwap_with_tz_aware_utc_index_is_the_same() -> None:
    bars = load_klines("eurusd")
    assert bars.volume is not None
    naive_df = bars.frame().set_index(bars.utc_index())
    aware_df = bars.frame().set_index(bars.utc_index().tz_localize("UTC"))
    aware = ta.vwap(aware_df["high"], aware_df["low"], aware_df["close"], aware_df["volume"], anchor="D")
    naive = ta.vwap(naive_df["high"], naive_df["low"], naive_df["close"], naive_df["volume"], anchor="D")
    assert aware is not None and naive is not None
    assert (aware.to_numpy() == naive.to_numpy()).all()


def test_small_example_and_zero_volume() -> None:
    vwap = KlineVWAP()
    t0 = 5 * DAY_MS
    assert vwap.update(11.0, 9.0, 10.0, 0.0, t0) is None  # no volume yet: pandas 0/0 = NaN
    assert vwap.update(12.0, 9.0, 12.0, 2.0, t0 + 60_000) == 11.0
    assert vwap.update(14.0, 12.0, 13.0, 1.0, t0 + 120_000) == pytest.approx((11.0 * 2 + 13.0) / 3, rel=1e-15)
    assert vwap.update(20.0, 20.0, 20.0, 1.0, t0 + DAY_MS) == 20.0  # next UTC day: reset
    with pytest.raises(ValueError, match="earlier UTC day"):
        vwap.update(20.0, 20.0, 20.0, 1.0, t0 + DAY_MS - 1)


@pytest.mark.parametrize("cut", [0, 1, 500, 2_000])
def test_state_round_trip_continues_identically(cut: int) -> None:
    bars = load_klines("eurusd")
    assert bars.volume is not None
    rows = list(zip(bars.high, bars.low, bars.close, bars.volume, bars.open_time_ms, strict=True))
    a = KlineVWAP()
    for r in rows[:cut]:
        a.update(*r)
    b = restored(a)
    assert b.to_state() == a.to_state()
    rest = rows[cut : cut + 1_500]
    assert [b.update(*r) for r in rest] == [a.update(*r) for r in rest]


@pytest.mark.parametrize(
    "bar",
    [
        (math.nan, 1.0, 1.0, 1.0, 0),
        (1.0, 1.0, math.inf, 1.0, 0),
        (1.0, 1.0, 1.0, -1.0, 0),
        (1.0, 1.0, 1.0, math.nan, 0),
    ],
)
def test_refuses_bad_bars_without_changing_state(bar: tuple) -> None:
    vwap = KlineVWAP()
    vwap.update(2.0, 1.0, 1.5, 3.0, 0)
    before = vwap.to_state()
    with pytest.raises(ValueError):
        vwap.update(*bar)
    assert vwap.to_state() == before
