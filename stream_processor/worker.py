"""The worker process: topics, one runner per enabled processor, health and metrics ports, signals."""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from .health import health_app, metrics_app, serve
from .metrics import Metrics
from .processors import build_processor
from .retry import with_retry
from .runner import ProcessorRunner
from .settings import Settings
from .topics import ensure_topics, required_topics

log = logging.getLogger(__name__)


class Worker:
    """Runs the processors named in ``only`` (default: every enabled one) until stopped.

    SIGTERM and SIGINT stop it gracefully: every open transaction commits, then the group is left.
    """

    def __init__(self, settings: Settings, only: list[str] | None = None, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        names = [n for n, p in settings.stream_processors.items() if p.enabled and (only is None or n in only)]
        if only:
            unknown = sorted(set(only) - set(settings.stream_processors))
            if unknown:
                raise ValueError(f"unknown processor(s) {unknown}; configured: {sorted(settings.stream_processors)}")
        self.runners = [
            ProcessorRunner(build_processor(n, settings.stream_processors[n]), settings, self.metrics)
            for n in names
        ]
        self.started = time.monotonic()
        self.health_port: int | None = None  # bound ports, known once run() serves them
        self.metrics_port: int | None = None
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop gracefully."""
        self._stop.set()

    async def run(self) -> None:
        """Create missing topics, serve HTTP, run every processor until a stop is requested or one fails."""
        mon = self.settings.monitoring
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request_stop)
            except (NotImplementedError, RuntimeError):
                pass  # not the main thread (tests run the worker in-process)
        topics = required_topics(self.settings, [r.name for r in self.runners])
        await with_retry(lambda _: ensure_topics(self.settings, topics), "creating topics")
        http = [
            await serve(health_app(lambda: self.runners, self.started), mon.health_check_port, mon.host),
            await serve(metrics_app(self.metrics), mon.metrics_port, mon.host),
        ]
        self.health_port, self.metrics_port = (site.addresses[0][1] for site in http)
        log.info("health on :%d/health, metrics on :%d/metrics", self.health_port, self.metrics_port)
        tasks: list[asyncio.Task[None]] = []
        try:
            for runner in self.runners:
                await runner.start()
            tasks = [asyncio.create_task(r.run(), name=f"runner-{r.name}") for r in self.runners]
            stop = asyncio.create_task(self._stop.wait())
            done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
            failed = [t for t in done if t is not stop and t.exception() is not None]
            stop.cancel()
            if failed:
                raise failed[0].exception()  # type: ignore[misc]
        finally:
            log.info("stopping")
            for runner in self.runners:
                runner.request_stop()
            # Each loop ends within one commit interval; then every open transaction commits.
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=30)
            for runner in self.runners:
                try:
                    await runner.stop()
                except Exception:  # noqa: BLE001 - stop the others anyway
                    log.exception("stopping %s failed", runner.name)
            for site in http:
                await site.cleanup()
