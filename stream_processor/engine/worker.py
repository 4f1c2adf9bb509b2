"""The worker process: HTTP first, then topics and one runner per enabled processor; a broker probe; signals.

The health and metrics ports are served before anything touches the broker, so a worker started while the broker
is unreachable answers ``/health`` (unhealthy, with the reason) while it keeps trying, with a backoff, to create its
topics and join its groups. A processor that fails is stopped (its partitions go to the other members) and shown
as failed on ``/health``; the others go on. SIGTERM and SIGINT stop the worker gracefully: every open transaction
commits, then the groups are left, all within ``shutdown_timeout_ms`` even when the broker hangs (what is not
committed by then is aborted by the broker or fenced by the next owner).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from typing import Any

from aiokafka import AIOKafkaClient, AIOKafkaConsumer

from .exceptions import ConfigError
from .health import health_app, metrics_app, serve
from .kafka_internals import metadata_update
from .metrics import Metrics
from .registry import build_processor
from .replicas import Replicator, sources
from .retry import with_retry
from .runner import ProcessorRunner
from .security import auth_failure, client_options, diagnose
from .settings import Settings
from .topics import ensure_topics, required_topics
from .version import __version__

log = logging.getLogger(__name__)


class BrokerProbe:
    """Asks the broker for metadata every ``probe_interval_ms``; knows when it last answered.

    A hung broker (SIGSTOP) accepts connections but never answers, so each probe has a timeout of a third of
    ``broker_timeout_ms`` (at most 5 s).
    """

    def __init__(self, settings: Settings, metrics: Metrics, topics: list[str]) -> None:
        self.settings = settings
        self.metrics = metrics
        self.topics = topics
        self.started = time.monotonic()
        self.last_contact: float | None = None
        self.error: str | None = None
        self.refused: str | None = None  # the broker refuses our credentials or certificate: why
        health = settings.health
        self.timeout_s = max(0.5, min(5.0, health.broker_timeout_ms / 3000))
        self.interval_s = health.probe_interval_ms / 1000

    async def run(self) -> None:
        """Probe until cancelled."""
        client = AIOKafkaClient(
            **client_options(self.settings.kafka),
            client_id=f"{self.settings.processor_id}-probe",
            request_timeout_ms=int(self.timeout_s * 1000),
        )
        bootstrapped = False
        try:
            while True:
                try:
                    async with asyncio.timeout(self.timeout_s * 2):
                        if not bootstrapped:
                            await client.bootstrap()
                            bootstrapped = True
                        elif not await metadata_update(client, self.topics):
                            raise ConnectionError("no broker answered the metadata request")
                    self.last_contact = time.monotonic()
                    self.error = self.refused = None
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - refused, timed out, reset: all mean "not reachable"
                    self.error = repr(exc) if str(exc) else type(exc).__name__
                    # aiokafka reports every bootstrap failure alike; one direct connection tells a wrong
                    # password or an untrusted certificate from a broker that is down.
                    self.refused = auth_failure(exc, self.settings.kafka)
                    if self.refused is None:
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(self.timeout_s * 2):
                                self.refused = await diagnose(self.settings.kafka, self.timeout_s)
                    if self.refused:
                        self.error = self.refused
                        log.error("broker %s: %s", ",".join(self.settings.kafka.bootstrap_servers), self.refused)
                self._export()
                await asyncio.sleep(self.interval_s)
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    def seconds_since_contact(self, now: float | None = None) -> float:
        """Seconds since the broker last answered (since the probe started, if it never did)."""
        now = time.monotonic() if now is None else now
        return now - (self.last_contact if self.last_contact is not None else self.started)

    def reachable(self, now: float | None = None) -> bool:
        """False once the broker has not answered for ``broker_timeout_ms``."""
        return self.seconds_since_contact(now) <= self.settings.health.broker_timeout_ms / 1000

    def status(self, now: float | None = None) -> dict[str, Any]:
        """The ``broker`` check's details in ``/health``."""
        return {
            "reachable": self.reachable(now) and self.refused is None,
            "seconds_since_contact": round(self.seconds_since_contact(now), 1),
            "last_error": self.error,
            "bootstrap_servers": self.settings.kafka.bootstrap_servers,
            "security_protocol": self.settings.kafka.security_protocol,
        }

    def problem(self, now: float | None = None) -> str | None:
        """Why the broker makes the worker unhealthy, or None: it refuses our credentials or certificate (at
        once), or it has not answered for ``health.broker_timeout_ms``."""
        if self.refused:
            return self.refused
        if not self.reachable(now):
            return f"no answer for {self.seconds_since_contact(now):.0f} s (last error: {self.error})"
        return None

    def _export(self) -> None:
        self.metrics.broker_up.set(1 if self.error is None else 0)
        self.metrics.broker_last_contact_seconds.set(self.seconds_since_contact())


class Worker:
    """Runs the processors named in ``only`` (default: every enabled one) until stopped.

    SIGTERM and SIGINT stop it gracefully: every open transaction commits, then the group is left.
    """

    def __init__(self, settings: Settings, only: list[str] | None = None, metrics: Metrics | None = None,
                 app: Any = None) -> None:
        self.settings = settings
        self.app = app  # an App: its processor types, topics and timers
        self.replicas: asyncio.Task[None] | None = None  # the global tables' replica reader, once started
        self.metrics = metrics or Metrics()
        names = [n for n, p in settings.stream_processors.items() if p.enabled and (only is None or n in only)]
        if only:
            unknown = sorted(set(only) - set(settings.stream_processors))
            if unknown:
                raise ValueError(f"unknown processor(s) {unknown}; configured: {sorted(settings.stream_processors)}")
        types = app.types if app is not None else None
        self.runners = [ProcessorRunner(build_processor(n, settings, types), settings, self.metrics) for n in names]
        self.topics = required_topics(self.settings, [r.name for r in self.runners])
        renamed = set().union(*(getattr(r.processor, "renamed", ()) for r in self.runners))
        for name in app.topics if app is not None else ():
            if name not in renamed:  # a topic of an agent's decorator the YAML renamed is not created
                self.topics.setdefault(name, settings.topic(name))
        self.probe = BrokerProbe(settings, self.metrics, sorted(self.topics))
        self.started = time.monotonic()
        self.starting: str | None = "starting"  # what start-up is waiting for; None once every runner runs
        self.health_port: int | None = None  # bound ports, known once run() serves them
        self.metrics_port: int | None = None
        # Set by the command line: the process exits (code 3) this long after a stop request, whatever hangs.
        self.hard_exit_s: float | None = None
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop gracefully (and arm the hard exit, if set)."""
        if not self._stop.is_set() and self.hard_exit_s is not None:
            timer = threading.Timer(self.hard_exit_s, _hard_exit, args=(self.hard_exit_s,))
            timer.daemon = True
            timer.start()
        self._stop.set()

    async def run(self) -> None:
        """Serve HTTP, create missing topics, run every processor until a stop is requested."""
        mon = self.settings.monitoring
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request_stop)
            except (NotImplementedError, RuntimeError):
                pass  # not the main thread (tests run the worker in-process)
        http = [
            await serve(health_app(self), mon.health_check_port, mon.host),
            await serve(metrics_app(self.metrics), mon.metrics_port, mon.host),
        ]
        self.health_port, self.metrics_port = (site.addresses[0][1] for site in http)
        self.metrics.describe_worker(self.settings.app_id, self.settings.processor_id)
        summary = self.summary()
        log.info("stream-processor %s starting: app %s, processor_id %s, kafka %s (%s), processors %s; "
                 "health on %s:%d, metrics on %s:%d (no authentication)", __version__, summary["app_id"],
                 summary["processor_id"], ",".join(summary["bootstrap_servers"]), summary["security_protocol"],
                 ", ".join(f"{p['name']} ({p['type']}, {p['processing_mode']})" for p in summary["processors"]),
                 mon.host, self.health_port, mon.host, self.metrics_port, extra={"config": summary})
        probe = asyncio.create_task(self.probe.run(), name="broker-probe")
        timers: asyncio.Task[None] | None = None  # the app's tasks and timers: once the topics exist, as Faust
        tasks: dict[asyncio.Task[None], ProcessorRunner] = {}
        replicator: asyncio.Task[None] | None = None
        try:
            if await self._until_started("creating topics", lambda: ensure_topics(self.settings, self.topics)):
                replicator = await self._replicate()
                if self.app is not None:
                    timers = asyncio.create_task(self.app.run_timers(self._stop), name="timers")
                for runner in self.runners:
                    if not await self._until_started(f"starting processor {runner.name}", runner.start, runner):
                        break
                    tasks[asyncio.create_task(runner.run(), name=f"runner-{runner.name}")] = runner
            if not self._stop.is_set():
                self.starting = None
            stop = asyncio.create_task(self._stop.wait())
            pending: set[asyncio.Task[Any]] = set(tasks)  # the runners' tasks and, while waiting, stop
            while pending and not self._stop.is_set():
                done, pending = await asyncio.wait([*pending, stop], return_when=asyncio.FIRST_COMPLETED)
                for task in done - {stop}:
                    if not task.cancelled():
                        task.exception()  # retrieved: the runner logged it
                    await self._stopped_on_failure(tasks[task])
                pending -= {stop}
            if not tasks:
                await stop
            stop.cancel()
        finally:
            await self._shutdown(list(tasks))
            for background in (probe, replicator):
                if background is not None:
                    background.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await background
            if timers is not None:
                timers.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await timers
            if self.app is not None:
                with contextlib.suppress(Exception):
                    await self.app.close()
            for site in http:
                await site.cleanup()
            log.info("stream-processor stopped after %.1f s", time.monotonic() - self.started)

    async def _replicate(self) -> asyncio.Task[None] | None:
        """Start reading the changelogs of the app's global tables into their replicas (every worker holds every
        partition), and wait until it has read them to their ends (or a stop). None: no global table."""
        feeds = sources(self.settings, {r.name: r.processor for r in self.runners},
                        getattr(self.app, "tables", None) or {})
        if not feeds:
            return None
        consumer = AIOKafkaConsumer(isolation_level="read_committed", enable_auto_commit=False,
                                    auto_offset_reset="earliest", client_id=self.settings.processor_id,
                                    **client_options(self.settings.kafka))
        replicator = Replicator(feeds, consumer)
        task = self.replicas = asyncio.create_task(replicator.run(self._stop), name="global-tables")
        waits = [asyncio.create_task(replicator.ready.wait()), asyncio.create_task(self._stop.wait())]
        await asyncio.wait([*waits, task], return_when=asyncio.FIRST_COMPLETED)
        for wait in waits:
            wait.cancel()
        if task.done() and not task.cancelled() and task.exception() is not None:  # /health says so too
            log.error("global tables: their changelogs could not be read: %s", task.exception())
        log.info("global tables %s: replicas read from %s", sorted({t.name for f in feeds.values() for _, t in f}),
                 sorted(feeds))
        return task

    def summary(self) -> dict[str, Any]:
        """The configuration in brief, for the start line (no secrets: the SASL user, never the password)."""
        s = self.settings
        return {
            "version": __version__,
            "app_id": s.app_id,
            "processor_id": s.processor_id,
            "bootstrap_servers": s.kafka.bootstrap_servers,
            "security_protocol": s.kafka.security_protocol,
            "sasl_mechanism": s.kafka.sasl_mechanism,
            "sasl_username": s.kafka.sasl_username,
            "commit_interval_ms": s.kafka.commit_interval_ms,
            "processors": [{"name": r.name, "type": r.psettings.type, "processing_mode": r.psettings.processing_mode,
                            "consumer_group": r.psettings.consumer_group, "inputs": r.psettings.input_topics,
                            "outputs": r.processor.output_topics} for r in self.runners],
        }

    async def _until_started(self, what: str, step: Any, runner: ProcessorRunner | None = None) -> bool:
        """Retry ``step()`` until it succeeds (True) or a stop is requested (False); a ConfigError fails the runner
        (True: start-up goes on with the others)."""

        async def attempt(_: int) -> bool:
            self.starting = what
            try:
                await step()
            except ConfigError as exc:
                if runner is None:
                    raise
                runner.state, runner.error = "failed", str(exc)
                log.error("processor %s cannot start: %s", runner.name, exc)
            except Exception as exc:  # the broker is unreachable or still starting: say so on /health
                self.starting = f"{what}: {self.probe.refused or repr(exc)}"
                raise
            return True

        return bool(await with_retry(attempt, what, timeout_s=None, stop=self._stop))

    async def _stopped_on_failure(self, runner: ProcessorRunner) -> None:
        """A runner's loop ended without a stop request: it failed. Leave its groups; the others go on."""
        if runner.state != "failed":
            runner.state, runner.error = "failed", runner.error or "its loop ended"
        log.error("processor %s failed (%s); stopping it, the other processors go on", runner.name, runner.error)
        try:
            async with asyncio.timeout(self.settings.shutdown_timeout_ms / 1000):
                await runner.stop()
        except Exception:  # noqa: BLE001 - it is failed either way
            log.exception("stopping the failed processor %s failed", runner.name)

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> None:
        """Stop every runner (commit, leave the groups) within ``shutdown_timeout_ms``."""
        log.info("stopping")
        timeout = self.settings.shutdown_timeout_ms / 1000
        for runner in self.runners:
            runner.request_stop()
        try:
            async with asyncio.timeout(timeout):
                # Each loop ends within one commit interval; then every open transaction commits.
                await asyncio.gather(*tasks, return_exceptions=True)
                for runner in self.runners:
                    if runner.state == "starting":
                        continue
                    try:
                        await runner.stop()
                    except Exception:  # noqa: BLE001 - stop the others anyway
                        log.exception("stopping %s failed", runner.name)
        except TimeoutError:
            log.error("graceful stop did not finish within %.0f s (is the broker reachable?); leaving without it: "
                      "open transactions are aborted by the broker or fenced by the next owner", timeout)
            for task in tasks:
                task.cancel()


def _hard_exit(after_s: float) -> None:
    log.critical("still running %.0f s after the stop request: exiting without a graceful stop", after_s)
    logging.shutdown()
    os._exit(3)
