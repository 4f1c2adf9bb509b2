import math
import random

import pandas as pd
import pytest

from stream_processor.market.indicators import RollingSum


def _volumes(trades, which):
    if which == "all":
        return trades.size
    if which == "buy":  # aggressor bought: the buyer is the taker, m == False
        return [0.0 if m else q for q, m in zip(trades.size, trades.buyer_maker, strict=True)]
    return [q if m else 0.0 for q, m in zip(trades.size, trades.buyer_maker, strict=True)]


def _exact(values, length):
    return [math.nan] * (length - 1) + [
        math.fsum(values[i - length + 1 : i + 1]) for i in range(length - 1, len(values))
    ]


@pytest.mark.parametrize("which", ["all", "buy", "sell"])
@pytest.mark.parametrize("length", [2, 10, 50, 200])
def test_rolling_sum_matches_pandas_rolling_sum(trades, assert_matches, warmup_of, length, which):
    values = _volumes(trades, which)
    rsum = RollingSum(length)
    streamed = [rsum.update(q) for q in values]

    assert warmup_of(streamed) == length - 1
    # pandas' own Kahan rolling sum drifts from the exact sum by up to ~2e-11 relative on this data.
    assert_matches(
        f"RollingSum({length}) {which} vs pandas", streamed, pd.Series(values).rolling(length).sum()
    )
    # Against the exact (correctly rounded) window sum we are within a few ulps (in fact bit-equal).
    assert_matches(f"RollingSum({length}) {which} vs fsum", streamed, _exact(values, length), rtol=1e-15)


def test_rolling_sum_keeps_relative_precision_after_a_large_value_leaves():
    # 5 BTC prints among dust: after each large value leaves, the window holds only 1e-5 sizes.
    # A naive add/subtract running sum ends up with absolute errors ~1e-16 x 5, i.e. ~1e-11 relative
    # to 3e-5, growing with the stream; the compensated sum stays at the exact value.
    rng = random.Random(7)
    values = [5.0 if i % 4 == 0 else rng.choice([1e-5, 2e-5, 3.3e-5]) for i in range(40_000)]
    rsum = RollingSum(3)
    naive, naive_worst, worst = 0.0, 0.0, 0.0
    for i, x in enumerate(values):
        got = rsum.update(x)
        naive += x - (values[i - 3] if i >= 3 else 0.0)
        if i >= 2:
            exact = math.fsum(values[i - 2 : i + 1])
            worst = max(worst, abs(got - exact) / exact)
            naive_worst = max(naive_worst, abs(naive - exact) / exact)
    assert naive_worst > 1e-9, "the scenario must be one where a naive running sum fails"
    assert worst <= 1e-15


def test_rolling_sum_of_zeros_after_large_values_is_exactly_zero():
    rsum = RollingSum(3)
    for x in (5.0, 0.1, 1e-5, 0.0, 0.0, 0.0):
        out = rsum.update(x)
    assert out == 0.0


def test_rolling_sum_window_is_bounded(trades):
    rsum = RollingSum(50)
    assert rsum._window.maxlen == 50
    for i, q in enumerate(trades.size[:1000]):
        rsum.update(q)
        assert len(rsum._window) == min(i + 1, 50)
    state = rsum.to_state()
    assert len(state["_window"]) == 50


@pytest.mark.parametrize("length", [0, -1, 2.5, True, "10", None])
def test_invalid_lengths_are_rejected(length):
    with pytest.raises(ValueError):
        RollingSum(length)
