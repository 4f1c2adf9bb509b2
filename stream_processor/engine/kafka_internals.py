"""PROVISIONAL (lead's worktree): replaced by helper C's module at integration."""

from __future__ import annotations

from typing import Any

from aiokafka.errors import ProducerFenced
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.structs import OffsetAndMetadata

__all__ = ["BatchBuilder", "DefaultPartitioner", "OffsetAndMetadata"]


def consumed_position(consumer: Any, tp: Any) -> int | None:
    try:
        state = consumer._subscription.subscription.assignment.state_value(tp)  # noqa: SLF001
    except Exception:  # noqa: BLE001
        return None
    return state.position if state is not None and state.has_valid_position else None


def request_rejoin(consumer: Any) -> None:
    consumer._coordinator.request_rejoin()  # noqa: SLF001


def group_generation(consumer: Any) -> int | None:
    coordinator = getattr(consumer, "_coordinator", None)
    return getattr(coordinator, "generation", None)


def force_metadata_update(consumer: Any) -> Any:
    return consumer._client.force_metadata_update()  # noqa: SLF001


def producer_in_transaction(producer: Any) -> bool:
    return bool(producer._txn_manager is not None and producer._txn_manager.is_in_transaction())  # noqa: SLF001


def producer_fenced(producer: Any) -> bool:
    sender = getattr(producer, "_sender", None)
    task = getattr(sender, "sender_task", None)
    if task is None or not task.done() or task.cancelled():
        return False
    return isinstance(task.exception(), ProducerFenced)
