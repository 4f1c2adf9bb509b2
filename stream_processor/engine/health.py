"""Liveness, readiness, status and Prometheus metrics over HTTP (aiohttp). None of them has authentication: bind
them (``monitoring.host``, env ``MONITORING_HOST``) where only the kubelet and the scraper reach them.

- ``GET :health_check_port/health``: 200 when healthy, 503 otherwise, with::

    {"healthy": bool,
     "checks": {"processor_<name>": {"healthy": bool, "details": {"state", "ready", "circuit_state", "problems",
                                                                  "partitions": {...}, "metrics": {...}}},
                "broker": {"healthy": bool, "details": {"reachable", "seconds_since_contact", "last_error"}}},
     "problems": ["why it is not healthy", ...], "starting": null | "what start-up waits for",
     "version", "processor_id", "uptime_seconds": float, "timestamp": float (seconds since the epoch)}

  Unhealthy when: the broker has not answered for ``health.broker_timeout_ms``, or refuses the worker's credentials
  or certificate; a processor failed or is not live (stopping, stopped); a partition's circuit is open or half-open
  (its transactions aborted ``circuit_breaker.failures`` times in a row); a partition with input waiting has not
  committed for ``health.stuck_partition_ms``. Each problem is one sentence in ``problems``.
- ``GET :health_check_port/ready``: 200 once every processor has its partitions assigned and their state restored,
  and the worker is healthy; else 503.
- ``GET :health_check_port/status``: every input partition of every processor (see :func:`status_document`).
- ``GET :metrics_port/metrics``: Prometheus text exposition from prometheus-client.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .metrics import Metrics
from .status import GroupView, status_document
from .version import __version__

if TYPE_CHECKING:
    from .worker import Worker

HEALTHY_STATES = frozenset({"starting", "rebalancing", "running"})


def health_document(worker: Worker, now: float | None = None) -> dict[str, Any]:
    """The ``/health`` JSON of ``worker`` (see the module docstring)."""
    now = time.monotonic() if now is None else now
    problems: list[str] = []
    broker = worker.probe.status(now)
    broker_problem = worker.probe.problem(now)
    if broker_problem:
        problems.append(f"broker: {broker_problem}")
    checks: dict[str, Any] = {"broker": {"healthy": not broker_problem, "details": broker}}
    for runner in worker.runners:
        check = runner.health(now)
        own: list[str] = []
        if check["state"] not in HEALTHY_STATES:
            own.append(f"{runner.name}: {check['state']}" + (f" ({runner.error})" if runner.error else ""))
        own.extend(f"{runner.name}: {p}" for p in check["problems"])
        checks[f"processor_{runner.name}"] = {"healthy": not own, "details": check}
        problems.extend(own)
    if not worker.runners:
        problems.append("no processor enabled")
    replicas = getattr(worker, "replicas", None)  # the global tables' replica reader (replicas.py), if any
    if replicas is not None:
        failure = replicas.exception() if replicas.done() and not replicas.cancelled() else None
        if failure is not None:
            problems.append(f"global tables: their replica reader stopped: {failure!r}"[:500])
        checks["global_tables"] = {"healthy": failure is None, "details": {"reading": not replicas.done()}}
    return {
        "healthy": not problems,
        "checks": checks,
        "problems": problems,
        "starting": worker.starting,
        "version": __version__,
        "processor_id": worker.settings.processor_id,
        "uptime_seconds": round(now - worker.started, 3),
        "timestamp": time.time(),
    }


def health_app(worker: Worker) -> web.Application:
    """The health-port application of ``worker``."""

    async def health(_: web.Request) -> web.Response:
        doc = health_document(worker)
        return web.json_response(doc, status=200 if doc["healthy"] else 503)

    async def ready(_: web.Request) -> web.Response:
        doc = health_document(worker)
        ok = doc["healthy"] and all(r.ready for r in worker.runners)
        return web.json_response({"ready": ok, "problems": doc["problems"]}, status=200 if ok else 503)

    view = GroupView(worker)

    async def status(_: web.Request) -> web.Response:
        return web.json_response(await status_document(worker, view))

    async def close_view(_: web.Application) -> None:
        await view.close()

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/status", status)
    app.on_cleanup.append(close_view)
    if getattr(worker, "app", None) is not None and worker.app.pages:  # the App's web views (app.page)
        from .app_services import page_routes

        app.add_routes(page_routes(worker.app))
    return app


def metrics_app(metrics: Metrics) -> web.Application:
    """The metrics-port application."""

    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    return app


async def serve(app: web.Application, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    """Start ``app`` on ``host:port``; the caller cleans up the returned runner."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
