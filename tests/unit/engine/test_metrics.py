"""The worker's metrics: the batch histogram matches prometheus-client's own, and the collectors are there."""

from __future__ import annotations

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream_processor.engine.metrics import LATENCY_BUCKETS, BatchHistogram, Metrics


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            if s.name.startswith(name):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_observe_many_exposes_what_one_observe_per_value_would() -> None:
    values = np.concatenate([np.random.default_rng(7).exponential(0.2, 5000), [0.001, 600.0, 601.0, 0.0]])
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("lat_seconds", "doc", "processor", LATENCY_BUCKETS)
    ours.register(batch)
    batch.observe_many("trades", values[:1000])
    batch.observe_many("trades", values[1000:])
    batch.observe_many("trades", [])
    reference = Histogram("lat_seconds", "doc", ["processor"], buckets=LATENCY_BUCKETS, registry=theirs)
    for v in values:
        reference.labels("trades").observe(v)
    a, b = _samples(ours, "lat_seconds"), _samples(theirs, "lat_seconds")
    created = {k for k in b if k[0].endswith("_created")}
    assert {k: v for k, v in b.items() if k not in created}.keys() == a.keys()
    for key, value in a.items():
        assert abs(value - b[key]) < 1e-6, key  # counts equal; sums up to float rounding
    assert a[("lat_seconds_count", (("processor", "trades"),))] == len(values)
    assert a[("lat_seconds_bucket", (("le", "600.0"), ("processor", "trades")))] == len(values) - 1  # 601 s: +Inf


def test_the_registry_has_process_python_and_info_series() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.describe_worker("app", "worker-1")
    text = generate_latest(metrics.registry).decode()
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "python_info",
                 'stream_processor_info{app_id="app",processor_id="worker-1",version='):
        assert name in text
    assert "stream_processor_processing_latency_seconds" in text
