"""Every Prometheus metric of the worker, built in one place against an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


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
        self.processing_latency = Histogram(
            "stream_processor_processing_latency_seconds",
            "From an input record's Kafka timestamp to the commit that made its outputs visible "
            "(observed for the first record of each partition batch).",
            ["processor"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "stream_processor_batch_seconds",
            "Time to decode, process and hand to the producer one fetched batch.",
            ["processor"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commits = Counter(
            "stream_processor_commits", "Checkpoint commits, by result.", ["processor", "result"], registry=r
        )
        self.commit_seconds = Histogram(
            "stream_processor_commit_seconds",
            "Time to commit the open transactions of all assigned partitions.",
            ["processor"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "stream_processor_consumer_lag",
            "Records between the consumer position and the high watermark.",
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
