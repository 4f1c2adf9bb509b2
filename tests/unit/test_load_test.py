"""The load test's pure parts without a broker: its command line, pacing, aliases, lag, report line and verdict."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest

from tests import load_test_stream_processor as lt

TAPE = [("BTCUSDT", b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":1}}'),
        ("ETHUSDT", b'{"stream":"ethusdt@trade","data":{"e":"trade","s":"ETHUSDT","t":2}}'),
        ("BTCUSDT", b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":3}}')]


def test_defaults() -> None:
    args = lt.parse_args([])
    assert (args.bootstrap, args.rate, args.seconds, args.processor, args.mode, args.workers, args.report_every,
            args.external, args.config) == (None, 5000, 60.0, "trades", "exactly_once", 1, 5.0, False, None)


def test_options() -> None:
    args = lt.parse_args(["--bootstrap", "127.0.0.1:9092", "--rate", "1000", "--seconds", "15", "--processor",
                          "orderbook", "--mode", "at_least_once", "--workers", "2", "--report-every", "2.5"])
    assert (args.bootstrap, args.rate, args.seconds, args.processor, args.mode, args.workers, args.report_every) == (
        "127.0.0.1:9092", 1000, 15.0, "orderbook", "at_least_once", 2, 2.5)
    external = lt.parse_args(["--external", "--config", "my.yaml"])
    assert external.external and str(external.config) == "my.yaml"


@pytest.mark.parametrize("argv", [
    ["--rate", "0"], ["--rate", "-5"], ["--seconds", "0"], ["--workers", "0"], ["--report-every", "0"],
    ["--rate", "fast"], ["--processor", "candles"], ["--mode", "exactly_twice"],
    ["--external", "--workers", "2"], ["--external", "--processor", "klines"], ["--config", "my.yaml"],
])
def test_bad_command_lines_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        lt.parse_args(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_pacing_sends_the_first_at_once_then_rate_per_second_up_to_total() -> None:
    assert lt.due(0.0, 1000, 15_000) == 1
    assert lt.due(0.0099, 1000, 15_000) == 10
    assert lt.due(0.01, 1000, 15_000) == 11
    assert lt.due(1.0, 1000, 15_000) == 1001
    assert lt.due(100.0, 1000, 15_000) == 15_000
    ticks = [lt.due(i * lt.TICK_S, 5000, 10**6) for i in range(101)]
    assert all(b - a == 50 for a, b in zip(ticks, ticks[1:], strict=False))  # 50 per 10 ms tick at 5000/s


def test_lanes_replay_the_whole_tape_in_order_each() -> None:
    tape_len, lanes = 5, 3
    by_lane: dict[int, list[int]] = {}
    for n in range(2 * tape_len * lanes):
        index, lane = lt.lane_of(n, tape_len, lanes)
        by_lane.setdefault(lane, []).append(index)
    assert sorted(by_lane) == list(range(2 * lanes))  # the second copy of the tape gets lanes of its own
    assert all(indices == list(range(tape_len)) for indices in by_lane.values())


def test_pick_renames_the_symbol_and_keys_by_the_alias() -> None:
    key, value = lt.pick("trades", TAPE, 1, "-000042")
    assert key == b"ETHUSDT.1-000042"  # steady_alias: 8 aliases per copy of the tape
    assert orjson.loads(value)["data"]["s"] == "ETHUSDT.1-000042"
    assert lt.pick("trades", TAPE, 4, "-000042")[0] == b"ETHUSDT.12-000042"  # the tape's second copy
    key, value = lt.pick("trades", TAPE, 3 * 8, "-000042")  # the eighth copy of a 3-message tape
    assert key == b"BTCUSDT.64-000042"
    key, value = lt.pick("orderbook", TAPE, 7, "-1")  # lane 7 of the first copy, tape index 0
    assert key == b"BTCUSDT.7-1" and orjson.loads(value)["data"]["s"] == "BTCUSDT.7-1"
    snapshot = [("BTCUSDT", b'{"lastUpdateId":5,"bids":[],"asks":[]}')]
    assert lt.pick("orderbook", snapshot, 0, "-1") == (b"BTCUSDT.0-1", snapshot[0][1])  # no symbol: the key names it


def test_identity() -> None:
    trade = {"symbol": "X", "source_partition": 3, "source_offset": 17}
    assert lt.identity("trades", trade) == lt.identity("orderbook", trade) == (3, 17)
    kline = {"symbol": "X", "interval": "1m", "open_time_ms": 60_000, "source_partition": 3, "source_offset": 17}
    assert lt.identity("klines", kline) == ("X", "1m", 60_000)


def test_group_lag_and_caught_up() -> None:
    ends = {0: 100, 1: 50, 2: 7}
    assert lt.group_lag(ends, {0: 90, 1: 50, 2: -1}) == 10 + 0 + 7  # -1 and absent: nothing committed yet
    assert lt.group_lag(ends, {0: 90}) == 10 + 50 + 7
    assert lt.group_lag(ends, ends) == 0
    assert lt.caught_up({0: 100, 1: 50}, {0: 100, 1: 60, 2: 0})
    assert not lt.caught_up({0: 100, 1: 50}, {0: 99, 1: 60})
    assert not lt.caught_up({0: 100}, {})


def test_report_line() -> None:
    line = lt.report_line(10.04, 5.0, 5000, 4990, 1234, 56, [10.0] * 980 + [495.0] * 20)
    assert line.split() == ["10.0s", "1,000", "998", "1,234", "56", "10", "495"]
    assert len(line) == len(lt.REPORT_HEADER)
    assert lt.report_line(5.0, 5.0, 0, 0, None, None, []).split() == ["5.0s", "0", "0", "?", "?", "-", "-"]


def test_split_warmup() -> None:
    warm, rest = lt.split_warmup([(1000.0, 5.0, 1.0), (10_999.0, 6.0, 1.0), (11_000.0, 7.0, 1.0), (50_000.0, 8.0)],
                                 1000.0)
    assert warm.tolist() == [5.0, 6.0] and rest.tolist() == [7.0, 8.0]
    warm, rest = lt.split_warmup([], 0.0)
    assert warm.size == rest.size == 0 and isinstance(warm, np.ndarray)


def test_verdict() -> None:
    expected = Counter([(0, 0), (0, 1), (1, 0)])
    assert lt.verdict(expected, Counter(expected)).ok
    v = lt.verdict(expected, Counter({(0, 0): 3, (1, 0): 1, (5, 5): 1}))
    assert (v.missing, v.duplicates, v.unexpected, v.ok) == ([(0, 1)], {(0, 0): 2}, [(5, 5)], False)
    lines = lt.verdict_lines(v, 3)
    assert lines[0].startswith("exactly once: NO; expected 3 outputs; missing (inputs without their output after "
                               "the drain) 1; duplicated 1 (2 extra copies); unexpected 1")
    assert lines[1:] == ["  missing: (0, 1)", "  duplicated: (0, 0)", "  unexpected: (5, 5)"]
    many = lt.verdict(Counter({(0, i): 1 for i in range(25)}), Counter())
    assert lt.verdict_lines(many, 25)[1].endswith("(0, 9) (and 15 more)")


def test_health_line() -> None:
    doc = {"healthy": True, "checks": {
        "broker": {"healthy": True, "details": {}},
        "processor_trades": {"healthy": True, "details": {"metrics": {
            "processing_latency_ms": 12.5, "processing_latency_p99_ms": 80.0, "throughput_per_second": 4990.2,
            "messages_processed": 150000}}}}}
    assert lt.health_line("worker-0", doc) == (
        "worker-0 /health (healthy): trades: processing_latency_ms 12.5 (p99 80.0), throughput_per_second 4990.2, "
        "messages_processed 150000")
    assert lt.health_line("worker-1", None) == "worker-1 /health: no answer"
    sick = {"healthy": False, "problems": ["trades: stuck"], "checks": {}}
    assert lt.health_line("w", sick) == "w /health (UNHEALTHY ['trades: stuck']): no processor"


def test_the_load_test_is_not_a_test_module() -> None:
    assert not lt.__name__.rpartition(".")[2].startswith("test_")
    assert not [name for name in vars(lt) if name.startswith("test")]


def test_without_shared_the_tape_is_the_shipped_sample(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(lt, "FILES", [tmp_path / "absent.gz"])
    trades, described = lt.load_tape("trades")
    assert len(trades) == 6812 and described == "6,812 real Binance spot trades from data/sample (../shared is absent)"
    assert {symbol for symbol, _ in trades} == {"BTCUSDT", "ETHUSDT"}
    book, _ = lt.load_tape("orderbook")
    assert sum(b'"lastUpdateId"' in raw for _, raw in book) == 2  # one depth snapshot per file
    assert all(b'"e":"trade"' not in raw for _, raw in book)
