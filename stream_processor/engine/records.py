"""Records: typed values of a topic, Faust's ``faust.Record`` in small (JSON objects with annotated fields).

.. code-block:: python

    class Trade(Record):
        symbol: str
        price: float
        size: float = 0.0

A subclass is a dataclass of its annotated fields (defaults allowed); a topic declared with ``value_type=Trade``
decodes each JSON object into one (unknown keys are ignored, a missing field without a default is invalid and the
record is dead-lettered) and an agent sending one encodes it as its JSON object.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar


class Record:
    """Base of typed topic values (see the module docstring)."""

    _field_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(cls)
        cls._field_names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Any:
        """Build from a JSON object (keys not among the fields are ignored). Raises TypeError if a field is
        missing."""
        names = cls._field_names
        return cls(**{k: v for k, v in data.items() if k in names})

    def asdict(self) -> dict[str, Any]:
        """The JSON object of this record."""
        return {name: getattr(self, name) for name in self._field_names}

    to_representation = asdict
