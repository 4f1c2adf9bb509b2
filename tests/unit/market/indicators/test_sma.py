import pandas as pd
import pandas_ta as ta
import pytest

from stream_processor.market.indicators import SMA


@pytest.mark.parametrize("length", [2, 10, 50, 200])
def test_sma_matches_pandas_ta_on_real_trades(trades, assert_matches, warmup_of, length):
    sma = SMA(length)
    streamed = [sma.update(p) for p in trades.price]
    reference = ta.sma(pd.Series(trades.price), length=length, talib=False)

    assert warmup_of(streamed) == length - 1
    assert_matches(f"SMA({length})", streamed, reference, rtol=1e-9)
    assert sma.value == streamed[-1]


def test_sma_window_is_bounded(trades):
    sma = SMA(10)
    window = sma._sum._window
    assert window.maxlen == 10
    for i, p in enumerate(trades.price[:500]):
        sma.update(p)
        assert len(window) == min(i + 1, 10)
    assert list(window) == trades.price[490:500]


def test_sma_length_one_is_the_input():
    # pandas_ta.sma(length=1, talib=False) raises (its convolve slice is empty), so no pandas-ta reference.
    sma = SMA(1)
    assert [sma.update(x) for x in (3.0, 1.5, 2.25)] == [3.0, 1.5, 2.25]


def test_sma_values_small_example():
    sma = SMA(3)
    assert [sma.update(x) for x in (1.0, 2.0, 3.0, 4.0, 10.0)] == [None, None, 2.0, 3.0, 17.0 / 3]
    assert sma.value == 17.0 / 3
