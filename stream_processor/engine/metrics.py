"""Every Prometheus metric of the worker, built in one place against an injected registry.

Besides the worker's own series, the registry carries prometheus-client's process and platform collectors
(``process_resident_memory_bytes``, ``process_cpu_seconds_total``, ``python_info``, ...) and its GC collector.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from .version import __version__

if TYPE_CHECKING:
    import numpy.typing as npt

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: End-to-end latency buckets (seconds): from 1 ms to 10 minutes, so a catch-up after an outage is measured too.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   120.0, 300.0, 600.0)


class BatchHistogram(Collector):
    """A labelled Prometheus histogram observed a whole array at a time (numpy), for per-record latencies.

    prometheus-client's ``Histogram.observe`` costs about a microsecond a call; a commit observes every record it
    made visible, so this adds them per commit with one ``searchsorted``. Exposed with the standard
    ``_bucket``/``_sum``/``_count`` series through the library's public custom-collector API.
    """

    def __init__(self, name: str, documentation: str, label: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self._series: dict[str, tuple[npt.NDArray[np.int64], list[float]]] = {}  # label value -> (bucket counts, [sum])
        self._lock = threading.Lock()  # collect() may run in another thread (a WSGI exporter)

    def observe_many(self, label_value: str, values: npt.NDArray[np.float64] | Iterable[float]) -> None:
        """Observe every value of ``values`` (seconds) under ``label_value``."""
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            return
        index = np.searchsorted(self.bounds, values, side="left")  # first bound >= value; len(bounds): +Inf
        counts = np.bincount(index, minlength=len(self.bounds) + 1)
        with self._lock:
            series = self._series.get(label_value)
            if series is None:
                series = self._series[label_value] = (np.zeros(len(self.bounds) + 1, dtype=np.int64), [0.0])
            series[0][:] += counts
            series[1][0] += float(values.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        with self._lock:
            for value, (counts, total) in self._series.items():
                cumulative = np.cumsum(counts)
                buckets = [(_bound(b), float(c)) for b, c in zip(self.bounds, cumulative[:-1], strict=True)]
                buckets.append(("+Inf", float(cumulative[-1])))
                family.add_metric([value], buckets, total[0])
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=[self.label])


def _bound(value: float) -> str:
    return repr(float(value))


class Metrics:
    """The worker's metrics; tests build one on a fresh ``CollectorRegistry()``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.messages_in = Counter(
            "stream_processor_messages_in", "Input records consumed and processed.", ["processor"], registry=r
        )
        self.messages_out = Counter(
            "stream_processor_messages_out", "Output records committed.", ["processor", "topic"], registry=r
        )
        self.messages_failed = Counter(
            "stream_processor_messages_failed",
            "Input records sent to the dead-letter topic, by reason (undecodable, invalid, late, too_large, "
            "processing_error, output_too_large, state_too_large, state_unserializable, uncommittable).",
            ["processor", "reason"],
            registry=r,
        )
        self.processing_latency = BatchHistogram(
            "stream_processor_processing_latency_seconds",
            "From an input record's Kafka timestamp to the commit that made its outputs visible, every record.",
            "processor",
            LATENCY_BUCKETS,
        )
        r.register(self.processing_latency)
        self.batch_seconds = Histogram(
            "stream_processor_batch_seconds",
            "Time to decode, process and hand to the producer one fetched batch.",
            ["processor"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commits = Counter(
            "stream_processor_commits", "Transaction commits of a partition's checkpoint, by result (committed, "
            "aborted).", ["processor", "result"], registry=r
        )
        self.last_commit = Gauge(
            "stream_processor_last_commit_timestamp_seconds",
            "Unix time of the processor's last successful commit (0: none yet).", ["processor"], registry=r
        )
        self.commit_seconds = Histogram(
            "stream_processor_commit_seconds",
            "Time of one partition's commit, from handing its transaction to the broker to the commit (the next "
            "records are processed meanwhile).",
            ["processor"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "stream_processor_consumer_lag",
            "Committed records still to process: the partition's last stable offset minus the committed offset, "
            "refreshed every few seconds for every assigned partition (removed when the partition moves away).",
            ["processor", "topic", "partition"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "stream_processor_assigned_partitions", "Input partitions assigned.", ["processor"], registry=r
        )
        self.restored_records = Counter(
            "stream_processor_restored_records", "Changelog records read to rebuild state.", ["processor"],
            registry=r,
        )
        self.processor_events = Counter(
            "stream_processor_processor_events",
            "Events a processor counts while it works: order-book sequence gaps and bookTicker mismatches, "
            "duplicate trades dropped, ... (counted when processed, so a replayed transaction counts again).",
            ["processor", "event"],
            registry=r,
        )
        self.circuit_state = Enum(
            "stream_processor_circuit_state",
            "The worst circuit-breaker state over the processor's partitions.",
            ["processor"],
            states=["closed", "half_open", "open"],
            registry=r,
        )
        self.broker_up = Gauge(
            "stream_processor_broker_up",
            "1 while the broker answered the worker's last metadata probe within the timeout, else 0.",
            registry=r,
        )
        self.broker_last_contact_seconds = Gauge(
            "stream_processor_broker_last_contact_seconds",
            "Seconds since the broker last answered the worker's metadata probe.",
            registry=r,
        )
        self.info = Info("stream_processor", "The worker's version, app id and processor id.", registry=r)
        self.info.info({"version": __version__})
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

    def describe_worker(self, app_id: str, processor_id: str) -> None:
        """Set ``stream_processor_info{version, app_id, processor_id}``."""
        self.info.info({"version": __version__, "app_id": app_id, "processor_id": processor_id})
