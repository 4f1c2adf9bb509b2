"""The klines processor's volume profile and SMC context, and their join by the trades processor (TestDriver, real
Binance trades): what each output carries, a restart from the changelog changes nothing, and a state written before
them restores."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from stream_processor.engine.testing import TestDriver
from stream_processor.market.context import CONTEXT_STORE, project
from stream_processor.market.processors.klines import SymbolKlines
from stream_processor.market.smc.detector import SmcDetector

from . import Line, feed, pipe, settings

TRADES, CONTEXT, PROFILE = "raw_trades", "smc_context", "volume_profile"
KLINES_PARAMS = {"intervals": ["1m", "5m"], "smc": {"context_topic": CONTEXT},
                 "volume_profile": {"bin_widths": {"BTCUSDT": 1.0, "ETHUSDT": 0.1}, "max_bins": 2000, "topic": PROFILE}}


@pytest.fixture(scope="module")
def trades() -> list[Line]:
    return feed("btcusdt", ("20240808",), "trades") + feed("ethusdt", ("20240808",), "trades")


def _settings(join: bool = True) -> Any:
    entries = {"klines": {"type": "klines", "input_topics": [TRADES],
                          "output_topics": ["enriched_klines", "smc_signals"], "params": KLINES_PARAMS}}
    if join:
        entries["trades"] = {"type": "trades", "input_topics": [TRADES, CONTEXT], "output_topics": ["enriched_trades"],
                             "max_task_idle_ms": 5000, "params": {"smc_context_topic": CONTEXT}}
    return settings(**entries)


def _outputs(driver: TestDriver) -> dict[str, dict[bytes | None, list[bytes]]]:
    """Each output topic's values per key, in order (a key's records come from one task, in its order; how the
    tasks' commits interleave across partitions is not an output)."""
    out: dict[str, dict[bytes | None, list[bytes]]] = {}
    for t in ("enriched_klines", CONTEXT, PROFILE, "enriched_trades"):
        per_key = out[t] = {}
        for r in driver.all(t):
            per_key.setdefault(r.key, []).append(r.value)
    return out


@pytest.mark.slow  # 11 s on the 2-core machine
def test_enriched_klines_carry_the_profile_and_every_interval_s_context(trades: list[Line]) -> None:
    with TestDriver(settings=_settings(), commit_every=100) as driver:
        for line in trades:
            pipe(driver, TRADES, line)
        assert driver.dead_letters() == []
        klines = [r.json() for r in driver.all("enriched_klines")]
        contexts = driver.all(CONTEXT)
        profiles = [r.json() for r in driver.all(PROFILE)]
        enriched = [r.json() for r in driver.all("enriched_trades")]
    assert {k["interval"] for k in klines} == {"1m", "5m"}
    for k in klines:
        assert set(k["smc"]) <= {"1m", "5m"} and k["interval"] in k["smc"]
        own = k["smc"][k["interval"]]
        assert own["price"] == k["close"] and own["as_of_ms"] == k["close_time_ms"]
        assert k["volume_profile"]["volume"] > 0 and k["volume_profile"]["bin_width"] in (1.0, 0.1)
    # A context record per closed kline, on the partition of the trades that closed it (the input's number).
    assert len(contexts) == len(klines)
    partition_of: dict[str, int] = {}
    for rec in contexts:
        doc = orjson.loads(rec.value)
        partition_of.setdefault(doc["symbol"], rec.partition)
        assert partition_of[doc["symbol"]] == rec.partition == doc["source_partition"]
    # The levels go once per closed 1m kline (the first interval); their totals are the summary's.
    assert len(profiles) == sum(1 for k in klines if k["interval"] == "1m")
    for p in profiles:
        assert sum(level[1] for level in p["levels"]) == pytest.approx(p["volume"], rel=1e-12)
        assert p["value_area_low"] <= p["poc"] < p["value_area_high"]
    # Trades after the first closed kline carry it, re-measured from their price, never their own kline.
    by_close = {(orjson.loads(r.value)["symbol"], orjson.loads(r.value)["interval"],
                 orjson.loads(r.value)["close_time_ms"]): orjson.loads(r.value)["context"] for r in contexts}
    joined = [t for t in enriched if t["smc"]]
    assert len(joined) > len(enriched) // 2
    for t in joined:
        for interval, value in t["smc"].items():
            assert value["as_of_ms"] < t["time_ms"]
            assert value == project(by_close[(t["symbol"], interval, value["as_of_ms"])], t["price"])


@pytest.mark.slow  # 18 s on the 2-core machine
def test_a_restart_from_the_changelog_changes_no_output(trades: list[Line]) -> None:
    def run(restart_every: int | None) -> dict[str, list[bytes]]:
        with TestDriver(settings=_settings(), commit_every=50) as driver:
            for i, line in enumerate(trades[::2]):  # both symbols, half the trades: CI time
                pipe(driver, TRADES, line)
                if restart_every and i % restart_every == restart_every - 1:
                    driver.restart()
            return _outputs(driver)

    once, restarted = run(None), run(3_001)
    assert once == restarted
    assert sum(map(len, once["enriched_klines"].values())) >= 10 and sum(map(len, once[CONTEXT].values())) >= 10


def test_a_state_written_before_the_profile_and_the_new_detectors_restores(trades: list[Line]) -> None:
    with TestDriver(settings=_settings(join=False), commit_every=1) as driver:
        for line in trades[:5000]:
            pipe(driver, TRADES, line)
        (state,) = [s for part in driver.state("klines").values() for s in part.values() if s.smc]
    old = state.to_state()
    del old["profile"]
    for det in old["smc"].values():  # the layout of the issue-11 detectors
        for key in ("fvg_join_consecutive", "previous_high_low", "sessions", "retracements", "previous",
                    "session_detectors", "retracement", "last_time_ms"):
            del det[key]
        for key in ("join_consecutive",):
            det["fvg"].pop(key, None)
    restored = SymbolKlines.from_state(orjson.loads(orjson.dumps(old)))
    assert restored.profile is None
    for name, det in restored.smc.items():
        assert isinstance(det, SmcDetector) and det.count == state.smc[name].count
        assert det.context(100.0)["sessions"] == {} and det.last_time_ms is None


def test_the_context_store_is_changelogged_with_the_trades_state(trades: list[Line]) -> None:
    with TestDriver(settings=_settings(), commit_every=10) as driver:
        for line in trades[:8000]:
            pipe(driver, TRADES, line)
        before = driver.state("trades", CONTEXT_STORE)
        driver.restart()
        assert driver.state("trades", CONTEXT_STORE) == before and any(before.values())
