"""Cost of the incremental volume profile on real trades: µs per trade update and per summary().

Trades: Binance spot BTCUSDT, 2024-08-08 23:54 -> 08-09 00:05 UTC (19,904 trades, shared data), fed as the klines
processor would (``add_trade``, UTC-day session, and a rolling 1m x N window closed at each minute). ``summary()`` is
timed uncached (a trade between calls invalidates the cache), on the profile after all trades.

    python -m bench.volume_profile_cost [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import orjson

from stream_processor.market.serde.feed import iter_feed
from stream_processor.market.volume_profile import VolumeProfile

ROOT = Path(__file__).resolve().parents[1]
SPOT = Path(os.environ.get("SHARED_DATA", ROOT.parent / "shared" / "data")) / "feeds" / "binance-hftbacktest" / "spot"


def trades() -> list[tuple[float, float, str, int]]:
    rows: dict[int, tuple[float, float, str, int]] = {}
    for day in ("20240808", "20240809"):
        for _, raw in iter_feed(SPOT / f"btcusdt_{day}.gz"):
            if b'@trade"' in raw:
                d = orjson.loads(raw)["data"]
                rows[d["t"]] = (float(d["p"]), float(d["q"]), "sell" if d["m"] else "buy", d["T"])
    return [rows[t] for t in sorted(rows)]


def run(rows, repeat: int, **kwargs) -> tuple[float, float, float, int]:
    """(µs per update, µs per uncached summary, µs per close_kline, bins) best of ``repeat``."""
    best_u = best_s = best_c = float("inf")
    bins = 0
    for _ in range(repeat):
        vp = VolumeProfile(**kwargs)
        add = vp.add_trade
        rolling = "window" in kwargs
        closes = 0
        close_ns = 0
        t0 = time.perf_counter_ns()
        if rolling:
            current = None
            for p, q, s, t in rows:
                m = t - t % 60_000
                if current is not None and m != current:
                    c0 = time.perf_counter_ns()
                    vp.close_kline(current)
                    close_ns += time.perf_counter_ns() - c0
                    closes += 1
                current = m
                add(p, q, s, t)
        else:
            for p, q, s, t in rows:
                add(p, q, s, t)
        best_u = min(best_u, (time.perf_counter_ns() - t0 - close_ns) / len(rows) / 1e3)
        if closes:
            best_c = min(best_c, close_ns / closes / 1e3)
        p, q, s, t = rows[-1]
        n = 200
        s0 = 0
        for _ in range(n):
            vp.add_trade(p, 0.0, s, t)  # a zero-size trade changes nothing ...
            vp._cache = None  # ... so invalidate the cache by hand
            a = time.perf_counter_ns()
            vp.summary()
            s0 += time.perf_counter_ns() - a
        best_s = min(best_s, s0 / n / 1e3)
        bins = vp.summary()["bins"]
    return best_u, best_s, best_c, bins


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rows = trades()
    print(f"{len(rows)} BTCUSDT trades")
    print(f"{'profile':44} {'µs/update':>10} {'µs/summary':>11} {'µs/close':>9} {'bins':>6}")
    for label, kw in [
        ("UTC day, bin_width 1.0", {"bin_width": 1.0}),
        ("UTC day, bin_width 10.0", {"bin_width": 10.0}),
        ("UTC day, tick 0.01 (merges at 2000 bins)", {"tick_size": 0.01}),
        ("rolling 1m x 5, bin_width 1.0", {"bin_width": 1.0, "window": 5, "interval": "1m"}),
        ("rolling 1m x 5, bin_width 10.0", {"bin_width": 10.0, "window": 5, "interval": "1m"}),
    ]:
        u, s, c, b = run(rows, args.repeat, **kw)
        cs = f"{c:9.1f}" if c != float("inf") else f"{'-':>9}"
        print(f"{label:44} {u:10.3f} {s:11.1f} {cs} {b:6d}")


if __name__ == "__main__":
    main()
