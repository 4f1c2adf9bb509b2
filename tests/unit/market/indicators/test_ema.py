import math

import pandas as pd
import pandas_ta as ta
import pytest

from stream_processor.market.indicators import EMA


@pytest.mark.parametrize("length", [1, 2, 10, 50, 200])
def test_ema_matches_pandas_ta_on_real_trades(trades, assert_matches, warmup_of, length):
    ema = EMA(length)
    streamed = [ema.update(p) for p in trades.price]
    reference = ta.ema(pd.Series(trades.price), length=length, talib=False)

    assert warmup_of(streamed) == length - 1
    assert_matches(f"EMA({length})", streamed, reference, rtol=1e-9)


def test_ema_is_seeded_with_the_sma_of_the_first_length_values(trades):
    ema = EMA(10)
    out = [ema.update(p) for p in trades.price[:11]]
    seed = math.fsum(trades.price[:10]) / 10
    assert out[9] == seed
    alpha = 2 / 11
    assert out[10] == pytest.approx((1 - alpha) * seed + alpha * trades.price[10], rel=1e-15, abs=0)


def test_ema_small_example():
    # span 3 -> alpha 0.5; seed = mean(2, 4, 6) = 4
    ema = EMA(3)
    assert [ema.update(x) for x in (2.0, 4.0, 6.0, 8.0, 8.0, 0.0)] == [None, None, 4.0, 6.0, 7.0, 3.5]
    assert ema.value == 3.5


def test_ema_state_is_constant_size(trades):
    ema = EMA(50)
    for p in trades.price:
        ema.update(p)
    state = ema.to_state()
    assert not any(isinstance(v, list) for v in state.values())
    assert set(state) == {"_value", "length", "_count", "_seed_sum", "_seed_comp"}
