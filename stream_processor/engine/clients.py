"""The Kafka clients a processor's tasks use, as the engine sees them.

The runtime talks to three clients: the input consumer (the processor's group, ``read_committed``), a restore
consumer (group-less, ``read_committed``, for changelogs) and one producer per task (transactional under
exactly_once). Here they are aiokafka's, with the few things the engine needs that aiokafka has no public API for
(the consumer's fetch position without awaiting, a rejoin, whether a producer was fenced or is in a transaction),
all read through :mod:`stream_processor.engine.kafka_internals`. The test driver gives the same tasks in-memory
clients with the same methods (:mod:`stream_processor.engine.memory`).
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from . import kafka_internals
from .assignor import CopartitionedAssignor
from .checkpoint import transactional_id
from .security import client_options
from .settings import ProcessorSettings, Settings

#: Output records are small JSON documents; larger producer batches cut per-request overhead.
PRODUCER_BATCH_BYTES = 512 * 1024
#: The input consumer's fetch wait (ms). The broker answers a connection's requests in order, so an offset lookup
#: on that consumer (opening a task) waits behind a fetch that finds nothing for up to this long.
FETCH_WAIT_MS = 100
#: The restore consumer's fetch wait (ms): short, so that opening a task does not wait on an idle fetch.
RESTORE_FETCH_WAIT_MS = 10


class InputConsumer(AIOKafkaConsumer):
    """aiokafka's consumer, with what the task manager needs besides its public API."""

    def consumed_position(self, tp: TopicPartition) -> int | None:
        """The offset after the last record returned for ``tp`` and after the transaction markers and aborted
        records skipped beyond it, without awaiting; None when unknown (not assigned: mid-rebalance)."""
        return kafka_internals.consumed_position(self, tp)

    def request_rejoin(self) -> None:
        """Make the consumer rejoin its group at its next poll (a fenced task: let the assignment decide)."""
        kafka_internals.request_rejoin(self)

    @property
    def generation(self) -> int | None:
        """The group generation of the current assignment (for logs)."""
        return kafka_internals.group_generation(self)

    async def refresh_metadata(self) -> None:
        """Fetch the cluster's metadata now (the inputs' partition counts)."""
        await kafka_internals.force_metadata_update(self)


class TaskProducer(AIOKafkaProducer):
    """aiokafka's producer, with the two states the checkpoint reads."""

    @property
    def fenced(self) -> bool:
        """True once the producer learned that its ``transactional.id`` has a newer epoch (its sender stopped)."""
        return kafka_internals.producer_fenced(self)

    @property
    def in_transaction(self) -> bool:
        """True while a transaction is open at the broker."""
        return kafka_internals.producer_in_transaction(self)


class KafkaClients:
    """Builds a processor's clients from the settings (security, client ids, timeouts)."""

    def __init__(self, settings: Settings, psettings: ProcessorSettings) -> None:
        self.settings = settings
        self.psettings = psettings
        self.options = client_options(settings.kafka)  # one TLS context and secret read for every client

    def input_consumer(self) -> InputConsumer:
        kafka = self.settings.kafka
        return InputConsumer(
            group_id=self.psettings.consumer_group,
            isolation_level="read_committed",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=kafka.max_poll_records,
            session_timeout_ms=kafka.session_timeout_ms,
            heartbeat_interval_ms=kafka.heartbeat_interval_ms,
            group_instance_id=kafka.group_instance_id,
            fetch_max_wait_ms=FETCH_WAIT_MS,
            partition_assignment_strategy=(CopartitionedAssignor,),
            client_id=self.settings.processor_id,
            **self.options,
        )

    def restore_consumer(self) -> AIOKafkaConsumer:
        # The restore consumer reads a changelog to its end and stops: a fetch that finds nothing must not wait
        # (aiokafka's 500 ms default made every seek and end-offset lookup of a task's opening wait about that long).
        return AIOKafkaConsumer(isolation_level="read_committed", enable_auto_commit=False,
                                auto_offset_reset="earliest", fetch_max_wait_ms=RESTORE_FETCH_WAIT_MS,
                                client_id=self.settings.processor_id, **self.options)

    def producer(self, name: str, inputs: tuple[TopicPartition, ...]) -> TaskProducer:
        """The producer of the task of ``inputs`` (processor ``name``): transactional under exactly_once."""
        options: dict[str, Any] = {
            **self.options,
            "client_id": f"{self.settings.processor_id}-{name}-{inputs[0].partition}",
            "max_batch_size": PRODUCER_BATCH_BYTES,
            "acks": "all",
            "enable_idempotence": True,
            # A transaction's first AddPartitionsToTxn often meets CONCURRENT_TRANSACTIONS while the previous
            # commit's markers are written; the Java client retries that after 20 ms, not 100 ms.
            "retry_backoff_ms": 20,
        }
        if self.psettings.processing_mode == "exactly_once":
            options["transactional_id"] = transactional_id(self.settings.app_id, self.psettings.consumer_group, inputs)
            options["transaction_timeout_ms"] = self.settings.kafka.transaction_timeout_ms
        return TaskProducer(**options)
