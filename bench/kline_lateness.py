"""How late do real trades arrive? The data to choose the default ``grace_ms`` of klines built from trades.

Usage: ``python bench/kline_lateness.py [--data DIR] [--interval-ms MS]``.

Tapes, each in arrival order (the shared data folder, ``../shared/data`` or ``$SHARED_DATA``; read in place):

- Binance spot BTCUSDT and ETHUSDT (files 0808 then 0809) and USD-M BTCUSDT (0808) from
  ``feeds/binance-hftbacktest``: the ``@trade`` lines in file order, decoded with ``stream_processor.market.serde``;
- bitFlyer BTC_JPY (the 8 daily files 20180121..20180128, in turn) and ETH_BTC (20180128) from
  ``trades/bitflyer-kazamidori``, in row order (a REST tape polled every minute: each poll batch is in descending
  id order and batches overlap); ``exec_date`` is ISO-8601 with a +09:00 offset; rows with a blank
  ``exec_date`` are dropped. Shown as read ("raw") and after the default ``TradeIdWindow`` dropped the re-sent
  ids ("dedup"), which is what a processor with dedup on feeds its builders;
- the Tardis Binance USD-M BTCUSDT trades (``trades/tardis-nautilus``), in ``local_timestamp`` (receive) order.

Per tape: lateness of each trade = (largest trade time seen so far) - (its trade time), 0 for a trade that is the
newest so far; its distribution (share > 0, p50, p99, p99.9, max, in ms); and, for each grace, the share of
trades a ``KlineBuilder(interval_ms, grace_ms)`` refuses as late (``LateTradeError``; the real builder is run).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream_processor.market.dedup import TradeIdWindow  # noqa: E402
from stream_processor.market.klines.builder import KlineBuilder, LateTradeError  # noqa: E402
from stream_processor.market.models import Trade  # noqa: E402
from stream_processor.market.serde.decode import decode  # noqa: E402
from stream_processor.market.serde.feed import iter_feed  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
GRACES_MS = (0, 250, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 120_000)


def binance_trades(data: Path, files: list[str]) -> list[Trade]:
    """The ``@trade`` messages of hftbacktest feed files, in file (arrival) order."""
    out = []
    for name in files:
        for _, raw in iter_feed(data / "feeds" / "binance-hftbacktest" / name):
            if b'@trade"' not in raw:
                continue
            record = decode(raw)
            if type(record) is Trade:
                out.append(record)
    return out


def _iso_ms(text: str) -> int:
    """``2018-01-21T00:00:11.173+09:00`` -> ms since the epoch (UTC)."""
    return round(datetime.fromisoformat(text).timestamp() * 1000)


def bitflyer_trades(data: Path, files: list[str]) -> tuple[list[Trade], list[str], int]:
    """Executions in row order, their ``loaded`` (poll) times, and how many rows had a blank ``exec_date``."""
    out, loaded, blank = [], [], 0
    for name in files:
        with gzip.open(data / "trades" / "bitflyer-kazamidori" / name, "rt", newline="") as fh:
            for row in csv.DictReader(fh):
                if not row["exec_date"].strip():
                    blank += 1
                    continue
                t = _iso_ms(row["exec_date"])
                side = row["side"].lower() or "unknown"
                out.append(
                    Trade(
                        "bitflyer",
                        row["product_code"],
                        int(row["id"]),
                        float(row["price"]),
                        float(row["size"]),
                        side,
                        t,
                        t,
                    )
                )
                loaded.append(row["loaded"])
    return out, loaded, blank


def sorted_per_poll(trades: list[Trade], loaded: list[str]) -> list[Trade]:
    """Each poll batch (consecutive rows with the same ``loaded``) sorted by (time, id): what a connector that
    publishes a batch oldest first would send."""
    out: list[Trade] = []
    start = 0
    for i in range(1, len(trades) + 1):
        if i == len(trades) or loaded[i] != loaded[start]:
            out.extend(sorted(trades[start:i], key=lambda t: (t.time_ms, t.trade_id)))
            start = i
    return out


def tardis_trades(data: Path) -> tuple[list[Trade], bool]:
    """The Tardis trades in receive (``local_timestamp``) order; also whether that is the file order."""
    rows = []
    with gzip.open(data / "trades" / "tardis-nautilus" / "tardis_trades.csv.gz", "rt", newline="") as fh:
        for row in csv.DictReader(fh):
            rows.append(row)
    local = [int(r["local_timestamp"]) for r in rows]
    order = sorted(range(len(rows)), key=local.__getitem__)  # stable: ties keep file order
    trades = [
        Trade(
            "binance",
            r["symbol"],
            int(r["id"]),
            float(r["price"]),
            float(r["amount"]),
            r["side"],
            int(r["timestamp"]) // 1000,
            int(r["timestamp"]) // 1000,
        )
        for r in (rows[i] for i in order)
    ]
    return trades, order == list(range(len(rows)))


def dedup(trades: list[Trade], window: int = 10_000) -> list[Trade]:
    """The trades whose id a ``TradeIdWindow(window)`` (256 runs) has not seen."""
    ids = TradeIdWindow(window)
    out = []
    for t in trades:
        if not ids.seen(t.trade_id):
            ids.add(t.trade_id)
            out.append(t)
    return out


def exact_dedup(trades: list[Trade]) -> list[Trade]:
    """The first occurrence of each id (an unbounded set: the reference, not something a stream can keep)."""
    ids: set[int] = set()
    out = []
    for t in trades:
        if t.trade_id not in ids:
            ids.add(t.trade_id)
            out.append(t)
    return out


def lateness(trades: list[Trade]) -> np.ndarray:
    times = np.fromiter((t.time_ms for t in trades), dtype=np.int64, count=len(trades))
    return np.maximum.accumulate(times) - times


def refused(trades: list[Trade], interval_ms: int, grace_ms: int) -> int:
    builder = KlineBuilder(interval_ms, grace_ms)
    late = 0
    for t in trades:
        try:
            builder.add(t)
        except LateTradeError:
            late += 1
    return late


def tapes(data: Path) -> Iterator[tuple[str, list[Trade], str]]:
    yield "binance spot BTCUSDT", binance_trades(data, ["spot/btcusdt_20240808.gz", "spot/btcusdt_20240809.gz"]), ""
    yield "binance spot ETHUSDT", binance_trades(data, ["spot/ethusdt_20240808.gz", "spot/ethusdt_20240809.gz"]), ""
    yield "binance usdm BTCUSDT", binance_trades(data, ["usdm/btcusdt_20240808.gz"]), ""
    days = [f"bitflyer.execution.201801{d}.BTC_JPY.csv.gz" for d in range(21, 29)]
    for name, files in (("BTC_JPY", days), ("ETH_BTC", ["bitflyer.execution.20180128.ETH_BTC.csv.gz"])):
        trades, loaded, blank = bitflyer_trades(data, files)
        yield f"bitflyer {name} raw", trades, f"{blank} rows with a blank exec_date dropped"
        for label, unique in (
            ("dedup 10k", dedup(trades)),
            ("dedup 1M", dedup(trades, 1_000_000)),
            ("exact dedup", exact_dedup(trades)),
        ):
            yield f"bitflyer {name} {label}", unique, f"{len(trades) - len(unique)} re-sent ids dropped"
        batched = exact_dedup(sorted_per_poll(trades, loaded))
        yield f"bitflyer {name} poll-sorted, exact dedup", batched, f"{len(set(loaded)):,} poll batches"
    trades, file_order = tardis_trades(data)
    yield "tardis usdm BTCUSDT", trades, "receive order == file order" if file_order else "receive order != file order"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=SHARED_DATA)
    ap.add_argument("--interval-ms", type=int, default=60_000)
    args = ap.parse_args()

    started = time.perf_counter()
    dist_rows, late_rows, notes = [], [], []
    for name, trades, note in tapes(args.data):
        lat = lateness(trades)
        p50, p99, p999 = np.percentile(lat, [50, 99, 99.9], method="inverted_cdf")
        dist_rows.append(
            f"| {name} | {len(trades):,} | {100 * (lat > 0).mean():.2f} | {p50:,.0f} | {p99:,.0f} | {p999:,.0f} | "
            f"{lat.max():,} |"
        )
        shares = [100 * refused(trades, args.interval_ms, g) / len(trades) for g in GRACES_MS]
        late_rows.append(f"| {name} | " + " | ".join(f"{s:.3f}" for s in shares) + " |")
        if note:
            notes.append(f"- {name}: {note}")
        print(f"  {name}: done", file=sys.stderr, flush=True)

    print(f"Lateness = max trade time seen so far - trade time (ms), arrival order; {args.interval_ms} ms klines.\n")
    print("| tape | trades | late > 0 % | p50 | p99 | p99.9 | max |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(dist_rows))
    print(f"\n% of trades refused as late by KlineBuilder({args.interval_ms}, grace_ms):\n")
    print("| tape | " + " | ".join(f"{g:,}" for g in GRACES_MS) + " |")
    print("|---|" + "---:|" * len(GRACES_MS))
    print("\n".join(late_rows))
    print("\n" + "\n".join(notes))
    print(f"\n({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
