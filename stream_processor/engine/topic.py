"""A topic of an App (:class:`Topic`): how its keys and values decode and encode, and how a record is sent to it
(inside an agent, in the transaction of the record being processed)."""

from __future__ import annotations

import asyncio
import dataclasses
import decimal
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from . import codecs
from .codecs import check_codec, default_serializer
from .exceptions import InvalidRecordError
from .processor import current_context, decode_json
from .records import Record

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
    """A Kafka topic of the app: how its keys and values decode and encode, and how many partitions it gets when
    the worker creates it (``partitions``; the YAML's ``topics`` section wins).

    Keys and values are read and written as Faust does (see :mod:`~stream_processor.engine.codecs`):
    ``value_type``/``key_type`` None (JSON values, raw keys by default), ``str``, ``bytes``, ``int``, ``float``,
    ``Decimal`` or a :class:`~stream_processor.engine.records.Record`; ``value_serializer``/``key_serializer``
    ``"json"`` or ``"raw"`` (None: the App's ``conf.value_serializer``/``conf.key_serializer``, Faust's defaults
    ``"json"``/``"raw"``). This engine's value types too: a registered type (:data:`SERDES`), a pydantic model or a
    dataclass (built from the JSON object). Raises ValueError for another serializer (``pickle``, ``binary``, a
    chain like ``json|binary``) and TypeError for a type that has no serde, when the topic is declared.
    """

    def __init__(self, app: App, name: str, value_type: type | None = None, key_type: type | None = None,
                 partitions: int | None = None, value_serializer: Any = None, key_serializer: Any = None) -> None:
        self.app = app
        self.name = name
        self.partitions = partitions
        self.value_serializer = value_serializer
        self.key_serializer = key_serializer
        self.value_type = value_type
        self.key_type = key_type

    def __repr__(self) -> str:
        return f"<Topic {self.name}>"

    def __setattr__(self, attr: str, value: Any) -> None:
        if attr in ("value_serializer", "key_serializer"):
            check_codec(value, f"topic {self.name!r} {attr}")
        elif attr == "value_type":
            self._decode = _decoder(value)
        elif attr == "key_type":
            _check_type(value, f"topic {self.name!r} key_type")
        elif attr == "app":
            for kind in ("value", "key"):
                check_codec(default_serializer(value, kind), f"app {kind}_serializer")
        object.__setattr__(self, attr, value)

    def decode_value(self, value: bytes | None, key: bytes | None, timestamp_ms: int | None) -> Any:
        """The value of one record of this topic. Raises RecordError (dead-lettered) when it does not decode."""
        decode = self._decode
        if decode is not None:
            return decode(value, key, timestamp_ms)
        return codecs.decode(self.value_type, value, self.value_serializer, default_serializer(self.app, "value"))

    def decode_key(self, key: bytes | None) -> Any:
        """The key of one record of this topic, as Faust gives it (``key_type`` and ``key_serializer``; bytes by
        default). Raises RecordError when it does not decode."""
        return codecs.decode(self.key_type, key, self.key_serializer, default_serializer(self.app, "key"), key=True)

    def encode_value(self, value: Any) -> bytes | None:
        """The bytes of a value sent to this topic, as Faust writes them (None: JSON ``null`` with the json
        serializer, as Faust). Raises TypeError for a value the serializer cannot write."""
        return codecs.encode(self.value_type, value, self.value_serializer, default_serializer(self.app, "value"))

    def encode_key(self, key: Any) -> bytes | None:
        """The bytes of a key sent to this topic, as Faust writes them (None: no key)."""
        return codecs.encode(self.key_type, key, self.key_serializer, default_serializer(self.app, "key"), key=True)

    def stream(self, **faust: Any) -> Any:
        """Refused (Faust's stream outside an agent). Raises NotImplementedError."""
        from .app_services import STREAM_OUTSIDE_AGENT

        raise NotImplementedError(STREAM_OUTSIDE_AGENT)

    def send(self, key: Any = None, value: Any = None, headers: list[tuple[str, bytes]] | None = None,
             partition: int | None = None) -> Any:
        """Send one record; await the result.

        Inside an agent (or a processor), the record goes in the transaction of the record being processed, exactly
        once, and the await completes at once. Elsewhere (an ``app.timer``) it goes through the app's idempotent
        producer, at least once, and the await waits for the broker's acknowledgement.
        """
        ctx = current_context.get()
        key_bytes = self.encode_key(key)
        if ctx is not None:
            ctx.send(self.name, self.encode_value(value), key_bytes, headers, partition)
            return _done()
        return self.app.send_outside(self.name, key_bytes, self.encode_value(value), headers, partition)

    def send_soon(self, key: Any = None, value: Any = None, headers: list[tuple[str, bytes]] | None = None,
                  partition: int | None = None) -> None:
        """Faust's ``send_soon``: send without awaiting. Inside an agent the record goes in the transaction of the
        record being processed, as :meth:`send`; elsewhere the send is scheduled on the running event loop (at
        least once; a failure is logged by the loop). Raises RuntimeError outside an agent with no running loop."""
        sending = self.send(key, value, headers, partition)
        if current_context.get() is None:
            task = asyncio.get_running_loop().create_task(sending)
            _PENDING.add(task)
            task.add_done_callback(_PENDING.discard)

    async def maybe_declare(self) -> None:
        """Faust's ``maybe_declare``: nothing to do, since the worker creates every topic the app declares (with its
        ``partitions``) before any agent, task or timer runs."""

    declare = maybe_declare


_PENDING: set[asyncio.Task[Any]] = set()  # send_soon's sends outside an agent, kept until done


@types.coroutine
def _done() -> Any:
    return None
    yield  # noqa: B901 - makes this a generator-based coroutine that completes at once


_WIRE_TYPES = (None, str, bytes, int, float, decimal.Decimal)


def _check_type(typ: Any, what: str) -> None:
    if typ in _WIRE_TYPES or (isinstance(typ, type) and issubclass(typ, Record)):
        return
    raise TypeError(f"{what} {typ!r}: use str, bytes, int, float, Decimal or a Record")


def _decoder(value_type: type | None) -> Callable[[bytes | None, bytes | None, int | None], Any] | None:
    """The decoder of this engine's own value types (a registered type, a pydantic model, a dataclass); None for the
    types Faust has (they decode as Faust does, by :mod:`~stream_processor.engine.codecs`). Raises TypeError for a
    type that has none."""
    if value_type in SERDES:
        return SERDES[value_type]
    if value_type in _WIRE_TYPES or (isinstance(value_type, type) and issubclass(value_type, Record)):
        return None
    build: Callable[[Any], Any]
    if isinstance(value_type, type) and issubclass(value_type, BaseModel):
        build = value_type.model_validate
    elif hasattr(value_type, "from_data"):
        build = value_type.from_data
    elif dataclasses.is_dataclass(value_type):
        build = lambda doc: value_type(**doc)  # noqa: E731
    else:
        raise TypeError(f"no serde for value_type {value_type!r}: use bytes, str, int, a Record, a pydantic model, a "
                        "dataclass, or register_serde()")

    def typed(value: bytes | None, key: bytes | None, ts: int | None) -> Any:
        doc = decode_json(value)
        if not isinstance(doc, dict):
            raise InvalidRecordError(f"{value_type.__name__}: expected a JSON object, got {type(doc).__name__}")
        try:
            return build(doc)
        except Exception as exc:  # noqa: BLE001 - a record that does not fit the type is invalid, not a bug
            raise InvalidRecordError(f"not a valid {value_type.__name__}: {exc}"[:500]) from None

    return typed
