"""The detectors against the reference library itself, run here on other real candles and other parameters.

``smartmoneyconcepts`` 0.0.27 (a dev requirement) runs in batch over 2,500 real candles of BTC-PERP 1m (FTX,
with real volumes, so the order blocks' volume and percentage are checked too) and EUR/USD 1h, and over a
synthetic walk on a coarse price grid (many equal highs and lows: the tie rules). Every row that can no longer
change (see ``bench.smc_parity.compared_rows``) must be equal: the library's definitions are causal once their
delays are allowed for, except its whole-frame liquidity range, which is given to the detector here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.smc_parity import DETECTORS, clear_ghost_broken, compare, compared_rows
from stream_processor.market.smc import Candle, SmcDetector
from stream_processor.market.smc.events import f32

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from smartmoneyconcepts.smc import smc

N = 2500


def _btc(shared_data: Path) -> pd.DataFrame:
    path = shared_data / "klines" / "ftx-nautilus" / "btc-perp-20211231-20220201_1m.csv.gz"
    if not path.is_file():
        pytest.fail(f"shared kline data missing: {path}")
    return pd.read_csv(path, nrows=N)[["open", "high", "low", "close", "volume"]]


def _eurusd_1h(shared_data: Path) -> pd.DataFrame:
    path = shared_data / "klines" / "backtesting.py" / "EURUSD.csv.gz"
    if not path.is_file():
        pytest.fail(f"shared kline data missing: {path}")
    df = pd.read_csv(path, nrows=N)
    df.columns = [c.lower() for c in df.columns]
    return df[["open", "high", "low", "close", "volume"]]


def _grid(_: Path) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    mid = (rng.integers(-3, 4, N).cumsum() + 1000).astype(float)
    close = np.roll(mid, -1)
    close[-1] = mid[-1]
    high = np.maximum(mid, close) + rng.integers(0, 3, N)
    low = np.minimum(mid, close) - rng.integers(0, 3, N)
    return pd.DataFrame({"open": mid, "high": high, "low": low, "close": close, "volume": rng.integers(0, 5, N) * 1.0})


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: (None if pd.isna(v) else float(v)) for k, v in r.items()} for r in frame.to_dict("records")]


CASES = [
    ("btc_1m", _btc, 5, True, False),
    ("btc_1m", _btc, 3, False, True),
    ("eurusd_1h", _eurusd_1h, 10, True, False),
    ("eurusd_1h", _eurusd_1h, 1, False, True),
    ("grid", _grid, 2, True, False),
    ("grid", _grid, 5, False, True),
]


@pytest.mark.parametrize(("data", "frame", "length", "close_break", "close_mitigation"), CASES)
def test_detectors_equal_the_library(shared_data, data, frame, length, close_break, close_mitigation):
    df = frame(shared_data)
    pip = 0.01 * (df["high"].max() - df["low"].min())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shl = smc.swing_highs_lows(df, swing_length=length)
        reference = {
            "swings": shl,
            "structure": smc.bos_choch(df, shl, close_break=close_break),
            "fvg": smc.fvg(df),
            "order_blocks": smc.ob(df, shl, close_mitigation=close_mitigation),
            "liquidity": smc.liquidity(df, shl, range_percent=0.01),
        }
    det = SmcDetector(length, close_break=close_break, close_mitigation=close_mitigation, pip_range=pip)
    events = []
    for i, r in enumerate(df.itertuples(index=False)):
        events += det.update(Candle(r.open, r.high, r.low, r.close, r.volume, 60_000 * i))

    unsettled = {
        "swings": det.swings.unsettled(),
        "structure": det.structure.unsettled(),
        "liquidity": det.liquidity.unsettled(),
    }
    for name, (_, rebuild, _) in DETECTORS.items():
        rows = compared_rows(name, N, unsettled.get(name), length)
        assert len(rows) >= N - 150
        adjust = clear_ghost_broken if name == "structure" else None
        p = compare(name, rebuild(events, N), _records(reference[name]), rows, adjust=adjust)
        assert p.theirs >= 10, name
        assert p.mismatches == [], (name, p.mismatches[:3])

    # Order-block volume and percentage (float32 in the library).
    ob = reference["order_blocks"]
    found = {(e["direction"], e["index"]): e for e in events if e["type"] == "order_block"}
    live = np.flatnonzero(ob["OB"].notna().to_numpy())
    assert len(live) >= 10
    for i in live:
        e = found[(int(ob["OB"].iloc[i]), int(i))]
        assert f32(e["volume"]) == f32(float(ob["OBVolume"].iloc[i]))
        assert f32(e["percentage"]) == pytest.approx(float(ob["Percentage"].iloc[i]), rel=1e-6)
    if data == "btc_1m":
        assert ob["OBVolume"].dropna().gt(0).all() and ob["Percentage"].dropna().lt(100).any()
