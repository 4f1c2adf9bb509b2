"""SmcDetector on real EURUSD 15m candles: no lookahead (prefix stability), state round trips, inputs."""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pytest

from bench.smc_parity import load_candles
from stream_processor.engine.snapshot import Snapshot
from stream_processor.market.models import Kline
from stream_processor.market.smc import (
    BosChoch,
    Candle,
    FairValueGaps,
    Liquidity,
    OrderBlocks,
    SmcDetector,
    SwingDetector,
)
from stream_processor.market.smc.events import STARTUP_CANDLES

PRIMARY = {"swing_high", "swing_low", "bos", "choch", "fvg", "order_block", "liquidity"}
CORRECTIONS = {"swing_replaced", "bos_cancelled", "choch_cancelled", "order_block_cancelled"}
LATER = {"fvg_mitigated", "order_block_mitigated", "breaker_invalidated", "liquidity_swept"}


@pytest.fixture(scope="module")
def candles(shared_data: Path) -> list[Candle]:
    path = shared_data / "smc_reference" / "smart-money-concepts" / "EURUSD" / "EURUSD_15M.csv.gz"
    if not path.is_file():
        pytest.fail(f"reference data missing: {path}")
    return load_candles(path.parent)


@pytest.fixture(scope="module")
def full_run(candles: list[Candle]) -> list[list[dict]]:
    """Events of one uninterrupted run, per candle."""
    det = SmcDetector()
    return [det.update(c) for c in candles]


def _round_trip(obj: Snapshot) -> Snapshot:
    return type(obj).from_state(orjson.loads(orjson.dumps(obj.to_state())))


def _assert_json_safe(obj) -> None:
    if isinstance(obj, dict):
        assert all(isinstance(k, str) for k in obj)
        for v in obj.values():
            _assert_json_safe(v)
    elif isinstance(obj, list):
        for v in obj:
            _assert_json_safe(v)
    else:
        assert obj is None or type(obj) in (bool, int, float, str), f"not JSON-safe: {obj!r}"


def test_every_event_type_occurs_and_is_json_safe(full_run):
    events = [e for per in full_run for e in per]
    assert {e["type"] for e in events} == PRIMARY | CORRECTIONS | LATER
    for t, per in enumerate(full_run):
        for e in per:
            _assert_json_safe(e)
            assert e["confirmed_index"] == t
            assert e["index"] <= t
            assert e["direction"] in (1, -1)
    assert orjson.loads(orjson.dumps(events)) == events


@pytest.mark.parametrize("split", [19, 20, 13_001])
def test_prefix_stability_and_round_trip_mid_series(candles, full_run, split):
    """Candles 0..split-1 give exactly the full run's events confirmed before ``split`` (nothing emitted
    depends on a later candle); a snapshot taken there, through JSON, continues with the same events."""
    det = SmcDetector()
    head = [det.update(c) for c in candles[:split]]
    assert head == full_run[:split]
    state = det.to_state()
    _assert_json_safe(state)
    restored = _round_trip(det)
    assert restored.to_state() == state
    tail = [restored.update(c) for c in candles[split:]]
    assert tail == full_run[split:]


def test_many_round_trips_on_a_slice(candles, full_run):
    """A snapshot after every 97th candle (startup, swings pending replacement, open blocks...)."""
    det = SmcDetector()
    for t, c in enumerate(candles[:3000]):
        if t % 97 == 0:
            det = _round_trip(det)
        assert det.update(c) == full_run[t]


def test_each_detector_alone_gives_the_composed_events(candles, full_run):
    swings, structure, fvg = SwingDetector(5), BosChoch(5), FairValueGaps()
    blocks, liquidity = OrderBlocks(5), Liquidity(5)
    for t, c in enumerate(candles[:6000]):
        s = swings.update(c)
        got = s + structure.update(c, s) + blocks.update(c, s) + liquidity.update(c, s) + fvg.update(c)
        assert got == full_run[t]


def test_klines_and_tuples_are_accepted(candles, full_run):
    det = SmcDetector()
    for t, c in enumerate(candles[:500]):
        k = Kline("fx", "EURUSD", "15m", c.open_time_ms, c.open_time_ms + 899_999, c.open, c.high, c.low, c.close,
                  c.volume, True)  # fmt: skip
        assert det.update(k if t % 2 else tuple(c)) == full_run[t]


def test_invalid_input_is_refused_before_any_state_changes(candles):
    det = SmcDetector()
    for c in candles[:50]:
        det.update(c)
    before = det.to_state()
    last = candles[49]
    bad = [
        last,  # not later than the previous candle
        candles[10],  # earlier
        candles[50]._replace(high=float("nan")),
        candles[50]._replace(close=float("inf")),
        candles[50]._replace(open_time_ms=float(candles[50].open_time_ms)),
        tuple(candles[50])[:5],
        Kline("fx", "EURUSD", "15m", candles[50].open_time_ms, 0, 1.0, 1.0, 1.0, 1.0, 0.0, is_closed=False),
    ]
    for c in bad:
        with pytest.raises(ValueError):
            det.update(c)
        assert det.to_state() == before
    det.update(candles[50])
    assert det.count == 51


@pytest.mark.parametrize(
    "make",
    [
        lambda: SwingDetector(0),
        lambda: SwingDetector(2.5),
        lambda: BosChoch(5, max_pending=0),
        lambda: FairValueGaps(max_open=0),
        lambda: OrderBlocks(5, max_active=0),
        lambda: Liquidity(5, range_percent=-0.1),
        lambda: Liquidity(5, pip_range=float("nan")),
        lambda: Liquidity(5, max_anchors=True),
    ],
)
def test_invalid_parameters_are_refused(make):
    with pytest.raises(ValueError):
        make()


def test_a_snapshot_of_another_class_or_an_incomplete_one_is_refused(candles):
    det = SmcDetector()
    det.update(candles[0])
    state = det.to_state()
    with pytest.raises(ValueError, match="misses"):
        SwingDetector.from_state(state)
    broken = dict(state)
    del broken["fvg"]
    with pytest.raises(ValueError):
        SmcDetector.from_state(broken)


def test_a_series_whose_first_swing_comes_late_has_no_candle_0_swing():
    """Past STARTUP_CANDLES candles without a swing, candle 0 is no longer kept: no synthetic swing, no error."""
    n = STARTUP_CANDLES + 300
    candles = []
    for i in range(n):
        mid = 100.0 + 0.01 * i if i < STARTUP_CANDLES else 150.0 + 5 * math.sin(i / 7)
        candles.append(Candle(mid, mid + 0.5, mid - 0.5, mid + 0.1 * (-1) ** i, 1.0, 60_000 * i))
    det = SmcDetector()
    events = [e for c in candles[: n - 100] for e in det.update(c)]
    det = SmcDetector.from_state(orjson.loads(orjson.dumps(det.to_state())))
    events += [e for c in candles[n - 100 :] for e in det.update(c)]
    swings = [e for e in events if e["type"] in ("swing_high", "swing_low")]
    assert swings and not any(e["synthetic"] for e in swings)
    assert min(e["index"] for e in swings) >= STARTUP_CANDLES - 10
