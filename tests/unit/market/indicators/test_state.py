"""Snapshot round-trips through orjson (as in the Kafka changelog) continue with identical outputs."""

from collections import deque

import orjson
import pytest

from stream_processor.market.indicators import EMA, SMA, VWAP, Indicator, Momentum, RollingSum

FACTORIES = {
    "SMA(10)": lambda: SMA(10),
    "SMA(50)": lambda: SMA(50),
    "EMA(10)": lambda: EMA(10),
    "EMA(50)": lambda: EMA(50),
    "Momentum(10)": lambda: Momentum(10),
    "Momentum(50)": lambda: Momentum(50),
    "RollingSum(10)": lambda: RollingSum(10),
    "RollingSum(50)": lambda: RollingSum(50),
    "VWAP": VWAP,
}


def _inputs(name, trades):
    if name == "VWAP":
        return list(zip(trades.price, trades.size, trades.time_ms, strict=True))
    if name.startswith("RollingSum"):
        return [(q,) for q in trades.size]
    return [(p,) for p in trades.price]


def _round_trip(ind: Indicator) -> Indicator:
    blob = orjson.dumps(ind.to_state())
    return type(ind).from_state(orjson.loads(blob))


def _assert_json_safe(obj):
    if isinstance(obj, dict):
        assert all(isinstance(k, str) for k in obj)
        for v in obj.values():
            _assert_json_safe(v)
    elif isinstance(obj, list):
        for v in obj:
            _assert_json_safe(v)
    else:
        assert obj is None or type(obj) in (int, float, str), f"not JSON-safe: {obj!r}"


@pytest.mark.parametrize("name", list(FACTORIES))
def test_restored_indicator_continues_identically(trades, name):
    inputs = _inputs(name, trades)
    reference = FACTORIES[name]()
    expected = [reference.update(*a) for a in inputs]

    # split during warm-up, in the middle, and just before / after the UTC midnight
    for split in (5, len(inputs) // 2, trades.midnight - 1, trades.midnight + 1):
        ind = FACTORIES[name]()
        head = [ind.update(*a) for a in inputs[:split]]
        restored = _round_trip(ind)
        assert restored.value == ind.value
        tail = [restored.update(*a) for a in inputs[split:]]
        assert head + tail == expected, f"{name}: outputs diverge after a restore at {split}"


@pytest.mark.parametrize("name", list(FACTORIES))
def test_repeated_restores_every_997_updates(trades, name):
    inputs = _inputs(name, trades)
    reference = FACTORIES[name]()
    ind = FACTORIES[name]()
    for i, a in enumerate(inputs):
        if i % 997 == 0:
            ind = _round_trip(ind)
        assert ind.update(*a) == reference.update(*a)
    assert ind.to_state() == reference.to_state()


@pytest.mark.parametrize("name", list(FACTORIES))
def test_state_is_json_safe_and_survives_orjson_unchanged(trades, name):
    ind = FACTORIES[name]()
    for a in _inputs(name, trades)[:3000]:
        ind.update(*a)
    state = ind.to_state()
    _assert_json_safe(state)
    assert orjson.loads(orjson.dumps(state)) == state
    assert "kind" not in state and "version" not in state  # the layout version is the store's envelope's only


@pytest.mark.parametrize("name", ["SMA(50)", "Momentum(50)", "RollingSum(50)"])
def test_restored_windows_keep_their_bound(trades, name):
    inputs = _inputs(name, trades)
    ind = FACTORIES[name]()
    for a in inputs[:200]:
        ind.update(*a)
    restored = _round_trip(ind)
    windows = list(_deques(restored))
    assert len(windows) == 1
    window = windows[0]
    assert window.maxlen == (51 if name.startswith("Momentum") else 50)
    for a in inputs[200:400]:
        restored.update(*a)
        assert len(window) == window.maxlen


def _deques(ind):
    for name in type(ind)._state_fields:
        v = getattr(ind, name)
        if isinstance(v, deque):
            yield v
        elif isinstance(v, Indicator):
            yield from _deques(v)


def test_from_state_rejects_foreign_or_corrupt_snapshots():
    sma = SMA(3)
    for x in (1.0, 2.0, 3.0):
        sma.update(x)
    state = sma.to_state()
    with pytest.raises(ValueError, match="misses"):  # another class's state
        EMA.from_state(state)
    with pytest.raises(ValueError):
        SMA.from_state({k: v for k, v in state.items() if k != "_sum"})
    too_long = {**state, "_sum": {**state["_sum"], "_window": [1.0, 2.0, 3.0, 4.0]}}
    with pytest.raises(ValueError):
        SMA.from_state(too_long)


@pytest.mark.parametrize("name", [n for n in FACTORIES if n != "VWAP"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_inputs_raise_and_leave_state_unchanged(trades, name, bad):
    ind = FACTORIES[name]()
    for a in _inputs(name, trades)[:60]:
        ind.update(*a)
    before = ind.to_state()
    with pytest.raises(ValueError):
        ind.update(bad)
    assert ind.to_state() == before
