"""Records: typed values of a topic, Faust's ``faust.Record`` (faust/models/record.py) with its wire form.

.. code-block:: python

    class Trade(Record, isodates=True):
        symbol: str
        price: float
        at: datetime
        size: float = 0.0

A subclass is a dataclass of its annotated fields (defaults allowed; hashable, like Faust's). As in Faust:

- its JSON (:meth:`Record.to_representation`) is its fields plus ``"__faust": {"ns": "module.Class"}``
  (``include_metadata=False`` leaves that out; ``namespace=`` names it; a class of ``__main__`` is named after its
  file, as mode's ``canoname``); a nested record is written the same way, a datetime as ISO 8601 (UTC as ``Z``), a
  Decimal as a string;
- :meth:`Record.from_data` builds one from a JSON object with or without ``__faust`` (keys that are not fields are
  ignored): fields typed as a Record, or a list/set/tuple/dict of them, become those records; ``isodates=True``
  parses datetime fields from ISO strings (``date_parser=`` replaces the parser), ``decimals=True`` makes Decimal
  fields Decimals; ``coerce=True`` also converts int/float/str/bool/Decimal/datetime fields, at construction too;
- ``validation=True`` (implies ``coerce``) checks each record built: a field whose value does not convert raises
  what the conversion raised (ValueError/TypeError), a blank required ``str`` field or a non-finite Decimal raises
  :class:`ValidationError` (Faust's messages);
- ``Model.field`` at class level is a :class:`FieldDescriptor` (``Withdrawal.country``): :func:`field_name` gives its
  name to ``group_by`` and ``relative_to_field``; calling it on a value gives that field.

Options accepted without effect: ``allow_blessed_key``/``polymorphic_fields`` only choose the class named in
``__faust`` when decoding (see :mod:`~stream_processor.engine.codecs`), ``coercions``, ``lazy_creation``.
``serializer`` other than ``"json"`` is refused (values are JSON here).

In table state a value keeps its type through a restore: :func:`encode_state` writes a record with its class, and a
datetime, date, Decimal, set, frozenset or tuple tagged (``{"__sp": "datetime", "v": ...}``); :func:`decode_state`
turns them back (nested ones included).
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import importlib
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import orjson

CLASS_KEY = "__faust"
"""The key of a record's JSON object that names its class: ``{"ns": "module.Class"}`` (Faust's blessed key)."""
TAG_KEY = "__sp"
"""The key of a tagged value in table state: ``{"__sp": "datetime" | "date" | "decimal" | "set" | "frozenset" |
"tuple", "v": ...}``."""
_MARKERS = (b'"' + CLASS_KEY.encode() + b'"', b'"' + TAG_KEY.encode() + b'"')
_RECORDS: dict[str, type[Record]] = {}  # namespace -> the Record subclass (the last one defined)
_IGNORED = frozenset({"allow_blessed_key", "polymorphic_fields", "coercions", "lazy_creation"})
_OPTION_NAMES = ("include_metadata", "isodates", "coerce", "validation", "decimals", "date_parser",
                 "allow_blessed_key", "polymorphic_fields")


class ValidationError(ValueError):
    """A record that ``validation=True`` refuses (Faust's ``faust.exceptions.ValidationError``); ``field``: its
    name."""

    def __init__(self, reason: str, field: str) -> None:
        super().__init__(reason)
        self.field = field


@dataclasses.dataclass
class Options:
    """A Record class's options (Faust's ``ModelOptions``, the part used here), inherited by subclasses."""

    namespace: str = ""
    include_metadata: bool = True
    isodates: bool = False
    coerce: bool = False
    validation: bool = False
    decimals: bool = False
    date_parser: Callable[[Any], datetime.datetime] | None = None
    allow_blessed_key: bool = False
    polymorphic_fields: bool = False
    abstract: bool = False


class FieldDescriptor:
    """``Model.field`` at class level (Faust's ``FieldDescriptor``): ``field`` (its name), ``model``, ``type``,
    ``required``, ``default``. ``descriptor(value)`` (or ``.getattr(value)``) gives that field of ``value`` (a
    record, or a dict's key), which is how ``group_by(Withdrawal.country)`` keys a stream."""

    __slots__ = ("field", "model", "type", "required", "default")

    def __init__(self, field: str, model: type, type_: Any, required: bool, default: Any) -> None:
        self.field, self.model, self.type, self.required, self.default = field, model, type_, required, default

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        raise AttributeError(f"{type(instance).__name__} has no value for field {self.field!r}")

    def __call__(self, value: Any) -> Any:
        return value[self.field] if isinstance(value, dict) else getattr(value, self.field)

    getattr = __call__

    @property
    def ident(self) -> str:
        """``Model.field``."""
        return f"{self.model.__name__}.{self.field}"

    def __repr__(self) -> str:
        default = "" if self.required else f" = {self.default!r}"
        kind = _FIELD_KINDS.get(self.type, "FieldDescriptor")
        return f"<{kind}: {self.ident}: {getattr(self.type, '__name__', self.type)}{default}>"


_FIELD_KINDS = {bool: "BooleanField", int: "IntegerField", float: "FloatField", decimal.Decimal: "DecimalField",
                str: "StringField", bytes: "BytesField", datetime.datetime: "DatetimeField"}
"""Faust's descriptor class by field type (faust.models.fields.TYPE_TO_FIELD), for the repr."""


def field_name(ref: Any) -> str | None:
    """The field name ``ref`` refers to when it is a Model field reference (``Withdrawal.country``, ours or
    Faust's FieldDescriptor), else None (a function, a string, ...: the caller's to interpret)."""
    if isinstance(ref, FieldDescriptor):
        return ref.field
    name = getattr(ref, "field", None)
    if isinstance(name, str) and hasattr(ref, "model") and not isinstance(ref, type):
        return name
    return None


class Record:
    """Base of typed topic values (see the module docstring)."""

    _options: ClassVar[Options] = Options(abstract=True)
    _field_names: ClassVar[tuple[str, ...]] = ()
    _plan: ClassVar[_Plan | None] = None

    def __init_subclass__(cls, *, serializer: str | None = None, namespace: str | None = None,
                          abstract: bool = False, **kwargs: Any) -> None:
        options = {k: kwargs.pop(k) for k in list(kwargs) if k in _OPTION_NAMES and kwargs[k] is not None}
        for name in _IGNORED:
            kwargs.pop(name, None)
        super().__init_subclass__(**kwargs)
        if serializer not in (None, "json"):
            raise TypeError(f"{cls.__name__}: serializer {serializer!r} is not supported (Record values are JSON)")
        if options.get("validation"):
            options["coerce"] = True  # as Faust: validation implies coerce
        cls._options = dataclasses.replace(cls._options, **options, abstract=abstract,
                                           namespace=namespace or canoname(cls))
        _default_trailing_optionals(cls)
        dataclasses.dataclass(cls, unsafe_hash=True, repr=False)
        cls._field_names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        cls._plan = None
        try:
            hints = typing.get_type_hints(cls, localns={cls.__name__: cls})
        except Exception:  # noqa: BLE001 - a forward reference defined later: resolved at first use (_Plan)
            hints = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            setattr(cls, f.name, FieldDescriptor(f.name, cls, hints.get(f.name, f.type), required,
                                                 None if required else f.default))
        init = cls.__init__
        if abstract:
            def abstract_init(self: Any, *args: Any, **kw: Any) -> None:
                if type(self) is cls:
                    raise NotImplementedError(f"cannot instantiate abstract model {cls.__name__}")
                init(self, *args, **kw)
            cls.__init__ = abstract_init  # type: ignore[method-assign]
            return
        if cls._options.coerce:
            def coercing_init(self: Any, *args: Any, **kw: Any) -> None:
                init(self, *args, **kw)
                self._coerce_fields()
            cls.__init__ = coercing_init  # type: ignore[method-assign]
        _RECORDS[cls._options.namespace] = cls

    @classmethod
    def _get_plan(cls) -> _Plan:
        plan: _Plan | None = cls.__dict__.get("_plan")
        if plan is None:
            plan = cls._plan = _Plan(cls)
        return plan

    def _coerce_fields(self) -> None:
        plan = self._get_plan()
        for name, convert in plan.construct.items():
            value = self.__dict__[name]
            if value is not None or name in plan.required:
                self.__dict__[name] = convert(value)
        if self._options.validation:
            for error in self.validate():
                raise error

    def validate(self) -> list[ValidationError]:
        """What ``validation=True`` refuses in this record (Faust's ``Model.validate``): blank ``str`` fields, Decimal
        fields that are not finite."""
        plan, errors = self._get_plan(), []
        for name in plan.text:
            value = self.__dict__[name]
            if isinstance(value, str) and not value and (name in plan.required or value is not None):
                errors.append(ValidationError(f"{name} cannot be left blank", name))
        for name in plan.decimals:
            value = self.__dict__[name]
            if isinstance(value, decimal.Decimal) and not value.is_finite():
                errors.append(ValidationError(f"Illegal value in decimal: {value!r}", name))
        return errors

    def is_valid(self) -> bool:
        """True if :meth:`validate` finds nothing."""
        return not self.validate()

    @classmethod
    def from_data(cls, data: Any, *, preferred_type: type | None = None) -> Any:
        """Build from a JSON object (see the module docstring). Raises TypeError if a field is missing or ``data`` is
        not an object, ValueError (:class:`ValidationError` among them) for a field that does not convert."""
        if isinstance(data, Record):
            return data
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        plan = cls._get_plan()
        names, convert = cls._field_names, plan.from_data
        return cls(**{k: (convert[k](v) if k in convert and v is not None else v)
                      for k, v in data.items() if k in names})

    def asdict(self) -> dict[str, Any]:
        """The fields of this record, by name (nested records as they are)."""
        return {name: getattr(self, name) for name in self._field_names}

    def to_representation(self) -> dict[str, Any]:
        """The JSON object of this record: its fields, plus ``__faust`` naming its class unless
        ``include_metadata=False`` (Faust's ``Record.to_representation``)."""
        doc = {name: getattr(self, name) for name in self._field_names}
        if self._options.include_metadata:
            doc[CLASS_KEY] = {"ns": self._options.namespace}
        return doc

    __json__ = to_representation

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={self.__dict__.get(name)!r}" for name in self._field_names)
        return f"<{type(self).__name__}: {fields}>"  # Faust's

    def dumps(self, *, serializer: str | None = None) -> bytes:
        """This record's JSON bytes, as Faust's ``Model.dumps`` writes them."""
        from .codecs import dumps  # noqa: PLC0415 - codecs imports this module

        return typing.cast(bytes, dumps(serializer or "json", self))

    @classmethod
    def loads(cls, data: bytes, *, serializer: str | None = None) -> Any:
        """A record of this class from :meth:`dumps`'s bytes."""
        from .codecs import loads  # noqa: PLC0415

        return cls.from_data(loads(serializer or "json", data))

    def derive(self, *objects: Record, **fields: Any) -> Any:
        """A copy with the fields of ``objects`` then ``fields`` replaced (Faust's ``Model.derive``)."""
        data = self.asdict()
        for obj in objects:
            data.update(obj.asdict())
        return type(self)(**{**data, **fields})


class _Plan:
    """How a Record class converts its fields, built at first use (when every annotation resolves): ``from_data``
    (name -> converter of a JSON value), ``construct`` (name -> coercion at construction, ``coerce=True``),
    ``required``, ``text`` (str fields) and ``decimals`` (Decimal fields) for validation."""

    def __init__(self, cls: type[Record]) -> None:
        try:
            hints = typing.get_type_hints(cls, localns={cls.__name__: cls})
        except Exception as exc:
            raise TypeError(f"{cls.__name__}: cannot resolve its field types: {exc}") from None
        opts = cls._options
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        self.required = frozenset(n for n, f in fields.items() if f.default is dataclasses.MISSING
                                  and f.default_factory is dataclasses.MISSING)
        self.from_data: dict[str, Callable[[Any], Any]] = {}
        self.construct: dict[str, Callable[[Any], Any]] = {}
        self.text: list[str] = []
        self.decimals: list[str] = []
        for name in fields:
            hint = _strip_optional(hints[name])
            converter = _converter(hint, opts)
            if converter is not None:
                self.from_data[name] = converter
            if opts.coerce and hint in _SCALARS:
                self.construct[name] = _scalar(hint, opts)
            if hint is str:
                self.text.append(name)
            elif hint is decimal.Decimal:
                self.decimals.append(name)


def _default_trailing_optionals(cls: type) -> None:
    """Give the Optional fields declared without a default, at the end of the class, the default None (Faust makes
    every Optional field optional; one followed by a required field keeps no default here, as a dataclass must)."""
    try:
        hints = typing.get_type_hints(cls, localns={cls.__name__: cls})
    except Exception:  # noqa: BLE001 - unresolved yet: no default added
        return
    for name in reversed(list(cls.__dict__.get("__annotations__", {}))):
        if name in cls.__dict__:
            continue
        if _strip_optional(hints.get(name)) is hints.get(name) or typing.get_origin(hints[name]) is ClassVar:
            return
        setattr(cls, name, None)


def _strip_optional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return hint


def parse_datetime(value: Any) -> Any:
    """A datetime from an ISO 8601 string (``Z`` for UTC accepted); a datetime as it is. Raises ValueError."""
    if isinstance(value, str):
        return datetime.datetime.fromisoformat(value)
    return value


_SCALARS = (int, float, str, bool, decimal.Decimal, datetime.datetime)


def _scalar(hint: Any, opts: Options) -> Callable[[Any], Any]:
    """Faust's coercion of a field of type ``hint`` (faust.models.fields' ``prepare_value`` with coerce)."""
    if hint is bool:
        return lambda v: bool(v)
    if hint is str:
        return lambda v: v if isinstance(v, str) else str(v)
    if hint is datetime.datetime:
        parse = opts.date_parser or parse_datetime
        return lambda v: parse(v) if v is not None and not isinstance(v, datetime.datetime) else v
    return typing.cast(Callable[[Any], Any], hint)


def _converter(hint: Any, opts: Options) -> Callable[[Any], Any] | None:
    """The conversion of a JSON value to a field typed ``hint`` (None: the value as it is)."""
    hint = _strip_optional(hint)
    if isinstance(hint, type) and issubclass(hint, Record):
        return lambda v: hint.from_data(v) if isinstance(v, dict) else v
    if hint in _SCALARS:
        wanted = (opts.coerce or (hint is datetime.datetime and opts.isodates)
                  or (hint is decimal.Decimal and opts.decimals))
        return _scalar(hint, opts) if wanted else None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (list, set, frozenset) or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        item = _converter(args[0], opts) if args else None
        build = list if origin is tuple else origin
        if item is None:
            return None if origin is list else (lambda v: build(v) if isinstance(v, list) else v)
        return lambda v: build(item(x) for x in v) if isinstance(v, list) else v
    if origin is dict and len(args) == 2:
        value = _converter(args[1], opts)
        return None if value is None else (lambda v: {k: value(x) for k, x in v.items()} if isinstance(v, dict) else v)
    return None


def canoname(cls: type) -> str:
    """The namespace Faust gives a model class: ``module.QualName``, ``__main__`` replaced by the name of the file
    run (its package path included), as mode.utils.objects.canoname."""
    module = cls.__module__
    if module == "__main__":
        module = _main_name()
    return f"{module}.{cls.__qualname__}"


namespace = canoname


def _main_name() -> str:
    filename = getattr(sys.modules.get("__main__"), "__file__", None)
    if filename is None:
        return "__main__"
    path = Path(filename).absolute()
    node, seen = path.parent, []
    while node != node.parent and (node / "__init__.py").exists():
        seen.append(node.stem)
        node = node.parent
    return ".".join([*seen, path.stem])


def registered(ns: str) -> type[Record] | None:
    """The Record class defined under namespace ``ns`` (no import: a name on the wire picks only a defined class)."""
    return _RECORDS.get(ns)


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


# ---- table state ---------------------------------------------------------------------------------------------


def _tag(value: Any) -> Any:
    """``value`` with tuples (which orjson writes as lists) tagged, recursively."""
    kind = type(value)
    if kind is tuple:
        return {TAG_KEY: "tuple", "v": [_tag(v) for v in value]}
    if kind is list:
        return [_tag(v) for v in value]
    if kind is dict:
        return {k: _tag(v) for k, v in value.items()}
    return value


def _encode_default(obj: Any) -> Any:
    """orjson's ``default`` for :func:`encode_state` (see the module docstring)."""
    if isinstance(obj, Record):
        doc = {name: _tag(getattr(obj, name)) for name in obj._field_names}
        doc[CLASS_KEY] = {"ns": obj._options.namespace}
        return doc
    if isinstance(obj, datetime.datetime):
        return {TAG_KEY: "datetime", "v": obj.isoformat()}
    if isinstance(obj, datetime.date):
        return {TAG_KEY: "date", "v": obj.isoformat()}
    if isinstance(obj, decimal.Decimal):
        return {TAG_KEY: "decimal", "v": str(obj)}
    if isinstance(obj, set | frozenset):
        return {TAG_KEY: type(obj).__name__ if type(obj) in (set, frozenset) else "set", "v": [_tag(v) for v in obj]}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _tag(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def encode_state(value: Any) -> bytes:
    """The JSON of a table value, every type kept (see the module docstring); other values as orjson writes them.
    Raises TypeError (orjson's JSONEncodeError) for a value that has no JSON form."""
    if type(value) in (list, dict, tuple):
        value = _tag(value)
    return orjson.dumps(value, default=_encode_default,
                        option=orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME)


def decode_state(data: bytes) -> Any:
    """A table value from :func:`encode_state`'s JSON: records, datetimes, Decimals, sets and tuples back.

    Raises ValueError (orjson.JSONDecodeError is one) for bytes that are not JSON, or a class that is not a
    Record this program defines (or can import), or fields it refuses (TypeError from the class, re-raised).
    """
    value = orjson.loads(data)
    if _MARKERS[0] not in data and _MARKERS[1] not in data:  # the common case: nothing to walk
        return value
    return _revive(value)


_UNTAG: dict[str, Callable[[Any], Any]] = {
    "datetime": datetime.datetime.fromisoformat, "date": datetime.date.fromisoformat, "decimal": decimal.Decimal,
    "set": set, "frozenset": frozenset, "tuple": tuple}


def _revive(value: Any) -> Any:
    if type(value) is list:
        return [_revive(v) for v in value]
    if type(value) is not dict:
        return value
    tag = value.get(TAG_KEY)
    if tag is not None and len(value) == 2 and tag in _UNTAG:
        return _UNTAG[tag](_revive(value["v"]))
    doc = {k: _revive(v) for k, v in value.items()}
    meta = doc.pop(CLASS_KEY, None)
    if meta is None:
        return doc
    cls = _record_class(meta.get("ns") if type(meta) is dict else None)
    try:
        return cls.from_data(doc)
    except TypeError as exc:
        raise ValueError(f"{cls._options.namespace}: {exc}") from None
