"""The exactly-once check topology: an echo of every record and per-key running aggregates.

It is the processor the chaos harness (``tests/eos/``, ``bench/eos_long.py``) runs under ``kill -9``,
rebalances and broker restarts, as the processor type ``eos_check``: importing this module registers it in the
engine's global registry (:data:`EOS_CHECK`; :mod:`tests.eos.check_app` imports it, so ``-A tests.eos.check_app:app``
workers run it). Its input record is the JSON object ``{"id": int, "key": str, "value": int}``; every record
gives two outputs, both keyed by ``key``:

- on ``output_topics[0]``, the input value, byte for byte (the echo: a loss or a duplicate shows as a
  missing or repeated ``id``);
- on ``output_topics[1]``, ``{"id", "key", "count", "sum", "min", "max"}``: the running aggregates of
  ``key`` including this record, kept in the changelog-backed store (a lost or repeated state change shows
  as a wrong aggregate, record by record).

The output topics are meant to have another partition count than the input, so an output whose
transaction followed its output partition instead of its input partition would be caught.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import Field

from stream_processor.engine.exceptions import DecodeError, InvalidRecordError
from stream_processor.engine.processor import Processor, ProcessorContext
from stream_processor.engine.registry import ProcessorType, register
from stream_processor.engine.settings import ProcessorSettings
from stream_processor.engine.state import StoreSpec


class EosCheckProcessorSettings(ProcessorSettings):
    """``type: eos_check``: an entry of the check topology (``output_topics``: [echo, aggregates])."""

    type: Literal["eos_check"]
    output_topics: list[str] = Field(min_length=1)


class CheckRecord:
    """One input record of the check topology."""

    __slots__ = ("id", "key", "value", "raw")

    def __init__(self, id: int, key: str, value: int, raw: bytes) -> None:  # noqa: A002 - the field's name
        self.id = id
        self.key = key
        self.value = value
        self.raw = raw


class KeyAggregate:
    """Running count, sum, min and max of one key's values (integers, so every aggregate is exact)."""

    __slots__ = ("count", "sum", "min", "max")

    def __init__(self, count: int = 0, sum: int = 0, min: int | None = None, max: int | None = None) -> None:  # noqa: A002
        self.count = count
        self.sum = sum
        self.min = min
        self.max = max

    def update(self, value: int) -> None:
        """Add one value."""
        self.count += 1
        self.sum += value
        self.min = value if self.min is None or value < self.min else self.min
        self.max = value if self.max is None or value > self.max else self.max

    def to_state(self) -> dict[str, Any]:
        """A JSON-safe snapshot for the changelog."""
        return {"count": self.count, "sum": self.sum, "min": self.min, "max": self.max}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> KeyAggregate:
        """Rebuild from :meth:`to_state`."""
        return cls(state["count"], state["sum"], state["min"], state["max"])


class EosCheckProcessor(Processor):
    """Echo and per-key running aggregates of ``{"id", "key", "value"}`` records (see the module docstring).

    Raises:
        ValueError: at construction, when ``output_topics`` does not name exactly two topics.
    """

    def __init__(self, name: str, settings: EosCheckProcessorSettings) -> None:
        super().__init__(name, settings)
        if len(settings.output_topics) != 2:
            raise ValueError(
                f"stream_processors.{name}.output_topics: eos_check writes [echo, aggregates], "
                f"got {settings.output_topics}"
            )
        self.echo_topic, self.aggregates_topic = settings.output_topics

    def decode(self, value: bytes | None, key: bytes | None, timestamp_ms: int | None = None,
               topic: str | None = None) -> CheckRecord:
        """Parse ``{"id": int, "key": str, "value": int}`` (the Kafka key and timestamp are not checked).

        Raises:
            DecodeError: the value is missing or not JSON.
            InvalidRecordError: a field is missing or of the wrong type.
        """
        if value is None:
            raise DecodeError("eos_check record has no value")
        try:
            doc = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"eos_check record is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise InvalidRecordError("eos_check record is not a JSON object")
        rid, rkey, rvalue = doc.get("id"), doc.get("key"), doc.get("value")
        if type(rid) is not int or not isinstance(rkey, str) or type(rvalue) is not int:
            raise InvalidRecordError(f"eos_check record needs int id, str key, int value: {doc!r}"[:300])
        return CheckRecord(rid, rkey, rvalue, value)

    def stores(self) -> list[StoreSpec]:
        return [StoreSpec(from_state=KeyAggregate.from_state)]

    def process(self, record: CheckRecord, ctx: ProcessorContext) -> None:
        key = record.key
        store = ctx.state()
        agg: KeyAggregate | None = store.get(key)
        if agg is None:
            agg = KeyAggregate()
            store.put(key, agg)
        agg.update(record.value)
        store.mark_dirty(key)  # changed in place
        kb = key.encode()
        doc = {"id": record.id, "key": key, "count": agg.count, "sum": agg.sum, "min": agg.min, "max": agg.max}
        ctx.send(self.echo_topic, record.raw, kb)
        ctx.send(self.aggregates_topic, orjson.dumps(doc), kb)


EOS_CHECK = register(ProcessorType("eos_check", EosCheckProcessorSettings, EosCheckProcessor,
                                   output_roles=(("echo",), ("aggregates", "agg")), keywords=("eos",)))
"""The ``eos_check`` processor type, in the engine's global registry."""
