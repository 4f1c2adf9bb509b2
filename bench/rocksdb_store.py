"""A table of 1M keys in memory (``store: memory://``) and on disk (``store: rocksdb://``): records/s and RSS.

Usage: ``python bench/rocksdb_store.py [--keys 1000000] [--updates 2] [--commit-every 1000]``.

No broker: each store runs on the engine's own pieces (a ``TaskStores`` of one task, what the worker and the
TestDriver run), each backend in its own process so that their RSS do not mix. What a Faust table agent does per
record (``table[key]`` read, a new value written: ``{"count": n, "total": x}``) is done with the store's API, ``keys``
distinct keys updated ``updates`` times each in a shuffled order; every ``commit-every`` records a commit is
simulated: ``TaskStores.changelog_records`` encodes the dirty keys, the very records a checkpoint appends to the
changelog (and, on disk, writes them to RocksDB). Then:

- process: records/s of that loop (commits included) and the RSS after it (VmRSS, MiB) and its peak (VmHWM);
- read: random reads of keys committed earlier, reads/s (on disk each is a RocksDB get and a decode);
- restore: a new task's stores rebuilt by ``restore`` from a changelog of ``keys`` records (the compacted changelog
  of that table, generated as it is read so that it takes no memory), records/s and the RSS after;
- reopen (on disk only): the clean close's checkpoint trusted, nothing re-read: seconds.

The two processes' numbers are printed side by side with the ratio disk / memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import TopicPartition  # noqa: E402

from stream_processor.engine.rocksdb_store import TaskFiles  # noqa: E402
from stream_processor.engine.state import STORE_PREFIX, StoreSpec, TaskStores, restore  # noqa: E402

TP = TopicPartition("bench-counts-changelog", 0)
SPECS = [StoreSpec(name="counts")]
READS = 200_000


def rss_mib() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process, MiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


class GeneratedChangelog:
    """The calls ``restore`` makes of a consumer, over a compacted changelog of ``keys`` table records made as read."""

    def __init__(self, keys: int) -> None:
        self.end = keys
        self.pos = 0

    def assign(self, tps: list[TopicPartition]) -> None:
        pass

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.pos = 0

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.pos = offset

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.end for tp in tps}

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: 0 for tp in tps}

    async def position(self, tp: TopicPartition) -> int:
        return self.pos

    async def getmany(self, tp: TopicPartition, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        stop = min(self.end, self.pos + max_records)
        prefix = STORE_PREFIX + b"counts\x00"
        # Values formatted, not orjson.dumps'd: its bytes keep a 4 KiB allocation each, which Kafka's records do not.
        batch = [SimpleNamespace(offset=i, key=prefix + f"user-{i:07d}".encode(),
                                 value=b'{"count":2,"total":%d.5}' % i) for i in range(self.pos, stop)]
        self.pos = stop
        return {tp: batch}


def new_stores(backend: str, where: Path) -> TaskStores:
    return TaskStores(SPECS, files=TaskFiles(where) if backend == "rocksdb" else None)


def key_of(n: int, keys: int) -> str:
    """The key of the n-th update: every key once per pass, in a scrambled order (48271 is prime to any 2^a 5^b)."""
    return f"user-{(n * 48_271 + n // keys) % keys:07d}"


def process(backend: str, keys: int, updates: int, commit_every: int, where: Path) -> dict[str, float]:
    """The table agent's loop, then random reads; RSS after."""
    out: dict[str, float] = {}
    stores = new_stores(backend, where / "process")
    asyncio.run(restore(stores, GeneratedChangelog(0), TP))  # type: ignore[arg-type]
    store = stores["counts"]
    out["rss_before_mib"] = rss_mib()[0]
    changelog_bytes = 0
    began = time.perf_counter()
    for n in range(keys * updates):
        key = key_of(n, keys)
        old = store.get(key)
        store.put(key, {"count": 1, "total": 0.5 * n} if old is None else
                  {"count": old["count"] + 1, "total": old["total"] + 0.5 * n})
        if n % commit_every == commit_every - 1:
            changelog_bytes += sum(len(k) + len(v or b"") for k, v in stores.changelog_records())
    changelog_bytes += sum(len(k) + len(v or b"") for k, v in stores.changelog_records())
    out["process_s"] = time.perf_counter() - began
    out["process_rps"] = keys * updates / out["process_s"]
    out["changelog_mib"] = changelog_bytes / 2**20
    out["rss_after_process_mib"] = rss_mib()[0]
    rng = random.Random(7)
    began = time.perf_counter()
    for n in range(READS):
        key = f"user-{rng.randrange(keys):07d}"
        if store.get(key)["count"] != updates:
            raise AssertionError(f"{key}: {store.get(key)}")
        if n % commit_every == commit_every - 1:
            stores.changelog_records()  # a commit: on disk, the transaction's cache is emptied
    out["read_rps"] = READS / (time.perf_counter() - began)
    out["peak_mib"] = rss_mib()[1]
    stores.close()
    return out


def restored(backend: str, keys: int, where: Path) -> dict[str, float]:
    """A restore of the compacted changelog of ``keys`` keys; RSS after; on disk, the reopen from the checkpoint."""
    out: dict[str, float] = {"rss_before_restore_mib": rss_mib()[0]}
    stores = new_stores(backend, where / "restore")
    began = time.perf_counter()
    result = asyncio.run(restore(stores, GeneratedChangelog(keys), TP))  # type: ignore[arg-type]
    out["restore_s"] = time.perf_counter() - began
    out["restore_rps"] = result.applied / out["restore_s"]
    if len(stores["counts"]) != keys:
        raise AssertionError(f"restored {len(stores['counts'])} keys, not {keys}")
    out["rss_after_restore_mib"], out["restore_peak_mib"] = rss_mib()
    if backend == "rocksdb":
        stores.close(checkpoint=keys)
        again = new_stores(backend, where / "restore")
        began = time.perf_counter()
        result = asyncio.run(restore(again, GeneratedChangelog(keys), TP))  # type: ignore[arg-type]
        out["reopen_s"] = time.perf_counter() - began
        if result.applied != 0 or again["counts"].get("user-0000042")["count"] != 2:
            raise AssertionError("the checkpoint was not trusted")
        again.close()
        out["disk_mib"] = sum(f.stat().st_size for f in where.rglob("*") if f.is_file()) / 2**20
    return out


ROWS = [
    ("process_rps", "process, records/s", "{:,.0f}"),
    ("read_rps", "random reads/s", "{:,.0f}"),
    ("restore_rps", "restore, records/s", "{:,.0f}"),
    ("rss_before_mib", "RSS empty store, MiB", "{:,.0f}"),
    ("rss_after_process_mib", "RSS after processing, MiB", "{:,.0f}"),
    ("peak_mib", "peak RSS processing, MiB", "{:,.0f}"),
    ("rss_before_restore_mib", "RSS before restore, MiB", "{:,.0f}"),
    ("rss_after_restore_mib", "RSS after restore, MiB", "{:,.0f}"),
    ("restore_peak_mib", "peak RSS restoring, MiB", "{:,.0f}"),
    ("changelog_mib", "changelog written, MiB", "{:,.1f}"),
    ("reopen_s", "reopen from checkpoint, s", "{:.3f}"),
    ("disk_mib", "RocksDB files, MiB", "{:,.0f}"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--updates", type=int, default=2, help="updates per key")
    parser.add_argument("--commit-every", type=int, default=1000, help="records per simulated commit")
    parser.add_argument("--backend", choices=["memory", "rocksdb"], help="run one backend and print JSON (internal)")
    parser.add_argument("--phase", choices=["process", "restore"], help="with --backend (internal)")
    args = parser.parse_args()
    if args.backend:
        where = Path(tempfile.mkdtemp(prefix="bench-rocksdb-"))
        try:
            if args.phase == "process":
                result = process(args.backend, args.keys, args.updates, args.commit_every, where)
            else:
                result = restored(args.backend, args.keys, where)
            print(json.dumps(result))
        finally:
            shutil.rmtree(where, ignore_errors=True)
        return
    results: dict[str, dict[str, float]] = {"memory": {}, "rocksdb": {}}
    for backend in ("memory", "rocksdb"):
        for phase in ("process", "restore"):  # each in its own process: RSS of that phase alone
            done = subprocess.run([sys.executable, __file__, "--backend", backend, "--phase", phase, "--keys",
                                   str(args.keys), "--updates", str(args.updates), "--commit-every",
                                   str(args.commit_every)], check=True, capture_output=True, text=True)
            results[backend].update(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{args.keys:,} keys, {args.updates} updates each, a commit every {args.commit_every} records")
    print(f"{'':28} {'memory':>12} {'rocksdb':>12} {'rocksdb/memory':>15}")
    for key, label, fmt in ROWS:
        m, r = results["memory"].get(key), results["rocksdb"].get(key)
        ratio = f"{r / m:.2f}" if m and r is not None else ""
        print(f"{label:28} {fmt.format(m) if m is not None else '-':>12} {fmt.format(r) if r is not None else '-':>12} "
              f"{ratio:>15}")


if __name__ == "__main__":
    main()
