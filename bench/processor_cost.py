"""Per-message cost of each processor (µs per input record), on real data, without Kafka.

Usage: ``python bench/processor_cost.py [--repeat 3]``.

Each processor is fed its real input in one process, from bytes: decode (``Processor.decode``) then ``process``
with a fresh task context (its stores empty; the outputs it sends are dropped after each record), what the
worker's hot path runs per record (the Kafka side, batching and
commits are measured by bench/trades_throughput.py). The baseline, run in the same process on the same bytes, is
``orjson.loads`` alone: every processor's cost is printed in µs per record and as a multiple of that baseline.

The klines rows "without the additions" and "+ ..." switch on, one at a time, what issue 12 added (each row
includes the ones above it): the volume profile, the previous high/low, session and retracement detectors, the SMC
context on every enriched kline; "+ SMC context join" is a processor joining the context records the klines
processor wrote for the same trades (read first, untimed).

Inputs (../shared/data): the Binance spot BTCUSDT+ETHUSDT feeds of 2024-08-08/09 (34,419 trades; 12,979 depth diffs,
2 snapshots and 131,932 bookTickers) and the EURUSD 15-minute candles of the smartmoneyconcepts reference (24,424).
Best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

import tests.eos.eos_check  # noqa: E402,F401 - registers the eos_check processor type
from stream_processor.engine.processor import ProcessorContext  # noqa: E402
from stream_processor.engine.registry import lookup  # noqa: E402
from stream_processor.engine.state import TaskStores  # noqa: E402
from stream_processor.market.serde.feed import iter_feed, record_symbol, stream_kind  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SPOT = DATA / "feeds" / "binance-hftbacktest" / "spot"
EURUSD = DATA / "smc_reference" / "smart-money-concepts" / "EURUSD" / "EURUSD_15M.csv.gz"


#: The joins keep every context of the input (contexts are read first, so a shorter history would expire those the
#: first records need).
JOIN_HISTORY_MS = 10**9
#: The Kafka timestamp of the first input record (ms); record i has T0 + i (event times are checked against it).
T0 = int(time.time() * 1000)


def feed(kinds: set[str]) -> list[tuple[bytes, bytes]]:
    """(key, value) of the spot feed messages of ``kinds``, per symbol in time order."""
    out = []
    for sym in ("btcusdt", "ethusdt"):
        for day in ("20240808", "20240809"):
            for _, raw in iter_feed(SPOT / f"{sym}_{day}.gz"):
                if stream_kind(raw) in kinds:
                    out.append(((record_symbol(raw) or sym.upper()).encode(), raw))
    return out


def eurusd_klines() -> list[tuple[bytes, bytes]]:
    """The EURUSD candles as normalized-form kline records (see stream_processor/serde/normalized.py)."""
    out = []
    with gzip.open(EURUSD, "rt") as f:
        header = f.readline().strip().split(",")
        for line in f:
            row = dict(zip(header, line.strip().split(","), strict=True))
            t = int(datetime.strptime(row["Date"], "%Y.%m.%d %H:%M:%S").replace(tzinfo=UTC).timestamp() * 1000)
            out.append((b"EURUSD", orjson.dumps({
                "type": "kline", "venue": "fx", "symbol": "EURUSD", "interval": "15m", "open_time_ms": t,
                "close_time_ms": t + 899_999, "open": row["Open"], "high": row["High"], "low": row["Low"],
                "close": row["Close"], "volume": row["Tickvol"], "is_closed": True,
            })))
    return out


def check_records(n: int) -> list[tuple[bytes, bytes]]:
    return [(f"k{i % 200}".encode(), orjson.dumps({"id": i, "key": f"k{i % 200}", "value": i % 2001 - 1000}))
            for i in range(n)]


def contexts(trades: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes, int]]:
    """The SMC context records the klines processor writes for ``trades`` (1m and 5m), as the trades processor reads
    them from the context topic: key, value and Kafka timestamp (that of the trade that closed the kline, as the
    runtime stamps it; trade i has timestamp ``T0 + i``)."""
    type_ = lookup("klines")
    assert type_ is not None
    settings = type_.settings(type="klines", consumer_group="bench", input_topics=["in"], output_topics=["k", "s"],
                              params={"intervals": ["1m", "5m"], "smc": {"context_topic": "ctx"}})
    proc = type_.factory("klines", settings)
    ctx = ProcessorContext("klines", 0, TaskStores(proc.stores()))
    ctx.topic, ctx.partition = "in", 0
    proc.init(ctx)
    out = []
    for offset, (key, value) in enumerate(trades):
        ctx.run(proc, "in", offset, T0 + offset, key, (), value)
        out += [(k, v, ts) for topic, k, v, _, _, ts in ctx.outputs if topic == "ctx"]
        ctx.outputs.clear()
    return out


def cost(kind: str, params: dict[str, Any], records: list[tuple[bytes, bytes]], outputs: list[str],
         context: list[tuple[bytes, bytes, int]] | None = None) -> tuple[float, int]:
    """Seconds per record to decode and process ``records`` with a fresh processor and store, and the records
    refused (the worker would dead-letter them: the bench says so rather than time refusals). Record i has the Kafka
    timestamp ``T0 + i``. ``context``: SMC context records the processor reads first from topic ``ctx``, at their
    timestamps (untimed: its join is what is timed; the lookups find, for each record, the context versioned before
    its timestamp, kept for the whole input by ``smc_context_history_ms``)."""
    type_ = lookup(kind)
    assert type_ is not None
    inputs = ["in", "ctx"] if context is not None else ["in"]
    settings = type_.settings(type=kind, consumer_group="bench", input_topics=inputs, output_topics=outputs,
                              **({"params": params} if params else {}))
    proc = type_.factory(kind, settings)
    ctx = ProcessorContext(kind, 0, TaskStores(proc.stores()))
    ctx.topic, ctx.partition = "in", 0
    proc.init(ctx)
    run, outputs_sent = ctx.run, ctx.outputs
    for offset, (key, value, ts) in enumerate(context or ()):
        run(proc, "ctx", offset, ts, key, (), value)
    refused = 0
    started = time.perf_counter()
    for offset, (key, value) in enumerate(records):
        try:
            run(proc, "in", offset, T0 + offset, key, (), value)
            ctx.punctuate_stream_time()
        except Exception:  # noqa: BLE001 - counted like the worker: a dead letter, then go on
            refused += 1
        outputs_sent.clear()
    return (time.perf_counter() - started) / len(records), refused


def baseline(records: list[tuple[bytes, bytes]]) -> float:
    loads = orjson.loads
    started = time.perf_counter()
    for _, value in records:
        loads(value)
    return (time.perf_counter() - started) / len(records)


def main(repeat: int) -> None:
    trades = feed({"trades"})
    book = feed({"orderbook"})
    candles = eurusd_klines()
    joined = contexts(trades)
    join = {"smc_context_topic": "ctx", "smc_context_history_ms": JOIN_HISTORY_MS}
    # The market context's additions, one at a time on top of what the klines processor did before them.
    bare = {"volume_profile": {"enabled": False},
            "smc": {"context": False, "previous_high_low": [], "sessions": [], "retracements": False}}
    profile = {"smc": bare["smc"]}
    detectors = {"smc": {"context": False}}
    context: dict[str, Any] = {}
    m15 = {"source": "klines", "intervals": ["15m"]}
    sweep = {**m15, "alerts": [{"name": "sweep", "event": "liquidity_swept"}]}
    cases = [
        ("trades", "trades", {}, trades, ["enriched_trades"], None),
        ("trades + SMC context join", "trades", join, trades, ["enriched_trades"], joined),
        ("orderbook", "orderbook", {}, book, ["enriched_orderbook"], None),
        ("orderbook + SMC context join", "orderbook", join, book, ["enriched_orderbook"],
         joined),
        ("klines from trades (1m, 5m, SMC)", "klines", {"intervals": ["1m", "5m"]}, trades, ["k", "s", "a"], None),
        ("  without the additions", "klines", {"intervals": ["1m", "5m"], **bare}, trades, ["k", "s"], None),
        ("  + volume profile", "klines", {"intervals": ["1m", "5m"], **profile}, trades, ["k", "s"], None),
        ("  + prev. H/L, sessions, retracements", "klines", {"intervals": ["1m", "5m"], **detectors}, trades,
         ["k", "s"], None),
        ("  + SMC context (all)", "klines", {"intervals": ["1m", "5m"], **context}, trades, ["k", "s"], None),
        ("klines + SMC + alerts (15m candles)", "klines", sweep, candles, ["k", "s", "a"], None),
        ("  without the additions", "klines", {**m15, **bare}, candles, ["k", "s"], None),
        ("  + volume profile", "klines", {**m15, **profile}, candles, ["k", "s"], None),
        ("  + prev. H/L, sessions, retracements", "klines", {**m15, **detectors}, candles, ["k", "s"], None),
        ("  + SMC context (all)", "klines", {**m15, **context}, candles, ["k", "s"], None),
        ("eos_check", "eos_check", {}, check_records(50_000), ["echo", "agg"], None),
    ]
    print(f"{'processor':<38} {'records':>8} {'refused':>8} {'us/record':>10} {'x orjson.loads':>15}")
    for label, kind, params, records, outputs, context_records in cases:
        runs = [cost(kind, params, records, outputs, context_records) for _ in range(repeat)]
        best, refused = min(r[0] for r in runs), runs[0][1]
        base = min(baseline(records) for _ in range(repeat))
        print(f"{label:<38} {len(records):>8} {refused:>8} {best * 1e6:>10.2f} {best / base:>15.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    main(parser.parse_args().repeat)
