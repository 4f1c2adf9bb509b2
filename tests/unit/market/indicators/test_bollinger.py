"""Bollinger bands against pandas_ta.bbands(talib=False) on real klines, an exact variance, and ChartSchool."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pandas_ta as ta
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from stream_processor.market.indicators.bollinger import BollingerBands, BollingerResult
from tests.unit.market.klines import CS_DIR, DATASETS, field, load_klines, parity, require, restored

# pandas-ta column order: BBL, BBM, BBU, BBB, BBP.
BANDS = (("lower", 0), ("mid", 1), ("upper", 2))


def two_pass_std(x: np.ndarray, n: int, ddof: int = 1) -> np.ndarray:
    """Rolling std by the corrected two-pass formula on each window (accurate to ~1e-16; NaN warm-up)."""
    w = sliding_window_view(x, n)
    d = w - w.mean(axis=1, keepdims=True)
    var = ((d * d).sum(axis=1) - d.sum(axis=1) ** 2 / n) / (n - ddof)
    return np.concatenate([np.full(n - 1, np.nan), np.sqrt(np.maximum(var, 0.0))])


@pytest.fixture(scope="module", params=DATASETS)
def case(request: pytest.FixtureRequest) -> tuple[str, np.ndarray, list[BollingerResult | None], list, pd.DataFrame]:
    closes = load_klines(request.param).close
    bb = BollingerBands(20, 2.0)
    streamed, stdevs = [], []
    for c in closes:
        streamed.append(bb.update(c))
        stdevs.append(bb.stdev)
    reference = ta.bbands(pd.Series(closes), length=20, lower_std=2.0, upper_std=2.0, talib=False)
    return request.param, np.array(closes), streamed, stdevs, reference


@pytest.mark.parametrize(("output", "column"), BANDS)
def test_bands_match_pandas_ta_on_real_closes(case, output: str, column: int) -> None:
    name, _, streamed, _, reference = case
    p = parity(field(streamed, output), reference.iloc[:, column])
    print(f"BBANDS(20,2).{output} {name}: {p}")
    assert p.warmup == 19
    assert p.max_rel <= 1e-9


def test_deviation_is_exact_and_pandas_rolling_var_is_not(case) -> None:
    """The deviation is within 1e-13 of an exact two-pass computation; pandas' rolling Welford variance
    (what pandas-ta uses) drifts up to ~1e-7 relative over these series, which is why bandwidth and %B,
    both proportional to 1/deviation, agree with pandas-ta to ~1e-7 only."""
    name, closes, _, stdevs, reference = case
    exact = two_pass_std(closes, 20)
    ours = parity(stdevs, exact)
    pandas_sd = pd.Series(closes).rolling(20).std().to_numpy()
    theirs = parity([None if math.isnan(v) else v for v in pandas_sd], exact)
    print(f"BBANDS std {name}: ours vs two-pass {ours}; pandas vs two-pass {theirs}")
    assert ours.max_rel <= 1e-13
    assert ours.max_rel < theirs.max_rel
    # The bands' parity with pandas-ta above is then limited by pandas' deviation, scaled down by
    # 2 * std / price (~1e-4): 1e-7 * 1e-4 well inside 1e-9.


def test_bandwidth_and_percent(case) -> None:
    name, closes, streamed, _, reference = case
    exact_sd = two_pass_std(closes, 20)
    mid = reference.iloc[:, 1].to_numpy()
    lower, upper = mid - 2.0 * exact_sd, mid + 2.0 * exact_sd
    exact_bw = 100.0 * (upper - lower) / mid
    exact_pct = (closes - lower) / (upper - lower)
    bw = field(streamed, "bandwidth")
    pct = field(streamed, "percent")

    vs_exact = parity(bw, exact_bw)
    vs_pandas = parity(bw, reference.iloc[:, 3])
    print(f"BBANDS bandwidth {name}: vs exact {vs_exact}; vs pandas-ta {vs_pandas}")
    # pandas-ta's width is upper - lower of two rounded prices: ~1 ulp of the price over a width of
    # ~1e-4 of it (GBP/USD 1m) is ~1e-12 relative, whatever the deviation's accuracy.
    assert vs_exact.max_rel <= 1e-11
    assert vs_pandas.max_rel <= 2e-7

    # %B is a position inside the band (0 = lower, 1 = upper); it crosses 0, so compare absolutely.
    vs_exact = parity(pct, exact_pct)
    vs_pandas = parity(pct, reference.iloc[:, 4])
    print(f"BBANDS percent {name}: vs exact {vs_exact}; vs pandas-ta {vs_pandas}")
    assert vs_exact.max_abs <= 1e-11
    assert vs_pandas.max_abs <= 2e-7


def test_population_deviation_matches_pandas_ta_ddof0() -> None:
    closes = load_klines("gbpusd").close[:5_000]
    bb = BollingerBands(20, 2.0, ddof=0)
    streamed = [bb.update(c) for c in closes]
    reference = ta.bbands(pd.Series(closes), length=20, lower_std=2.0, upper_std=2.0, ddof=0, talib=False)
    for output, column in BANDS:
        assert parity(field(streamed, output), reference.iloc[:, column]).max_rel <= 1e-9


def test_chartschool_example_uses_the_population_deviation() -> None:
    """cs-bbands.csv (bukosabino/ta, ChartSchool): population std (ddof=0). pandas-ta's default is the
    sample std (ddof=1): its bands are wider by sqrt(20/19). Both facts are checked to the CSV's 6 decimals."""
    cs = pd.read_csv(require(CS_DIR / "cs-bbands.csv"))
    closes = cs["Close"].tolist()
    pop, sample = BollingerBands(20, 2.0, ddof=0), BollingerBands(20, 2.0)
    ours0 = [pop.update(c) for c in closes][19:]
    ours1 = [sample.update(c) for c in closes][19:]
    rows = cs.iloc[19:]
    for col, attr in [
        ("MiddleBand", "mid"),
        ("HighBand", "upper"),
        ("LowBand", "lower"),
        ("WidthBand", "bandwidth"),
        ("PercentageBand", "percent"),
    ]:
        err = np.abs(np.array(field(ours0, attr), dtype=float) - rows[col].to_numpy()).max()
        assert err < 1e-6, (col, err)
    half_width_cs = (rows["HighBand"] - rows["MiddleBand"]).to_numpy()
    half_width_ours = np.array([r.upper - r.mid for r in ours1 if r is not None])
    assert np.abs(half_width_ours / half_width_cs - math.sqrt(20 / 19)).max() < 1e-5
    assert np.abs(np.array(field(ours1, "upper"), dtype=float) - rows["HighBand"].to_numpy()).max() > 0.1


def test_large_price_level_small_moves_stay_exact() -> None:
    """Prices ~1e8 with moves of ~1e-3 over 50k updates: a naive sum-of-squares variance would lose all
    digits (1e16 squared); the shifted, compensated sums stay at the exact deviation."""
    rng = np.random.default_rng(7)
    x = 1e8 + np.cumsum(rng.normal(0.0, 1e-3, 50_000))
    x = np.round(x, 3)
    bb = BollingerBands(20, 2.0)
    stdevs = []
    for v in x.tolist():
        bb.update(v)
        stdevs.append(bb.stdev)
    p = parity(stdevs, two_pass_std(x, 20))
    print(f"BBANDS std at 1e8: {p}")
    assert p.max_rel <= 1e-9


def test_flat_window_has_zero_width_and_no_percent() -> None:
    bb = BollingerBands(3, 2.0)
    out = [bb.update(x) for x in (1.1, 1.3, 1.2, 1.2, 1.2)]
    assert out[2] is not None and out[2].upper > out[2].lower
    assert out[4] == BollingerResult(out[4].mid, out[4].mid, out[4].mid, 0.0, None)
    assert bb.stdev == 0.0
    assert out[4].mid == pytest.approx(1.2, rel=1e-15)


def test_small_example() -> None:
    bb = BollingerBands(4, 1.5)
    out = [bb.update(x) for x in (2.0, 4.0, 4.0, 6.0)]
    # mean 4, sample variance (4 + 0 + 0 + 4) / 3, std sqrt(8/3)
    sd = math.sqrt(8 / 3)
    assert out[:3] == [None, None, None]
    r = out[3]
    assert r is not None
    assert (r.lower, r.mid, r.upper) == (4.0 - 1.5 * sd, 4.0, 4.0 + 1.5 * sd)
    assert r.bandwidth == pytest.approx(100 * 3 * sd / 4.0, rel=1e-14)
    assert r.percent == pytest.approx((2.0 + 1.5 * sd) / (3 * sd), rel=1e-14)


@pytest.mark.parametrize("cut", [0, 7, 19, 20, 21, 39, 40, 2_017])
def test_state_round_trip_continues_identically(cut: int) -> None:
    closes = load_klines("eurusd").close
    a = BollingerBands(20, 2.0)
    for x in closes[:cut]:
        a.update(x)
    b = restored(a)
    assert b.to_state() == a.to_state()
    assert b.value == a.value
    rest = closes[cut : cut + 1_500]
    assert [b.update(x) for x in rest] == [a.update(x) for x in rest]


def test_refuses_bad_input_and_parameters() -> None:
    bb = BollingerBands(3)
    bb.update(1.0)
    before = bb.to_state()
    with pytest.raises(ValueError, match="finite"):
        bb.update(math.inf)
    assert bb.to_state() == before
    for kwargs in ({"length": 0}, {"std": 0.0}, {"std": math.nan}, {"length": 5, "ddof": 5}, {"ddof": -1}):
        with pytest.raises(ValueError):
            BollingerBands(**kwargs)
