import numpy as np
import pandas as pd
import pandas_ta as ta
import pytest

from stream_processor.market.indicators import Momentum


@pytest.mark.parametrize("length", [1, 10, 50, 200])
def test_momentum_matches_pandas_ta_percent_return(trades, assert_matches, warmup_of, length):
    mom = Momentum(length)
    streamed = [mom.update(p) for p in trades.price]
    reference = ta.percent_return(pd.Series(trades.price), length=length)

    assert warmup_of(streamed) == length
    assert_matches(f"Momentum({length})", streamed, reference, rtol=1e-9)
    assert any(v != 0.0 for v in streamed[length:]), "flat prices would make the comparison vacuous"


@pytest.mark.parametrize("length", [10, 50])
def test_momentum_agrees_with_roc_over_100(trades, length):
    mom = Momentum(length)
    streamed = [mom.update(p) for p in trades.price]
    roc = ta.roc(pd.Series(trades.price), length=length, talib=False).to_numpy() / 100
    np.testing.assert_allclose(np.array(streamed[length:]), roc[length:], rtol=1e-9, atol=1e-15)


def test_momentum_window_is_bounded(trades):
    mom = Momentum(10)
    assert mom._window.maxlen == 11
    for p in trades.price[:100]:
        mom.update(p)
        assert len(mom._window) <= 11
    assert list(mom._window) == trades.price[89:100]


def test_momentum_small_example():
    mom = Momentum(2)
    assert [mom.update(x) for x in (100.0, 50.0, 110.0, 100.0)] == [None, None, 110.0 / 100.0 - 1, 1.0]


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_momentum_rejects_non_positive_or_non_finite_prices(bad):
    mom = Momentum(2)
    mom.update(100.0)
    before = mom.to_state()
    with pytest.raises(ValueError):
        mom.update(bad)
    assert mom.to_state() == before
