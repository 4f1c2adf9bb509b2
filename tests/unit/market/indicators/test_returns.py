"""Returns against pandas_ta.percent_return / log_return on real klines."""

from __future__ import annotations

import math

import pandas as pd
import pandas_ta as ta
import pytest

from stream_processor.market.indicators.momentum import Momentum
from stream_processor.market.indicators.returns import Returns, ReturnsResult
from tests.unit.market.klines import DATASETS, field, load_klines, parity, restored


@pytest.mark.parametrize("name", DATASETS)
def test_returns_match_pandas_ta_on_real_closes(name: str) -> None:
    closes = load_klines(name).close
    ret = Returns()
    streamed = [ret.update(c) for c in closes]
    series = pd.Series(closes)

    simple = parity(field(streamed, "simple"), ta.percent_return(series, length=1))
    log = parity(field(streamed, "log"), ta.log_return(series, length=1))
    print(f"Returns {name}: simple {simple}; log {log}")
    assert simple.warmup == log.warmup == 1
    assert simple.equal == 1.0  # the same two operations: bit for bit
    assert log.max_rel <= 1e-9  # math.log vs numpy's log: at most an ulp apart
    # Unchanged closes give exactly 0 (the relative error would be inf otherwise).
    assert any(v == 0.0 for v in field(streamed, "simple")[1:])


def test_simple_return_equals_momentum_of_one() -> None:
    closes = load_klines("eurusd").close[:2_000]
    ret, mom = Returns(), Momentum(1)
    assert [None if r is None else r.simple for r in map(ret.update, closes)] == [mom.update(c) for c in closes]


def test_small_example() -> None:
    ret = Returns()
    assert ret.update(100.0) is None
    assert ret.value is None
    r = ret.update(110.0)
    assert r == ReturnsResult(110.0 / 100.0 - 1.0, math.log(1.1))
    assert r.simple == pytest.approx(0.1, rel=1e-14)
    assert ret.update(55.0) == ReturnsResult(-0.5, math.log(0.5))
    assert ret.value == ReturnsResult(-0.5, math.log(0.5))


@pytest.mark.parametrize("cut", [0, 1, 2, 1_000])
def test_state_round_trip_continues_identically(cut: int) -> None:
    closes = load_klines("gbpusd").close
    a = Returns()
    for x in closes[:cut]:
        a.update(x)
    b = restored(a)
    assert b.to_state() == a.to_state()
    assert b.value == a.value
    rest = closes[cut : cut + 1_000]
    assert [b.update(x) for x in rest] == [a.update(x) for x in rest]


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_refuses_non_positive_or_non_finite_without_changing_state(bad: float) -> None:
    ret = Returns()
    ret.update(1.0)
    before = ret.to_state()
    with pytest.raises(ValueError, match="> 0"):
        ret.update(bad)
    assert ret.to_state() == before
