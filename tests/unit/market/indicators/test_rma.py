"""RMA (Wilder's moving average) against pandas_ta.rma on real klines."""

from __future__ import annotations

import math

import pandas as pd
import pandas_ta as ta
import pytest

from stream_processor.market.indicators.rma import RMA
from tests.unit.market.klines import DATASETS, load_klines, parity, restored


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("length", [1, 2, 3, 14, 20])
def test_rma_matches_pandas_ta_on_real_closes(name: str, length: int) -> None:
    bars = load_klines(name)
    rma = RMA(length)
    streamed = [rma.update(c) for c in bars.close]
    reference = ta.rma(pd.Series(bars.close), length=length)

    p = parity(streamed, reference)
    print(f"RMA({length}) {name}: {p}")
    assert p.warmup == 0  # pandas_ta.rma: ewm without min_periods, the first value is the input
    assert streamed[0] == bars.close[0]
    assert p.max_rel <= 1e-9
    # Same kernel, same seed: bit for bit.
    assert p.equal == 1.0


@pytest.mark.parametrize("name", ["ftx", "gbpusd"])
def test_rma_presma_matches_pandas_ta_atr_seeding(name: str) -> None:
    """``presma=True`` is what pandas_ta.atr does to the true range before rma: SMA of the first N, then rma."""
    bars = load_klines(name)
    length = 14
    x = pd.Series(bars.high) - pd.Series(bars.low)
    seeded = x.copy()
    seeded.iloc[length - 1] = x.iloc[:length].mean()
    seeded.iloc[: length - 1] = math.nan
    reference = ta.rma(seeded, length=length)

    rma = RMA(length, presma=True)
    streamed = [rma.update(v) for v in x.tolist()]
    p = parity(streamed, reference)
    print(f"RMA({length}, presma) {name}: {p}")
    assert p.warmup == length - 1
    assert p.max_rel <= 1e-9


def test_rma_small_examples() -> None:
    # N=2: alpha 1/2; seeded with the first value.
    rma = RMA(2)
    assert [rma.update(x) for x in (2.0, 4.0, 6.0, 6.0, 0.0)] == [2.0, 3.0, 4.5, 5.25, 2.625]
    # presma: mean(2, 4, 6) = 4, then alpha 1/3: 4 * 2/3 + 7/3 = 5.
    rma = RMA(3, presma=True)
    out = [rma.update(x) for x in (2.0, 4.0, 6.0, 7.0)]
    assert out[:3] == [None, None, 4.0]
    assert out[3] == pytest.approx(5.0, rel=1e-15)
    assert rma.value == out[3]


def test_rma_alpha_is_pandas_round_trip_of_one_over_n() -> None:
    # pandas turns alpha into com and back; for N=3 and N=20 that is not bit-equal to 1/N, and the
    # bit-exact parity at those lengths above depends on using pandas' value.
    for n in (3, 20):
        assert RMA(n)._alpha != 1.0 / n
        assert RMA(n)._alpha == pytest.approx(1.0 / n, rel=1e-15)


@pytest.mark.parametrize("presma", [False, True])
@pytest.mark.parametrize("cut", [0, 5, 13, 2_000])
def test_rma_state_round_trip_continues_identically(presma: bool, cut: int) -> None:
    closes = load_klines("eurusd").close
    a = RMA(14, presma=presma)
    for x in closes[:cut]:
        a.update(x)
    b = restored(a)
    assert b.to_state() == a.to_state()
    rest = closes[cut : cut + 1_000]
    assert [b.update(x) for x in rest] == [a.update(x) for x in rest]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_rma_refuses_non_finite_without_changing_state(bad: float) -> None:
    rma = RMA(3, presma=True)
    rma.update(1.0)
    before = rma.to_state()
    with pytest.raises(ValueError, match="finite"):
        rma.update(bad)
    assert rma.to_state() == before


def test_rma_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError):
        RMA(0)
    with pytest.raises(ValueError):
        RMA(14, presma=1)  # type: ignore[arg-type]
