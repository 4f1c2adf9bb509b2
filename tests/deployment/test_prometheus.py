"""A real Prometheus scrapes a real worker: Debian's /usr/bin/prometheus on loopback, scrape interval 1 s, scraping
an in-process Worker on the test broker while real Binance trades (data/sample) flow through it; then the
Prometheus HTTP API answers the queries the alerts and the dashboard are built on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from stream_processor.engine.worker import Worker
from stream_processor.market.replay import replay
from tests.deployment.monitoring_tools import (
    ALERTS,
    JOB,
    ROOT,
    PrometheusServer,
    as_promql,
    dashboard_queries,
    load_dashboard,
    prometheus_server,
    require_tools,
)
from tests.helpers import isolated_settings, wait_for

SAMPLE = sorted((ROOT / "data" / "sample").glob("*.gz"))  # real Binance spot captures shipped with the repo

#: Dashboard panels that must show data for a worker processing trades (the others count rare events: dead
#: letters, SMC patterns, processor events).
PANELS_WITH_DATA = [
    "Workers up", "Broker", "Input records/s", "Consumer lag", "Since last commit", "Circuits not closed",
    "Processing latency", "Throughput", "Batch duration", "Consumer lag by partition", "Consumer lag total",
    "Commits and aborts", "Commit duration", "Assigned partitions and restore", "Circuit state",
    "Broker reachable", "Seconds since broker contact", "Scrape status", "Memory (resident)", "CPU", "Version",
]


@pytest.fixture(scope="module", autouse=True)
def tools() -> None:
    require_tools()


async def eventually(prom: PrometheusServer, http: Any, promql: str, check: Callable[[list[dict[str, Any]]], bool],
                     timeout: float = 60) -> list[dict[str, Any]]:
    """Query ``promql`` until ``check(result)`` holds; the result. AssertionError with the last result on timeout."""
    last: list[dict[str, Any]] = []

    async def holds() -> bool:
        nonlocal last
        last = await prom.query(http, promql)
        return check(last)

    try:
        await wait_for(holds, timeout=timeout, interval=0.5)
    except TimeoutError:
        raise AssertionError(f"{promql!r} never satisfied the check within {timeout} s; last result: {last}") from None
    return last


def value(result: list[dict[str, Any]]) -> float:
    return float(result[0]["value"][1])


@pytest.mark.slow  # ~30 s on the 2-core machine
async def test_real_prometheus_scrapes_a_worker_processing_real_trades(kafka_bootstrap):
    settings = isolated_settings(kafka_bootstrap, processors=["trades"])
    raw = settings.stream_processors["trades"].input_topics[0]
    worker = Worker(settings)
    task = asyncio.create_task(worker.run())
    replaying: asyncio.Task[Any] | None = None
    try:
        async def serving() -> bool:
            assert not task.done(), task.exception()
            return worker.metrics_port is not None

        await wait_for(serving, timeout=60)
        target = f"127.0.0.1:{worker.metrics_port}"
        async with prometheus_server([target], rule_files=[ALERTS]) as (prom, http):
            # The target is scraped and healthy.
            up = await eventually(prom, http, f'up{{job="{JOB}"}} == 1', lambda r: len(r) == 1)
            assert up[0]["metric"]["instance"] == target
            await eventually(prom, http, 'stream_processor_assigned_partitions{processor="trades"}',
                             lambda r: bool(r) and value(r) > 0)

            # Real trades, paced (20x real time) so that Prometheus scrapes the counters while they grow.
            replaying = asyncio.create_task(replay(settings, SAMPLE, kinds={"trades"}, speed=20, progress=False))
            rate = await eventually(prom, http, 'rate(stream_processor_messages_in_total{processor="trades"}[10s])',
                                    lambda r: bool(r) and value(r) > 0, timeout=90)
            assert rate[0]["metric"]["job"] == JOB
            out = await eventually(
                prom, http, 'sum by (topic) (rate(stream_processor_messages_out_total{processor="trades"}[10s]))',
                lambda r: bool(r) and value(r) > 0)
            assert out[0]["metric"]["topic"] == settings.stream_processors["trades"].output_topics[0]

            counts = await asyncio.wait_for(replaying, timeout=120)
            replaying = None
            assert counts[raw] > 1000
            # Every trade was committed, and Prometheus saw the exact count.
            await eventually(prom, http, 'sum(stream_processor_messages_in_total{processor="trades"})',
                             lambda r: bool(r) and value(r) == counts[raw], timeout=90)

            lag = await eventually(prom, http, 'stream_processor_consumer_lag{processor="trades"}', bool)
            assert {s["metric"]["topic"] for s in lag} == {raw}
            assert {s["metric"]["partition"] for s in lag} <= {str(p) for p in range(settings.topic(raw).partitions)}
            await eventually(prom, http, 'sum(stream_processor_consumer_lag{processor="trades"})',
                             lambda r: bool(r) and value(r) == 0)  # drained

            # Every record's latency is in the histogram.
            await eventually(prom, http,
                             'sum(stream_processor_processing_latency_seconds_count{processor="trades"})',
                             lambda r: bool(r) and value(r) >= counts[raw])
            p99 = await eventually(
                prom, http, 'histogram_quantile(0.99, sum by (le) (rate('
                'stream_processor_processing_latency_seconds_bucket{processor="trades"}[1m])))',
                lambda r: bool(r) and value(r) == value(r))  # not NaN
            assert 0 < value(p99) <= 600

            # The process collectors (the lead's metrics change adds them to the worker's registry).
            memory = await eventually(prom, http, f'process_resident_memory_bytes{{job="{JOB}"}}', bool, timeout=10)
            assert value(memory) > 10 * 2**20

            # alerts.yaml loads into this Prometheus; every rule evaluates without error; the recording rules
            # see the worker's series.
            await eventually(prom, http, 'stream_processor:messages_in:rate5m{processor="trades"}',
                             lambda r: bool(r) and value(r) > 0)
            groups = (await prom.api(http, "rules"))["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            assert len(rules) == 16
            broken = [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] != "ok"]
            assert not broken, broken
            firing = await prom.query(http, 'ALERTS{alertstate="firing"}')
            assert not firing, firing

            # Every dashboard query runs on this Prometheus; the panels of a working trades pipeline show data.
            dashboard = load_dashboard()
            empty = []
            for where, expr in dashboard_queries(dashboard):
                result = await prom.query(http, as_promql(expr).replace('job=~".*"', f'job=~"{JOB}"'))
                if not result and any(where.startswith(f"panel {title!r}") for title in PANELS_WITH_DATA):
                    empty.append(where)
            assert not empty, f"dashboard queries without data: {empty}"
            print(f"target {target}: up=1; rate(messages_in[10s])={value(rate):.1f}/s, messages_out rate "
                  f"{value(out):.1f}/s; {counts[raw]} trades committed; lag series "
                  f"{sorted((s['metric']['topic'], s['metric']['partition']) for s in lag)}; p99 latency "
                  f"{value(p99):.3f} s; resident memory {value(memory) / 2**20:.0f} MiB; {len(rules)} rules ok; "
                  f"{len(dashboard_queries(dashboard))} dashboard queries run")
    finally:
        if replaying is not None:
            replaying.cancel()
        worker.request_stop()
        await asyncio.wait_for(task, timeout=60)
