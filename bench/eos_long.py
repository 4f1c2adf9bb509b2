"""The long form of the exactly-once chaos harness: 500,000 records, 20 kill -9, a graceful stop, a broker restart,
CPU load, then the SMC context join run again quietly and compared.

Usage: ``python bench/eos_long.py [--records 500000] [--kills 20] [--graceful-stops 1] [--broker-restarts 1]
[--rate 4000] [--workers 3] [--mode exactly_once] [--seed 1] [--too-late 0.02] [--load 2] [--load-share 0.5]
[--quiet-workers 1] [--no-quiet-run]`` (or ``make eos-long``).

Starts its own throwaway real broker (it restarts it mid-run), runs :func:`tests.eos.harness.run_chaos` (the
built-in processors and the user agent of tests/eos/check_app.py, with its Table and windowed table, in every
worker; ``--load`` busy-loop processes, not niced, for ``--load-share`` of the production window) and prints the
report: records, kills, rebalances, broker restarts, and the counts of duplicates, losses and wrong aggregates per
output (the agent's sink and its changelog included). Under exactly_once it then runs the klines and trades
processors again, quietly, over the same stored raw trades (new groups, their own context and output topics) and
prints the join's comparison (:mod:`tests.eos.join_check`): context records equal to a replay's, the enriched trades
flagged ``smc_stale`` in each run, the others byte-identical between the runs and equal to a batch recomputation.
Exits 1 if any count that must be zero is not (under exactly_once), 0 otherwise. Worker logs are kept in a
temporary folder whose path is printed (the quiet run's under ``quiet/``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.broker import broker  # noqa: E402
from tests.eos.harness import ChaosPlan, run_chaos  # noqa: E402


async def main(plan: ChaosPlan) -> int:
    logging.basicConfig(level=logging.CRITICAL)  # aiokafka logs every connection the broker restart breaks
    workdir = Path(tempfile.mkdtemp(prefix="eos-long-"))
    print(f"plan: {plan}\nworker logs: {workdir}", flush=True)
    with broker() as bootstrap:
        report = await run_chaos(bootstrap, plan, workdir)
    print(report.text())
    if plan.mode == "exactly_once":
        print("PASS" if report.failures() == 0 else f"FAIL: {report.failures()} failures")
        return 0 if report.failures() == 0 else 1
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--trades", type=int, default=34_419)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--graceful-stops", type=int, default=1)
    parser.add_argument("--broker-restarts", type=int, default=1)
    parser.add_argument("--rate", type=float, default=4_000.0)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--mode", choices=["exactly_once", "at_least_once"], default="exactly_once")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--too-late", type=float, default=0.02,
                        help="share of check records the agent's windowed table gets after their window expired")
    parser.add_argument("--load", type=int, default=2, help="busy-loop processes (not niced) during the production")
    parser.add_argument("--load-share", type=float, default=0.5, help="share of the production window under load")
    parser.add_argument("--quiet-workers", type=int, default=1, help="workers of the quiet rerun of the join")
    parser.add_argument("--no-quiet-run", action="store_true", help="skip the quiet rerun of the join")
    a = parser.parse_args()
    plan = ChaosPlan(records=a.records, trades=a.trades, kills=a.kills, graceful_stops=a.graceful_stops,
                     broker_restarts=a.broker_restarts, rate=a.rate, workers=a.workers, mode=a.mode, seed=a.seed,
                     too_late=a.too_late, drain_timeout_s=900.0, load=a.load, load_share=a.load_share,
                     quiet_run=not a.no_quiet_run, quiet_workers=a.quiet_workers)
    sys.exit(asyncio.run(main(plan)))
