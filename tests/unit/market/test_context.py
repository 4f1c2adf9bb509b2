"""The SMC context join: context records decoded, kept as versions by Kafka timestamp per symbol and interval,
chosen strictly before the record's timestamp and without lookahead, re-priced; the stale flag."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from stream_processor.engine.exceptions import InvalidRecordError
from stream_processor.engine.processor import ProcessorContext
from stream_processor.engine.state import META_KEY, TaskStores, VersionedStore
from stream_processor.market.context import (
    CONTEXT_STORE,
    context_key,
    context_store,
    decode_context,
    lookup,
    project,
    remember,
    zone,
)
from stream_processor.market.processors.trades import TradesProcessor
from stream_processor.market.settings import TradesProcessorSettings

BTC = "binance/spot/BTCUSDT"
MINUTE = 60_000


def record(close_time_ms: int, interval: str = "1m", symbol: str = "BTCUSDT", **context: object) -> bytes:
    return orjson.dumps({"venue": "binance", "market": "spot", "symbol": symbol, "interval": interval,
                         "open_time_ms": close_time_ms - 59_999, "close_time_ms": close_time_ms, "close": 100.0,
                         "context": {"price": 100.0, **context}})


def store(history_ms: int = 3_600_000) -> VersionedStore:
    return VersionedStore(context_store(history_ms))


def keep(s: VersionedStore, close_time_ms: int, timestamp: int, interval: str = "1m", symbol: str = "BTCUSDT",
         **context: object) -> bool:
    """Remember the context of the kline closing at ``close_time_ms``, read with Kafka timestamp ``timestamp``."""
    return remember(s, decode_context(record(close_time_ms, interval, symbol, **context), symbol.encode()), timestamp)


def refs(smc: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if smc is None else {interval: value["ref"] for interval, value in smc.items()}


def test_decode_names_the_state_key_and_refuses_what_is_not_a_context() -> None:
    rec = decode_context(record(59_999), b"BTCUSDT")
    assert (rec.key, rec.interval, rec.close_time_ms) == (BTC, "1m", 59_999)
    with pytest.raises(InvalidRecordError, match="not JSON"):
        decode_context(b"{", b"BTCUSDT")
    with pytest.raises(InvalidRecordError, match="close_time_ms"):
        decode_context(orjson.dumps({"venue": "v", "market": "m", "symbol": "S", "interval": "1m",
                                     "close_time_ms": "x", "context": {}}), b"S")
    with pytest.raises(InvalidRecordError, match="key"):
        decode_context(record(59_999), b"ETHUSDT")
    with pytest.raises(InvalidRecordError, match="interval"):
        decode_context(record(59_999, interval="1m@x"), b"BTCUSDT")


def test_each_context_is_a_version_of_its_symbol_and_interval_from_its_kafka_timestamp() -> None:
    s = store()
    assert keep(s, MINUTE - 1, 61_000, ref=1)
    assert keep(s, 2 * MINUTE - 1, 121_500, ref=2)
    assert keep(s, 5 * MINUTE - 1, 301_000, interval="5m", ref=50)
    key = context_key(BTC, "1m")
    assert [v.timestamp for v in s.versions(key)] == [61_000, 121_500]
    assert s.get(key, 121_499).value["context"]["ref"] == 1  # type: ignore[union-attr]
    assert s.scan(BTC + "@") == [context_key(BTC, "1m"), context_key(BTC, "5m")]
    # Not newer than the kline in effect at its timestamp: a re-sent or late context is ignored.
    assert not keep(s, MINUTE - 1, 130_000, ref=99)
    assert not keep(s, 2 * MINUTE - 1, 130_000, ref=99)
    assert [v.value["context"]["ref"] for v in s.versions(key)] == [1, 2]
    with pytest.raises(InvalidRecordError, match="no Kafka timestamp"):
        keep(s, 3 * MINUTE - 1, -1)


def test_the_lookup_is_strictly_before_the_record_s_kafka_timestamp() -> None:
    s = store()
    keep(s, MINUTE - 1, 61_000, ref=1)
    keep(s, 2 * MINUTE - 1, 121_000, ref=2)
    # A trade of the third minute read at the same timestamp as the second minute's context does not see it,
    # whichever of the two was read first: equal timestamps never see each other.
    assert refs(lookup(s, BTC, 121_000, 120_500, None)) == {"1m": 1}
    assert refs(lookup(s, BTC, 121_001, 120_500, None)) == {"1m": 2}
    assert lookup(s, BTC, 61_000, 60_500, None) is None  # nothing stored before it
    assert refs(lookup(s, BTC, None, None, None)) == {"1m": 2}  # no timestamp, no event time: the newest


def test_the_lookup_never_takes_a_kline_closed_at_or_after_the_event_time_and_walks_back() -> None:
    s = store()
    keep(s, MINUTE - 1, 61_000, ref=1)
    keep(s, 2 * MINUTE - 1, 121_000, ref=2)
    keep(s, 3 * MINUTE - 1, 181_000, ref=3)
    # A trade of the second minute (60,000..119,999) that arrives late, after the third kline's context: the two
    # newest versions closed at or after its time; the first one did not.
    assert refs(lookup(s, BTC, 200_000, 100_000, None)) == {"1m": 1}
    assert refs(lookup(s, BTC, 200_000, 120_000, None)) == {"1m": 2}  # the second kline closed at 119,999
    assert refs(lookup(s, BTC, 200_000, 119_999, None)) == {"1m": 1}  # ... not before 119,999
    assert lookup(s, BTC, 200_000, 30_000, None) is None  # its own kline is the first one


def test_intervals_are_per_symbol_and_in_key_order() -> None:
    s = store()
    keep(s, 5 * MINUTE - 1, 301_000, interval="5m", ref=50)
    keep(s, 5 * MINUTE - 1, 301_000, ref=5)
    keep(s, 5 * MINUTE - 1, 301_000, symbol="BTCUSDT2", ref=7)  # shares the prefix "BTCUSDT"
    smc = lookup(s, BTC, 400_000, 350_000, None)
    assert smc is not None and list(smc) == ["1m", "5m"] and refs(smc) == {"1m": 5, "5m": 50}
    assert refs(lookup(s, BTC + "2", 400_000, 350_000, None)) == {"1m": 7}


def test_history_is_kept_by_time_span_and_the_newest_before_the_cutoff_survives() -> None:
    s = store(history_ms=10 * MINUTE)
    for i in range(1, 16):  # one 1m context a minute, read 1 s after its kline closed
        keep(s, i * MINUTE - 1, i * MINUTE + 1_000, ref=i)
    key = context_key(BTC, "1m")
    # Newest timestamp 901,000: cutoff 301,000, and the version valid then (from 301,000) is kept.
    assert [v.value["context"]["ref"] for v in s.versions(key)] == list(range(5, 16))
    assert refs(lookup(s, BTC, 301_001, 300_500, None)) == {"1m": 5}
    assert lookup(s, BTC, 301_000, 300_500, None) is None  # before the cutoff's version: expired
    # A context older than what is kept is not stored.
    assert not keep(s, 4 * MINUTE - 1 - 1, 241_000, ref=0)
    assert len(s.versions(key)) == 11


def test_project_remeasures_distances_and_zone_from_the_new_price() -> None:
    context = {"price": 100.0, "ob_above_bottom": 110.0, "ob_above_bps": 1000.0, "fvg_below_top": 95.0,
               "fvg_below_bps": 500.0, "liquidity_above_level": 120.0, "liquidity_above_bps": 2000.0,
               "range_high": 120.0, "range_low": 80.0, "zone": "premium", "range_position": 0.5}
    moved = project(context, 112.0)
    assert moved["price"] == 112.0
    assert moved["ob_above_bps"] == pytest.approx(1e4 * (110 - 112) / 112)  # crossed since the close: negative
    assert moved["fvg_below_bps"] == pytest.approx(1e4 * (112 - 95) / 112)
    assert moved["liquidity_above_bps"] == pytest.approx(1e4 * 8 / 112)
    assert (moved["zone"], moved["range_position"]) == ("premium", pytest.approx(0.8))
    assert context["price"] == 100.0 and project(context, None) is context and project(context, 100.0) is context
    assert zone(90.0, 120.0, 80.0) == (0.25, "discount")
    assert zone(100.0, 120.0, 80.0) == (0.5, "equilibrium")
    assert zone(100.0, 100.0, 100.0) == (None, None) == zone(100.0, 90.0, 110.0)


# ---- the joining processor, called with a hand-built ProcessorContext -------------------------------------


def trade(trade_id: int, time_ms: int, price: float = 100.0) -> bytes:
    return orjson.dumps({"e": "trade", "E": time_ms, "s": "BTCUSDT", "t": trade_id, "p": str(price), "q": "1",
                         "T": time_ms, "m": False})


def joining(join: bool = True) -> tuple[TradesProcessor, ProcessorContext]:
    inputs = ["raw_trades", "smc_context"] if join else ["raw_trades"]
    settings = TradesProcessorSettings(type="trades", consumer_group="g", input_topics=inputs,
                                       output_topics=["enriched_trades"],
                                       params={"smc_context_topic": "smc_context"} if join else {})
    proc = TradesProcessor("trades", settings)
    ctx = ProcessorContext("trades", 0, TaskStores(proc.stores()))
    ctx.partition = 0
    proc.init(ctx)
    return proc, ctx


def outputs(ctx: ProcessorContext) -> list[dict[str, Any]]:
    out = [orjson.loads(value) for _, _, value, *_ in ctx.outputs]
    ctx.outputs.clear()
    return out


def test_a_record_taken_while_the_context_input_was_enforced_is_flagged_stale() -> None:
    proc, ctx = joining()
    ctx.run(proc, "smc_context", 0, 61_000, b"BTCUSDT", (), record(MINUTE - 1, ref=1))
    ctx.run(proc, "raw_trades", 0, 61_500, b"BTCUSDT", (), trade(1, 61_400))
    ctx.enforced = frozenset({"smc_context"})  # the engine found no context record to compare, and waited enough
    ctx.run(proc, "raw_trades", 1, 62_000, b"BTCUSDT", (), trade(2, 61_900))
    ctx.enforced = frozenset({"raw_trades"})  # another input's wait: not the context's
    ctx.run(proc, "raw_trades", 2, 62_500, b"BTCUSDT", (), trade(3, 62_400))
    fresh, stale, other = outputs(ctx)
    assert (fresh["smc_stale"], stale["smc_stale"], other["smc_stale"]) == (False, True, False)
    assert refs(fresh["smc"]) == refs(stale["smc"]) == {"1m": 1}  # the context it has, flagged
    assert proc.events["smc_context_stale"] == 1
    proc2, ctx2 = joining()
    ctx2.enforced = frozenset({"smc_context"})
    ctx2.run(proc2, "raw_trades", 0, 61_500, b"BTCUSDT", (), trade(1, 61_400))
    [first] = outputs(ctx2)
    assert first["smc"] is None and first["smc_stale"] is True and proc2.events["smc_context_stale"] == 1


def test_smc_stale_is_there_exactly_when_smc_is() -> None:
    proc, ctx = joining(join=False)
    ctx.enforced = frozenset({"smc_context"})
    ctx.run(proc, "raw_trades", 0, 61_500, b"BTCUSDT", (), trade(1, 61_400))
    [doc] = outputs(ctx)
    assert "smc" not in doc and "smc_stale" not in doc and not proc.events["smc_context_stale"]


def test_the_joined_contexts_restore_from_their_changelog_records() -> None:
    proc, ctx = joining()
    records: list[tuple[bytes, bytes | None]] = []
    for i in range(1, 8):
        ctx.run(proc, "smc_context", i, i * MINUTE + 1_000, b"BTCUSDT", (), record(i * MINUTE - 1, ref=i))
        if i % 3 == 0:
            records += ctx.stores.changelog_records()
    records += ctx.stores.changelog_records()
    versions = [(k, v) for k, v in records if k.startswith(b"\x01" + CONTEXT_STORE.encode() + b"\x00")]
    assert len(versions) == 7 and all(v is not None for _, v in versions)  # one record per version
    assert {k for k, _ in records} - {k for k, _ in versions} == {META_KEY + CONTEXT_STORE.encode()}  # observed
    restored = TaskStores(proc.stores())
    for key, value in records:
        restored.load(key, value)
    assert restored[CONTEXT_STORE].data == ctx.state(CONTEXT_STORE).data
    for t in range(60_000, 8 * MINUTE, 7_000):
        assert lookup(restored[CONTEXT_STORE], BTC, t, t - 500, 101.0) == \
            lookup(ctx.state(CONTEXT_STORE), BTC, t, t - 500, 101.0)  # type: ignore[arg-type]
