"""Trades through one worker per second, exactly_once vs at_least_once, on the same real broker and input.

Usage: ``python bench/trades_throughput.py [--rounds 3]`` (or ``make bench``). Starts a throwaway broker
(or uses ``TEST_KAFKA_BOOTSTRAP``), replays the real Binance spot trades of ../shared (BTCUSDT and ETHUSDT,
2024-08-08/09, 34,419 trades) once per run into fresh topics, then starts an in-process worker on that
backlog and times it from its first commit to its last: the rate excludes group join and startup. Prints
one line per run and the median per mode, and the ratio at_least_once / exactly_once.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stream_processor.replay import replay  # noqa: E402
from stream_processor.worker import Worker  # noqa: E402
from tests.broker import broker  # noqa: E402
from tests.helpers import isolated_settings  # noqa: E402

FEEDS = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "feeds" / "binance-hftbacktest" / "spot"
FILES = [FEEDS / f"{sym}_{day}.gz" for sym in ("btcusdt", "ethusdt") for day in ("20240808", "20240809")]


async def one_run(bootstrap: str, mode: str) -> tuple[int, float]:
    """Replay the trades, then time a worker over the backlog; returns (trades, seconds)."""
    settings = isolated_settings(bootstrap, mode)
    counts = await replay(settings, FILES, kinds={"trades"}, progress=False)
    total = sum(counts.values())
    worker = Worker(settings)
    task = asyncio.create_task(worker.run())
    stats = worker.runners[0].stats
    first_at = first_count = None
    deadline = time.monotonic() + 300
    while stats.messages_processed < total:
        if task.done():
            task.result()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{mode}: {stats.messages_processed}/{total} after 300 s")
        if first_at is None and stats.messages_processed > 0:
            first_at, first_count = time.perf_counter(), stats.messages_processed
        await asyncio.sleep(0.005)
    done_at = time.perf_counter()
    worker.request_stop()
    await task
    assert first_at is not None and first_count is not None
    return total - first_count, done_at - first_at


async def main(rounds: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    with broker() as bootstrap:
        rates: dict[str, list[float]] = {"exactly_once": [], "at_least_once": []}
        for i in range(rounds):
            for mode in rates:
                n, seconds = await one_run(bootstrap, mode)
                rates[mode].append(n / seconds)
                print(f"round {i + 1} {mode:>13}: {n} trades in {seconds:.2f} s = {n / seconds:,.0f} trades/s")
        med = {mode: statistics.median(r) for mode, r in rates.items()}
        for mode, rate in med.items():
            print(f"median {mode:>13}: {rate:,.0f} trades/s")
        print(f"exactly_once / at_least_once = {med['exactly_once'] / med['at_least_once']:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(parser.parse_args().rounds))
