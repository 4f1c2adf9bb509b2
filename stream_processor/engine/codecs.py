"""Keys and values on the wire as Faust writes and reads them (faust/serializers/registry.py, codecs.py).

Two codecs: ``"json"`` (orjson with Faust's options and ``default``: non-str keys as strings, UTC as ``Z``, Decimal,
UUID and bytes as strings, sets and tuples as lists, a :class:`~stream_processor.engine.records.Record` as its
``to_representation()``, with ``"__faust": {"ns": ...}``) and ``"raw"`` (bytes as they are, str as UTF-8). Faust's
other codecs (``pickle``, ``binary``, ``yaml``, chains like ``json|binary``, Codec objects) are refused by
:func:`check_codec` when a topic (or the App) names them.

Which codec a key or value uses, as Faust's ``Registry._serializer``: the topic's serializer, else the App's
``conf.value_serializer``/``conf.key_serializer`` (Faust's defaults: ``"json"`` for values, ``"raw"`` for keys);
only if neither is set do ``str``/``bytes`` types mean ``raw``. So ``value_type=str`` is JSON (``"text"`` with its
quotes) by default, and ``key_type=str`` raw text.

Encoding (:func:`encode`, Faust's ``dumps_value``/``dumps_key``): bytes are sent as they are whatever the codec;
a Record with the record's own ``serializer`` if it has one; None as JSON ``null`` for a value (a key of None is no
key). Decoding (:func:`decode`, ``loads_value`` then ``_prepare_payload``): ``int``/``float``/``Decimal`` from the
payload (JSON number or text), ``str`` (bytes as UTF-8), ``bytes`` (text as UTF-8), a Record from its JSON object
(with or without ``__faust``), no type: the JSON value, an object naming a Record class in ``__faust`` becoming that
record (a name no Record class here has is refused, as Faust does).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import typing
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from .exceptions import DecodeError, InvalidRecordError
from .processor import encode_key as _json_key
from .records import CLASS_KEY, Record, registered

__all__ = ["CODECS", "check_codec", "decode", "default_serializer", "dumps", "encode", "loads", "pick"]

CODECS = ("json", "raw")
"""The codecs supported (Faust's names)."""
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z | orjson.OPT_PASSTHROUGH_DATACLASS  # faust.utils.json


def check_codec(codec: Any, what: str) -> None:
    """Refuse a codec this engine does not read and write as Faust does. ``what`` names where it was given
    (``"topic 'x' value_serializer"``). None is accepted (the default applies). Raises ValueError."""
    if codec is None or codec in CODECS:
        return
    if isinstance(codec, str) and "|" in codec:
        why = "codec chains are not supported"
    elif isinstance(codec, str):
        why = "only 'json' and 'raw' are supported (pickle, binary, yaml and custom codecs are not)"
    else:
        why = "Codec objects are not supported, name 'json' or 'raw'"
    raise ValueError(f"{what} {codec!r}: {why}")


def default_serializer(app: Any, kind: str) -> Any:
    """The App's default serializer for ``kind`` (``"value"`` or ``"key"``): its ``conf.value_serializer`` /
    ``conf.key_serializer``, Faust's defaults (``"json"``, ``"raw"``) when it has no ``conf``."""
    fallback = "json" if kind == "value" else "raw"
    return getattr(getattr(app, "conf", None), f"{kind}_serializer", fallback)


def pick(typ: Any, *alternatives: Any) -> str | None:
    """The codec used: the first alternative set; if none, ``raw`` for ``str``/``bytes`` types, else None (Faust's
    ``Registry._serializer``)."""
    for codec in alternatives:
        if codec:
            return str(codec)
    return "raw" if typ in (str, bytes) else None


def _on_default(obj: Any) -> Any:
    """Faust's ``faust.utils.json.on_default`` (what orjson does not write itself), plus pydantic models and objects
    with ``to_state``/``asdict`` (this engine's values)."""
    if isinstance(obj, Record):
        return obj.to_representation()
    if isinstance(obj, decimal.Decimal | uuid.UUID | bytes):
        return str(obj)
    if isinstance(obj, collections.Counter):
        return dict(obj)
    if isinstance(obj, datetime.date | datetime.time):
        return _iso(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, set | frozenset | collections.deque | tuple):
        return list(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}  # what orjson writes natively
    for method in ("__json__", "model_dump", "to_representation", "asdict", "to_state"):
        fn = getattr(obj, method, None)
        if fn is not None:
            return fn()
    raise TypeError(f"JSON cannot serialize {type(obj).__name__!r}: {obj!r}")


def _iso(obj: datetime.date | datetime.time) -> str:
    if not isinstance(obj, datetime.datetime | datetime.time):
        obj = datetime.datetime(obj.year, obj.month, obj.day)
    text = obj.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def dumps(codec: str | None, obj: Any) -> Any:
    """``obj`` encoded by ``codec`` (Faust's ``codecs.dumps``): JSON bytes, or for ``raw`` bytes as they are and
    str as UTF-8, None as None; no codec: ``obj`` unchanged. Raises TypeError for what the codec cannot write."""
    if codec == "json":
        return orjson.dumps(obj, default=_on_default, option=_JSON_OPTIONS)
    if codec == "raw":
        if obj is None:
            return None
        if isinstance(obj, str):
            return obj.encode()
        if isinstance(obj, bytes):
            return obj
        raise TypeError(f"the raw serializer writes bytes or str, got {type(obj).__name__} (Faust cannot send it "
                        "either): declare the topic with value_serializer='json'")
    if codec is None:
        return obj
    check_codec(codec, "serializer")
    raise AssertionError(codec)  # pragma: no cover - check_codec raised


def loads(codec: str | None, data: bytes) -> Any:
    """``data`` decoded by ``codec``. Raises DecodeError (a RecordError) for bytes that are not JSON."""
    if codec == "json":
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"not JSON: {exc}") from None
    return data


def encode(typ: Any, value: Any, serializer: Any, default: Any, *, key: bool = False) -> bytes | None:
    """The bytes of a value (``key=True``: a key) of a topic of type ``typ`` with the topic's ``serializer`` and the
    App's ``default`` (Faust's ``Registry.dumps_value``/``dumps_key``). A key of None is None; a key that the raw
    codec cannot write (an int, a dict, ...: Faust fails to send it) is written as JSON, as this engine always
    did. Raises TypeError for a value the codec cannot write."""
    if key and value is None:
        return None
    if isinstance(value, Record):
        serializer = "json"  # a Record's own serializer is always json here (records.Record refuses others)
    codec = pick(typ, serializer, default)
    if codec is None or isinstance(value, bytes):
        return value if value is None or isinstance(value, bytes) else typing.cast(bytes, dumps("raw", value))
    if key and codec == "raw" and not isinstance(value, str):
        return _json_key(value)
    return typing.cast(bytes, dumps(codec, value))


def decode(typ: Any, data: bytes | None, serializer: Any, default: Any, *, key: bool = False) -> Any:
    """The value (``key=True``: the key) of a record of a topic of type ``typ`` (Faust's ``loads_value`` /
    ``loads_key``). Raises DecodeError or InvalidRecordError (RecordErrors: the record is dead-lettered)."""
    if data is None:
        if isinstance(typ, type) and issubclass(typ, Record):
            raise DecodeError(f"expected a {typ.__name__}, the record has no {'key' if key else 'value'}")
        return None
    payload = loads(pick(typ, serializer, default) if not key else (serializer or default), data)
    try:
        return _prepare(typ, payload)
    except (TypeError, ValueError, ArithmeticError, UnicodeDecodeError) as exc:
        name = getattr(typ, "__name__", repr(typ))
        raise InvalidRecordError(f"not a valid {name}: {exc}"[:500]) from None


def _text(payload: Any) -> Any:
    return payload.decode() if isinstance(payload, bytes) else payload


_PREPARE: dict[Any, Callable[[Any], Any]] = {
    int: lambda p: int(_text(p)), float: lambda p: float(_text(p)),
    decimal.Decimal: lambda p: decimal.Decimal(_text(p)), str: _text,
    bytes: lambda p: p.encode() if isinstance(p, str) else p}


def _prepare(typ: Any, payload: Any) -> Any:
    """Faust's ``Registry._prepare_payload``: the decoded payload as ``typ``."""
    if typ is None:
        return _reconstruct(payload)
    prepare = _PREPARE.get(typ)
    if prepare is not None:
        return prepare(payload)
    if isinstance(typ, type) and issubclass(typ, Record):
        return _model(typ, payload)
    raise TypeError(f"no codec for type {typ!r}")  # pragma: no cover - Topic refuses such types when declared


def _reconstruct(payload: Any) -> Any:
    """A JSON value of a topic without a type: an object naming a Record in ``__faust`` becomes that record; an
    unknown name is refused (Faust's ``Model._maybe_reconstruct``)."""
    if type(payload) is not dict or CLASS_KEY not in payload:
        return payload
    ns = _namespace(payload)
    if ns is None:
        return payload
    cls = registered(ns)
    if cls is None:
        raise ValueError(f"no Record class {ns!r} (named by the value's {CLASS_KEY})")
    return cls.from_data(payload)


def _namespace(payload: dict[str, Any]) -> str | None:
    meta = payload.get(CLASS_KEY)
    ns = meta.get("ns") if isinstance(meta, dict) else None
    return ns if isinstance(ns, str) else None


def _model(typ: type[Record], payload: Any) -> Any:
    """A record of ``typ`` from its JSON object; the class ``__faust`` names instead when ``typ`` allows it
    (``allow_blessed_key``/``polymorphic_fields``, Faust's ``Model._maybe_namespace``)."""
    if type(payload) is dict and (typ._options.allow_blessed_key or typ._options.polymorphic_fields):
        ns = _namespace(payload)
        named = registered(ns) if ns is not None else None
        if named is not None:
            typ = named
    return typ.from_data(payload)
