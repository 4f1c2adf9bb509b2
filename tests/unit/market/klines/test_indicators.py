"""KlineIndicators: every output field against pandas-ta (talib=False) on real klines, state, refusals."""

from __future__ import annotations

import dataclasses
import math

import orjson
import pandas as pd
import pandas_ta as ta
import pytest

from stream_processor.market.klines import KLINE_INDICATOR_FIELDS, KlineIndicatorParams, KlineIndicators
from stream_processor.market.models import Kline
from tests.unit.market.klines import DATASETS, load_klines, parity

WARMUP = {
    "sma": 19,
    "ema": 19,
    "rsi": 1,
    "macd": 25,
    "macd_signal": 33,
    "macd_hist": 33,
    "atr": 13,
    "bb_lower": 19,
    "bb_mid": 19,
    "bb_upper": 19,
    "vwap": 0,
    "return": 1,
    "log_return": 1,
}


def references(name: str) -> pd.DataFrame:
    """pandas-ta's batch results for the default parameters, one column per output field."""
    bars = load_klines(name)
    df = bars.frame()
    close = df["close"]
    macd = ta.macd(close, 12, 26, 9, talib=False)
    bb = ta.bbands(close, length=20, lower_std=2.0, upper_std=2.0, talib=False)
    out = pd.DataFrame(
        {
            "sma": ta.sma(close, 20, talib=False),
            "ema": ta.ema(close, 20, talib=False),
            "rsi": ta.rsi(close, 14, talib=False),
            "macd": macd.iloc[:, 0],
            "macd_signal": macd.iloc[:, 2],
            "macd_hist": macd.iloc[:, 1],
            "atr": ta.atr(df["high"], df["low"], close, 14, talib=False),
            "bb_lower": bb.iloc[:, 0],
            "bb_mid": bb.iloc[:, 1],
            "bb_upper": bb.iloc[:, 2],
            "return": ta.percent_return(close, 1),
            "log_return": ta.log_return(close, 1),
        }
    )
    if bars.volume is not None:
        d = df.set_index(bars.utc_index())
        out["vwap"] = ta.vwap(d["high"], d["low"], d["close"], d["volume"], anchor="D").to_numpy()
    return out


@pytest.fixture(scope="module", params=DATASETS)
def case(request: pytest.FixtureRequest) -> tuple[str, list[Kline], list[dict], pd.DataFrame]:
    klines = load_klines(request.param).klines()
    state = KlineIndicators()
    outputs = [state.update(k) for k in klines]
    return request.param, klines, outputs, references(request.param)


def test_every_field_matches_pandas_ta(case) -> None:
    name, _, outputs, ref = case
    for f in KLINE_INDICATOR_FIELDS:
        streamed = [o[f] for o in outputs]
        if f not in ref:
            assert name == "gbpusd" and f == "vwap"
            assert all(v is None for v in streamed)  # no volume: no VWAP
            continue
        p = parity(streamed, ref[f])
        print(f"KlineIndicators {name}.{f}: {p}")
        assert p.warmup == WARMUP[f], f
        assert p.max_rel <= 1e-9, f


def test_outputs_are_flat_json_safe_dicts(case) -> None:
    _, _, outputs, _ = case
    for o in (outputs[0], outputs[40], outputs[-1]):
        assert tuple(o) == KLINE_INDICATOR_FIELDS
        assert all(v is None or type(v) is float for v in o.values())
        assert orjson.loads(orjson.dumps(o)) == o


@pytest.mark.parametrize("cut", [0, 1, 20, 30, 12_345])
def test_state_round_trip_continues_identically(cut: int) -> None:
    klines = load_klines("ftx").klines()
    a = KlineIndicators()
    for k in klines[:cut]:
        a.update(k)
    raw = orjson.dumps(a.to_state())
    b = KlineIndicators.from_state(orjson.loads(raw))
    assert orjson.dumps(b.to_state()) == raw
    assert b.last_open_time_ms == a.last_open_time_ms
    rest = klines[cut : cut + 2_000]
    assert [b.update(k) for k in rest] == [a.update(k) for k in rest]


def test_custom_periods() -> None:
    params = KlineIndicatorParams(
        sma_length=5,
        ema_length=3,
        rsi_length=7,
        macd_fast=3,
        macd_slow=8,
        macd_signal=4,
        atr_length=6,
        bb_length=10,
        bb_std=1.5,
    )
    klines = load_klines("eurusd").klines()[:500]
    state = KlineIndicators(params)
    outputs = [state.update(k) for k in klines]
    close = pd.Series([k.close for k in klines])
    warm = {f: next(i for i, o in enumerate(outputs) if o[f] is not None) for f in KLINE_INDICATOR_FIELDS}
    assert warm == {
        **WARMUP,
        "sma": 4,
        "ema": 2,
        "macd": 7,
        "macd_signal": 10,
        "macd_hist": 10,
        "atr": 5,
        "bb_lower": 9,
        "bb_mid": 9,
        "bb_upper": 9,
    }
    bb = ta.bbands(close, length=10, lower_std=1.5, upper_std=1.5, talib=False)
    assert parity([o["bb_upper"] for o in outputs], bb.iloc[:, 2]).max_rel <= 1e-9
    assert parity([o["rsi"] for o in outputs], ta.rsi(close, 7, talib=False)).max_rel <= 1e-9
    restored = KlineIndicators.from_state(orjson.loads(orjson.dumps(state.to_state())))
    assert restored.params == params


def test_bad_params_are_refused() -> None:
    with pytest.raises(ValueError, match="shorter"):
        KlineIndicators(KlineIndicatorParams(macd_fast=26, macd_slow=12))
    with pytest.raises(ValueError):
        KlineIndicators(KlineIndicatorParams(sma_length=0))
    with pytest.raises(ValueError):
        KlineIndicators(KlineIndicatorParams(bb_std=-2.0))


def _after_some_bars() -> tuple[KlineIndicators, Kline]:
    klines = load_klines("eurusd").klines()[:60]
    state = KlineIndicators()
    for k in klines:
        state.update(k)
    return state, klines[-1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"open_time_ms": 0}, "not after the previous"),  # earlier
        ({}, "not after the previous"),  # the same bar again (duplicate)
        ({"is_closed": False}, "not closed"),
        ({"symbol": "OTHER"}, "belongs to"),
        ({"interval": "1m"}, "belongs to"),
    ],
)
def test_refused_klines_change_nothing(change: dict, message: str) -> None:
    state, last = _after_some_bars()
    before = state.to_state()
    with pytest.raises(ValueError, match=message):
        state.update(dataclasses.replace(last, **change))
    assert state.to_state() == before


@pytest.mark.parametrize(
    "change",
    [
        {"close": math.nan},
        {"high": math.inf},
        {"low": 0.0},
        {"open": -1.0},
        {"volume": -1.0},
        {"volume": math.nan},
        {"high": 1.0, "low": 2.0},
    ],
)
def test_invalid_values_are_refused_before_any_indicator_moves(change: dict) -> None:
    state, last = _after_some_bars()
    before = state.to_state()
    bad = dataclasses.replace(last, open_time_ms=last.open_time_ms + 3_600_000, **change)
    with pytest.raises(ValueError):
        state.update(bad)
    assert state.to_state() == before
    # and the next valid bar is accepted
    good = dataclasses.replace(last, open_time_ms=last.open_time_ms + 3_600_000)
    assert state.update(good)["sma"] is not None


def test_from_state_refuses_foreign_or_incomplete_state() -> None:
    state, _ = _after_some_bars()
    snap = state.to_state()
    with pytest.raises(ValueError, match="misses"):
        KlineIndicators.from_state({k: v for k, v in snap.items() if k != "rsi"})
    with pytest.raises(ValueError, match="bad params"):
        KlineIndicators.from_state({**snap, "params": {**snap["params"], "wma_length": 3}})
