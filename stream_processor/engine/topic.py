"""A topic of an App (:class:`Topic`): how its keys and values decode and encode, and how a record is sent to it
(inside an agent, in the transaction of the record being processed)."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .exceptions import DecodeError, InvalidRecordError
from .processor import current_context, decode_json, encode_key, encode_value

if TYPE_CHECKING:
    from .app import App

__all__ = ["SERDES", "Topic", "register_serde"]

SERDES: dict[type, Callable[[bytes | None, bytes | None, int | None], Any]] = {}
"""Decoders by value type: ``decode(value, key, timestamp_ms)`` raising RecordError. The market package adds its
record types (Trade, Kline, DepthUpdate, ...): their decoder checks the key and event times like the built-in
processors do."""


def register_serde(value_type: type, decode: Callable[[bytes | None, bytes | None, int | None], Any]) -> None:
    """Decode values of topics declared with ``value_type`` by ``decode``."""
    SERDES[value_type] = decode


class Topic:
    """A Kafka topic of the app: how its values decode (``value_type``) and encode, and how many partitions it
    gets when the worker creates it (``partitions``; the YAML's ``topics`` section wins).

    ``value_type``: None (JSON values), ``bytes`` (raw), ``str``, a registered type (:data:`SERDES`), a pydantic
    model, a :class:`~stream_processor.engine.records.Record` or a dataclass (built from the JSON object).
    """

    def __init__(self, app: App, name: str, value_type: type | None = None, key_type: type | None = None,
                 partitions: int | None = None) -> None:
        self.app = app
        self.name = name
        self.value_type = value_type
        self.key_type = key_type
        self.partitions = partitions
        self._decode = _decoder(value_type)

    def __repr__(self) -> str:
        return f"<Topic {self.name}>"

    def decode_value(self, value: bytes | None, key: bytes | None, timestamp_ms: int | None) -> Any:
        """The value of one record of this topic. Raises RecordError (dead-lettered) when it does not decode."""
        return self._decode(value, key, timestamp_ms)

    def encode_value(self, value: Any) -> bytes | None:
        """The bytes of a value sent to this topic (see :func:`~stream_processor.engine.processor.encode_value`)."""
        return encode_value(value)

    def send(self, key: Any = None, value: Any = None, headers: list[tuple[str, bytes]] | None = None,
             partition: int | None = None) -> Any:
        """Send one record; await the result.

        Inside an agent (or a processor), the record goes in the transaction of the record being processed, exactly
        once, and the await completes at once. Elsewhere (an ``app.timer``) it goes through the app's idempotent
        producer, at least once, and the await waits for the broker's acknowledgement.
        """
        ctx = current_context.get()
        if ctx is not None:
            ctx.send(self.name, self.encode_value(value), key, headers, partition)
            return _done()
        return self.app.send_outside(self.name, encode_key(key), self.encode_value(value), headers, partition)


@types.coroutine
def _done() -> Any:
    return None
    yield  # noqa: B901 - makes this a generator-based coroutine that completes at once


def _decoder(value_type: type | None) -> Callable[[bytes | None, bytes | None, int | None], Any]:
    if value_type in SERDES:
        return SERDES[value_type]
    if value_type is bytes:
        return lambda value, key, ts: value
    if value_type is str:
        def text(value: bytes | None, key: bytes | None, ts: int | None) -> Any:
            try:
                return value.decode() if value is not None else None
            except UnicodeDecodeError as exc:
                raise DecodeError(f"not UTF-8: {exc}") from None
        return text

    def json_value(value: bytes | None, key: bytes | None, ts: int | None) -> Any:
        return decode_json(value)

    if value_type is None:
        return json_value
    build: Callable[[Any], Any]
    if isinstance(value_type, type) and issubclass(value_type, BaseModel):
        build = value_type.model_validate
    elif hasattr(value_type, "from_data"):
        build = value_type.from_data
    elif dataclasses.is_dataclass(value_type):
        build = lambda doc: value_type(**doc)  # noqa: E731
    else:
        raise TypeError(f"no serde for value_type {value_type!r}: use bytes, str, a pydantic model, a Record, a "
                        "dataclass, or register_serde()")

    def typed(value: bytes | None, key: bytes | None, ts: int | None) -> Any:
        doc = json_value(value, key, ts)
        if not isinstance(doc, dict):
            raise InvalidRecordError(f"{value_type.__name__}: expected a JSON object, got {type(doc).__name__}")
        try:
            return build(doc)
        except Exception as exc:  # noqa: BLE001 - a record that does not fit the type is invalid, not a bug
            raise InvalidRecordError(f"not a valid {value_type.__name__}: {exc}"[:500]) from None

    return typed
