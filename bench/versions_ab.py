"""exactly_once trades/s of this checkout against an earlier commit, interleaved on one broker and one input.

Usage: ``python bench/versions_ab.py --before REV [--rounds 12] [--copies 8]``.

The throughput of one run varies by a third on a shared 2-core machine, so comparing two runs of
bench/trades_throughput.py made at different moments says little. This script checks REV out into a temporary
worktree (with ``shared`` beside it, as the bench expects ``../shared``), starts one throwaway broker (or uses
``TEST_KAFKA_BOOTSTRAP``), publishes the input of bench/trades_throughput.py once (the real Binance trades,
``--copies`` times under symbol aliases, 8 partitions), then alternates: a worker of REV, a worker of this
checkout, each in its own process with its own consumer group, each reading the whole input with the trades
processor under exactly_once, timed alike for both: from the first record held in a task's open transaction to
the moment every record is committed. Prints every round, the medians and means, and the ratios after / before
(median of the paired ratios too).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.trades_throughput import publish_input  # noqa: E402
from tests.broker import broker  # noqa: E402

# One worker of the checkout at argv[1], timed the same way whatever its version: from the first record held in a
# task's open transaction to the moment every record is committed (group join and task opening excluded).
ONE_RUN = """
import asyncio, logging, sys, time
sys.path.insert(0, sys.argv[1])
logging.basicConfig(level=logging.CRITICAL)
from bench.trades_throughput import worker_settings
from stream_processor.engine.worker import Worker

async def main(bootstrap, source, total):
    worker = Worker(worker_settings(bootstrap, "exactly_once", source))
    task = asyncio.create_task(worker.run())
    stats, first = worker.runners[0].stats, None
    while stats.messages_processed < total:
        if task.done():
            task.result()
        if first is None and (stats.messages_processed or any(
                cp.pending_count for cp in list(worker.runners[0].tasks.values()))):
            first = time.perf_counter()
        await asyncio.sleep(0.001)
    seconds = time.perf_counter() - first
    worker.request_stop()
    await task
    print(total / seconds)

asyncio.run(main(sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


def one_run(root: Path, bootstrap: str, source: str, total: int) -> float:
    """Records/s of one exactly_once worker of the checkout at ``root``."""
    done = subprocess.run([sys.executable, "-c", ONE_RUN, str(root), bootstrap, source, str(total)],
                          capture_output=True, text=True, check=True, cwd=root)
    return float(done.stdout.strip().splitlines()[-1])


def main(before: str, rounds: int, copies: int) -> None:
    with tempfile.TemporaryDirectory(prefix="versions-ab-") as tmp:
        old = Path(tmp) / "main"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), before], check=True,
                       capture_output=True)
        try:
            (Path(tmp) / "shared").symlink_to(ROOT.parent / "shared")
            (old / ".cache").symlink_to(ROOT / ".cache")  # the Kafka jars
            with broker() as bootstrap:
                source = f"ab-trades-{Path(tmp).name[-8:]}"
                total = asyncio.run(publish_input(bootstrap, source, copies))
                print(f"input: {total} real trades on 8 partitions; before = {before}, after = this checkout")
                b, a = [], []
                for i in range(rounds):
                    b.append(one_run(old, bootstrap, source, total))
                    a.append(one_run(ROOT, bootstrap, source, total))
                    print(f"round {i + 1}: before {b[-1]:,.0f}/s after {a[-1]:,.0f}/s", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False)
    print(f"before: median {statistics.median(b):,.0f}/s, mean {statistics.mean(b):,.0f}/s")
    print(f"after:  median {statistics.median(a):,.0f}/s, mean {statistics.mean(a):,.0f}/s")
    print(f"after / before: medians {statistics.median(a) / statistics.median(b):.3f}, means "
          f"{statistics.mean(a) / statistics.mean(b):.3f}, median of paired ratios "
          f"{statistics.median(x / y for x, y in zip(a, b, strict=True)):.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the earlier commit (e.g. ea6ba4a)")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--copies", type=int, default=8)
    args = parser.parse_args()
    main(args.before, args.rounds, args.copies)
