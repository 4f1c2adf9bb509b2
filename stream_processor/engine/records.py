"""Records: typed values of a topic, Faust's ``faust.Record`` in small (JSON objects with annotated fields).

.. code-block:: python

    class Trade(Record):
        symbol: str
        price: float
        size: float = 0.0

A subclass is a dataclass of its annotated fields (defaults allowed); a topic declared with ``value_type=Trade``
decodes each JSON object into one (unknown keys are ignored, a missing field without a default is invalid and the
record is dead-lettered) and an agent sending one encodes it as its JSON object.

Faust's class options are accepted so that a Faust model ports unchanged: ``serializer`` (only ``"json"``),
``coerce`` (:meth:`Record.from_data` converts str/int/float/Decimal fields to their annotated type), and, without
effect here (topic values are plain JSON objects, without Faust's ``__faust`` key), ``include_metadata``,
``namespace``, ``isodates``, ``date_parser``, ``decimals``, ``validation``, ``allow_blessed_key``, ``abstract``,
``polymorphic_fields``. Records are hashable, like Faust's.

In table state (a store of JSON values) a record keeps its class, as Faust writes it: :func:`encode_state` writes
a record as its JSON object plus ``"__faust": {"ns": "module.Class"}``, and :func:`decode_state` turns such an
object back into that class (nested records, and records inside lists and dicts, included).
"""

from __future__ import annotations

import dataclasses
import decimal
import importlib
import typing
from typing import Any, ClassVar

import orjson

_FAUST_OPTIONS = frozenset({"include_metadata", "namespace", "isodates", "date_parser", "decimals", "validation",
                            "allow_blessed_key", "abstract", "polymorphic_fields"})
_COERCIBLE = (str, int, float, decimal.Decimal)  # not bool: bool("false") is True
CLASS_KEY = "__faust"
"""The key of a record's JSON object in table state that names its class: ``{"ns": "module.Class"}`` (Faust's)."""
_CLASS_KEY_BYTES = b'"' + CLASS_KEY.encode() + b'"'
_RECORDS: dict[str, type[Record]] = {}  # "module.QualName" -> the Record subclass (the last one defined)


class Record:
    """Base of typed topic values (see the module docstring)."""

    _field_names: ClassVar[tuple[str, ...]] = ()
    _coerce_to: ClassVar[dict[str, type]] = {}

    def __init_subclass__(cls, *, serializer: str | None = None, coerce: bool = False, **kwargs: Any) -> None:
        for name in _FAUST_OPTIONS:
            kwargs.pop(name, None)
        super().__init_subclass__(**kwargs)
        if serializer not in (None, "json"):
            raise TypeError(f"{cls.__name__}: serializer {serializer!r} is not supported (values are JSON)")
        dataclasses.dataclass(cls, unsafe_hash=True)
        _RECORDS[namespace(cls)] = cls
        cls._field_names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        if coerce:
            hints = typing.get_type_hints(cls)
            cls._coerce_to = {n: hints[n] for n in cls._field_names if hints.get(n) in _COERCIBLE}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Any:
        """Build from a JSON object (keys not among the fields are ignored). Raises TypeError if a field is
        missing, ValueError if a coerced field does not convert."""
        names, coerce = cls._field_names, cls._coerce_to
        return cls(**{k: (coerce[k](v) if k in coerce and v is not None else v)
                      for k, v in data.items() if k in names})

    def asdict(self) -> dict[str, Any]:
        """The JSON object of this record."""
        return {name: getattr(self, name) for name in self._field_names}

    to_representation = asdict


def namespace(cls: type) -> str:
    """The name a record class is written under in table state: ``module.QualName``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _record_class(ns: Any) -> type[Record]:
    """The Record subclass named ``ns``, importing its module if it is not yet; ValueError if there is none (only a
    Record subclass is ever looked up: a name in the changelog does not pick an arbitrary class)."""
    if type(ns) is not str:
        raise ValueError(f"{CLASS_KEY}.ns must be a string, got {ns!r}")
    cls = _RECORDS.get(ns)
    parts = ns.split(".")
    for end in range(len(parts) - 1, 0, -1):
        if cls is not None:
            break
        try:
            importlib.import_module(".".join(parts[:end]))
        except ImportError:
            continue
        cls = _RECORDS.get(ns)
    if cls is None:
        raise ValueError(f"no Record class {ns!r} (the class of a value in table state)")
    return cls


def _encode_default(obj: Any) -> Any:
    """orjson's ``default`` for :func:`encode_state`: a record as its fields and class, another dataclass as its
    fields (nested ones come back here)."""
    if isinstance(obj, Record):
        doc = {name: getattr(obj, name) for name in obj._field_names}
        doc[CLASS_KEY] = {"ns": namespace(type(obj))}
        return doc
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def encode_state(value: Any) -> bytes:
    """The JSON of a table value, records with their class (see the module docstring); other values as orjson
    writes them. Raises TypeError (orjson's JSONEncodeError) for a value that has no JSON form."""
    return orjson.dumps(value, default=_encode_default, option=orjson.OPT_PASSTHROUGH_DATACLASS)


def decode_state(data: bytes) -> Any:
    """A table value from :func:`encode_state`'s JSON: objects with a ``__faust`` class back to their Record.

    Raises ValueError (orjson.JSONDecodeError is one) for bytes that are not JSON, or a class that is not a
    Record this program defines (or can import), or fields it refuses (TypeError from the class, re-raised).
    """
    value = orjson.loads(data)
    if _CLASS_KEY_BYTES not in data:  # the common case: no record inside, nothing to walk
        return value
    return _revive(value)


def _revive(value: Any) -> Any:
    if type(value) is list:
        return [_revive(v) for v in value]
    if type(value) is not dict:
        return value
    doc = {k: _revive(v) for k, v in value.items()}
    meta = doc.pop(CLASS_KEY, None)
    if meta is None:
        return doc
    cls = _record_class(meta.get("ns") if type(meta) is dict else None)
    try:
        return cls.from_data(doc)
    except TypeError as exc:
        raise ValueError(f"{namespace(cls)}: {exc}") from None
