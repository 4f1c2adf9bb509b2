"""Real BTCUSDT trades (Binance spot, 2024-08-08 23:54 to 2024-08-09 00:05 UTC) and comparison helpers.

The two recorded files together span a UTC midnight, so VWAP's daily reset is exercised. The data is
shared, not vendored: if it is missing the tests fail (they must not silently pass by skipping).
"""

from __future__ import annotations

import gzip
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[4]
# Same location rule as tests/conftest.py: ``$SHARED_DATA`` or ``../shared/data`` next to the repo.
SHARED_DATA = Path(os.environ.get("SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
FEEDS_DIR = SHARED_DATA / "feeds" / "binance-hftbacktest" / "spot"
TRADE_FILES = ("btcusdt_20240808.gz", "btcusdt_20240809.gz")
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class RealTrades:
    """Trades in trade-id order, as parallel lists (what the trades processor feeds per symbol)."""

    trade_id: list[int]
    price: list[float]
    size: list[float]
    time_ms: list[int]
    buyer_maker: list[bool]

    def __len__(self) -> int:
        return len(self.price)

    @property
    def midnight(self) -> int:
        """Index of the first trade of the second UTC day."""
        first_day = self.time_ms[0] // DAY_MS
        return next(i for i, t in enumerate(self.time_ms) if t // DAY_MS != first_day)


def read_trades(paths: Sequence[Path]) -> RealTrades:
    """Parse ``<local_ns> <json>`` lines, keeping the ``<symbol>@trade`` envelopes.

    Depth updates, bookTicker and the REST depth snapshot lines are skipped; duplicates (by trade
    id) collapse, and the result is in trade-id order.
    """
    rows: dict[int, tuple[float, float, int, bool]] = {}
    for path in paths:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                if '@trade"' not in line:
                    continue
                _, _, payload = line.partition(" ")
                msg = json.loads(payload)
                if not str(msg.get("stream", "")).endswith("@trade") or msg["data"].get("e") != "trade":
                    continue
                d = msg["data"]
                rows[int(d["t"])] = (float(d["p"]), float(d["q"]), int(d["T"]), bool(d["m"]))
    ids = sorted(rows)
    return RealTrades(
        trade_id=ids,
        price=[rows[i][0] for i in ids],
        size=[rows[i][1] for i in ids],
        time_ms=[rows[i][2] for i in ids],
        buyer_maker=[rows[i][3] for i in ids],
    )


@pytest.fixture(scope="session")
def trades() -> RealTrades:
    paths = [FEEDS_DIR / name for name in TRADE_FILES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        pytest.fail(f"shared market data missing: {missing}")
    data = read_trades(paths)
    assert len(data) > 19_000, f"expected ~20k trades, parsed {len(data)}"
    assert data.time_ms == sorted(data.time_ms), "trade times must be non-decreasing in trade-id order"
    return data


def max_rel_error(streamed: Sequence[float | None], reference: Sequence[float]) -> float:
    """Max of |a - b| / |b| over the rows where the reference is a number.

    Asserts the warm-up contract on the way: None exactly where the reference is NaN. Where the
    reference is exactly 0 the streamed value must be exactly 0 too (else the error is inf).
    """
    ref = np.asarray(reference, dtype=float)
    assert len(streamed) == len(ref)
    got = np.array([np.nan if v is None else v for v in streamed], dtype=float)
    none_rows = np.array([v is None for v in streamed])
    assert np.array_equal(none_rows, np.isnan(ref)), (
        f"None at {np.flatnonzero(none_rows)[:5]}..., reference NaN at {np.flatnonzero(np.isnan(ref))[:5]}..."
    )
    assert not np.isnan(got[~none_rows]).any(), "an indicator returned NaN"
    valid = ~np.isnan(ref)
    assert valid.sum() > len(ref) // 2, "the comparison would be (nearly) vacuous"
    diff = np.abs(got[valid] - ref[valid])
    scale = np.abs(ref[valid])
    zero = scale == 0.0
    rel = np.where(zero, np.where(diff == 0.0, 0.0, math.inf), diff / np.where(zero, 1.0, scale))
    return float(rel.max())


@pytest.fixture
def assert_matches() -> Callable[..., float]:
    """``assert_matches(label, streamed, reference, rtol=1e-9)``: warm-up and max relative error checks."""

    def check(
        label: str, streamed: Sequence[float | None], reference: Sequence[float], rtol: float = 1e-9
    ) -> float:
        err = max_rel_error(streamed, reference)
        print(f"{label}: max relative error {err:.3e} over {len(streamed)} trades")
        assert err <= rtol, f"{label}: max relative error {err:.3e} > {rtol:.0e}"
        return err

    return check


@pytest.fixture
def warmup_of() -> Callable[[Sequence[float | None]], int]:
    """Number of leading Nones; asserts there is no None after the first value."""

    def count(streamed: Sequence[float | None]) -> int:
        n = next((i for i, v in enumerate(streamed) if v is not None), len(streamed))
        assert all(v is not None for v in streamed[n:]), "None after warm-up"
        return n

    return count
