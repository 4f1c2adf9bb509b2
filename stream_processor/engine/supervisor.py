"""``worker --processes N``: N worker processes of one configuration, for a machine with N cores.

A Python worker runs its processing on one core (one event loop); a pod or host with more cores runs one worker
process per core. Each is a full member of every processor's consumer group (the group spreads the partitions
over all of them, as over pods), with its own identity and ports:

- ``PROCESSOR_ID``: ``<processor_id>-<i>`` (so each has its own client ids and log name);
- ``METRICS_PORT`` and ``HEALTH_CHECK_PORT``: the configured port plus ``2 i`` (8080/8081, 8082/8083, ... with the
  defaults; a configured 0, any free port, stays 0);
- ``GROUP_INSTANCE_ID`` (static membership, when configured): ``<group_instance_id>-<i>``.

The supervisor forwards SIGTERM and SIGINT to every child and waits for them (each commits and leaves within
``shutdown_timeout_ms``), then exits 0. A child that exits on its own is started again after a pause that doubles
from 1 s to 30 s while it keeps failing (reset once it has run for a minute), so one crash does not take the
others' partitions through a rebalance; its exit is logged with its code.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .settings import Settings

log = logging.getLogger(__name__)

#: Child i's ports are the configured ones plus PORT_STRIDE * i.
PORT_STRIDE = 2
#: A restarted child waits this long first, doubling while it keeps exiting, up to RESTART_MAX_S.
RESTART_FIRST_S = 1.0
RESTART_MAX_S = 30.0
#: A child that ran this long is healthy again: its next restart waits RESTART_FIRST_S.
HEALTHY_RUN_S = 60.0


def child_environment(settings: Settings, index: int, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of child ``index`` (0-based): ``environ`` (default ``os.environ``) plus its identity and
    ports (see the module docstring)."""
    env = dict(os.environ if environ is None else environ)
    monitoring = settings.monitoring
    env["PROCESSOR_ID"] = f"{settings.processor_id}-{index}"
    env["METRICS_PORT"] = str(monitoring.metrics_port + PORT_STRIDE * index if monitoring.metrics_port else 0)
    env["HEALTH_CHECK_PORT"] = str(monitoring.health_check_port + PORT_STRIDE * index
                                   if monitoring.health_check_port else 0)
    if settings.kafka.group_instance_id is not None:
        env["GROUP_INSTANCE_ID"] = f"{settings.kafka.group_instance_id}-{index}"
    return env


def check_ports(settings: Settings, processes: int) -> None:
    """Raise ValueError when two children would get the same port, or one above 65535."""
    ports = [int(child_environment(settings, i, {})[name]) for i in range(processes)
             for name in ("METRICS_PORT", "HEALTH_CHECK_PORT")]
    used = [p for p in ports if p]
    if len(set(used)) != len(used) or any(p > 65535 for p in used):
        raise ValueError(f"{processes} processes need distinct ports below 65536, got {sorted(used)} (metrics_port "
                         f"and health_check_port plus {PORT_STRIDE} per process)")


def child_command(app: str | None, config: Path | None, processors: Sequence[str]) -> list[str]:
    """``python -m stream_processor [-A app] worker [--config F] [--processor P ...]`` for one child."""
    command = [sys.executable, "-m", "stream_processor"]
    if app:
        command += ["-A", app]
    command.append("worker")
    if config is not None:
        command += ["--config", str(config)]
    for name in processors:
        command += ["--processor", name]
    return command


class Supervisor:
    """Runs ``processes`` children of ``command`` (see :func:`child_command`) until SIGTERM or SIGINT."""

    def __init__(self, settings: Settings, command: list[str], processes: int, poll_s: float = 0.2) -> None:
        if processes < 1:
            raise ValueError(f"processes must be at least 1, got {processes}")
        self.settings = settings
        self.command = command
        self.processes = processes
        self.poll_s = poll_s
        self.children: list[subprocess.Popen[Any] | None] = [None] * processes
        self.started_at = [0.0] * processes
        self.restart_at: list[float | None] = [None] * processes
        self.backoff = [RESTART_FIRST_S] * processes
        self.restarts = 0
        self._stop = False

    def _start(self, index: int) -> None:
        self.children[index] = subprocess.Popen(self.command, env=child_environment(self.settings, index))
        self.started_at[index] = time.monotonic()
        self.restart_at[index] = None

    def request_stop(self, *_: Any) -> None:
        """Stop every child (SIGTERM) and return from :meth:`run` once they have exited."""
        self._stop = True

    def run(self) -> int:
        """Start the children, keep them running, stop them on a signal; returns the exit code (0)."""
        previous = {sig: signal.signal(sig, self.request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for i in range(self.processes):
                self._start(i)
            log.info("supervisor: %d worker processes started (%s)", self.processes,
                     ", ".join(str(c.pid) for c in self.children if c is not None))
            while not self._stop:
                self._watch(time.monotonic())
                time.sleep(self.poll_s)
            return self._stop_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _watch(self, now: float) -> None:
        for i, child in enumerate(self.children):
            if child is not None and child.poll() is not None:
                ran = now - self.started_at[i]
                if ran >= HEALTHY_RUN_S:
                    self.backoff[i] = RESTART_FIRST_S
                log.error("supervisor: worker process %d (pid %d) exited with %s after %.0f s; restarting in %.0f s",
                          i, child.pid, child.returncode, ran, self.backoff[i])
                self.children[i] = None
                self.restart_at[i] = now + self.backoff[i]
                self.backoff[i] = min(self.backoff[i] * 2, RESTART_MAX_S)
            elif child is None and (due := self.restart_at[i]) is not None and now >= due:
                self.restarts += 1
                self._start(i)

    def _stop_all(self) -> int:
        live = [c for c in self.children if c is not None and c.poll() is None]
        for child in live:
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_timeout_ms / 1000 + 10
        for child in live:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("supervisor: worker process %d did not stop in time; killing it", child.pid)
                child.kill()
                child.wait()
        log.info("supervisor: every worker process stopped")
        return 0
