"""KlineBuilder on the real Binance spot trade tapes, checked against a pandas batch resample of the same trades.

The recordings (2024-08-08 23:54 .. 2024-08-09 00:05 UTC, files 0808 then 0809 per symbol) hold no venue
``@kline`` messages (asserted below), so the reference is an independent batch computation: pandas
``resample("1min")`` per UTC minute (first/max/min/last price, summed size and price*size, count).
"""

from __future__ import annotations

import dataclasses
import math
import random

import numpy as np
import orjson
import pandas as pd
import pytest

from stream_processor.engine.exceptions import InvalidRecordError, RecordError
from stream_processor.market.klines import KlineBuilder, LateTradeError, interval_name
from stream_processor.market.models import Kline, Trade
from stream_processor.market.serde.decode import decode
from stream_processor.market.serde.feed import iter_feed
from tests.unit.market.klines import SHARED_DATA, require

SPOT = SHARED_DATA / "feeds" / "binance-hftbacktest" / "spot"
MINUTE = 60_000


def read_trades(symbol: str) -> list[Trade]:
    """The symbol's spot trades, 0808 then 0809, in file (arrival) order."""
    trades = []
    kline_lines = 0
    for day in ("20240808", "20240809"):
        for _, raw in iter_feed(require(SPOT / f"{symbol}_{day}.gz")):
            if b"@kline" in raw:
                kline_lines += 1
            if b'@trade"' not in raw:
                continue
            record = decode(raw)
            if type(record) is Trade:
                trades.append(record)
    assert kline_lines == 0, "the tape has venue klines: compare with them too"
    return trades


@pytest.fixture(scope="module", params=["btcusdt", "ethusdt"])
def tape(request: pytest.FixtureRequest) -> list[Trade]:
    trades = read_trades(request.param)
    assert len(trades) > 14_000
    assert all(a.trade_id + 1 == b.trade_id for a, b in zip(trades, trades[1:], strict=False)), "a gap in the tape"
    return trades


def resample(trades: list[Trade], by: tuple[str, ...] = ("time", "id")) -> pd.DataFrame:
    """Batch 1m klines: trades sorted by (time, trade id) (``by=("time",)``: stably by time, ties keep arrival
    order), then resampled per UTC minute."""
    df = pd.DataFrame(
        {
            "time": [t.time_ms for t in trades],
            "id": [t.trade_id for t in trades],
            "price": [t.price for t in trades],
            "size": [t.size for t in trades],
        }
    ).sort_values(list(by), kind="stable")
    df["quote"] = df["price"] * df["size"]
    df.index = pd.to_datetime(df["time"], unit="ms")
    g = df.resample("1min")
    out = pd.DataFrame(
        {
            "open": g["price"].first(),
            "high": g["price"].max(),
            "low": g["price"].min(),
            "close": g["price"].last(),
            "volume": g["size"].sum(),
            "quote_volume": g["quote"].sum(),
            "trade_count": g["price"].count(),
        }
    )
    out = out[out["trade_count"] > 0]
    out["open_time_ms"] = out.index.as_unit("ms").asi8
    # Correctly rounded sums, to compare the builder's compensated sums with exactly.
    minute = df["time"] // MINUTE * MINUTE
    out["volume_fsum"] = df.groupby(minute)["size"].apply(math.fsum).to_numpy()
    out["quote_fsum"] = df.groupby(minute)["quote"].apply(math.fsum).to_numpy()
    return out


def as_frame(klines: list[Kline]) -> pd.DataFrame:
    return pd.DataFrame([dataclasses.asdict(k) for k in klines])


def assert_same_klines(klines: list[Kline], ref: pd.DataFrame) -> None:
    got = as_frame(klines)
    assert got["open_time_ms"].tolist() == ref["open_time_ms"].tolist()
    for col in ("open", "high", "low", "close", "trade_count"):
        assert got[col].tolist() == ref[col].tolist(), col
    assert got["volume"].tolist() == ref["volume_fsum"].tolist()
    assert got["quote_volume"].tolist() == ref["quote_fsum"].tolist()
    # pandas' own (Kahan) sums are within an ulp or two of the correctly rounded ones.
    for col in ("volume", "quote_volume"):
        assert np.allclose(got[col], ref[col], rtol=1e-15, atol=0), col


@pytest.mark.parametrize("grace_ms", [0, 5_000])
def test_real_tape_gives_the_batch_klines_each_once_when_the_watermark_passes(tape: list[Trade], grace_ms: int) -> None:
    builder = KlineBuilder(MINUTE, grace_ms)
    klines: list[Kline] = []
    trigger: dict[int, int] = {}
    for i, trade in enumerate(tape):
        for k in builder.add(trade):
            trigger[k.open_time_ms] = i
            klines.append(k)
        assert len(builder.open_windows) <= grace_ms // MINUTE + 2
    last_open = builder.open_windows
    klines.extend(builder.flush())
    assert builder.open_windows == []

    ref = resample(tape)
    assert len(klines) == len(ref) == 12  # 23:54 (partial) .. 00:05 (partial)
    assert_same_klines(klines, ref)
    assert last_open == [klines[-1].open_time_ms]  # only the last minute waited for the flush
    for k in klines:
        assert (k.venue, k.symbol, k.interval, k.is_closed) == ("binance", tape[0].symbol, "1m", True)
        assert k.open_time_ms % MINUTE == 0 and k.close_time_ms == k.open_time_ms + MINUTE - 1
    # Each window closed at the first trade with time >= its end + grace, and not before.
    for k in klines[:-1]:
        i = trigger[k.open_time_ms]
        assert tape[i].time_ms >= k.close_time_ms + 1 + grace_ms > tape[i - 1].time_ms
        assert k.event_time_ms == tape[i].event_time_ms
    assert klines[-1].event_time_ms is None  # closed by flush()


def test_real_tape_in_jittered_arrival_order(tape: list[Trade]) -> None:
    """Arrival order perturbed by up to 3 s. Grace 3 s: nothing is late and the klines are the batch ones
    (open/close by trade time, ties by trade id). Grace 1 s: the late trades are refused, each for an
    already emitted window, and the klines are the batch klines of the accepted trades."""
    rng = random.Random(20240809)
    arrival = sorted(tape, key=lambda t: t.time_ms + rng.randrange(3_000))
    assert any(b.time_ms < a.time_ms for a, b in zip(arrival, arrival[1:], strict=False))

    builder = KlineBuilder(MINUTE, 3_000)
    klines = [k for t in arrival for k in builder.add(t)] + builder.flush()
    assert_same_klines(klines, resample(arrival))

    builder = KlineBuilder(MINUTE, 1_000)
    klines, accepted, late = [], [], []
    for t in arrival:
        try:
            klines.extend(builder.add(t))
        except LateTradeError as exc:
            assert exc.window_open_ms in {k.open_time_ms for k in klines}
            assert exc.window_open_ms + MINUTE <= exc.watermark_ms == builder.watermark_ms
            late.append(t)
            continue
        accepted.append(t)
    klines.extend(builder.flush())
    print(f"jitter 3 s, grace 1 s: {len(late)} of {len(arrival)} trades late")
    assert 0 < len(late) < len(arrival) // 100
    assert_same_klines(klines, resample(accepted))


def _ties_reversed(trades: list[Trade]) -> list[Trade]:
    """The same trades, times still non-decreasing, but each run of trades at the same ms in reverse order."""
    out: list[Trade] = []
    i = 0
    while i < len(trades):
        j = i
        while j < len(trades) and trades[j].time_ms == trades[i].time_ms:
            j += 1
        out.extend(reversed(trades[i:j]))
        i = j
    return out


def test_open_and_close_do_not_depend_on_arrival_order(tape: list[Trade]) -> None:
    """Ties at the same ms are broken by trade id: the tape, its same-ms runs reversed (still in time order, so
    grace 0 refuses nothing) and two jittered orders (grace 3 s) all give the same klines, the batch klines of
    the trades sorted by (time, id)."""
    reversed_ties = _ties_reversed(tape)
    assert reversed_ties != tape
    ref = resample(tape)
    by_arrival = resample(reversed_ties, by=("time",))  # what the arrival-order tie-break used to give
    assert by_arrival["open"].tolist() != ref["open"].tolist()  # the tape has ties on an open: not vacuous
    assert by_arrival["close"].tolist() != ref["close"].tolist()

    runs = {}
    for name, grace, order in [
        ("tape", 0, tape),
        ("reversed ties", 0, reversed_ties),
        ("jitter a", 3_000, sorted(tape, key=lambda t, r=random.Random(1): t.time_ms + r.randrange(3_000))),
        ("jitter b", 3_000, sorted(reversed_ties, key=lambda t, r=random.Random(2): t.time_ms + r.randrange(3_000))),
    ]:
        builder = KlineBuilder(MINUTE, grace)
        runs[name] = [k for t in order for k in builder.add(t)] + builder.flush()
        assert_same_klines(runs[name], ref)
    # Identical but for event_time_ms, the time of the trade that closed each window.
    strip = [[dataclasses.replace(k, event_time_ms=None) for k in ks] for ks in runs.values()]
    assert all(ks == strip[0] for ks in strip)


def test_state_round_trip_mid_tape_continues_identically(tape: list[Trade]) -> None:
    rng = random.Random(7)
    arrival = sorted(tape, key=lambda t: t.time_ms + rng.randrange(2_000))

    def run(builder: KlineBuilder, trades: list[Trade]) -> list[Kline | str]:
        out: list[Kline | str] = []
        for t in trades:
            try:
                out.extend(builder.add(t))
            except LateTradeError:
                out.append(f"late {t.trade_id}")
        return out

    cut = len(arrival) // 2 + 17
    a = KlineBuilder(MINUTE, 1_000)
    run(a, arrival[:cut])
    assert a.open_windows  # the snapshot holds a window in progress
    raw = orjson.dumps(a.to_state())
    b = KlineBuilder.from_state(orjson.loads(raw))
    assert orjson.dumps(b.to_state()) == raw
    rest = arrival[cut:]
    assert run(b, rest) + b.flush() == run(a, rest) + a.flush()


def _trade(time_ms: int, price: float, size: float = 1.0, trade_id: int = 0, symbol: str = "BTCUSDT") -> Trade:
    return Trade("binance", symbol, trade_id, price, size, "buy", time_ms, time_ms + 5)


def test_ohlc_ties_empty_windows_and_late_trades() -> None:
    b = KlineBuilder(MINUTE, 2_000)
    t0 = 1_723_161_600_000  # 2024-08-09 00:00 UTC
    assert b.add(_trade(t0 + 10, 100.0, trade_id=1)) == []
    assert b.add(_trade(t0 + 10, 101.0, trade_id=2)) == []  # same time as the open: the open stays
    assert b.add(_trade(t0 + 5, 99.0, 2.0, trade_id=3)) == []  # earlier time, late arrival: the new open
    assert b.add(_trade(t0 + 50_000, 105.0, trade_id=4)) == []
    assert b.add(_trade(t0 + 50_000, 104.0, trade_id=5)) == []  # same time as the close, larger id: the new close
    assert b.add(_trade(t0 + 61_000, 103.0, trade_id=6)) == []  # next minute; watermark t0 + 59 s, no close
    assert b.add(_trade(t0 + 40_000, 98.0, trade_id=7)) == []  # late (watermark t0 + 59 s), window open: included
    closed = b.add(_trade(t0 + 62_000, 110.0, trade_id=8))  # watermark t0 + 60 s: minute 0 closes
    assert closed == [
        Kline(
            "binance",
            "BTCUSDT",
            "1m",
            t0,
            t0 + 59_999,
            99.0,
            105.0,
            98.0,
            104.0,
            7.0,
            True,
            100.0 + 101.0 + 198.0 + 105.0 + 104.0 + 98.0,
            6,
            t0 + 62_005,
        )
    ]
    before = b.to_state()
    with pytest.raises(LateTradeError) as info:
        b.add(_trade(t0 + 30_000, 1.0, trade_id=9))
    assert isinstance(info.value, RecordError) and info.value.reason == "late"
    assert (info.value.window_open_ms, info.value.watermark_ms) == (t0, t0 + 60_000)
    assert b.to_state() == before  # refused: nothing changed
    # Minutes 2 and 3 have no trades: no klines for them.
    closed = b.add(_trade(t0 + 4 * MINUTE + 2_500, 120.0, trade_id=10))
    assert [k.open_time_ms for k in closed] == [t0 + MINUTE]
    assert (closed[0].open, closed[0].close, closed[0].trade_count) == (103.0, 110.0, 2)
    assert b.close_until(t0 + 4 * MINUTE) == []  # not later than the watermark: no-op
    closed = b.close_until(t0 + 5 * MINUTE)
    assert [(k.open_time_ms, k.close, k.event_time_ms) for k in closed] == [(t0 + 4 * MINUTE, 120.0, None)]
    assert b.flush() == []
    with pytest.raises(LateTradeError):
        b.add(_trade(t0 + 4 * MINUTE + 3_000, 1.0, trade_id=11))


def test_ties_at_the_same_ms_are_broken_by_trade_id_not_arrival() -> None:
    t0 = 1_723_161_600_000
    trades = [
        _trade(t0 + 10, 100.0, trade_id=20),
        _trade(t0 + 10, 101.0, trade_id=12),  # same ms, smaller id, later arrival: the open
        _trade(t0 + 10, 102.0, trade_id=15),
        _trade(t0 + 30, 105.0, trade_id=31),
        _trade(t0 + 30, 103.0, trade_id=33),  # same ms, largest id: the close
        _trade(t0 + 30, 104.0, trade_id=32),  # same ms, smaller id, last arrival: not the close
        _trade(t0 + 20, 90.0, trade_id=16),
        _trade(t0 + 30, 103.0, 2.0, trade_id=33),  # a re-sent close (same time and id): counted, the close stays
    ]
    results = []
    for order in (trades, trades[::-1], sorted(trades, key=lambda t: t.price)):
        b = KlineBuilder(MINUTE)
        for t in order:
            b.add(t)
        state = b.to_state()
        assert state["windows"][0][-2:] == [12, 33]  # [..., first_id, last_id]
        (k,) = b.flush()
        results.append(k)
        assert (k.open, k.high, k.low, k.close, k.trade_count) == (101.0, 105.0, 90.0, 103.0, 8)
    assert results[0] == results[1] == results[2]


def test_flush_closes_everything_and_later_trades_for_it_are_late() -> None:
    b = KlineBuilder(MINUTE, 30_000)
    b.add(_trade(0, 1.0))
    b.add(_trade(70_000, 2.0))
    assert b.open_windows == [0, MINUTE]
    assert [k.open_time_ms for k in b.flush()] == [0, MINUTE]
    assert b.watermark_ms == 2 * MINUTE
    with pytest.raises(LateTradeError):
        b.add(_trade(119_999, 3.0))
    assert b.add(_trade(120_000, 3.0)) == []


def test_check_lets_a_caller_refuse_a_trade_for_all_intervals_or_none() -> None:
    one, five = KlineBuilder(MINUTE), KlineBuilder(5 * MINUTE)
    for t in (_trade(10_000, 1.0), _trade(65_000, 2.0)):
        for b in (one, five):
            b.add(t)
    late = _trade(30_000, 3.0)  # minute 0 is closed, the 5-minute window 0 is not
    assert five.check(late) == 0
    before = (one.to_state(), five.to_state())
    with pytest.raises(LateTradeError):
        for b in (one, five):
            b.check(late)
    assert (one.to_state(), five.to_state()) == before
    assert one.check(_trade(70_000, 1.0)) == MINUTE


def test_invalid_trades_are_refused_without_change() -> None:
    b = KlineBuilder()
    b.add(_trade(1_000, 10.0))
    before = b.to_state()
    for bad in (
        _trade(2_000, 10.0, symbol="ETHUSDT"),
        _trade(2_000, math.nan),
        _trade(2_000, 0.0),
        _trade(2_000, 10.0, size=0.0),
        _trade(2_000, 10.0, size=math.inf),
        dataclasses.replace(_trade(0, 10.0), time_ms=2_000.0),
        dataclasses.replace(_trade(2_000, 10.0), trade_id="7"),
        dataclasses.replace(_trade(2_000, 10.0), trade_id=None),
        dataclasses.replace(_trade(2_000, 10.0), trade_id=True),
    ):
        with pytest.raises(InvalidRecordError):
            b.check(bad)
        with pytest.raises(InvalidRecordError):
            b.add(bad)
        assert b.to_state() == before


def test_other_intervals() -> None:
    assert [interval_name(ms) for ms in (1_000, 60_000, 300_000, 3_600_000, 14_400_000, 86_400_000, 90_000)] == [
        "1s",
        "1m",
        "5m",
        "1h",
        "4h",
        "1d",
        "90s",
    ]
    for bad in (0, -60_000, 1_500, 60_000.0, 7 * MINUTE, 2 * 86_400_000):
        with pytest.raises(ValueError):
            KlineBuilder(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        KlineBuilder(MINUTE, -1)
    b = KlineBuilder(5 * MINUTE)
    b.add(_trade(7 * MINUTE, 1.0))
    (k,) = b.add(_trade(10 * MINUTE, 2.0))
    assert (k.interval, k.open_time_ms, k.close_time_ms) == ("5m", 5 * MINUTE, 10 * MINUTE - 1)


def test_from_state_refuses_foreign_state() -> None:
    state = KlineBuilder().to_state()
    with pytest.raises(ValueError, match="misses"):
        KlineBuilder.from_state({k: v for k, v in state.items() if k != "watermark"})
    b = KlineBuilder()
    b.add(_trade(1_000, 10.0, trade_id=3))
    state = b.to_state()
    assert "version" not in state and state["windows"] == [
        [0, 10.0, 10.0, 10.0, 10.0, 1_000, 1_000, 1.0, 0.0, 10.0, 0.0, 1, 3, 3]
    ]
    with pytest.raises(ValueError, match="malformed window"):  # a window of its layout before trade ids
        KlineBuilder.from_state({**state, "windows": [state["windows"][0][:-2]]})
