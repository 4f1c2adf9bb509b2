"""Liveness, readiness and Prometheus metrics over HTTP (aiohttp).

- ``GET :health_check_port/health``: ``{"healthy", "checks": {processor: {"state", "metrics": {...}}},
  "uptime_seconds", "timestamp"}``; 200 when healthy, 503 otherwise.
- ``GET :health_check_port/ready``: 200 once every processor has its partitions assigned and its state
  restored, else 503.
- ``GET :metrics_port/metrics``: Prometheus text exposition from prometheus-client.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .metrics import Metrics
from .runner import ProcessorRunner

HEALTHY_STATES = frozenset({"starting", "rebalancing", "running"})


def health_document(runners: Iterable[ProcessorRunner], started: float) -> dict[str, Any]:
    """The ``/health`` JSON: healthy while every processor is starting, rebalancing or running."""
    checks = {r.name: {"state": r.state, "ready": r.ready, "metrics": r.stats.as_dict()} for r in runners}
    return {
        "healthy": bool(checks) and all(c["state"] in HEALTHY_STATES for c in checks.values()),
        "checks": checks,
        "uptime_seconds": round(time.monotonic() - started, 3),
        "timestamp": datetime.now(UTC).isoformat(),
    }


def health_app(runners: Callable[[], list[ProcessorRunner]], started: float) -> web.Application:
    """The health-port application."""

    async def health(_: web.Request) -> web.Response:
        doc = health_document(runners(), started)
        return web.json_response(doc, status=200 if doc["healthy"] else 503)

    async def ready(_: web.Request) -> web.Response:
        current = runners()
        ok = bool(current) and all(r.ready for r in current)
        return web.json_response({"ready": ok}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
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
