"""The chaos harness's join check (tests/eos/join_check.py) against the engine, with no broker: its batch
recomputation of the SMC context join equals what the klines and trades processors give in the TestDriver, and its
comparison of two runs finds a changed record, a flag in the quiet run and a record missing from one run."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from stream_processor.engine.testing import TestDriver, TestRecord
from tests.eos.harness import ChaosPlan, Topology, real_trades
from tests.eos.join_check import JoinCheck, check_contexts, compare_runs, expected_smc

TRADES = 3_000
BASE_MS = 1_765_000_000_000


@pytest.fixture(scope="module")
def joined() -> dict[str, Any]:
    """The harness's klines and joining trades processors run by the TestDriver over real trades, 2.5 per ms (so
    trades share timestamps with each other and with the contexts they close): raw trades, contexts, enriched."""
    topo = Topology.new()
    settings = topo.settings("127.0.0.1:9092", ChaosPlan())
    with TestDriver(settings=settings, processors=["klines", "trades"], commit_every=500) as driver:
        raw = [driver.pipe(topo.trades_input, value, alias.encode(), timestamp=BASE_MS + int(i * 0.4))
               for i, (alias, value) in enumerate(real_trades(TRADES))]
        return {"raw": raw, "contexts": driver.all(topo.context), "enriched": driver.all(topo.enriched)}


def test_the_batch_recomputation_equals_the_engines_join(joined: dict[str, Any]) -> None:
    raw, contexts, enriched = joined["raw"], joined["contexts"], joined["enriched"]
    expected = expected_smc(raw, contexts)
    docs = [orjson.loads(r.value) for r in enriched]
    assert len(docs) == TRADES and len(contexts) > 50
    assert not any(d["smc_stale"] for d in docs)  # the driver never lets a wait run out while a commit can come
    assert sum(d["smc"] is not None for d in docs) > TRADES // 2  # most trades have a context: not vacuous
    assert {(d["source_partition"], d["source_offset"]): d["smc"] for d in docs} == expected
    # The trade that closed a kline has its context's timestamp, and must not see it (strictly before its own).
    by_source = {(d["source_partition"], d["source_offset"]): d for d in docs}
    raw_at = {(r.partition, r.offset): r for r in raw}
    for c in contexts:
        ctx = orjson.loads(c.value)
        source = (ctx["source_partition"], ctx["source_offset"])
        assert c.timestamp == raw_at[source].timestamp
        closing = by_source[source]
        seen = (closing["smc"] or {}).get(ctx["interval"])
        assert seen is None or seen["as_of_ms"] < ctx["close_time_ms"]


def _changed(record: TestRecord, **fields: Any) -> TestRecord:
    return replace(record, value=orjson.dumps({**orjson.loads(record.value), **fields}))


def test_compare_runs_counts_equal_runs_and_finds_each_kind_of_difference(joined: dict[str, Any]) -> None:
    raw, contexts, enriched = joined["raw"], joined["contexts"], joined["enriched"]
    expected = expected_smc(raw, contexts)
    events = [(raw[0].timestamp, "start")]

    same = JoinCheck()
    compare_runs(same, raw, enriched, list(enriched), expected, events, contexts)
    assert same.compared == same.unflagged == same.identical == TRADES and same.failures() == 0
    assert same.recomputed == {"chaos": [TRADES, TRADES], "quiet": [TRADES, TRADES]}

    with_smc = [i for i, r in enumerate(enriched) if orjson.loads(r.value)["smc"] is not None]
    changed, flagged, quiet_flag, gone = with_smc[10], with_smc[20], with_smc[30], with_smc[40]
    chaos = list(enriched)
    chaos[changed] = _changed(chaos[changed], smc=None)  # a context lost
    chaos[flagged] = _changed(chaos[flagged], smc=None, smc_stale=True)  # flagged: not compared
    quiet = list(enriched)
    quiet[quiet_flag] = _changed(quiet[quiet_flag], smc_stale=True)
    del quiet[gone]
    check = JoinCheck(stale_events=1)
    compare_runs(check, raw, chaos, quiet, expected, events, contexts)
    assert (check.compared, check.unmatched) == (TRADES - 1, 1)
    assert (check.flagged_chaos, check.flagged_quiet, check.stale_changed) == (1, 1, 1)
    assert check.unflagged == TRADES - 3 and (check.identical, check.differing) == (TRADES - 4, 1)
    assert check.recomputed == {"chaos": [TRADES - 2, TRADES - 1], "quiet": [TRADES - 2, TRADES - 2]}
    doc = orjson.loads(enriched[changed].value)
    assert check.examples[0].startswith(f"byte-different at {(doc['source_partition'], doc['source_offset'])}")
    assert check.failures() == 1 + 1 + 1 + 1  # the difference, its recomputation, the quiet flag, the missing one
    check.stale_events = 0  # a flag the workers did not count as processed after a wait ran out
    assert check.failures() == 5


def test_check_contexts_compares_partition_and_timestamp(joined: dict[str, Any]) -> None:
    contexts = joined["contexts"]
    assert check_contexts("run", contexts, contexts).missing == 0
    moved = [replace(contexts[0], timestamp=contexts[0].timestamp + 1), *contexts[1:]]
    check = check_contexts("run", moved, contexts)
    assert (check.records, check.missing, check.unexpected) == (len(contexts), 1, 1)
