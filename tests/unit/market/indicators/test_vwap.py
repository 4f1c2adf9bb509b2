import math

import numpy as np
import pandas as pd
import pandas_ta as ta
import pytest

from stream_processor.market.indicators import VWAP

DAY_MS = 86_400_000


def _reference(trades, utc=True):
    index = pd.to_datetime(np.asarray(trades.time_ms), unit="ms", utc=utc)
    price = pd.Series(trades.price, index=index)
    volume = pd.Series(trades.size, index=index)
    return ta.vwap(high=price, low=price, close=price, volume=volume, anchor="D", talib=False)


def test_vwap_matches_pandas_ta_anchor_d_across_utc_midnight(trades, assert_matches, warmup_of):
    days = {t // DAY_MS for t in trades.time_ms}
    assert len(days) == 2, "the data must span a UTC midnight to exercise the reset"
    vwap = VWAP()
    streamed = [
        vwap.update(p, q, t) for p, q, t in zip(trades.price, trades.size, trades.time_ms, strict=True)
    ]
    reference = _reference(trades)

    assert warmup_of(streamed) == 0
    assert_matches("VWAP(D)", streamed, reference, rtol=1e-9)
    # The tz-naive index (wall clock = UTC) gives the same groups.
    assert_matches("VWAP(D) naive index", streamed, _reference(trades, utc=False), rtol=1e-9)


def test_vwap_resets_at_utc_midnight(trades):
    m = trades.midnight
    vwap = VWAP()
    out = [vwap.update(p, q, t) for p, q, t in zip(trades.price, trades.size, trades.time_ms, strict=True)]
    assert out[0] == trades.price[0]
    assert out[m] == trades.price[m], "the first trade of a day is its own VWAP"
    pv = math.fsum(p * q for p, q in zip(trades.price[m:], trades.size[m:], strict=True))
    assert out[-1] == pytest.approx(pv / math.fsum(trades.size[m:]), rel=1e-14, abs=0)
    # Without the reset the value would differ measurably: the check above is not vacuous.
    pv_all = math.fsum(p * q for p, q in zip(trades.price, trades.size, strict=True))
    assert abs(out[-1] - pv_all / math.fsum(trades.size)) / out[-1] > 1e-6


def test_vwap_refuses_a_trade_from_an_earlier_day():
    vwap = VWAP()
    vwap.update(100.0, 1.0, 2 * DAY_MS - 1)
    vwap.update(200.0, 1.0, 2 * DAY_MS)
    before = vwap.to_state()
    with pytest.raises(ValueError):
        vwap.update(150.0, 1.0, 2 * DAY_MS - 5)
    assert vwap.to_state() == before
    # an out-of-order time within the current day is fine
    assert vwap.update(100.0, 1.0, 2 * DAY_MS + 10) == 150.0
    assert vwap.update(300.0, 2.0, 2 * DAY_MS + 5) == 225.0


def test_vwap_is_none_while_the_days_volume_is_zero():
    vwap = VWAP()
    assert vwap.update(100.0, 0.0, 0) is None
    assert vwap.update(101.0, 2.0, 1) == 101.0
    assert vwap.update(99.0, 0.0, DAY_MS) is None  # new day, no volume yet
    assert vwap.value is None


@pytest.mark.parametrize(
    ("price", "size"), [(math.nan, 1.0), (math.inf, 1.0), (100.0, math.nan), (100.0, -1.0), (100.0, math.inf)]
)
def test_vwap_rejects_bad_inputs_without_changing_state(price, size):
    vwap = VWAP()
    vwap.update(100.0, 1.0, 0)
    before = vwap.to_state()
    with pytest.raises(ValueError):
        vwap.update(price, size, 1)
    assert vwap.to_state() == before


@pytest.mark.parametrize("time_ms", [math.nan, 1.5e12, "1723161255342", None])
def test_vwap_requires_integer_millisecond_times(time_ms):
    vwap = VWAP()
    with pytest.raises((ValueError, TypeError)):
        vwap.update(100.0, 1.0, time_ms)
    assert vwap.to_state() == VWAP().to_state()
