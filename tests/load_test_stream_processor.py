"""Load test: a worker driven at a steady rate, with throughput, consumer lag and latency printed as it runs.

Usage: ``python tests/load_test_stream_processor.py [--rate 5000] [--seconds 60] [--processor trades]
[--mode exactly_once] [--workers 1] [--report-every 5] [--bootstrap HOST:PORT]``, or ``--external [--config
PATH]`` to drive a worker already running (see ``--help``).

Without ``--external`` it uses a throwaway real broker (``tests.broker.broker()``; ``TEST_KAFKA_BOOTSTRAP`` or
``--bootstrap`` name a running one instead), creates topics, groups and an app id of its own and starts
``--workers`` worker processes (``python -m stream_processor worker``, the one processor, each with its own health
and metrics ports; ``bench.latency.start_worker``), then waits for their ``/ready``. With ``--external`` it starts
nothing: the topics, consumer group and health port are those of ``--config`` (the worker's config).

It publishes real Binance spot messages (the files of ../shared that bench/trades_throughput.py reads, else the
sample in data/sample) at ``--rate`` per second for ``--seconds``, paced in 10 ms ticks, under symbol aliases of
this run that spread the keys over the partitions: trades for ``trades`` and ``klines``; depth diffs, snapshots and
bookTickers for ``orderbook``, each of 8 lanes replaying the whole tape in order (a book needs its diffs in
sequence). A read_committed consumer reads the processor's first output topic; each output names its input
(``source_partition``, ``source_offset``), and its latency is the time this process read it minus the input's
CreateTime (both clocks this machine's).

Every ``--report-every`` s one line: elapsed time, the input rate achieved, the rate of committed outputs read, the
lag of the worker's consumer group (the input topic's end offsets minus the group's committed offsets, from the
broker), the committed outputs this process has not read yet (large: the latencies are this process's own delay,
on a busy machine) and the latency p50/p99 of the outputs read in the interval. When publishing ends it waits (at
most 60 s) until the group has committed every input and every committed output is read, then prints the totals,
the throughput, the latency percentiles (the first 10 s of input apart; also up to the outputs' CreateTime: the
worker's send, before its transaction commits), the workers' own ``/health`` processing latency, and checks the
outputs: trades, one per input; orderbook and klines, those the broker-less TestDriver computes from the same inputs
(orderbook: one per snapshot or applied diff, none per bookTicker; klines: one per closed kline of the enriched
klines topic). Exit code 0 when every expected output was read exactly once, else 1 (duplicates and missing outputs
printed). Ctrl-C (or SIGTERM) stops the workers and the broker.

Not a pytest module: its name does not match ``test_*.py`` and it defines no test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient  # noqa: E402
from aiokafka.errors import KafkaError  # noqa: E402
from aiokafka.partitioner import DefaultPartitioner  # noqa: E402

from bench.latency import DRAIN_S, WARMUP_S, percentiles, start_worker, wait_ready  # noqa: E402
from bench.trades_throughput import FILES, aliased, assign_from_start, real_trades, steady_alias  # noqa: E402
from stream_processor.engine.kafka_internals import force_metadata_update  # noqa: E402
from stream_processor.engine.security import client_options  # noqa: E402
from stream_processor.engine.settings import Settings, load_settings  # noqa: E402
from stream_processor.engine.testing import TestDriver  # noqa: E402
from stream_processor.engine.topics import ensure_topics, required_topics  # noqa: E402
from stream_processor.market.replay import FeedReader  # noqa: E402
from stream_processor.market.settings import DEFAULT_CONFIG  # noqa: E402
from tests.broker import broker, free_port  # noqa: E402
from tests.helpers import isolated_settings  # noqa: E402

SAMPLE = ROOT / "data" / "sample"
PROCESSORS = ("trades", "orderbook", "klines")
LANES = 8  # order-book lanes side by side, as steady_alias cycles 8 aliases per copy of the trades
TICK_S = 0.01  # pacing tick, as bench/latency.py
SHOWN = 10  # duplicates and missing outputs printed
REPORT_HEADER = f"{'elapsed':>8} {'input/s':>9} {'output/s':>9} {'lag':>9} {'unread':>9} {'p50 ms':>8} {'p99 ms':>8}"

Identity = Hashable  # what names one output: the same one twice is a duplicate


# ----------------------------------------------------------------------------------------------- pure parts


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error message
    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (``--help``); exits with code 2 on a bad one."""
    parser = argparse.ArgumentParser(
        prog="load_test_stream_processor.py", description=__doc__.splitlines()[0],
        epilog="Examples: --rate 1000 --seconds 15 | --workers 2 --rate 3000 | --processor orderbook | "
               "--external --config config/streams-config.yaml (a worker started with that config)")
    parser.add_argument("--bootstrap", metavar="HOST:PORT",
                        help="a running broker (default: a throwaway one; TEST_KAFKA_BOOTSTRAP names one too; "
                             "with --external: the config's)")
    parser.add_argument("--rate", type=_positive(int), default=5000, help="input messages per second (5000)")
    parser.add_argument("--seconds", type=_positive(float), default=60.0, help="how long to publish (60)")
    parser.add_argument("--processor", choices=PROCESSORS, default="trades",
                        help="the processor type driven (trades)")
    parser.add_argument("--mode", choices=["exactly_once", "at_least_once"], default="exactly_once",
                        help="processing_mode of the workers started (exactly_once; --external: the config's)")
    parser.add_argument("--workers", type=_positive(int), default=1, help="worker processes to start (1)")
    parser.add_argument("--report-every", type=_positive(float), default=5.0, metavar="SECONDS",
                        help="seconds between two report lines (5)")
    parser.add_argument("--external", action="store_true",
                        help="start no worker: drive the one running with --config (trades or orderbook)")
    parser.add_argument("--config", type=Path,
                        help="with --external: the worker's config (default: the shipped config/streams-config.yaml)")
    args = parser.parse_args(argv)
    if args.external:
        if args.workers != 1:
            parser.error("--workers starts workers: not with --external")
        if args.processor == "klines":
            parser.error("--external drives trades or orderbook: klines close by stream time, which a running "
                         "worker's partitions have already advanced, so its outputs cannot be predicted")
    elif args.config is not None:
        parser.error("--config is the running worker's: only with --external")
    return args


def due(elapsed_s: float, rate: float, total: int) -> int:
    """The pacing schedule: how many records are due ``elapsed_s`` after the start at ``rate`` per second (the first
    at once), at most ``total``."""
    return min(total, int(elapsed_s * rate) + 1)


def lane_of(n: int, tape_len: int, lanes: int = LANES) -> tuple[int, int]:
    """(tape index, lane) of the ``n``-th order-book record: ``lanes`` lanes replay the tape side by side, each from
    its start and in order (a book's diffs must come in sequence); the next copy of the tape gets new lanes."""
    step = n // lanes
    return step % tape_len, (step // tape_len) * lanes + n % lanes


def pick(kind: str, tape: Sequence[tuple[str, bytes]], n: int, tag: str) -> tuple[bytes, bytes]:
    """(key, value) of the ``n``-th record published for processor ``kind``: the tape's message under this run's
    alias of its symbol (``tag`` ends every alias)."""
    if kind == "orderbook":
        index, lane = lane_of(n, len(tape))
        symbol, raw = tape[index]
        alias = f"{symbol}.{lane}{tag}"
    else:
        symbol, raw = tape[n % len(tape)]
        alias = steady_alias(symbol, n, len(tape)) + tag
    return alias.encode(), aliased(symbol, raw, alias)


def identity(kind: str, value: Mapping[str, Any]) -> Identity:
    """What names one output: its input for trades and orderbook (one output at most per input), the kline itself
    for klines (an input can close several, and a punctuation closes idle ones)."""
    if kind == "klines":
        return value["symbol"], value["interval"], value["open_time_ms"]
    return value["source_partition"], value["source_offset"]


def group_lag(ends: Mapping[Any, int], committed: Mapping[Any, int]) -> int:
    """Records of the input not yet committed by the group: end offset minus committed offset, summed over the
    partitions (a partition without a committed offset counts from 0)."""
    return sum(max(0, end - max(committed.get(tp, 0), 0)) for tp, end in ends.items())


def caught_up(targets: Mapping[Any, int], committed: Mapping[Any, int]) -> bool:
    """True when the group has committed, on each partition, at least up to its target (the offset after the last
    record this run published there)."""
    return all(committed.get(tp, -1) >= target for tp, target in targets.items())


def report_line(elapsed_s: float, span_s: float, inputs: int, outputs: int, lag: int | None, unread: int | None,
                latencies_ms: Sequence[float]) -> str:
    """One report line (columns of :data:`REPORT_HEADER`): the rates over the last ``span_s`` s, the group's lag,
    the committed outputs this process has not read yet (``?``: unknown) and the latency p50/p99 of the outputs read
    in the interval (``-`` when none was)."""
    span_s = max(span_s, 1e-9)
    if len(latencies_ms):
        p50, p99 = np.percentile(np.asarray(latencies_ms, dtype=float), [50, 99])
        lat = f"{p50:>8.0f} {p99:>8.0f}"
    else:
        lat = f"{'-':>8} {'-':>8}"
    lag_text, unread_text = ("?" if n is None else f"{n:,}" for n in (lag, unread))
    return (f"{elapsed_s:>7.1f}s {inputs / span_s:>9,.0f} {outputs / span_s:>9,.0f} {lag_text:>9} {unread_text:>9} "
            f"{lat}")


def split_warmup(pairs: Sequence[tuple[float, ...]], start_ms: float, warmup_s: float = WARMUP_S
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Latencies (ms) of the outputs whose input was created in the first ``warmup_s`` s, and of the others, from
    ``(input CreateTime ms, latency ms, ...)`` tuples."""
    warm = [p[1] for p in pairs if p[0] - start_ms < warmup_s * 1000]
    rest = [p[1] for p in pairs if p[0] - start_ms >= warmup_s * 1000]
    return np.asarray(warm, dtype=float), np.asarray(rest, dtype=float)


@dataclass(frozen=True)
class Verdict:
    """The outputs read against those expected: ``missing`` (expected, never read), ``duplicates`` (read more often
    than expected: identity -> extra copies) and ``unexpected`` (read, never expected)."""

    missing: list[Identity]
    duplicates: dict[Identity, int]
    unexpected: list[Identity]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicates or self.unexpected)


def verdict(expected: Counter[Identity], seen: Counter[Identity]) -> Verdict:
    """Compare the outputs read with those expected, as multisets."""
    extra = seen - expected
    return Verdict(missing=_sorted(expected - seen),
                   duplicates={k: extra[k] for k in _sorted(extra) if k in expected},
                   unexpected=_sorted(k for k in extra if k not in expected))


def _sorted(identities: Iterable[Identity]) -> list[Identity]:
    items = list(identities)
    try:
        return sorted(items)  # type: ignore[type-var]  # the identities of one run are alike
    except TypeError:
        return sorted(items, key=repr)


def verdict_lines(v: Verdict, expected: int, shown: int = SHOWN) -> list[str]:
    """The summary's lines on exactly-once."""
    lines = [f"exactly once: {'yes' if v.ok else 'NO'}; expected {expected:,} outputs; missing (inputs without "
             f"their output after the drain) {len(v.missing):,}; duplicated {len(v.duplicates):,} "
             f"({sum(v.duplicates.values()):,} extra copies); unexpected {len(v.unexpected):,}"]
    for name, items in (("missing", v.missing), ("duplicated", list(v.duplicates)), ("unexpected", v.unexpected)):
        if items:
            more = f" (and {len(items) - shown:,} more)" if len(items) > shown else ""
            lines.append(f"  {name}: {', '.join(map(str, items[:shown]))}{more}")
    return lines


def health_line(name: str, doc: Mapping[str, Any] | None) -> str:
    """A worker's own view from its ``/health``: each processor's processing latency (p50, p99 of the last 60 s:
    commit time minus the input's timestamp), throughput and records processed."""
    if doc is None:
        return f"{name} /health: no answer"
    parts = []
    for check_name, check in doc.get("checks", {}).items():
        if not check_name.startswith("processor_"):
            continue
        m = check.get("details", {}).get("metrics", {})
        parts.append(f"{check_name.removeprefix('processor_')}: processing_latency_ms "
                     f"{m.get('processing_latency_ms')} (p99 {m.get('processing_latency_p99_ms')}), "
                     f"throughput_per_second {m.get('throughput_per_second')}, "
                     f"messages_processed {m.get('messages_processed')}")
    state = "healthy" if doc.get("healthy") else f"UNHEALTHY {doc.get('problems')}"
    return f"{name} /health ({state}): {'; '.join(parts) or 'no processor'}"


# ------------------------------------------------------------------------------------------------ the run


@dataclass
class Target:
    """What a run drives: the settings, the processor entry and its topics and group, the workers' health ports."""

    settings: Settings
    name: str
    kind: str
    health_ports: list[int]
    started: bool  # workers started by this run (else --external)

    @property
    def proc(self) -> Any:
        return self.settings.stream_processors[self.name]

    @property
    def source(self) -> str:
        return self.proc.input_topics[0]

    @property
    def sink(self) -> str:
        return self.proc.output_topics[0]


def feed_files() -> tuple[list[Path], str]:
    """The feed files read and where they are from: ../shared's four spot files, else the repo's sample."""
    if all(path.is_file() for path in FILES):
        return list(FILES), "../shared"
    return sorted(SAMPLE.glob("*.gz")), "data/sample (../shared is absent)"


def load_tape(kind: str) -> tuple[list[tuple[str, bytes]], str]:
    """(symbol, raw message) of the input of processor ``kind``, in file order, and a description of it."""
    files, where = feed_files()
    if kind != "orderbook" and where == "../shared":
        tape = real_trades()
    else:
        family = "orderbook" if kind == "orderbook" else "trades"
        tape = []
        for path in files:
            messages = [(m.symbol, m.raw) for m in FeedReader([path]) if m.kind == family and m.symbol]
            if family == "orderbook" and not any(b'"lastUpdateId"' in raw for _, raw in messages):
                continue  # no depth snapshot: its books would never be in sync, nothing would be emitted
            tape.extend(messages)
    if not tape:
        raise SystemExit(f"no {kind} input in {', '.join(map(str, files))}")
    noun = "trades" if kind != "orderbook" else "order-book messages"
    return tape, f"{len(tape):,} real Binance spot {noun} from {where}"


def local_target(args: argparse.Namespace, bootstrap: str) -> tuple[Target, dict[str, Any]]:
    """Settings of a run of its own on ``bootstrap`` (topics created) and the workers' config document."""
    settings = isolated_settings(bootstrap, args.mode, processors=[args.processor])
    asyncio.run(ensure_topics(settings, required_topics(settings)))
    doc = settings.model_dump(mode="json")
    doc["monitoring"].update(health_check_port=free_port(), metrics_port=free_port())  # the env sets each worker's
    doc.pop("replay", None)
    return Target(settings, args.processor, args.processor, [], started=True), doc


def external_target(args: argparse.Namespace) -> Target:
    """The entry of processor type ``args.processor`` in the running worker's config."""
    environ = dict(os.environ)
    if args.bootstrap:
        environ["KAFKA_BOOTSTRAP_SERVERS"] = args.bootstrap
    settings = load_settings(args.config, environ)
    names = [n for n, p in settings.stream_processors.items() if p.enabled and p.type == args.processor]
    if not names:
        raise SystemExit(f"{args.config or DEFAULT_CONFIG}: no enabled processor of type {args.processor}")
    if len(names) > 1:
        print(f"several {args.processor} processors ({', '.join(names)}): driving {names[0]}")
    return Target(settings, names[0], args.processor, [settings.monitoring.health_check_port], started=False)


def _log_tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


@contextlib.contextmanager
def running_workers(doc: dict[str, Any], count: int) -> Iterator[list[int]]:
    """Start ``count`` workers on ``doc``, wait for each one's ``/ready``; yield their health ports; stop them
    (SIGTERM, then SIGKILL after 30 s) however the block ends."""
    with tempfile.TemporaryDirectory(prefix="load-test-") as tmp:
        folder = Path(tmp)
        workers: list[tuple[str, int, subprocess.Popen]] = []
        try:
            for i in range(count):
                name, health = f"worker-{i}", free_port()
                env = {"PROCESSOR_ID": f"load-test-{i}", "HEALTH_CHECK_PORT": str(health),
                       "METRICS_PORT": str(free_port())}
                workers.append((name, health, start_worker(doc, folder, name, env)))
            began = time.monotonic()
            for name, health, proc in workers + workers[:-1]:  # again: a later one's join rebalanced the first
                try:
                    wait_ready(health, proc)
                except (RuntimeError, TimeoutError) as exc:
                    raise SystemExit(f"{name}: {exc}; its log ends:\n{_log_tail(folder / f'{name}.log')}") from None
            print(f"{count} worker(s) ready after {time.monotonic() - began:.1f} s (health ports "
                  f"{', '.join(str(h) for _, h, _ in workers)})", flush=True)
            yield [health for _, health, _ in workers]
            for name, _, proc in workers:
                if proc.poll() is not None:
                    print(f"{name} exited early with {proc.returncode}; its log ends:\n"
                          f"{_log_tail(folder / f'{name}.log')}")
        finally:
            for _, _, proc in workers:
                if proc.poll() is None:
                    proc.terminate()
            for _, _, proc in workers:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=30)
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


def get_health(port: int) -> dict[str, Any] | None:
    """A worker's ``/health`` document (503 too: it says why), None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            return orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return orjson.loads(exc.read())
    except (OSError, ValueError):
        return None


@dataclass
class Meter:
    """What a run has published and read, for the report lines and the summary."""

    keep_inputs: bool  # keep the records published (the TestDriver replays them)
    created: dict[tuple[int, int], int] = field(default_factory=dict)  # (partition, offset) -> CreateTime ms
    inputs: list[tuple[int, int, bytes, bytes, int]] = field(default_factory=list)  # partition, offset, key, value, ts
    send_failures: Counter[str] = field(default_factory=Counter)
    seen: Counter[Identity] = field(default_factory=Counter)
    outputs: int = 0
    first_output: float | None = None  # time.time() of the first output read
    last_output: float | None = None
    # Outputs read whose input's CreateTime is not known yet: (input, time read ms, the output's CreateTime ms).
    pending: list[tuple[tuple[int, int], float, int]] = field(default_factory=list)
    # Each output: (input CreateTime ms, latency to this process ms, latency to the output's CreateTime ms).
    latencies: list[tuple[float, float, float]] = field(default_factory=list)
    acked_mark: int = 0  # counts at the last report line
    outputs_mark: int = 0
    latencies_mark: int = 0

    def acknowledged(self, key: bytes, value: bytes, future: asyncio.Future) -> None:
        if future.cancelled():
            self.send_failures["cancelled"] += 1
            return
        if future.exception() is not None:
            self.send_failures[type(future.exception()).__name__] += 1
            return
        meta = future.result()
        self.created[(meta.partition, meta.offset)] = meta.timestamp
        if self.keep_inputs:
            self.inputs.append((meta.partition, meta.offset, key, value, meta.timestamp))

    def read(self, output: Identity, source: tuple[int, int], now_ms: float, produced_ms: int) -> None:
        self.seen[output] += 1
        self.outputs += 1
        self.first_output = self.first_output or now_ms / 1000
        self.last_output = now_ms / 1000
        if self.seen[output] == 1:  # a duplicate's latency would count its input twice
            self.pending.append((source, now_ms, produced_ms))

    def resolve(self) -> None:
        """Latencies of the outputs read whose input's acknowledgement has come (nearly always all)."""
        waiting = []
        for source, now_ms, produced_ms in self.pending:
            created = self.created.get(source)
            if created is None:
                waiting.append((source, now_ms, produced_ms))
            else:
                self.latencies.append((created, now_ms - created, produced_ms - created))
        self.pending = waiting

    def interval(self, elapsed_s: float, span_s: float, lag: int | None, unread: int | None) -> str:
        self.resolve()
        acked, latencies = len(self.created), self.latencies[self.latencies_mark:]
        line = report_line(elapsed_s, span_s, acked - self.acked_mark, self.outputs - self.outputs_mark, lag, unread,
                           [lat for _, lat, _ in latencies])
        self.acked_mark, self.outputs_mark, self.latencies_mark = acked, self.outputs, len(self.latencies)
        return line


class Broker:
    """This run's clients: the producer, the read_committed reader of the output topic, and an admin client for
    the group's committed offsets."""

    def __init__(self, target: Target) -> None:
        options = client_options(target.settings.kafka)
        self.target = target
        # aiokafka sends one request per broker at a time and blocks send() once a partition's batch is full: 512 KiB
        # batches (as bench/trades_throughput.py) keep a slow acknowledgement from capping the rate at 16 KiB batches.
        self.producer = AIOKafkaProducer(**options, acks="all", linger_ms=1, enable_idempotence=True,
                                         max_batch_size=512 * 1024)
        self.reader = AIOKafkaConsumer(**options, isolation_level="read_committed", enable_auto_commit=False,
                                       fetch_max_wait_ms=5, max_poll_records=10_000)
        self.admin = AIOKafkaAdminClient(**options)
        # The input's end offsets; no assignment, so its metadata covers every topic (the reader's, only its own).
        self.looker = AIOKafkaConsumer(**options, enable_auto_commit=False)
        self.inputs: list[TopicPartition] = []
        self.outputs: list[TopicPartition] = []

    async def start(self, from_start: bool) -> None:
        await self.producer.start()
        await self.reader.start()
        await self.admin.start()
        await self.looker.start()
        await assign_from_start(self.reader, self.target.sink)
        self.outputs = sorted(self.reader.assignment())
        if not from_start:  # a running worker's topic: only what comes from now on
            await self.reader.seek_to_end(*self.outputs)
        await force_metadata_update(self.looker)
        source = self.target.source
        self.inputs = [TopicPartition(source, p) for p in sorted(self.looker.partitions_for_topic(source) or ())]
        if not self.inputs:
            raise SystemExit(f"input topic {source} does not exist")

    async def stop(self) -> None:
        for stop in (self.producer.stop, self.reader.stop, self.looker.stop, self.admin.close):
            with contextlib.suppress(Exception):
                await stop()

    async def committed(self) -> dict[TopicPartition, int] | None:
        """The worker group's committed offsets on the input topic; None when the broker does not answer in 5 s."""
        try:
            offsets = await asyncio.wait_for(
                self.admin.list_consumer_group_offsets(self.target.proc.consumer_group, partitions=self.inputs), 5)
        except (TimeoutError, KafkaError):
            return None
        return {tp: meta.offset for tp, meta in offsets.items()}

    async def unread(self) -> int | None:
        """Committed outputs this process has not read yet (the last stable offsets of its latest fetches minus its
        positions): when large, the latencies measured are this process's own delay."""
        total = 0
        for tp in self.outputs:
            stable = self.reader.last_stable_offset(tp)
            if stable is None:
                return None
            total += max(0, stable - await self.reader.position(tp))
        return total

    async def lag(self) -> int | None:
        committed = await self.committed()
        if committed is None:
            return None
        try:
            ends = await asyncio.wait_for(self.looker.end_offsets(self.inputs), 5)
        except (TimeoutError, KafkaError):
            return None
        return group_lag(ends, committed)


async def drive(target: Target, args: argparse.Namespace) -> int:
    """Publish, read, report and check (see the module docstring); the exit code."""
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)  # as Ctrl-C: clients closed
    tape, described = load_tape(target.kind)
    tag = f"-{random.randrange(10**6):06d}"  # this run's aliases: fresh state, and outputs told apart from others'
    mode = target.proc.processing_mode
    total = int(args.rate * args.seconds)
    print(f"{target.kind} ({mode}): {total:,} messages at {args.rate:,}/s for {args.seconds:g} s to {target.source} "
          f"({described}; aliases *{tag}); reading {target.sink}; group {target.proc.consumer_group}", flush=True)
    meter = Meter(keep_inputs=target.kind != "trades")
    kafka = Broker(target)
    tasks: list[asyncio.Task] = []
    try:
        await kafka.start(from_start=target.started)
        tag_bytes = tag.encode()

        async def read() -> None:
            while True:
                batches = await kafka.reader.getmany(timeout_ms=50)
                now_ms = time.time() * 1000
                for records in batches.values():
                    for r in records:
                        if r.key is None or not r.key.endswith(tag_bytes):
                            continue  # not this run's (another feed into a running worker)
                        value = orjson.loads(r.value)
                        meter.read(identity(target.kind, value), (value["source_partition"], value["source_offset"]),
                                   now_ms, r.timestamp)

        started = time.monotonic()
        lags: list[int] = []

        last = [started]  # when the last report line was printed

        async def line() -> None:
            lag = await kafka.lag()
            now = time.monotonic()
            if lag is not None:
                lags.append(lag)
            print(meter.interval(now - started, now - last[0], lag, await kafka.unread()), flush=True)
            last[0] = now

        async def report() -> None:
            while True:
                await asyncio.sleep(max(0.0, last[0] + args.report_every - time.monotonic()))  # the report's pace
                await line()

        tasks.append(asyncio.create_task(read()))
        print(REPORT_HEADER, flush=True)
        tasks.append(asyncio.create_task(report()))
        partitions = [tp.partition for tp in kafka.inputs]
        partition_of: dict[bytes, int] = {}  # Kafka's murmur2 partition of each alias, hashed once: less CPU per send
        sent = 0
        while sent < total:
            now_due = due(time.monotonic() - started, args.rate, total)
            while sent < now_due:
                key, value = pick(target.kind, tape, sent, tag)
                partition = partition_of.get(key)
                if partition is None:
                    partition = partition_of[key] = DefaultPartitioner()(key, partitions, partitions)
                future = await kafka.producer.send(target.source, value, key=key, partition=partition)
                future.add_done_callback(lambda f, k=key, v=value: meter.acknowledged(k, v, f))
                sent += 1
                if sent % 500 == 0:  # behind the schedule, a burst: let the reader and the reports run between
                    await asyncio.sleep(0)
            await asyncio.sleep(TICK_S)  # the publishing schedule's tick (the rate under test), not a wait
        await kafka.producer.flush()
        published_s = time.monotonic() - started
        healths = [get_health(port) for port in target.health_ports]  # its 60 s window: the run's latencies
        lag_at_end = await kafka.lag()

        # Drain: until the group has committed every input this run published and every committed output is read.
        targets: dict[TopicPartition, int] = {}
        for partition, offset in meter.created:
            tp = TopicPartition(target.source, partition)
            targets[tp] = max(targets.get(tp, 0), offset + 1)
        deadline = time.monotonic() + DRAIN_S
        drained = False
        while time.monotonic() < deadline and not drained:
            committed = await kafka.committed()
            if committed is not None and caught_up(targets, committed):
                ends = await kafka.reader.end_offsets(kafka.outputs)
                while time.monotonic() < deadline and not drained:
                    positions = [await kafka.reader.position(tp) for tp in kafka.outputs]
                    drained = all(pos >= ends[tp] for pos, tp in zip(positions, kafka.outputs, strict=True))
                    await asyncio.sleep(0.05)  # poll: the reader task reads on meanwhile
            else:
                await asyncio.sleep(0.2)  # poll the group's commits
        drain_s = time.monotonic() - started - published_s
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        tasks.clear()
        if time.monotonic() - last[0] > 0.2:  # the last, shorter interval
            await line()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await kafka.stop()

    if target.kind == "trades":
        expected = Counter(meter.created.keys())
    else:
        print(f"computing the expected outputs of {len(meter.inputs):,} inputs with the TestDriver ...", flush=True)
        expected = reference(target, meter.inputs)
    return summarize(target, args, meter, expected, healths, published_s, drain_s, drained, lags, lag_at_end, total)


def reference(target: Target, inputs: list[tuple[int, int, bytes, bytes, int]]) -> Counter[Identity]:
    """The outputs the processor's own code writes, without Kafka, for ``inputs`` in each partition's order."""
    with TestDriver(settings=target.settings, processors=[target.name], commit_every=1000) as driver:
        for partition, offset, key, value, timestamp in sorted(inputs):
            driver.pipe(target.source, value, key, timestamp=timestamp, partition=partition, offset=offset)
        return Counter(identity(target.kind, v) for v in driver.values(target.sink))


def summarize(target: Target, args: argparse.Namespace, meter: Meter, expected: Counter[Identity],
              healths: list[dict[str, Any] | None], published_s: float, drain_s: float, drained: bool,
              lags: list[int], lag_at_end: int | None, total: int) -> int:
    published = len(meter.created)
    print(f"\nsummary ({target.kind}, {target.proc.processing_mode}, {len(target.health_ports)} worker(s)"
          f"{', external' if not target.started else ''}):")
    achieved = published / published_s
    behind = "; this process fell behind its pacing (a busy machine?)" if achieved < 0.95 * args.rate else ""
    print(f"inputs:  {published:,} of {total:,} published in {published_s:.1f} s = {achieved:,.0f}/s "
          f"(target {args.rate:,}/s{behind})"
          + (f"; send failures {dict(meter.send_failures)}" if meter.send_failures else ""))
    if meter.first_output is not None and meter.last_output is not None:
        span = max(meter.last_output - meter.first_output, 1e-3)
        print(f"outputs: {meter.outputs:,} read ({len(meter.seen):,} distinct) in {span:.1f} s from the first to the "
              f"last = {meter.outputs / span:,.0f}/s")
    else:
        print("outputs: none read")
    print(f"lag:     max {max(lags, default=0):,} at a report, {'?' if lag_at_end is None else f'{lag_at_end:,}'} when "
          f"publishing ended; drained {'in' if drained else 'NOT within'} {drain_s:.1f} s")
    if meter.latencies:
        start_ms = min(meter.created.values())
        warm, rest = split_warmup(meter.latencies, start_ms)
        print(f"latency, first {WARMUP_S:.0f} s: {percentiles(warm)}")
        print(f"latency, after:      {percentiles(rest)}")
        print(f"latency, all:        {percentiles(np.concatenate([warm, rest]))}")
        produced = np.asarray([p for _, _, p in meter.latencies], dtype=float)
        print(f"latency to the outputs' CreateTime (the worker's send, before its commit; no reader delay): "
              f"{percentiles(produced)}")
    for i, doc in enumerate(healths):
        print(health_line(f"worker-{i}" if target.started else "worker", doc))
    result = verdict(expected, meter.seen)
    for line in verdict_lines(result, sum(expected.values())):
        print(line)
    return 0 if result.ok and not meter.send_failures and published == total else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM as Ctrl-C (drive() cancels itself)
    try:
        with contextlib.ExitStack() as stack:
            if args.external:
                target = external_target(args)
            else:
                bootstrap = args.bootstrap or stack.enter_context(broker())
                target, doc = local_target(args, bootstrap)
                target.health_ports = stack.enter_context(running_workers(doc, args.workers))
            return asyncio.run(drive(target, args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted: workers and broker stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
