"""VolumeProfile: exact parity with a brute-force recomputation on real Binance BTCUSDT trades (UTC day and rolling
window), with pandas_ta.vp on real FTX 1m klines, the POC / value area against a hand example and an independent
brute force, merges, state round trips, the day reset and the refusals.

The data is shared, not vendored: if it is missing the tests fail (they must not silently pass by skipping).
"""

from __future__ import annotations

import gzip
import math
import os
import random
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pandas_ta as ta
import pytest

from stream_processor.market.models import Kline, Trade
from stream_processor.market.volume_profile import MAX_PENDING, VolumeProfile

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED_DATA = Path(os.environ.get("SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SPOT = SHARED_DATA / "feeds" / "binance-hftbacktest" / "spot"
FTX = SHARED_DATA / "klines" / "ftx-nautilus" / "btc-perp-20211231-20220201_1m.csv.gz"
DAY_MS = 86_400_000
MIN_MS = 60_000


# ------------------------------------------------------------------------------------------------------ data


@pytest.fixture(scope="module")
def trades() -> list[tuple[str, str, str, int]]:
    """(price string, size string, side, time_ms) of BTCUSDT spot, 2024-08-08 23:54 -> 08-09 00:05 UTC, id order."""
    rows: dict[int, tuple[str, str, str, int]] = {}
    for name in ("btcusdt_20240808.gz", "btcusdt_20240809.gz"):
        with gzip.open(SPOT / name, "rb") as fh:
            for line in fh:
                if b'@trade"' not in line:
                    continue
                d = orjson.loads(line.partition(b" ")[2])["data"]
                rows[d["t"]] = (d["p"], d["q"], "sell" if d["m"] else "buy", d["T"])
    out = [rows[t] for t in sorted(rows)]
    assert len(out) == 19_904
    return out


def _feed(vp: VolumeProfile, rows) -> None:
    for p, q, side, t in rows:
        vp.add_trade(float(p), float(q), side, t)


def _ref_bins(rows, width: str, keys: list[int] | None = None) -> dict[int, list[float]]:
    """Brute force: bin = floor(Decimal(price) / Decimal(width)) (exact decimal), sums of float sizes in order.

    ``keys``: the rows' bins, if already computed."""
    if keys is None:
        w = Decimal(width)
        keys = [int(Decimal(p) // w) for p, *_ in rows]
    out: dict[int, list[float]] = {}
    for k, (_, q, side, _) in zip(keys, rows, strict=True):
        b = out.get(k)
        if b is None:
            b = out[k] = [0.0, 0.0, 0.0]
        b[0] += float(q)
        b[1 if side == "buy" else 2] += float(q)
    return out


def _ref_levels(bins: dict[int, list[float]], width: str) -> list[list[float]]:
    return [[float(k * Decimal(width)), *bins[k]] for k in sorted(bins)]


def _brute_value_area(vols: dict[int, float], share: float) -> tuple[int, int, int]:
    """Independent POC / CBOT value area over a dense array, in exact integer arithmetic (every float volume
    scaled by 2**1100 is an integer): (poc, low bin, high bin)."""
    lo, hi = min(vols), max(vols)
    scaled = {k: int(Fraction(v) * 2**1100) for k, v in vols.items()}
    dense = [scaled.get(k, 0) for k in range(lo, hi + 1)]
    n = len(dense)
    top = max(dense)
    poc = min((i for i in range(n) if dense[i] == top), key=lambda i: (abs(2 * i - (n - 1)), i))
    num, den = Fraction(share).as_integer_ratio()
    total = sum(dense)
    a = b = poc
    acc = dense[poc]
    while acc * den < num * total and (a > 0 or b < n - 1):
        above = dense[b + 1:b + 3] if b < n - 1 else None
        below = dense[max(a - 2, 0):a] if a > 0 else None
        if above is not None and (below is None or sum(above) >= sum(below)):
            b += len(above)
            acc += sum(above)
        else:
            a -= len(below)
            acc += sum(below)
    while b > poc and dense[b] == 0:
        b -= 1
    while a < poc and dense[a] == 0:
        a += 1
    return lo + poc, lo + a, lo + b


# ----------------------------------------------------------------------------- 1. day session vs brute force


@pytest.mark.parametrize(("kwargs", "width"), [
    ({"bin_width": 1.0}, "1"),
    ({"bin_width": 10.0}, "10"),
    ({"bin_width": 0.25}, "0.25"),
    ({"tick_size": 0.01, "max_bins": 100_000}, "0.01"),
    ({"tick_size": 0.01, "ticks_per_bin": 50}, "0.5"),
])
def test_day_profile_equals_brute_force_recomputation(trades, kwargs, width):
    days = [t // DAY_MS for *_, t in trades]
    midnight = days.index(days[-1])
    assert 0 < midnight < len(trades), "the tape crosses 2024-08-09 00:00 UTC"
    checkpoints = sorted({*range(1000, len(trades), 1500), midnight - 1, midnight, midnight + 1, midnight + 7,
                          len(trades)})
    vp = VolumeProfile(**kwargs)
    w = Decimal(width)
    keys = [int(Decimal(p) // w) for p, *_ in trades]
    done = compared = 0
    for cp in checkpoints:
        _feed(vp, trades[done:cp])
        done = cp
        start = days.index(days[cp - 1])  # the session: the trades of the last trade's UTC day
        bins = _ref_bins(trades[start:cp], width, keys[start:cp])
        snap = vp.snapshot()
        assert snap["levels"] == _ref_levels(bins, width)  # exact, bin by bin
        assert snap["session_start_ms"] == days[cp - 1] * DAY_MS
        assert snap["bin_width"] == float(width) and snap["bins"] == len(bins)
        assert snap["volume"] == math.fsum(b[0] for b in bins.values())
        assert snap["buy_volume"] == math.fsum(b[1] for b in bins.values())
        assert snap["sell_volume"] == math.fsum(b[2] for b in bins.values())
        poc, low, high = _brute_value_area({k: b[0] for k, b in bins.items()}, 0.7)
        assert snap["poc"] == float(poc * w) and snap["poc_volume"] == bins[poc][0]
        assert (snap["value_area_low"], snap["value_area_high"]) == (float(low * w), float((high + 1) * w))
        assert snap["value_area_volume"] == math.fsum(bins[k][0] for k in range(low, high + 1) if k in bins)
        assert vp.summary() == {k: v for k, v in snap.items() if k != "levels"}
        compared += len(bins)
    assert compared > 100


def test_the_day_resets_at_utc_midnight_and_an_earlier_day_is_refused(trades):
    days = [t // DAY_MS for *_, t in trades]
    midnight = days.index(days[-1])
    vp = VolumeProfile(bin_width=1.0)
    _feed(vp, trades[:midnight])
    before = vp.snapshot()
    assert before["session_start_ms"] == days[0] * DAY_MS and before["bins"] > 50
    _feed(vp, trades[midnight:midnight + 1])
    p, q, _, t = trades[midnight]
    after = vp.snapshot()
    assert after["session_start_ms"] == days[-1] * DAY_MS == t - t % DAY_MS
    assert after["volume"] == float(q) and after["bins"] == 1 and after["poc"] == math.floor(float(p))
    state = vp.to_state()
    with pytest.raises(ValueError, match="earlier UTC day"):
        vp.add_trade(60000.0, 1.0, "buy", t - DAY_MS)
    with pytest.raises(ValueError, match="earlier UTC day"):
        vp.check(days[0] * DAY_MS + 5)
    with pytest.raises(ValueError, match="time_ms must be an int"):
        vp.add_trade(60000.0, 1.0, "buy", float(t))
    for bad in [(math.nan, 1.0, "buy"), (60000.0, -1.0, "buy"), (60000.0, math.inf, "sell"), (60000.0, 1.0, "b")]:
        with pytest.raises(ValueError):
            vp.add_trade(*bad, t)
    assert vp.to_state() == state  # nothing changed
    vp.add_trade(60000.0, 1.0, "sell", t - 1)  # an earlier time within the day is fine
    assert vp.summary()["sell_volume"] == after["sell_volume"] + 1.0


# --------------------------------------------------------------------------------- 2. pandas_ta.vp parity


@pytest.fixture(scope="module")
def ftx_day() -> pd.DataFrame:
    """FTX BTC-PERP 1m klines of 2022-01-05 (UTC), closes on the 1 USD tick."""
    df = pd.read_csv(FTX)
    df = df[df["timestamp"].str.startswith("2022-01-05")].reset_index(drop=True)
    assert len(df) == 1440 and (df["close"] % 1 == 0).all()
    return df


def _klines(df: pd.DataFrame) -> list[Kline]:
    out = []
    for row in df.itertuples():
        t = int(datetime.strptime(row.timestamp, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC).timestamp() * 1000)
        out.append(Kline("ftx", "BTC-PERP", "1m", t, t + MIN_MS - 1, row.open, row.high, row.low, row.close,
                         row.volume, True))
    return out


@pytest.mark.parametrize("width", [7, 10, 25])
def test_levels_summed_over_vp_sorted_ranges_give_vp_volumes(ftx_day, width):
    close, volume = ftx_day["close"], ftx_day["volume"]
    ref = ta.vp(close, volume, width=width, sort=True, talib=False)
    _, edges = pd.cut(close, width, include_lowest=True, retbins=True)  # the exact edges vp groups by
    vp = VolumeProfile(tick_size=1.0, max_bins=10_000)  # one bin per distinct close: our levels refine vp's ranges
    for k in _klines(ftx_day):
        vp.add_kline(k)
    snap = vp.snapshot()
    levels = np.array(snap["levels"])
    assert snap["bins"] == close.nunique() == 885 and snap["session_start_ms"] == 1641340800000
    first = close.iloc[0]
    for i, row in ref.iterrows():
        a, b = edges[i], edges[i + 1]
        inside = (levels[:, 0] > a) & (levels[:, 0] <= b)  # pd.cut: right-closed, first range widened
        buy, sell = math.fsum(levels[inside, 2]), math.fsum(levels[inside, 3])
        neutral = math.fsum(levels[inside, 1]) - buy - sell
        assert buy == pytest.approx(row["pos_volume"], rel=1e-12, abs=1e-6)
        assert sell == pytest.approx(row["neg_volume"], rel=1e-12, abs=1e-6)
        assert buy + sell == pytest.approx(row["total_volume"], rel=1e-12, abs=1e-6)
        # vp's total excludes neutral volume (unchanged closes) and the first row (no previous close).
        expect_neut = row["neut_volume"] + (volume.iloc[0] if a < first <= b else 0.0)
        assert neutral == pytest.approx(expect_neut, rel=1e-9, abs=1e-3)
        # vp's low/high columns are pandas' rounded labels, not the exact edges.
        assert abs(row["low_close"] - a) <= 0.01 * max(1.0, abs(a)) and abs(row["high_close"] - b) <= 0.01 * b
    # totals
    assert snap["buy_volume"] == pytest.approx(ref["pos_volume"].sum(), rel=1e-12)
    assert snap["sell_volume"] == pytest.approx(ref["neg_volume"].sum(), rel=1e-12)


def test_vp_unsorted_rows_are_time_chunks_whose_ranges_overlap(ftx_day):
    close, volume = ftx_day["close"], ftx_day["volume"]
    # sort=False (the default) fails in pandas_ta 0.4.71b0 with pandas 3 / numpy 2: np.array_split of its DataFrame
    # yields ndarrays, which it then indexes by column name. Its definition, rebuilt: equal-count chunks of the rows
    # in TIME order, each with its close range and its pos/neg volume.
    with pytest.raises(IndexError):
        ta.vp(close, volume, width=10, talib=False)
    sign = np.sign(close.diff().to_numpy())  # NaN on the first row, as signed_series
    pos = np.where(sign > 0, volume, 0.0)
    neg = np.where(sign < 0, volume, 0.0)
    chunks = np.array_split(np.arange(len(close)), 10)
    lows = [close.iloc[c].min() for c in chunks]
    highs = [close.iloc[c].max() for c in chunks]
    vp = VolumeProfile(tick_size=1.0, max_bins=10_000)
    for k in _klines(ftx_day):
        vp.add_kline(k)
    s = vp.summary()
    assert s["buy_volume"] == pytest.approx(math.fsum(pos), rel=1e-15)
    assert s["sell_volume"] == pytest.approx(math.fsum(neg), rel=1e-15)
    overlapping = sum(1 for i in range(10) for j in range(i + 1, 10) if lows[i] <= highs[j] and lows[j] <= highs[i])
    assert overlapping > 0  # so a row's [low, high] range is not that row's volume: no per-row identity here
    levels = np.array(vp.snapshot()["levels"])
    c = chunks[0]
    inside = (levels[:, 0] >= lows[0]) & (levels[:, 0] <= highs[0])
    assert math.fsum(levels[inside, 2]) > math.fsum(pos[c]) * (1 + 1e-6)  # other chunks' closes fall in its range


def test_kline_direction_carries_over_a_session_reset():
    vp = VolumeProfile(bin_width=1.0)
    base = 3 * DAY_MS
    vp.add_kline(Kline("x", "S", "1m", base - MIN_MS, base - 1, 1, 1, 1, 100.0, 2.0, True))
    vp.add_kline(Kline("x", "S", "1m", base, base + MIN_MS - 1, 1, 1, 1, 99.0, 3.0, True))  # new day, down close
    vp.add_kline(Kline("x", "S", "1m", base + MIN_MS, base + 2 * MIN_MS - 1, 1, 1, 1, 99.5, 4.0, True))  # equal bin
    # the first kline of the new day is a down close (99 < 100, the previous day's close), the next an up close
    assert vp.snapshot()["levels"] == [[99.0, 7.0, 4.0, 3.0]]


# --------------------------------------------------------------------------- 3. POC / value area by hand


def _profile(vols: dict[float, float], **kwargs) -> VolumeProfile:
    vp = VolumeProfile(bin_width=1.0, **kwargs)
    for price, v in vols.items():
        vp.add_trade(price + 0.5, float(v), "buy", 1000)
    return vp


def test_value_area_hand_example():
    # volume by price:   98:7  99:3  100:5  101:10  102:20  103:15  104:8  105:2   total 70, 70% = 49
    # POC 102 (20). Pairs: above 103+104 = 23 vs below 101+100 = 15 -> above (43);
    # above: only 105 left = 2 vs below 101+100 = 15 -> below (58 >= 49): value area 100..104.
    s = _profile({98: 7, 99: 3, 100: 5, 101: 10, 102: 20, 103: 15, 104: 8, 105: 2}).summary()
    assert (s["poc"], s["poc_volume"], s["volume"]) == (102.0, 20.0, 70.0)
    assert (s["value_area_low"], s["value_area_high"], s["value_area_volume"]) == (100.0, 105.0, 58.0)


def test_poc_tie_goes_to_the_middle_of_the_range_then_the_lower_price():
    s = _profile({100: 9, 101: 1, 103: 9, 106: 9, 110: 1}).summary()  # middle 105: 106 nearest
    assert s["poc"] == 106.0
    s = _profile({100: 9, 102: 1, 104: 9}).summary()  # 100 and 104 equidistant from 102: the lower
    assert s["poc"] == 100.0


def test_value_area_pair_tie_adds_above_and_empty_ends_are_not_reported():
    # POC 100 (10); above 101+102 = 3+0 = 3, below 99+98 = 3+0 = 3: tie -> above, 102 empty.
    s = _profile({96: 1, 98: 0.0, 99: 3, 100: 10, 101: 3, 104: 1}, value_area=0.75).summary()
    # total 18, target 13.5: 10 -> +3 (above: 101, 102) = 13 -> above 103+104 = 1 vs below 99+98 = 3 -> below = 16
    assert (s["value_area_low"], s["value_area_high"], s["value_area_volume"]) == (99.0, 102.0, 16.0)


def test_value_area_equals_an_independent_brute_force_on_random_profiles():
    rng = random.Random(20240808)
    for _ in range(400):
        n = rng.randint(1, 40)
        share = rng.choice([0.3, 0.5, 0.68, 0.7, 0.9, 1.0])
        vols = {}
        for k in range(n):
            if rng.random() < 0.7:
                vols[k + 100] = float(rng.choice([rng.randint(1, 5), rng.randint(1, 50)]))
        if not vols:
            continue
        s = _profile(vols, value_area=share).summary()
        poc, low, high = _brute_value_area({k: v for k, v in vols.items()}, share)
        assert (s["poc"], s["value_area_low"], s["value_area_high"]) == (poc, low, high + 1), (vols, share)
        assert s["value_area_volume"] == sum(v for k, v in vols.items() if low <= k <= high)


# --------------------------------------------------------------------------------------- 4. rolling window


@pytest.mark.parametrize(("window", "width"), [(1, "1"), (3, "1"), (4, "0.5")])
def test_rolling_window_equals_the_last_n_klines_recomputed(trades, window, width):
    vp = VolumeProfile(bin_width=float(width), window=window, interval="1m")
    per_kline: list[tuple[int, dict[int, list[float]]]] = []
    minute_rows: list = []
    current = None
    compared = 0

    def close(m: int) -> None:
        nonlocal compared
        vp.close_kline(m)
        per_kline.append((m, _ref_bins(minute_rows, width)))
        ref: dict[int, list[float]] = {}
        for _, d in per_kline[-window:]:  # the per-kline sums, folded in kline order
            for k, v in d.items():
                b = ref.setdefault(k, [0.0, 0.0, 0.0])
                b[0] += v[0]
                b[1] += v[1]
                b[2] += v[2]
        snap = vp.snapshot()
        assert snap["levels"] == _ref_levels(ref, width)  # exact
        assert snap["session_start_ms"] == per_kline[-window:][0][0]
        assert snap["volume"] == math.fsum(b[0] for b in ref.values())
        compared += len(ref)

    for row in trades:
        m = row[3] - row[3] % MIN_MS
        if current is not None and m != current:
            close(current)  # the builder closes a minute with the first trade of a later one (grace 0)
            minute_rows = []
        current = m
        minute_rows.append(row)
        vp.add_trade(float(row[0]), float(row[1]), row[2], row[3])
    close(current)
    assert len(per_kline) == 12 and compared > 100
    with pytest.raises(ValueError, match="already closed"):
        vp.add_trade(61000.0, 1.0, "buy", current + 5)
    with pytest.raises(ValueError, match="not after the last closed"):
        vp.close_kline(current)


def test_rolling_with_klines_pending_buckets_and_the_pending_bound():
    vp = VolumeProfile(bin_width=1.0, window=2, interval="1m")
    k = [Kline("x", "S", "1m", i * MIN_MS, (i + 1) * MIN_MS - 1, 1, 1, 1, 100.0 + i, 1.0 + i, True) for i in range(4)]
    vp.add_kline(k[0])
    vp.add_kline(k[1])  # pending: not in the profile until its kline closes
    assert vp.summary()["bins"] == 0
    vp.close_kline(MIN_MS)  # closes 0 and 1 in order
    assert [lv[0] for lv in vp.snapshot()["levels"]] == [100.0, 101.0]
    vp.add_kline(k[2])
    vp.close_kline(2 * MIN_MS)  # kline 0 leaves
    s = vp.snapshot()
    assert s["levels"] == [[101.0, 2.0, 2.0, 0.0], [102.0, 3.0, 3.0, 0.0]] and s["session_start_ms"] == MIN_MS
    vp.close_kline(4 * MIN_MS)  # an empty kline (3 was never added, so it is no kline): the window holds 2 and 4
    assert vp.snapshot()["levels"] == [[102.0, 3.0, 3.0, 0.0]] and vp.summary()["session_start_ms"] == 2 * MIN_MS
    vp.close_kline(5 * MIN_MS)
    assert vp.snapshot()["levels"] == [] and vp.summary()["session_start_ms"] == 4 * MIN_MS
    for i in range(MAX_PENDING + 1):  # one more pending kline than the bound closes the oldest
        vp.add_trade(100.0, 1.0, "buy", (10 + i) * MIN_MS)
    assert len(vp._pending) == MAX_PENDING and vp._last_closed == 10 * MIN_MS
    with pytest.raises(ValueError, match="not the open time"):
        vp.close_kline(100 * MIN_MS + 1)


# ------------------------------------------------------------------------------------------------- merges


def test_max_bins_merges_by_doubling_the_width_exactly(trades):
    rng = random.Random(7)
    rows = [(p, str(rng.randint(1, 4096) / 256), side, t) for p, _, side, t in trades]  # dyadic: sums exact
    vp = VolumeProfile(tick_size=0.01, max_bins=2000)
    _feed(vp, rows)
    snap = vp.snapshot()
    # 61556.04..61860.80 spans 30,477 ticks; 16 ticks = 1,905 bins would fit but 8 ticks would not
    days = [t // DAY_MS for *_, t in rows]
    session = rows[days.index(days[-1]):]
    ticks = [int(Decimal(p) / Decimal("0.01")) for p, *_ in session]
    mult = 1
    while max(ticks) // mult - min(ticks) // mult + 1 > 2000:
        mult *= 2
    assert snap["bin_width"] == round(0.01 * mult, 2) and mult > 1
    direct = VolumeProfile(tick_size=0.01, ticks_per_bin=mult, max_bins=100_000)
    _feed(direct, rows)
    assert snap == direct.snapshot()  # same bins, totals, POC and value area, exactly
    # real (non-dyadic) sizes over the whole first day: the merged float sums regroup, within 1e-12.
    first = [r for r, d in zip(trades, days, strict=True) if d == days[0]]
    merged = VolumeProfile(tick_size=0.01, max_bins=500)
    _feed(merged, first)
    m = merged.snapshot()
    direct = VolumeProfile(bin_width=m["bin_width"], max_bins=100_000)
    _feed(direct, first)
    d = direct.snapshot()
    assert m["bins"] <= 500 and [lv[0] for lv in m["levels"]] == [lv[0] for lv in d["levels"]]
    np.testing.assert_allclose(np.array(m["levels"]), np.array(d["levels"]), rtol=1e-12, atol=1e-15)
    assert m["volume"] == pytest.approx(math.fsum(float(q) for _, q, _, _ in first), rel=1e-15)


def test_rolling_merge_keeps_the_window_exact(trades):
    vp = VolumeProfile(tick_size=0.01, max_bins=300, window=2, interval="1m")
    current = None
    for p, q, side, t in trades:
        m = t - t % MIN_MS
        if current is not None and m != current:
            vp.close_kline(current)
        current = m
        vp.add_trade(float(p), float(q), side, t)
    vp.close_kline(current)
    snap = vp.snapshot()
    assert snap["bins"] <= 300 and snap["bin_width"] > 0.01
    # the aggregate is the in-order fold of the two merged deltas
    ref: dict[int, list[float]] = {}
    for _, d in vp._deltas:
        for k, v in d.items():
            b = ref.setdefault(k, [0.0, 0.0, 0.0])
            for i in range(3):
                b[i] += v[i]
    assert vp._bins == ref


# --------------------------------------------------------------------------------------------------- state


@pytest.mark.parametrize("kwargs", [{"bin_width": 1.0}, {"tick_size": 0.01, "max_bins": 400},
                                    {"bin_width": 0.5, "window": 3, "interval": "1m"}])
def test_state_round_trip_mid_session_continues_identically(trades, kwargs):
    a = VolumeProfile(**kwargs)
    cut = 7_777
    rolling = "window" in kwargs
    current = None

    def step(vp: VolumeProfile, rows, current):
        for p, q, side, t in rows:
            m = t - t % MIN_MS
            if rolling and current is not None and m != current:
                vp.close_kline(current)
            current = m
            vp.add_trade(float(p), float(q), side, t)
        return current

    current = step(a, trades[:cut], current)
    state = a.to_state()
    b = VolumeProfile.from_state(orjson.loads(orjson.dumps(state)))
    assert b.to_state() == state and b.snapshot() == a.snapshot()
    ca = step(a, trades[cut:], current)
    cb = step(b, trades[cut:], current)
    if rolling:
        a.close_kline(ca)
        b.close_kline(cb)
    assert b.to_state() == a.to_state() and b.snapshot() == a.snapshot()
    with pytest.raises(ValueError, match="misses"):
        VolumeProfile.from_state({k: v for k, v in state.items() if k != "_bins"})


# ------------------------------------------------------------------------------------------- params, misc


@pytest.mark.parametrize(("kwargs", "name"), [
    ({}, "bin_width and tick_size"),
    ({"bin_width": 1.0, "tick_size": 0.01}, "bin_width and tick_size"),
    ({"bin_width": 0.0}, "bin_width"),
    ({"bin_width": math.nan}, "bin_width"),
    ({"bin_width": "1"}, "bin_width"),
    ({"tick_size": -0.01}, "tick_size"),
    ({"tick_size": math.inf}, "tick_size"),
    ({"tick_size": 0.01, "ticks_per_bin": 0}, "ticks_per_bin"),
    ({"tick_size": 0.01, "ticks_per_bin": 2.0}, "ticks_per_bin"),
    ({"bin_width": 1.0, "ticks_per_bin": 5}, "ticks_per_bin"),
    ({"bin_width": 1.0, "value_area": 0.0}, "value_area"),
    ({"bin_width": 1.0, "value_area": 1.5}, "value_area"),
    ({"bin_width": 1.0, "max_bins": 1}, "max_bins"),
    ({"bin_width": 1.0, "max_bins": 100.0}, "max_bins"),
    ({"bin_width": 1.0, "window": 0, "interval": "1m"}, "window"),
    ({"bin_width": 1.0, "window": 5}, "interval"),
    ({"bin_width": 1.0, "interval": "1m"}, "interval"),
    ({"bin_width": 1.0, "window": 5, "interval": "7m"}, "interval"),
    ({"bin_width": 1.0, "window": 5, "interval": "1x"}, "interval"),
])
def test_invalid_parameters_raise_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        VolumeProfile(**kwargs)


def test_decimal_exact_bins_and_edges():
    vp = VolumeProfile(bin_width=0.1)
    for p in (0.3, 0.7, 1.0000000000000002, 6.99999999):
        vp.add_trade(p, 1.0, "buy", 0)
    assert [lv[0] for lv in vp.snapshot()["levels"]] == [0.3, 0.7, 1.0, 6.9]  # 0.3 / 0.1 = 2.9999999999999996
    vp = VolumeProfile(tick_size=0.01, ticks_per_bin=3)
    vp.add_trade(61685.99, 1.0, "sell", 0)  # tick 6168599 -> bin 2056199 -> 61685.97
    vp.add_trade(61685.98999999, 1.0, "sell", 0)  # one 1e-8 below the tick: the tick below, same bin
    s = vp.snapshot()
    assert s["levels"] == [[61685.97, 2.0, 0.0, 2.0]] and s["bin_width"] == 0.03
    assert (s["value_area_low"], s["value_area_high"]) == (61685.97, 61686.0)


def test_update_dispatches_trades_and_klines_and_empty_snapshot():
    vp = VolumeProfile(bin_width=10.0)
    assert vp.snapshot() == {
        "session_start_ms": None, "bin_width": 10.0, "volume": 0.0, "buy_volume": 0.0, "sell_volume": 0.0,
        "poc": None, "poc_volume": 0.0, "value_area_high": None, "value_area_low": None, "value_area_volume": 0.0,
        "bins": 0, "levels": [],
    }
    vp.update(Trade("binance", "BTCUSDT", 1, 61685.99, 0.5, "buy", 1723161601437, 1723161601437))
    assert vp.summary()["poc"] == 61680.0 and vp.summary()["session_start_ms"] == 1723161600000
    with pytest.raises(ValueError, match="is open"):
        vp.update(Kline("x", "S", "1m", 0, 1, 1, 1, 1, 1, 1, False))
    orjson.dumps(vp.snapshot())
