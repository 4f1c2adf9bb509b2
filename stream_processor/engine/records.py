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
effect here (values are plain JSON objects, without Faust's ``__faust`` key), ``include_metadata``, ``namespace``,
``isodates``, ``date_parser``, ``decimals``, ``validation``, ``allow_blessed_key``, ``abstract``,
``polymorphic_fields``. Records are hashable, like Faust's.
"""

from __future__ import annotations

import dataclasses
import decimal
import typing
from typing import Any, ClassVar

_FAUST_OPTIONS = frozenset({"include_metadata", "namespace", "isodates", "date_parser", "decimals", "validation",
                            "allow_blessed_key", "abstract", "polymorphic_fields"})
_COERCIBLE = (str, int, float, decimal.Decimal)  # not bool: bool("false") is True


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
