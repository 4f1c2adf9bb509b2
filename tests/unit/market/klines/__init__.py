"""Real kline series (read from the shared data folder) and parity helpers, shared by the kline and indicator tests.

Datasets (``/work/shared/data/klines``, see its README; times are bar OPEN times):

- ``ftx``: FTX BTC-PERP 1m, 45,031 bars, 2021-12-31 23:01 .. 2022-02-01 05:31; the zone is not given and
  is taken as UTC; ``volume`` looks like USD notional.
- ``eurusd``: EUR/USD 1h (backtesting.py), 5,000 bars; the zone is not stated and is taken as UTC; tick volume.
- ``gbpusd``: FXCM GBP/USD bid 1m, 30,117 bars, UTC; no volume (``volume`` is None).

A missing file fails the test (``pytest.fail``), it never skips.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from stream_processor.market.models import Kline

REPO_ROOT = Path(__file__).resolve().parents[4]
SHARED_DATA = Path(os.environ.get("SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
KLINES_DIR = SHARED_DATA / "klines"
CS_DIR = SHARED_DATA / "indicator_reference" / "bukosabino-ta"

DATASETS = ("ftx", "eurusd", "gbpusd")
_FILES = {
    "ftx": ("ftx-nautilus/btc-perp-20211231-20220201_1m.csv.gz", "1m", 45_031),
    "eurusd": ("backtesting.py/EURUSD.csv.gz", "1h", 5_000),
    "gbpusd": ("fxcm-nautilus/gbpusd-m1-bid-2012.csv.gz", "1m", 30_117),
}


@dataclass(frozen=True)
class KlineSeries:
    """One real bar series as parallel lists (plain Python floats/ints, what a stream would carry)."""

    name: str
    interval: str
    open_time_ms: list[int]
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    volume: list[float] | None

    def __len__(self) -> int:
        return len(self.close)

    def frame(self) -> pd.DataFrame:
        """The series as a DataFrame on a RangeIndex (what the pandas-ta references are computed on)."""
        data = {"open": self.open, "high": self.high, "low": self.low, "close": self.close}
        if self.volume is not None:
            data["volume"] = self.volume
        return pd.DataFrame(data)

    def utc_index(self) -> pd.DatetimeIndex:
        """Bar open times as a naive DatetimeIndex in UTC wall-clock time (what ``vwap(anchor="D")`` groups by)."""
        return pd.DatetimeIndex(pd.to_datetime(self.open_time_ms, unit="ms"))

    def klines(self, venue: str = "test") -> list[Kline]:
        """The bars as closed :class:`Kline` objects (volume 0 where the source has none)."""
        step = int(pd.Timedelta(self.interval).total_seconds() * 1000)
        vols = self.volume if self.volume is not None else [0.0] * len(self)
        rows = zip(self.open_time_ms, self.open, self.high, self.low, self.close, vols, strict=True)
        return [
            Kline(venue, self.name.upper(), self.interval, t, t + step - 1, o, h, lo, c, v, True)
            for t, o, h, lo, c, v in rows
        ]


def require(path: Path) -> Path:
    """Return ``path`` if it is a file, else fail the test (shared data must be present)."""
    if not path.is_file():
        pytest.fail(f"shared market data missing: {path} (set SHARED_DATA)")
    return path


@cache
def load_klines(name: str) -> KlineSeries:
    """Read one dataset (cached for the session). Fails the test if the file is missing."""
    rel, interval, rows = _FILES[name]
    df = pd.read_csv(require(KLINES_DIR / rel))
    df.columns = [str(c).strip().lower() for c in df.columns]
    time_col = df.columns[0]  # "timestamp", or unnamed in the backtesting.py file
    times = pd.to_datetime(df[time_col], utc=True)  # naive strings are taken as UTC
    open_ms = times.dt.as_unit("ms").astype("int64").tolist()
    assert len(df) == rows, f"{name}: {len(df)} rows, expected {rows}"
    assert open_ms == sorted(set(open_ms)), f"{name}: bar times must be strictly increasing"
    return KlineSeries(
        name=name,
        interval=interval,
        open_time_ms=[int(t) for t in open_ms],
        open=df["open"].astype(float).tolist(),
        high=df["high"].astype(float).tolist(),
        low=df["low"].astype(float).tolist(),
        close=df["close"].astype(float).tolist(),
        volume=df["volume"].astype(float).tolist() if "volume" in df else None,
    )


@dataclass(frozen=True)
class Parity:
    """How a streamed series agrees with a batch reference over the rows where the reference is a number."""

    max_abs: float
    max_rel: float
    equal: float  # fraction of compared rows that are bit-for-bit equal
    warmup: int  # leading Nones
    compared: int

    def __str__(self) -> str:
        return (
            f"max abs {self.max_abs:.3e}, max rel {self.max_rel:.3e}, bit-equal {100 * self.equal:.2f}% "
            f"of {self.compared}, warm-up {self.warmup}"
        )


def parity(streamed: Sequence[float | None], reference: Sequence[float] | pd.Series) -> Parity:
    """Compare, asserting that the streamed value is None exactly where the reference is NaN."""
    ref = np.asarray(reference, dtype=float)
    assert len(streamed) == len(ref), (len(streamed), len(ref))
    none = np.array([v is None for v in streamed])
    nan = np.isnan(ref)
    assert np.array_equal(none, nan), (
        f"None at {np.flatnonzero(none)[:5]}.., reference NaN at {np.flatnonzero(nan)[:5]}.."
    )
    got = np.array([math.nan if v is None else v for v in streamed], dtype=float)
    assert np.isfinite(got[~none]).all(), "a streamed value is not finite"
    ok = ~nan
    assert ok.sum() > len(ref) // 2, "the comparison would be (nearly) vacuous"
    diff = np.abs(got[ok] - ref[ok])
    scale = np.abs(ref[ok])
    rel = np.where(scale == 0.0, np.where(diff == 0.0, 0.0, math.inf), diff / np.where(scale == 0.0, 1.0, scale))
    warmup = next((i for i, v in enumerate(streamed) if v is not None), len(streamed))
    return Parity(float(diff.max()), float(rel.max()), float((diff == 0.0).mean()), warmup, int(ok.sum()))


def field(results: Sequence[object | None], name: str) -> list[float | None]:
    """``getattr(r, name)`` of each result object, None where the result (or the field) is None."""
    return [None if r is None else getattr(r, name) for r in results]


def restored(obj: Any) -> Any:
    """``type(obj).from_state`` of its state after an orjson dumps/loads round trip (what the changelog does)."""
    state = orjson.loads(orjson.dumps(obj.to_state()))
    return type(obj).from_state(state)
