"""Bytes of state per symbol of each market processor, and the order book's changelog bytes per second, on real data.

Usage: ``python bench/state_size.py [--commit-ms 100] [--only orderbook]``.

No broker: each processor runs on the engine's own pieces (a ``ProcessorContext`` over ``TaskStores``, what the
worker and the TestDriver run), one task holding every symbol, fed the real records of ../shared/data with their
Kafka timestamps (the collector's receive time). A commit is simulated at every ``--commit-ms`` boundary of record
time (the worker commits every ``kafka.commit_interval_ms``, 100 ms by default): the dirty keys are encoded by
``TaskStores.changelog_records``, the very records a checkpoint appends to the changelog, and their bytes (key +
value, what the changelog's record limit counts; Kafka's record framing aside) are summed per symbol.

Printed per processor: symbols (state keys), the changelog record of each symbol's state at the end (bytes, mean and
largest over the symbols), the Python memory of one symbol's state (tracemalloc, around rebuilding the object from
that record: what a restore allocates), and the changelog bytes written per second of record time and per input
record. The order book runs twice on the same records, ``state_encoding: full`` (the whole book at every commit in
which it changed: the layout before) and ``delta`` (a head and the changed levels, see
stream_processor/market/processors/orderbook.py), each followed by a restore check (every book rebuilt from the
compacted changelog must equal the live one, levels and metrics), then the ratio.

Inputs: the Binance captures of 2024-08-08/09 (spot BTCUSDT and ETHUSDT, 0808 then 0809; USD-M BTCUSDT 0808): their
trades (trades, klines) and depth diffs, snapshots and bookTickers (orderbook); the EURUSD 15-minute candles of the
smartmoneyconcepts reference (24,424 venue klines) for the SMC detectors and alert rules at their steady state.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402
import yaml  # noqa: E402

from stream_processor.engine.exceptions import RecordError  # noqa: E402
from stream_processor.engine.processor import ProcessorContext  # noqa: E402
from stream_processor.engine.registry import build_processor  # noqa: E402
from stream_processor.engine.settings import load_settings  # noqa: E402
from stream_processor.engine.state import STORE_PREFIX, TaskStores  # noqa: E402
from stream_processor.market.processors.base import state_key  # noqa: E402
from stream_processor.market.serde.feed import iter_feed, record_symbol, stream_kind  # noqa: E402
from stream_processor.market.settings import DEFAULT_CONFIG  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
FEEDS = DATA / "feeds" / "binance-hftbacktest"
FILES = {  # Kafka key -> files, replayed in order (0808 holds the REST snapshot)
    "spot BTCUSDT": ("BTCUSDT", ["spot/btcusdt_20240808.gz", "spot/btcusdt_20240809.gz"]),
    "spot ETHUSDT": ("ETHUSDT", ["spot/ethusdt_20240808.gz", "spot/ethusdt_20240809.gz"]),
    "usdm BTCUSDT": ("BTCUSDT", ["usdm/btcusdt_20240808.gz"]),
}
EURUSD = DATA / "smc_reference" / "smart-money-concepts" / "EURUSD" / "EURUSD_15M.csv.gz"

Record = tuple[int, bytes, bytes]  # (Kafka timestamp ms, key, value)


def feed(kind: str) -> list[Record]:
    """Every message of ``kind`` (trades, orderbook) of the Binance captures, merged in receive-time order."""
    out: list[Record] = []
    for symbol, files in FILES.values():
        for name in files:
            for ns, raw in iter_feed(FEEDS / name):
                if stream_kind(raw) == kind:
                    out.append((ns // 1_000_000, (record_symbol(raw) or symbol).encode(), raw))
    out.sort(key=lambda r: r[0])  # stable: each file keeps its order
    return out


def eurusd_klines() -> list[Record]:
    """The EURUSD candles as closed normalized-form klines, timestamped at their close."""
    out: list[Record] = []
    with gzip.open(EURUSD, "rt") as f:
        header = f.readline().strip().split(",")
        for line in f:
            row = dict(zip(header, line.strip().split(","), strict=True))
            t = int(datetime.strptime(row["Date"], "%Y.%m.%d %H:%M:%S").replace(tzinfo=UTC).timestamp() * 1000)
            out.append((t + 900_000, b"EURUSD", orjson.dumps({
                "type": "kline", "venue": "fx", "symbol": "EURUSD", "interval": "15m", "open_time_ms": t,
                "close_time_ms": t + 899_999, "open": row["Open"], "high": row["High"], "low": row["Low"],
                "close": row["Close"], "volume": row["Tickvol"], "is_closed": True,
            })))
    return out


def settings_of(name: str, **params: Any) -> Any:
    """The shipped configuration with only processor ``name``, its params updated with ``params``."""
    doc = yaml.safe_load(DEFAULT_CONFIG.read_text())
    entry = doc["stream_processors"][name]
    entry["params"] = {**entry.get("params", {}), **params}
    doc["stream_processors"] = {name: entry}
    return load_settings(DEFAULT_CONFIG, environ={}, doc=doc)


def book_key(changelog_key: bytes) -> str:
    """The state key a changelog record belongs to: store prefix and segment number (``#n``) taken off."""
    if changelog_key[:1] == STORE_PREFIX:
        changelog_key = changelog_key[1:].partition(b"\x00")[2]
    return changelog_key.decode().partition("#")[0]


def log_memory(book: Any) -> int:
    """Bytes of a logging order book's changed prices: the closed segments' arrays (8 bytes a price), the open
    segment's sets (and a float object, 24 bytes, per price)."""
    closed = sum(sys.getsizeof(keys) for segment in book._segments for keys in segment)
    return closed + sum(sys.getsizeof(keys) + 24 * len(keys) for keys in (book.bids._touched, book.asks._touched)
                        if keys is not None)


def record_kind(key: bytes, value: bytes | None) -> str:
    """base (a state in the default store), head or segment (the order book's log store), or tombstone."""
    if value is None:
        return "tombstone"
    if key[:1] != STORE_PREFIX:
        return "base"
    return "segment" if b"#" in key else "head"


@dataclass
class Run:
    """What one processor wrote, per state key."""

    proc: Any
    stores: TaskStores
    records: Counter[str] = field(default_factory=Counter)  # input records per key
    span_ms: dict[str, list[int]] = field(default_factory=dict)  # key -> [first, last] record time
    written: Counter[str] = field(default_factory=Counter)  # changelog bytes per key
    writes: Counter[str] = field(default_factory=Counter)  # changelog records per key
    commits: Counter[str] = field(default_factory=Counter)  # commits that wrote the key
    changelog: dict[bytes, bytes | None] = field(default_factory=dict)  # compacted: the last value of each key
    kinds: Counter[str] = field(default_factory=Counter)  # changelog bytes per kind of record
    log_memory: list[int] = field(default_factory=list)  # at each commit: bytes of the order books' log sets
    refused: int = 0
    seconds: float = 0.0


def run(name: str, records: list[Record], commit_ms: int, **params: Any) -> Run:
    """Feed ``records`` to processor ``name`` (shipped config, ``params`` changed), committing every ``commit_ms``
    of record time."""
    proc = build_processor(name, settings_of(name, **params))
    stores = TaskStores(proc.stores(), proc.settings.state_errors)
    ctx = ProcessorContext(name, 0, stores)
    ctx.partition = 0
    proc.init(ctx)
    out = Run(proc, stores)

    def commit() -> None:
        keys = set()
        for key, value in stores.changelog_records():
            owner = book_key(key)
            out.written[owner] += len(key) + (len(value) if value is not None else 0)
            out.writes[owner] += 1
            out.kinds[record_kind(key, value)] += len(key) + (len(value) if value is not None else 0)
            keys.add(owner)
            out.changelog.pop(key, None)  # compaction keeps the last record of a key, in the order written
            out.changelog[key] = value
        for owner in keys:
            out.commits[owner] += 1
        if getattr(proc, "delta", False):
            out.log_memory.extend(log_memory(book) for book in stores[""].data.values())

    decode, seen = proc.decode, []

    def decode_seen(value: bytes | None, key: bytes | None, ts: int | None, topic: str | None = None) -> Any:
        record = decode(value, key, ts, topic)
        seen.append(state_key(record))
        return record

    proc.decode = decode_seen  # counts the input records and record time of each state key
    started = time.perf_counter()
    due = None
    for offset, (ts, key, value) in enumerate(records):
        if due is None or ts >= due:
            if due is not None:
                commit()
            due = (ts // commit_ms + 1) * commit_ms
        try:
            ctx.run(proc, "in", offset, ts, key, (), value)
            ctx.punctuate_stream_time()
        except RecordError:
            out.refused += 1
        ctx.outputs.clear()
        if seen:
            owner = seen.pop()
            out.records[owner] += 1
            span = out.span_ms.setdefault(owner, [ts, ts])
            span[1] = ts
    commit()
    out.seconds = time.perf_counter() - started
    return out


def memory(run_: Run) -> dict[str, int]:
    """Bytes Python allocates to rebuild each key's state object from its changelog record (tracemalloc)."""
    store = run_.stores[""]
    out = {}
    tracemalloc.start()
    try:
        kept = []
        for key in store.data:
            state = orjson.loads(store.encode(key))["state"]  # type: ignore[arg-type]
            before = tracemalloc.get_traced_memory()[0]
            kept.append(run_.proc.state_from(state))
            out[key] = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return out


def state_bytes(run_: Run) -> dict[str, int]:
    """Each key's state as the changelog holds it at the end (key + value of every live record of that key)."""
    out: Counter[str] = Counter()
    for key, value in run_.changelog.items():
        if value is not None:
            out[book_key(key)] += len(key) + len(value)
    return dict(out)


def span_s(run_: Run, key: str | None = None) -> float:
    spans = list(run_.span_ms.values()) if key is None else [run_.span_ms[key]]
    return (max(s[1] for s in spans) - min(s[0] for s in spans)) / 1000


def summary(label: str, run_: Run, per_second: bool = True) -> None:
    sizes = state_bytes(run_)
    mem = memory(run_)
    n = len(run_.records)
    total_records = sum(run_.records.values())
    rate = f"{sum(run_.written.values()) / span_s(run_):>12,.0f}" if per_second else f"{'-':>12}"
    print(f"{label:<42} {total_records:>8,} {n:>5} {statistics.mean(sizes.values()):>10,.0f} "
          f"{max(sizes.values()):>10,} {statistics.mean(mem.values()):>10,.0f} {rate} "
          f"{sum(run_.written.values()) / total_records:>9,.0f}")


def restore_check(run_: Run, name: str, **params: Any) -> str:
    """Rebuild a fresh task from the compacted changelog; every book must equal the live one."""
    proc = build_processor(name, settings_of(name, **params))
    stores = TaskStores(proc.stores(), proc.settings.state_errors)
    for key, value in run_.changelog.items():
        stores.load(key, value)
    ctx = ProcessorContext(name, 0, stores)
    proc.init(ctx)
    live, restored = run_.stores[""].data, stores[""].data
    if live.keys() != restored.keys():
        return f"DIFFERENT keys {sorted(live)} vs {sorted(restored)}"
    for key, book in live.items():
        again = restored[key]
        if orjson.dumps(book.to_state()) != orjson.dumps(again.to_state()):
            return f"DIFFERENT state of {key}"
        if orjson.dumps(run_.proc.metrics.compute(book)) != orjson.dumps(proc.metrics.compute(again)):
            return f"DIFFERENT metrics of {key}"
    records = sum(value is not None for value in run_.changelog.values())
    return f"identical ({len(live)} books from {records} changelog records)"


def klines_parts(run_: Run) -> str:
    """Bytes of each part of the klines states (summed over symbols)."""
    parts: Counter[str] = Counter()
    for obj in run_.stores[""].data.values():
        for part, value in obj.to_state().items():
            parts[part] += len(orjson.dumps(value))
    n = len(run_.stores[""].data)
    return ", ".join(f"{part} {size / n:,.0f}" for part, size in parts.most_common())


def main(commit_ms: int, only: str | None) -> None:
    print(f"commits every {commit_ms} ms of record time; bytes = changelog key + value\n")
    header = (f"{'processor':<42} {'records':>8} {'keys':>5} {'state B/key':>10} {'largest':>10} "
              f"{'memory B/key':>10} {'changelog B/s':>12} {'B/record':>9}")
    runs: dict[str, Run] = {}
    if only in (None, "trades", "klines"):
        trades = feed("trades")
        print(header)
        if only in (None, "trades"):
            r = run("trades", trades, commit_ms)
            summary("trades", r)
        if only in (None, "klines"):
            r = run("klines", trades, commit_ms)
            summary("klines (trades: 1m, 5m, SMC, alerts)", r)
            print(f"    per symbol by part: {klines_parts(r)}")
            candles = eurusd_klines()
            r = run("klines", candles, commit_ms, source="klines", intervals=["15m"],
                    alerts=[{"name": "sweep", "event": "liquidity_swept"},
                            {"name": "bos", "event": "bos"}])
            summary("smc + alerts (EURUSD 15m klines, 24k bars)", r, per_second=False)
            print(f"    per symbol by part: {klines_parts(r)}")
        print()
    if only in (None, "orderbook"):
        book = feed("orderbook")
        print(header)
        for encoding in ("full", "delta"):
            r = runs[encoding] = run("orderbook", book, commit_ms, state_encoding=encoding)
            summary(f"orderbook ({encoding})", r)
        print()
        print(f"{'orderbook, per book':<22} {'records':>8} {'span s':>7} {'commits':>8} {'full B/s':>10} "
              f"{'delta B/s':>10} {'ratio':>6} {'full B/rec':>10} {'delta B/rec':>11} {'records/commit':>15}")
        full, delta = runs["full"], runs["delta"]
        for key in sorted(full.records):
            s = span_s(full, key)
            rec = full.records[key]
            print(f"{key:<22} {rec:>8,} {s:>7.1f} {full.commits[key]:>8,} {full.written[key] / s:>10,.0f} "
                  f"{delta.written[key] / s:>10,.0f} {full.written[key] / delta.written[key]:>6.1f} "
                  f"{full.written[key] / rec:>10,.0f} {delta.written[key] / rec:>11,.0f} "
                  f"{full.writes[key] / full.commits[key]:>7.2f} / {delta.writes[key] / delta.commits[key]:<5.2f}")
        s = span_s(full)
        total_full, total_delta = sum(full.written.values()), sum(delta.written.values())
        print(f"{'all (one task)':<22} {sum(full.records.values()):>8,} {s:>7.1f} {'':>8} {total_full / s:>10,.0f} "
              f"{total_delta / s:>10,.0f} {total_full / total_delta:>6.1f}")
        print(f"\nprocessing time: full {full.seconds:.1f} s, delta {delta.seconds:.1f} s (with the simulated commits)")
        for encoding in ("full", "delta"):
            print(f"restore from the compacted changelog ({encoding}): "
                  f"{restore_check(runs[encoding], 'orderbook', state_encoding=encoding)}")
        total = sum(delta.kinds.values())
        print("delta, bytes written by kind: " + ", ".join(
            f"{kind} {size / span_s(delta):,.0f} B/s ({size / total:.0%})" for kind, size in delta.kinds.most_common()))
        print(f"delta, Python memory of the log's changed prices per book (sampled at each commit): mean "
              f"{statistics.mean(delta.log_memory):,.0f} B, largest {max(delta.log_memory):,} B")
        live: Counter[str] = Counter()
        for key, value in delta.changelog.items():
            if value is not None:
                live[record_kind(key, value)] += 1
        print("delta, records the compacted changelog holds: " + ", ".join(
            f"{kind} {n}" for kind, n in sorted(live.items())))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit-ms", type=int, default=100)
    parser.add_argument("--only", choices=["trades", "klines", "orderbook"])
    args = parser.parse_args()
    main(args.commit_ms, args.only)
