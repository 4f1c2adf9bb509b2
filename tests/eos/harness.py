"""The exactly-once chaos harness (after Kafka Streams' EosTestDriver): drive, kill, verify.

One :func:`run_chaos` call, on a real broker:

1. creates the topics: the check inputs (two co-partitioned topics of 8 partitions, one task per partition
   number) with their echo and aggregates outputs (5 partitions each) and the user agent's sink (5 partitions),
   and the real-trades input (8 partitions) with its enriched output (5 partitions) and the klines processor's SMC
   context topic (8 partitions, co-partitioned with the trades);
2. starts ``plan.workers`` worker processes (``python -m stream_processor -A tests.eos.check_app:app worker``)
   in one group per processor, running the ``eos_check`` topology, the real trades processor joining the SMC
   context (:mod:`stream_processor.market.context`), the klines processor (10 s and 1 m klines built from the same
   trades, their indicators, SMC signals, alerts and context records), and a
   user agent with a Table and a tumbling windowed table (:mod:`tests.eos.check_app`, on the first check input);
3. produces the input at ``plan.rate`` records/s: ``plan.records`` check records with unique ids over
   ``plan.keys`` keys, random integer values and an event time ``ts`` (10 ms per id, up to 5 s late), each sent
   to one of the two check inputs at random, and
   ``plan.trades`` real Binance trades under 16 symbol
   aliases (``BTCUSDT.0`` ... ``ETHUSDT.7``, each alias a time-ordered slice of its symbol's tape);
4. meanwhile ``kill -9`` a random worker ``plan.kills`` times, SIGTERM one ``plan.graceful_stops`` times
   and restart the broker ``plan.broker_restarts`` times, at random moments of the production window,
   starting a replacement worker each time; and loads the CPU for ``plan.load_share`` of that window with
   ``plan.load`` busy-loop processes (not niced: they take the cores from the workers and the broker as much as any
   process does);
5. waits until every group's committed offsets reach the input end offsets and stops every worker gracefully
   (each worker's count of trades joined after the context's wait ran out, the processor event
   ``smc_context_stale``, is read from its ``/metrics`` just before it is killed or stopped);
6. under ``exactly_once`` (``plan.quiet_run``), runs the SMC context join again, quietly (no kills, no load,
   ``plan.quiet_workers`` workers of the market app): the klines and trades processors in new consumer groups, with
   their own context and output topics, over the same raw trades topic, already complete (:func:`run_quiet`);
7. verifies (:func:`verify`): no open transaction on any output or changelog partition (the
   read_committed end equals the read_uncommitted end), committed offsets equal to the input end offsets,
   every input id exactly once in every output, every enriched trade equal to its recomputation from the input,
   record by record and in input order per key, and every running aggregate the next link of its key's chain
   (count + 1, sum + the record's value, ...: the two check inputs interleave in processing order, so the chain
   is checked rather than one order; each input's records must appear in its own order); the klines processor's
   outputs (klines, SMC signals, alerts) must equal, byte for byte and one for one, a rerun of the processor
   over the input (:func:`verify_by_replay`); the agent's sink must hold every id of its input once, each record
   equal to a recomputation (without the engine) of its key's count and sum and its window's count in input order
   (:func:`verify_agent`), and its changelog, folded, the final tables (:func:`verify_agent_state`); and the join
   (:mod:`tests.eos.join_check`): both runs' context records equal, partition and Kafka timestamp included, to the
   replay's; every enriched trade that neither run flagged ``smc_stale`` byte-identical between the runs (matched by
   source partition and offset) and its ``smc`` equal to a batch recomputation of the join rule over the replayed
   contexts; no flag in the quiet run; the chaos run's flagged trades no more than the workers counted as processed
   after a wait ran out, and their timestamps placed against the kills.

The :class:`Report` counts duplicates, losses and wrong values per output; :meth:`Report.failures` is
their sum plus open transactions, uncommitted input and the join's failures (:meth:`JoinCheck.failures`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from stream_processor.engine.partition_group import is_progress
from stream_processor.engine.settings import Settings
from stream_processor.engine.testing import TestDriver
from stream_processor.engine.topics import changelog_topic, ensure_topics, required_topics
from stream_processor.engine.windows import window_store_key
from stream_processor.market.models import Trade
from stream_processor.market.processors.trades import SymbolTrades
from stream_processor.market.serde.decode import decode
from stream_processor.market.serde.feed import iter_feed, record_symbol, stream_kind
from stream_processor.market.settings import TradesParams
from tests import broker as brokers
from tests.eos import check_app
from tests.eos.join_check import JoinCheck, check_contexts, compare_runs, expected_smc
from tests.helpers import read_topic

ROOT = Path(__file__).resolve().parent.parent.parent
SPOT = ROOT.parent / "shared" / "data" / "feeds" / "binance-hftbacktest" / "spot"
SPOT_FILES = [SPOT / f"{sym}_{day}.gz" for sym in ("btcusdt", "ethusdt") for day in ("20240808", "20240809")]
INPUT_PARTITIONS = 8
OUTPUT_PARTITIONS = 5  # differs from the input's on purpose (see the eos_check processor)
ALIASES = 8  # per symbol: 16 trade keys
TS_BASE_MS = 1_700_000_000_000  # the check records' event time ``ts``: TS_BASE_MS + 10 ms per id, minus a lateness
TS_STEP_MS = 10
AGENT_APP = "tests.eos.check_app:app"
MARKET_APP = "stream_processor.market.app:app"  # the quiet run's workers: the klines and trades processors only
KLINE_ALERTS = [{"name": "sweep", "event": "liquidity_swept"}, {"name": "bos", "event": "bos"}]
WORKING_AFTER_S = 5.0  # a worker this old has joined its groups and owns partitions
GENERATION = re.compile(r"processor (\w+) assigned .* \(generation (\d+)\)")
METRICS_PORT = re.compile(rb"metrics on [\d.]+:(\d+)")  # in a worker's start line
STALE_EVENT = "smc_context_stale"  # the trades processor's event: a trade joined after the context's wait ran out


@dataclass
class ChaosPlan:
    """What one chaos run does; the defaults are the CI form."""

    records: int = 20_000
    trades: int = 34_419  # real trades (at most the 34,419 of the four spot files)
    keys: int = 200
    workers: int = 3
    kills: int = 3
    graceful_stops: int = 0
    broker_restarts: int = 0
    rate: float = 2_500.0  # input records per second, both inputs together
    mode: str = "exactly_once"
    seed: int = 1
    too_late: float = 0.02  # share of check records whose ts is past their window's expiry (check_app.TOO_LATE_MS)
    session_timeout_ms: int = 6_000  # the broker's minimum: a killed member is noticed after 6 s
    transaction_timeout_ms: int = 5_000  # below the session timeout
    drain_timeout_s: float = 300.0
    load: int = 2  # busy-loop processes (not niced) for part of the production window: as many as the CI's cores
    load_share: float = 0.5  # the share of the production window they run
    quiet_run: bool = True  # under exactly_once: run the join again, quietly, over the same raw trades (see module)
    quiet_workers: int = 1


@dataclass
class OutputCheck:
    """Duplicates, losses and wrong values found on one output topic."""

    topic: str
    records: int = 0
    duplicates: int = 0
    losses: int = 0
    wrong: int = 0
    examples: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.topic}: {self.records} records, {self.duplicates} duplicates, {self.losses} losses, "
                f"{self.wrong} wrong")


@dataclass
class Report:
    """What a chaos run did and what verification found."""

    mode: str
    records: int = 0
    trades: int = 0
    kills: int = 0
    graceful_stops: int = 0
    broker_restarts: int = 0
    rebalances: dict[str, int] = field(default_factory=dict)
    worker_exits: list[str] = field(default_factory=list)  # unexpected exits (a replacement was started)
    seconds: float = 0.0
    verify_seconds: float = 0.0
    open_transactions: int = 0  # output/changelog partitions whose read_committed end < read_uncommitted end
    uncommitted_input: int = 0  # input records beyond the groups' committed offsets
    checks: list[OutputCheck] = field(default_factory=list)
    dead_letters: int = 0
    events_ms: list[tuple[int, str]] = field(default_factory=list)  # (wall ms, what): start, kills, load, ...
    stale_events: int | None = None  # smc_context_stale counted by the chaos run's workers (None: one not scraped)
    join: JoinCheck | None = None  # the join under chaos against the quiet run (None: no quiet run)

    @property
    def duplicates(self) -> int:
        return sum(c.duplicates for c in self.checks)

    @property
    def losses(self) -> int:
        return sum(c.losses for c in self.checks)

    @property
    def wrong(self) -> int:
        return sum(c.wrong for c in self.checks)

    def failures(self) -> int:
        """Every count that must be zero under exactly_once."""
        return (self.duplicates + self.losses + self.wrong + self.open_transactions + self.uncommitted_input
                + self.dead_letters + (0 if self.join is None else self.join.failures()))

    def text(self) -> str:
        lines = [
            f"mode {self.mode}: {self.records} check records + {self.trades} real trades in {self.seconds:.0f} s; "
            f"{self.kills} kill -9, {self.graceful_stops} graceful stops, {self.broker_restarts} broker restarts, "
            f"rebalances {self.rebalances}",
            f"unexpected worker exits: {len(self.worker_exits)} {self.worker_exits[:3]}; verified in "
            f"{self.verify_seconds:.0f} s",
            f"open transactions: {self.open_transactions}; uncommitted input: {self.uncommitted_input}; "
            f"dead letters: {self.dead_letters}",
            self.chaos_line(),
            *(c.line() for c in self.checks),
            f"total: {self.duplicates} duplicates, {self.losses} losses, {self.wrong} wrong aggregates",
        ]
        for c in self.checks:
            lines.extend(f"  e.g. {c.topic}: {ex}" for ex in c.examples[:3])
        if self.join is not None:
            lines.append(self.join.text())
        return "\n".join(lines)

    def chaos_line(self) -> str:
        """The chaos events in seconds from the workers' start."""
        start = next((ms for ms, what in self.events_ms if what == "start"), None)
        if start is None:
            return "chaos events: none"
        return "chaos events: " + ", ".join(f"{what} +{(ms - start) / 1000:.1f} s" for ms, what in self.events_ms
                                            if what != "start")


@dataclass
class Topology:
    """Topic and group names of one run."""

    run: str
    check_input: str
    check_input2: str
    echo: str
    aggregates: str
    trades_input: str
    enriched: str
    dead_letter: str
    klines: str
    signals: str
    alerts: str
    agent_out: str  # the user agent's sink (tests/eos/check_app.py)
    context: str  # the klines processor's SMC context, joined by the trades processor (co-partitioned input)

    @classmethod
    def new(cls) -> Topology:
        run = uuid.uuid4().hex[:8]
        return cls(run, f"eos-in-{run}", f"eos-in2-{run}", f"eos-echo-{run}", f"eos-agg-{run}", f"eos-trades-{run}",
                   f"eos-enriched-{run}", f"eos-dlq-{run}", f"eos-klines-{run}", f"eos-smc-{run}",
                   f"eos-alerts-{run}", f"eos-agent-{run}", f"eos-ctx-{run}")

    def config(self, bootstrap: str, plan: ChaosPlan) -> dict[str, Any]:
        """The workers' YAML document."""
        return {
            "app_id": f"eos-{self.run}",
            "kafka": {
                "bootstrap_servers": [bootstrap],
                "commit_interval_ms": 100,
                "max_poll_records": 2000,
                "session_timeout_ms": plan.session_timeout_ms,
                "transaction_timeout_ms": plan.transaction_timeout_ms,
            },
            "topics": {
                self.check_input: {"partitions": INPUT_PARTITIONS},
                self.check_input2: {"partitions": INPUT_PARTITIONS},
                self.trades_input: {"partitions": INPUT_PARTITIONS},
                self.context: {"partitions": INPUT_PARTITIONS},
                self.echo: {"partitions": OUTPUT_PARTITIONS},
                self.aggregates: {"partitions": OUTPUT_PARTITIONS},
                self.enriched: {"partitions": OUTPUT_PARTITIONS},
                self.klines: {"partitions": OUTPUT_PARTITIONS},
                self.signals: {"partitions": OUTPUT_PARTITIONS},
                self.alerts: {"partitions": OUTPUT_PARTITIONS},
                self.agent_out: {"partitions": OUTPUT_PARTITIONS},
                self.dead_letter: {"partitions": 1},
            },
            "stream_processors": {
                "check": {
                    "type": "eos_check", "consumer_group": f"eos-check-{self.run}", "processing_mode": plan.mode,
                    "input_topics": [self.check_input, self.check_input2],
                    "output_topics": [self.echo, self.aggregates],
                    "dead_letter_topic": self.dead_letter,
                },
                "trades": {
                    "type": "trades", "consumer_group": f"eos-trades-{self.run}", "processing_mode": plan.mode,
                    "input_topics": [self.trades_input, self.context], "output_topics": [self.enriched],
                    "dead_letter_topic": self.dead_letter, "params": {"smc_context_topic": self.context},
                },
                "klines": {
                    "type": "klines", "consumer_group": f"eos-klines-{self.run}", "processing_mode": plan.mode,
                    "input_topics": [self.trades_input],
                    "output_topics": [self.klines, self.signals, self.alerts],
                    "dead_letter_topic": self.dead_letter,
                    "params": {"intervals": ["10s", "1m"], "alerts": KLINE_ALERTS,
                               "smc": {"context_topic": self.context}},
                },
                # The user agent of check_app (no type: the agent's own), on the first check input.
                check_app.AGENT: {
                    "consumer_group": f"eos-{check_app.AGENT}-{self.run}", "processing_mode": plan.mode,
                    "input_topics": [self.check_input], "output_topics": [self.agent_out],
                    "dead_letter_topic": self.dead_letter,
                },
            },
            "replay": {"topics": {"trades": self.trades_input}},
            "monitoring": {"host": "127.0.0.1", "metrics_port": 0, "health_check_port": 0, "log_level": "INFO"},
        }

    def settings(self, bootstrap: str, plan: ChaosPlan) -> Settings:
        """The workers' settings, as ``-A tests.eos.check_app:app worker --config`` loads them."""
        check_app.app.finalize()  # registers the agent as a processor type
        return Settings.model_validate(self.config(bootstrap, plan), context={"types": check_app.app.types})

    def groups(self) -> dict[str, str]:
        """Consumer group per processor."""
        return {name: f"eos-{name}-{self.run}" for name in ("check", "trades", "klines", check_app.AGENT)}

    def inputs(self) -> dict[str, list[str]]:
        """Input topics per processor."""
        return {"check": [self.check_input, self.check_input2], "trades": [self.trades_input, self.context],
                "klines": [self.trades_input], check_app.AGENT: [self.check_input]}


@dataclass
class QuietTopology:
    """Topic and group names of the quiet run: its own app id, groups, context and output topics, over the chaos
    run's raw trades topic (``trades_input``)."""

    run: str  # the chaos run's, suffixed ``-q``
    trades_input: str
    context: str
    enriched: str
    klines: str
    signals: str
    alerts: str
    dead_letter: str

    @classmethod
    def of(cls, topo: Topology) -> QuietTopology:
        run = f"{topo.run}-q"
        return cls(run, topo.trades_input, f"eos-ctx-{run}", f"eos-enriched-{run}", f"eos-klines-{run}",
                   f"eos-smc-{run}", f"eos-alerts-{run}", f"eos-dlq-{run}")

    def config(self, chaos: dict[str, Any]) -> dict[str, Any]:
        """The quiet workers' YAML document: the chaos run's ``chaos`` (:meth:`Topology.config`) with only its
        klines and trades processors, renamed (the same types and params: the same join)."""
        procs = chaos["stream_processors"]
        trades = {**procs["trades"], "consumer_group": f"eos-trades-{self.run}",
                  "input_topics": [self.trades_input, self.context], "output_topics": [self.enriched],
                  "dead_letter_topic": self.dead_letter,
                  "params": {**procs["trades"]["params"], "smc_context_topic": self.context}}
        klines = {**procs["klines"], "consumer_group": f"eos-klines-{self.run}",
                  "output_topics": [self.klines, self.signals, self.alerts], "dead_letter_topic": self.dead_letter,
                  "params": {**procs["klines"]["params"], "smc": {"context_topic": self.context}}}
        topics = {self.context: {"partitions": INPUT_PARTITIONS}, self.dead_letter: {"partitions": 1},
                  **{t: {"partitions": OUTPUT_PARTITIONS} for t in (self.enriched, self.klines, self.signals,
                                                                     self.alerts)},
                  self.trades_input: chaos["topics"][self.trades_input]}
        return {**chaos, "app_id": f"eos-{self.run}", "topics": topics,
                "stream_processors": {"trades": trades, "klines": klines}}

    def settings(self, doc: dict[str, Any]) -> Settings:
        """The quiet workers' settings, from :meth:`config`'s document."""
        check_app.app.finalize()  # the processor types, the market's among them
        return Settings.model_validate(doc, context={"types": check_app.app.types})

    def groups(self) -> dict[str, str]:
        return {name: f"eos-{name}-{self.run}" for name in ("trades", "klines")}

    def inputs(self) -> dict[str, list[str]]:
        return {"trades": [self.trades_input, self.context], "klines": [self.trades_input]}


# ---- input ------------------------------------------------------------------------------------------
def real_trades(limit: int) -> list[tuple[str, bytes]]:
    """Up to ``limit`` real trades as (alias, raw Binance JSON), half from each symbol, each alias in time order.

    Trade n of a symbol goes to alias ``SYMBOL.(n % 8)``, so every alias is a time-ordered slice of the tape.
    """
    per_symbol: dict[str, list[bytes]] = defaultdict(list)
    for path in SPOT_FILES:
        for _, raw in iter_feed(path):
            if stream_kind(raw) == "trades":
                per_symbol[record_symbol(raw)].append(raw)
    out: list[tuple[str, bytes]] = []
    symbols = sorted(per_symbol)
    take = {s: min(len(per_symbol[s]), limit // len(symbols)) for s in symbols}
    take[symbols[0]] = min(len(per_symbol[symbols[0]]), limit - sum(take[s] for s in symbols[1:]))
    for symbol in symbols:
        for n, raw in enumerate(per_symbol[symbol][: take[symbol]]):
            alias = f"{symbol}.{n % ALIASES}"
            out.append((alias, raw.replace(f'"s":"{symbol}"'.encode(), f'"s":"{alias}"'.encode(), 1)))
    return out


def interleave(
    check: list[tuple[str, str, bytes]], trades: list[tuple[str, bytes]], trades_topic: str, seed: int
) -> list[tuple[str, str, bytes]]:
    """One send order ``(topic, key, value)`` over the check and trades inputs, random but keeping each one's order."""
    rng = random.Random(seed)
    kinds = [0] * len(check) + [1] * len(trades)
    rng.shuffle(kinds)
    its = [iter(check), iter((trades_topic, key, value) for key, value in trades)]
    return [next(its[k]) for k in kinds]


def check_records(plan: ChaosPlan, topo: Topology) -> list[tuple[str, str, bytes]]:
    """The check inputs: (topic, key, JSON) with ids 0..records-1, keys k0..k{keys-1}, values in [-1000, 1000],
    and an event time ``ts`` (ms) of ``TS_BASE_MS + TS_STEP_MS * id`` less a random lateness (the agent's windows):
    below ``check_app.MAX_LATENESS_MS``, or for a share ``plan.too_late`` in ``check_app.TOO_LATE_MS`` (mostly
    behind an expired window)."""
    rng = random.Random(plan.seed)
    late = random.Random(plan.seed + 2)
    out = []
    for i in range(plan.records):
        key = f"k{rng.randrange(plan.keys)}"
        topic = topo.check_input if rng.random() < 0.5 else topo.check_input2
        too_late = late.random() < plan.too_late
        ts = TS_BASE_MS + TS_STEP_MS * i - (late.randrange(*check_app.TOO_LATE_MS) if too_late
                                            else late.randrange(check_app.MAX_LATENESS_MS))
        out.append((topic, key, orjson.dumps({"id": i, "key": key, "value": rng.randint(-1000, 1000), "ts": ts})))
    return out


async def drive(bootstrap: str, sends: list[tuple[str, str, bytes]], rate: float) -> None:
    """Produce ``sends`` at ``rate`` records/s (idempotent, acks=all); survives a broker restart."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5,
                                request_timeout_ms=120_000, retry_backoff_ms=200)
    await producer.start()
    tick = 0.05
    per_tick = max(1, int(rate * tick))
    started = time.monotonic()
    try:
        futures = []
        for start in range(0, len(sends), per_tick):
            for topic, key, value in sends[start : start + per_tick]:
                futures.append(await producer.send(topic, value, key=key.encode()))
            due = started + (start + per_tick) / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


# ---- workers and chaos -------------------------------------------------------------------------------
class Workers:
    """The worker processes of one run (``-A app``); logs under ``logdir``.

    :attr:`stale` keeps each worker's count of the trades processor's event ``smc_context_stale``, read from its
    ``/metrics`` just before it is killed or stopped (a worker that exits on its own is not read: :attr:`unread`).
    """

    def __init__(self, config: Path, logdir: Path, app: str = AGENT_APP) -> None:
        self.config = config
        self.logdir = logdir
        self.app = app
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.started: dict[str, float] = {}  # monotonic start time per worker
        self.exits: list[str] = []
        self.stale: dict[str, int] = {}
        self.unread: list[str] = []  # workers whose stale count could not be read
        self._n = 0

    def start(self) -> str:
        self._n += 1
        name = f"w{self._n}"
        log = open(self.logdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        env = {**os.environ, "PROCESSOR_ID": name, "PYTHONUNBUFFERED": "1"}
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        self.started[name] = time.monotonic()
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "stream_processor", "-A", self.app, "worker", "--config", str(self.config)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        return name

    def alive(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]

    def replace_dead(self) -> None:
        """Start a replacement for every worker that exited on its own (as Kubernetes would)."""
        for name, proc in list(self.procs.items()):
            if proc.poll() is not None:
                self.exits.append(f"{name} exit {proc.returncode}")
                self.unread.append(name)
                del self.procs[name]
                self.start()

    def victim(self, rng: random.Random) -> str:
        """A random worker among those up for ``WORKING_AFTER_S`` (they own partitions), else the oldest.

        Killing a replacement before it joined the group would test nothing.
        """
        alive = self.alive()
        now = time.monotonic()
        working = [n for n in alive if now - self.started[n] >= WORKING_AFTER_S]
        return rng.choice(working) if working else min(alive, key=self.started.__getitem__)

    def read_stale(self, name: str) -> None:
        """Keep worker ``name``'s ``smc_context_stale`` count (its processors export their events at each commit,
        so the count covers what it committed and may cover records of a transaction it had not committed yet)."""
        match = METRICS_PORT.search((self.logdir / f"{name}.log").read_bytes())
        if match is None:  # its ports are served before it touches the broker: it has processed nothing
            self.stale[name] = 0
            return
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{int(match[1])}/metrics", timeout=10) as resp:
                text = resp.read().decode()
        except OSError:
            self.unread.append(name)
            return
        self.stale[name] = int(sum(
            sample.value for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name.endswith("_events_total") and sample.labels.get("event") == STALE_EVENT
            and sample.labels.get("processor") == "trades"))

    def stale_total(self) -> int | None:
        """The stale counts of every worker summed, or None if one could not be read."""
        return None if self.unread else sum(self.stale.values())

    def kill(self, rng: random.Random) -> str:
        name = self.victim(rng)
        self.read_stale(name)
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs.pop(name).wait()
        self.start()
        return name

    def stop_one(self, rng: random.Random) -> str:
        name = self.victim(rng)
        self.read_stale(name)
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            self.exits.append(f"{name} did not stop within 60 s")
        self.start()
        return name

    def stop_all(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is None:
                self.read_stale(name)
                proc.send_signal(signal.SIGTERM)
            else:
                self.unread.append(name)
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                self.exits.append(f"{name} did not stop within 60 s")
            if proc.returncode not in (0, -signal.SIGTERM):
                self.exits.append(f"{name} exit {proc.returncode} on stop")
        self.procs.clear()

    def rebalances(self) -> dict[str, int]:
        """Per processor, the highest group generation any worker logged, minus the first join."""
        top: dict[str, int] = {}
        for path in self.logdir.glob("w*.log"):
            for match in GENERATION.finditer(path.read_text(errors="replace")):
                top[match[1]] = max(top.get(match[1], 0), int(match[2]))
        return {name: gen - 1 for name, gen in sorted(top.items())}


class CpuLoad:
    """``n`` busy-loop processes (``python -c "while True: pass"``), not niced: each takes a core's share from the
    workers and the broker like any runnable process."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.n)]

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()
        self.procs = []


async def cpu_load(plan: ChaosPlan, window_s: float, report: Report) -> None:
    """Run :class:`CpuLoad` (``plan.load`` processes) for ``plan.load_share`` of the production window of
    ``window_s`` seconds, from a random moment (seeded) that leaves it inside the window."""
    if plan.load <= 0 or plan.load_share <= 0:
        return
    rng = random.Random(plan.seed + 3)
    length = plan.load_share * window_s
    await asyncio.sleep(rng.uniform(0.0, max(0.0, window_s - length)))  # a moment chosen, not a condition awaited
    load = CpuLoad(plan.load)
    load.start()
    report.events_ms.append((int(time.time() * 1000), f"load {plan.load} busy loops"))
    try:
        await asyncio.sleep(length)
    finally:
        load.stop()
        report.events_ms.append((int(time.time() * 1000), "load end"))


async def chaos(plan: ChaosPlan, workers: Workers, bootstrap: str, window_s: float, report: Report,
                producing: asyncio.Task[None]) -> None:
    """Kill, stop and restart at random moments of the first ``window_s`` seconds; replace dead workers. Each
    event's wall time goes to ``report.events_ms``."""
    rng = random.Random(plan.seed + 1)
    events = ["kill"] * plan.kills + ["stop"] * plan.graceful_stops + ["broker"] * plan.broker_restarts
    # Random moments, at least 1 s apart, after the workers had 3 s to join.
    span = max(window_s - 3.0, 1.0 * len(events))
    moments = sorted(3.0 + rng.uniform(0, span) for _ in events)
    for i in range(1, len(moments)):
        moments[i] = max(moments[i], moments[i - 1] + 1.0)
    rng.shuffle(events)
    started = time.monotonic()
    for moment, event in zip(moments, events, strict=True):
        while time.monotonic() - started < moment:
            workers.replace_dead()
            await asyncio.sleep(0.05)
        if event == "kill":
            name = workers.kill(rng)  # its /metrics read first, then SIGKILL
            report.kills += 1
            report.events_ms.append((int(time.time() * 1000), f"kill {name}"))
        elif event == "stop":
            now_ms = int(time.time() * 1000)
            name = await asyncio.to_thread(workers.stop_one, rng)
            report.graceful_stops += 1
            report.events_ms.append((now_ms, f"stop {name}"))
        else:
            now_ms = int(time.time() * 1000)
            await asyncio.to_thread(brokers.restart, bootstrap)
            report.broker_restarts += 1
            report.events_ms.append((now_ms, "broker restart"))
    while not producing.done():
        workers.replace_dead()
        await asyncio.sleep(0.1)


# ---- reading back ------------------------------------------------------------------------------------
async def _admin(bootstrap: str) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    return admin


async def partition_ends(bootstrap: str, topics: list[str], isolation: str) -> dict[TopicPartition, int]:
    """End offset of every partition of ``topics`` (the last stable offset under read_committed)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level=isolation)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        return await consumer.end_offsets(tps)
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    admin = await _admin(bootstrap)
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return {tp: meta.offset for tp, meta in offsets.items()}
    finally:
        await admin.close()


async def uncommitted(bootstrap: str, groups: dict[str, str], inputs: dict[str, list[str]]) -> int:
    """Input records beyond each group's committed offsets."""
    missing = 0
    for name, group in groups.items():
        ends = await partition_ends(bootstrap, inputs[name], "read_uncommitted")
        committed = await committed_offsets(bootstrap, group)
        missing += sum(max(0, end - committed.get(tp, 0)) for tp, end in ends.items())
    return missing


# ---- verification ------------------------------------------------------------------------------------
def _count_ids(check: OutputCheck, seen: Counter[Any], expected: set[Any]) -> None:
    check.duplicates = sum(n - 1 for n in seen.values() if n > 1)
    check.losses = len(expected - seen.keys())
    foreign = seen.keys() - expected
    check.wrong += len(foreign)
    check.examples.extend(f"unknown id {x!r}" for x in list(foreign)[:2])
    check.examples.extend(f"duplicate {x!r} x{n}" for x, n in seen.most_common(2) if n > 1)
    check.examples.extend(f"lost {x!r}" for x in list(expected - seen.keys())[:2])


def _order_violations(
    check: OutputCheck, outputs_by_key: dict[Any, list[Any]], inputs_by_key: dict[Any, list[Any]]
) -> None:
    """Per key, the output ids (first occurrence of each) must follow the input order."""
    for key, out_ids in outputs_by_key.items():
        firsts = list(dict.fromkeys(out_ids))
        present = set(firsts)
        want = [i for i in inputs_by_key.get(key, []) if i in present]
        if firsts != want:
            check.wrong += 1
            check.examples.append(f"key {key!r}: outputs out of input order")


def verify_check(inputs: list[Any], echo: list[Any], aggregates: list[Any], topo: Topology) -> list[OutputCheck]:
    """Echo: every id once. Aggregates: every id once, each the next link of its key's running count/sum/min/max.

    The two check inputs are co-partitioned and interleave in whatever order the task processed them, so the
    aggregates are checked as a chain: per key, sorted by count, the counts run 1..n and each record's aggregates
    are the previous ones plus its value. Per key and input topic, ids must appear in input order.
    """
    values: dict[int, tuple[str, int]] = {}
    inputs_by_key: dict[tuple[str, str], list[int]] = defaultdict(list)
    source: dict[int, str] = {}
    for rec in inputs:
        doc = orjson.loads(rec.value)
        values[doc["id"]] = (doc["key"], doc["value"])
        inputs_by_key[(doc["key"], rec.topic)].append(doc["id"])
        source[doc["id"]] = rec.topic
    ids = set(values)

    echo_check = OutputCheck(topo.echo, records=len(echo))
    echo_seen: Counter[int] = Counter()
    echo_by_key: dict[tuple[str, str], list[int]] = defaultdict(list)
    for rec in echo:
        doc = orjson.loads(rec.value)
        echo_seen[doc["id"]] += 1
        echo_by_key[(doc["key"], source.get(doc["id"], "?"))].append(doc["id"])
    _count_ids(echo_check, echo_seen, ids)
    _order_violations(echo_check, echo_by_key, inputs_by_key)

    agg_check = OutputCheck(topo.aggregates, records=len(aggregates))
    agg_seen: Counter[int] = Counter()
    chains: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in aggregates:
        doc = orjson.loads(rec.value)
        agg_seen[doc["id"]] += 1
        chains[doc["key"]].append(doc)
    _count_ids(agg_check, agg_seen, ids)
    agg_by_key: dict[tuple[str, str], list[int]] = defaultdict(list)
    for key, docs in chains.items():
        docs.sort(key=lambda d: d["count"])
        count = total = 0
        low = high = None
        for doc in docs:
            rid = doc["id"]
            agg_by_key[(key, source.get(rid, "?"))].append(rid)
            if rid not in values or values[rid][0] != key:
                continue  # counted as foreign by _count_ids
            value = values[rid][1]
            count, total = count + 1, total + value
            low = value if low is None else min(low, value)
            high = value if high is None else max(high, value)
            got = (doc["count"], doc["sum"], doc["min"], doc["max"])
            if got != (count, total, low, high):
                agg_check.wrong += 1
                if len(agg_check.examples) < 5:
                    agg_check.examples.append(f"id {rid}: (count, sum, min, max) {got} != {(count, total, low, high)}")
                count, total, low, high = got  # judge the next link against what was written
    _order_violations(agg_check, agg_by_key, inputs_by_key)
    return [echo_check, agg_check]


def verify_trades(inputs: list[Any], enriched: list[Any], topic: str) -> OutputCheck:
    """Every trade once in ``topic``'s records ``enriched``, equal (every field, exactly) to a recomputation per alias
    in input order, and in input order per alias.

    The join's fields, ``smc`` and ``smc_stale``, are left out here: :mod:`tests.eos.join_check` checks them (the
    chaos run against the quiet run and both against a batch recomputation).
    """
    params = TradesParams()
    states: dict[str, SymbolTrades] = {}
    expected: dict[tuple[str, int], dict[str, Any]] = {}
    inputs_by_key: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for rec in inputs:
        trade = decode(rec.value, rec.key)
        assert isinstance(trade, Trade)
        state = states.setdefault(trade.symbol, SymbolTrades(params))
        doc = state.update(trade)
        doc.update(venue=trade.venue, market=trade.market, symbol=trade.symbol, trade_id=trade.trade_id,
                   price=trade.price,
                   size=trade.size, side=trade.side, time_ms=trade.time_ms, event_time_ms=trade.event_time_ms,
                   source_topic=rec.topic, source_partition=rec.partition, source_offset=rec.offset)
        ident = (trade.symbol, trade.trade_id)
        expected[ident] = orjson.loads(orjson.dumps(doc))
        inputs_by_key[trade.symbol].append(ident)
    check = OutputCheck(topic, records=len(enriched))
    seen: Counter[tuple[str, int]] = Counter()
    by_key: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for rec in enriched:
        doc = orjson.loads(rec.value)
        ident = (doc["symbol"], doc["trade_id"])
        seen[ident] += 1
        by_key[doc["symbol"]].append(ident)
        doc.pop("smc", None)
        doc.pop("smc_stale", None)
        want = expected.get(ident)
        if want is not None and doc != want:
            check.wrong += 1
            if len(check.examples) < 5:
                diff = {k: (doc.get(k), want.get(k)) for k in want.keys() | doc.keys() if doc.get(k) != want.get(k)}
                check.examples.append(f"trade {ident}: {diff}")
    _count_ids(check, seen, set(expected))
    _order_violations(check, by_key, inputs_by_key)
    return check


def verify_agent(inputs: list[Any], outputs: list[Any], topic: str) -> OutputCheck:
    """The user agent's sink: every input id once, keyed by its key, equal (every field) to the recomputation of
    :func:`check_app.expected_outputs` over ``inputs`` (its input topic's records) in partition order, and in input
    order per key."""
    ordered = sorted(inputs, key=lambda r: (r.partition, r.offset))
    docs = [orjson.loads(r.value) for r in ordered]
    expected = check_app.expected_outputs((r.partition, doc) for r, doc in zip(ordered, docs, strict=True))
    inputs_by_key: dict[str, list[int]] = defaultdict(list)
    for doc in docs:
        inputs_by_key[doc["key"]].append(doc["id"])
    check = OutputCheck(topic, records=len(outputs))
    seen: Counter[int] = Counter()
    by_key: dict[str, list[int]] = defaultdict(list)
    for rec in outputs:
        doc = orjson.loads(rec.value)
        seen[doc["id"]] += 1
        by_key[doc["key"]].append(doc["id"])
        want = expected.get(doc["id"])
        if want is not None and (doc != want or rec.key != want["key"].encode()):
            check.wrong += 1
            if len(check.examples) < 5:
                diff = {k: (doc.get(k), v) for k, v in want.items() if doc.get(k) != v}
                check.examples.append(f"id {doc['id']} (key {rec.key!r}): (got, want) {diff}")
    _count_ids(check, seen, set(expected))
    _order_violations(check, by_key, inputs_by_key)
    return check


def verify_agent_state(inputs: list[Any], changelog: list[Any], topic: str) -> OutputCheck:
    """The user agent's tables as its changelog holds them at the end (folded: the last record of each key wins, a
    tombstone deletes), against the recomputation over ``inputs``.

    The Table holds every key's final count and sum. The windowed table holds the final count of each window not
    expired: a window ends ``size`` after its start and is deleted (tombstoned) at the first commit after the task
    saw a ``ts`` ``expires`` past that end; the latest ``ts`` seen is part of the table's changelog, so at the end
    it is the partition's largest ``ts`` even when the last records were processed by a task restored after
    ``kill -9``. ``losses``: keys that must be there and are not; ``wrong``: a wrong value, or a key that must be
    gone.
    """
    ordered = sorted(inputs, key=lambda r: (r.partition, r.offset))
    docs = [orjson.loads(r.value) for r in ordered]
    expected = check_app.expected_outputs((r.partition, doc) for r, doc in zip(ordered, docs, strict=True))
    latest: dict[int, int] = {}  # input partition -> largest ts
    partition_of: dict[str, int] = {}
    for rec, doc in zip(ordered, docs, strict=True):
        latest[rec.partition] = max(latest.get(rec.partition, doc["ts"]), doc["ts"])
        partition_of[doc["key"]] = rec.partition
    totals = {}
    windows: dict[tuple[str, int], int] = {}
    for doc in expected.values():  # ids ascend within each key, so the last one wins
        totals[doc["key"]] = {"count": doc["count"], "sum": doc["sum"]}
        if doc["window_count"]:  # 0: the record met an expired window and wrote nothing
            windows[(doc["key"], doc["window"])] = doc["window_count"]
    state: dict[tuple[bytes, str], Any] = {}
    for rec in changelog:  # every key of a task is on its partition, in commit order
        if rec.key[:1] != b"\x01":
            continue  # an offset marker or a store's metadata (a windowed table's latest time)
        name, _, skey = rec.key[1:].partition(b"\x00")
        if rec.value is None:
            state.pop((name, skey.decode()), None)
        else:
            state[(name, skey.decode())] = orjson.loads(rec.value)
    check = OutputCheck(topic, records=len(state))
    horizon = int((check_app.WINDOW_S + check_app.EXPIRES_S) * 1000)

    def wrong(what: str) -> None:
        check.wrong += 1
        if len(check.examples) < 5:
            check.examples.append(what)

    def lost(what: str) -> None:
        check.losses += 1
        if len(check.examples) < 5:
            check.examples.append(what)

    for key, want in totals.items():
        got = state.pop((check_app.TOTALS.name.encode(), key), None)
        if got is None:
            lost(f"total of {key!r} missing")
        elif got != want:
            wrong(f"total of {key!r}: {got} != {want}")
    for (key, window), count in windows.items():
        got = state.pop((check_app.WINDOWS.name.encode(), window_store_key(key, window / 1000, check_app.WINDOW_S)),
                        None)
        last = latest[partition_of[key]]
        if got is None and window > last - horizon:
            lost(f"live window {key!r}@{window} missing")
        elif got is not None and window <= last - horizon:
            wrong(f"window {key!r}@{window} not expired (partition's latest ts {last})")
        elif got is not None and got != count:
            wrong(f"window {key!r}@{window}: {got} != {count}")
    for (name, skey), value in list(state.items())[:3]:
        wrong(f"unexpected key {name!r} {skey!r}: {value!r}")
    check.wrong += max(0, len(state) - 3)
    return check


def replay(settings: Settings, name: str, inputs: list[Any]) -> TestDriver:
    """Processor ``name`` run again in this process over ``inputs`` by the broker-less TestDriver (each record at its
    own partition, offset and Kafka timestamp)."""
    driver = TestDriver(settings=settings, processors=[name], commit_every=1000)
    for rec in sorted(inputs, key=lambda r: (r.topic, r.partition, r.offset)):
        driver.pipe(rec.topic, rec.value, rec.key, timestamp=rec.timestamp, headers=list(rec.headers or ()),
                    partition=rec.partition, offset=rec.offset)
    return driver


def verify_by_replay(driver: TestDriver, outputs: dict[str, list[Any]]) -> list[OutputCheck]:
    """Outputs against the processor :func:`replay` ran in ``driver``.

    The processor is deterministic given its input records and their offsets, so every output record must equal
    one expected record byte for byte: a surplus copy of an expected record is a duplicate, a missing one a loss,
    a record not expected at all is wrong (so a record whose values changed counts as wrong and as a loss).
    """
    expected: dict[str, Counter[tuple[bytes | None, bytes]]] = {
        t: Counter((r.key, r.value) for r in driver.all(t)) for t in outputs}
    checks = []
    for topic, records in outputs.items():
        check = OutputCheck(topic, records=len(records))
        got = Counter((r.key, r.value) for r in records)
        want = expected[topic]
        for item, n in got.items():
            extra = n - want.get(item, 0)
            if item not in want:
                check.wrong += n
                if len(check.examples) < 3:
                    check.examples.append(f"unexpected {item[1][:120]!r}")
            elif extra > 0:
                check.duplicates += extra
        check.losses = sum(max(0, n - got.get(item, 0)) for item, n in want.items())
        checks.append(check)
    return checks


async def verify(bootstrap: str, topo: Topology, settings: Settings, report: Report,
                 quiet: QuietTopology | None = None, quiet_settings: Settings | None = None) -> None:
    """Fill ``report`` with everything :func:`run_chaos` promises to check (after the workers stopped); with the
    quiet run's topology and settings, ``report.join`` too."""
    groups = topo.groups()
    inputs = topo.inputs()
    if quiet is not None:
        groups |= {f"quiet {name}": group for name, group in quiet.groups().items()}
        inputs |= {f"quiet {name}": topics for name, topics in quiet.inputs().items()}
    report.uncommitted_input = await uncommitted(bootstrap, groups, inputs)
    outputs = [topo.echo, topo.aggregates, topo.enriched, topo.dead_letter, topo.klines, topo.signals, topo.alerts,
               topo.context, topo.agent_out,
               *(name for name, spec in required_topics(settings).items() if spec.compacted)]
    if quiet is not None and quiet_settings is not None:
        outputs += [quiet.context, quiet.enriched, quiet.klines, quiet.signals, quiet.alerts, quiet.dead_letter,
                    *(name for name, spec in required_topics(quiet_settings).items() if spec.compacted)]
    # A transaction a killed worker left open is aborted by fencing or by its timeout (plus the broker's
    # 2 s abort sweep): give that time before calling it open.
    deadline = time.monotonic() + settings.kafka.transaction_timeout_ms / 1000 + 15
    while True:
        committed_ends = await partition_ends(bootstrap, outputs, "read_committed")
        raw_ends = await partition_ends(bootstrap, outputs, "read_uncommitted")
        report.open_transactions = sum(1 for tp, end in raw_ends.items() if committed_ends.get(tp) != end)
        if report.open_transactions == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    check_in = [*await read_topic(bootstrap, topo.check_input, "read_uncommitted"),
                *await read_topic(bootstrap, topo.check_input2, "read_uncommitted")]
    trades_in = await read_topic(bootstrap, topo.trades_input, "read_uncommitted")
    report.records, report.trades = len(check_in), len(trades_in)
    echo = await read_topic(bootstrap, topo.echo)
    aggregates = await read_topic(bootstrap, topo.aggregates)
    enriched = await read_topic(bootstrap, topo.enriched)
    report.dead_letters = len(await read_topic(bootstrap, topo.dead_letter))
    replayed = {topic: [r for r in await read_topic(bootstrap, topic) if not is_progress(r.headers)]
                for topic in (topo.klines, topo.signals, topo.alerts, topo.context)}
    report.checks = [*verify_check(check_in, echo, aggregates, topo), verify_trades(trades_in, enriched, topo.enriched)]
    driver = replay(settings, "klines", trades_in)
    report.checks.extend(verify_by_replay(driver, replayed))
    agent_in = [rec for rec in check_in if rec.topic == topo.check_input]
    report.checks.append(verify_agent(agent_in, await read_topic(bootstrap, topo.agent_out), topo.agent_out))
    changelog = changelog_topic(settings, check_app.AGENT)
    report.checks.append(verify_agent_state(agent_in, await read_topic(bootstrap, changelog), changelog))
    if quiet is None or report.join is None:
        return
    quiet_enriched = await read_topic(bootstrap, quiet.enriched)
    report.dead_letters += len(await read_topic(bootstrap, quiet.dead_letter))
    report.checks.append(verify_trades(trades_in, quiet_enriched, quiet.enriched))
    contexts = driver.all(topo.context)  # the batch recomputation of the klines processor's contexts
    join = report.join
    join.replayed_contexts = len(contexts)
    quiet_contexts = [r for r in await read_topic(bootstrap, quiet.context) if not is_progress(r.headers)]
    join.contexts = [check_contexts("chaos", replayed[topo.context], contexts),
                     check_contexts("quiet", quiet_contexts, contexts)]
    join.stale_events = report.stale_events
    compare_runs(join, trades_in, enriched, quiet_enriched, expected_smc(trades_in, contexts),
                 [(ms, what) for ms, what in report.events_ms if not what.startswith("load")], contexts)


# ---- the run -----------------------------------------------------------------------------------------
async def wait_drained(bootstrap: str, groups: dict[str, str], inputs: dict[str, list[str]],
                       timeout_s: float) -> None:
    """Until every group (``groups``: processor -> group) has committed its inputs (``inputs``: processor -> topics)
    to their ends (raises TimeoutError)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if await uncommitted(bootstrap, groups, inputs) == 0:
                return
        except Exception:  # noqa: BLE001, S110 - the broker may be coming back from a restart
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"input not fully committed within {timeout_s:.0f} s")
        await asyncio.sleep(0.5)


async def run_workers(workers: Workers, count: int, groups: dict[str, str], inputs: dict[str, list[str]],
                      bootstrap: str, timeout_s: float) -> None:
    """Start ``count`` workers, replace any that exits on its own until the groups are drained
    (:func:`wait_drained`), then stop them all."""
    try:
        for _ in range(count):
            workers.start()
        drain = asyncio.create_task(wait_drained(bootstrap, groups, inputs, timeout_s))
        while not drain.done():
            workers.replace_dead()
            await asyncio.sleep(0.2)
        await drain
    finally:
        workers.stop_all()


async def run_quiet(bootstrap: str, topo: Topology, plan: ChaosPlan, workdir: Path) -> tuple[QuietTopology,
                                                                                               Settings, JoinCheck]:
    """The join run again, quietly (``plan.quiet_workers`` workers of the market app, no kills, no load; logs and
    config in ``workdir/quiet``), over the raw trades ``topo`` stored: see :class:`QuietTopology`. Returns its
    topology, its settings and a :class:`JoinCheck` holding its duration (filled by :func:`verify`)."""
    quiet = QuietTopology.of(topo)
    folder = workdir / "quiet"
    folder.mkdir(exist_ok=True)
    doc = quiet.config(topo.config(bootstrap, plan))
    config = folder / "eos-quiet-config.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    settings = quiet.settings(doc)
    await ensure_topics(settings, required_topics(settings))
    workers = Workers(config, folder, app=MARKET_APP)
    started = time.monotonic()
    await run_workers(workers, plan.quiet_workers, quiet.groups(), quiet.inputs(), bootstrap, plan.drain_timeout_s)
    join = JoinCheck(quiet_workers=plan.quiet_workers, quiet_seconds=time.monotonic() - started,
                     quiet_exits=workers.exits)
    return quiet, settings, join


async def run_chaos(bootstrap: str, plan: ChaosPlan, workdir: Path) -> Report:
    """Run ``plan`` on the broker at ``bootstrap``; worker logs and config go to ``workdir`` (the quiet run's to
    ``workdir/quiet``)."""
    topo = Topology.new()
    config = workdir / "eos-config.yaml"
    config.write_text(yaml.safe_dump(topo.config(bootstrap, plan), sort_keys=False))
    settings = topo.settings(bootstrap, plan)
    await ensure_topics(settings, required_topics(settings))
    sends = interleave(check_records(plan, topo), real_trades(plan.trades), topo.trades_input, plan.seed)
    window_s = len(sends) / plan.rate
    report = Report(mode=plan.mode)
    workers = Workers(config, workdir)
    started = time.monotonic()
    loading: asyncio.Task[None] | None = None
    try:
        for _ in range(plan.workers):
            workers.start()
        report.events_ms.append((int(time.time() * 1000), "start"))
        producing = asyncio.create_task(drive(bootstrap, sends, plan.rate))
        loading = asyncio.create_task(cpu_load(plan, window_s, report))
        await chaos(plan, workers, bootstrap, window_s, report, producing)
        await producing
        await loading
        drain = asyncio.create_task(wait_drained(bootstrap, topo.groups(), topo.inputs(), plan.drain_timeout_s))
        while not drain.done():
            workers.replace_dead()
            await asyncio.sleep(0.2)
        await drain
    finally:
        if loading is not None and not loading.done():
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loading
        workers.stop_all()
        report.seconds = time.monotonic() - started
        report.worker_exits = workers.exits
        report.rebalances = workers.rebalances()
        report.stale_events = workers.stale_total()
    quiet = quiet_settings = None
    if plan.quiet_run and plan.mode == "exactly_once":
        quiet, quiet_settings, report.join = await run_quiet(bootstrap, topo, plan, workdir)
    verifying = time.monotonic()
    await verify(bootstrap, topo, settings, report, quiet, quiet_settings)
    report.verify_seconds = time.monotonic() - verifying
    return report
