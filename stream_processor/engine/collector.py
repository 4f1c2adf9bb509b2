"""The record collector: what a task's records send goes into its transaction, checked; refused records go to the
dead-letter topic with the reason in their headers (Kafka Streams' RecordCollector).

Every output is stamped with the Kafka timestamp of the input record that caused it (a punctuation's outputs with
the punctuation's time), as Kafka Streams does, unless the processor gave one: a task's outputs are then a function
of its input alone, whatever the moment it runs (a re-keyed record keeps its record's time through ``group_by``).
A dead-letter copy keeps its record's timestamp too, except a copy by reference (its own transaction was refused,
which may be for its timestamp), stamped when it is sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

#: The error text of a dead-letter copy is cut to this many bytes.
ERROR_HEADER_BYTES = 1000
#: A dead-letter copy's key is cut to this many bytes.
KEY_BYTES = 1024


def dead_letter_headers(reason: str, error: str, processor: str, msg: Any) -> list[tuple[str, bytes]]:
    """The headers of a dead-letter copy of ``msg`` (anything with ``topic``, ``partition``, ``offset``): why it was
    refused and where it came from (the error cut to :data:`ERROR_HEADER_BYTES`)."""
    return [
        ("reason", reason.encode()),
        ("error", error.encode(errors="replace")[:ERROR_HEADER_BYTES]),
        ("processor", processor.encode()),
        ("source_topic", msg.topic.encode()),
        ("source_partition", str(msg.partition).encode()),
        ("source_offset", str(msg.offset).encode()),
    ]


class Refused(Exception):  # noqa: N818 - carries why, not an error of the collector
    """An output the task cannot send: to an undeclared topic, or larger than its topic allows."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason
        self.error = error


class RecordCollector:
    """Appends a task's outputs and dead letters to its transaction (a
    :class:`~stream_processor.engine.checkpoint.Checkpoint`).

    ``processor``: the processor's name (dead-letter headers); ``dead_letter_topic``; ``limits``: the largest record
    (bytes) each output, dead-letter and changelog topic takes, as the broker's topic configs say.
    """

    __slots__ = ("processor", "dead_letter_topic", "limits")

    def __init__(self, processor: str, dead_letter_topic: str, limits: dict[str, int]) -> None:
        self.processor = processor
        self.dead_letter_topic = dead_letter_topic
        self.limits = limits

    def emit(self, cp: Any, outputs: list[Any]) -> None:
        """Append ``outputs`` (``(topic, key, value, headers, partition, timestamp)`` each; cleared here) to ``cp``'s
        open transaction.

        Raises Refused for one that goes to a topic the processor did not declare, or is larger than its topic
        allows: the caller rolls the transaction back, which drops what was appended.
        """
        limits = self.limits
        prepared = cp.prepared_topics
        append = cp.append
        counts = cp.pending_outputs
        try:
            for topic, key, value, headers, partition, timestamp in outputs:
                if topic not in prepared:
                    raise Refused("processing_error", f"sent to {topic!r}, not one of its output topics (declare it "
                                                      "in output_topics, or as a topic of the app)")
                limit = limits.get(topic)
                if limit is not None and (len(value) if value is not None else 0) + (len(key) if key else 0) > limit:
                    size = (len(value) if value is not None else 0) + (len(key) if key else 0)
                    raise Refused("output_too_large", f"its {topic} record is {size} bytes, above the topic's {limit}")
                append(topic, value, key, headers, partition, timestamp)
                counts[topic] += 1
        finally:
            outputs.clear()

    def dead_letter(self, cp: Any, msg: Any, reason: str, error: str, omit_value: bool = False) -> None:
        """Append a copy of input record ``msg`` to the dead-letter topic, with headers naming why and where from.

        A copy that would be larger than the topic allows (or ``omit_value``: a copy by reference) keeps only as
        much of the value as fits, with ``value_truncated`` (the original size) and ``value_sha256`` headers; the
        source headers are the reference to the whole record. A key above :data:`KEY_BYTES` is cut likewise
        (``key_truncated``).
        """
        headers = dead_letter_headers(reason, error, self.processor, msg)
        key, value = msg.key, msg.value  # a null value stays null
        if key is not None and len(key) > KEY_BYTES:
            headers.append(("key_truncated", str(len(key)).encode()))
            key = key[:KEY_BYTES]
        topic = self.dead_letter_topic
        limit = self.limits.get(topic)
        if limit is not None or omit_value:
            # Header bytes plus a varint per length; the limit already leaves the batch and record overheads.
            budget = (limit or 0) - len(key or b"") - _header_bytes(headers) - 200
            size = len(value) if value is not None else 0
            if omit_value or size > budget:
                headers.append(("value_truncated", str(size).encode()))
                headers.append(("value_sha256", hashlib.sha256(value or b"").hexdigest().encode()))
                value = b"" if omit_value else (value or b"")[: max(0, budget)]
        timestamp = None if omit_value else msg.timestamp
        cp.append(topic, value, key, headers, None, timestamp)
        cp.pending_outputs[topic] += 1
        cp.pending_failed[reason] += 1


def _header_bytes(headers: Iterable[tuple[str, bytes]]) -> int:
    return sum(len(k) + len(v) + 10 for k, v in headers)
