"""The versioning rule of the output schemas, as code (see the package docstring).

:func:`shape` is a schema without its annotations; :func:`breaking_changes` compares a released version's shape
(as locked in ``tests/unit/schemas_lock.json``) with the file's: within a version the only change allowed is a new
entry under a ``properties`` (or ``$defs``) map, which cannot be required since ``required`` lists must not change.
"""

from __future__ import annotations

from typing import Any

ANNOTATIONS = frozenset({"title", "description", "examples", "$comment", "default", "deprecated", "readOnly",
                         "writeOnly"})
"""Keywords that change no record's validity: free to edit within a version (so are ``x-*`` keywords)."""
_OPEN_MAPS = frozenset({"properties", "$defs"})  # maps whose new entries are allowed


def shape(schema: Any) -> Any:
    """``schema`` without annotation keywords (:data:`ANNOTATIONS`, ``x-*``), at every level."""
    if isinstance(schema, dict):
        return {k: shape(v) for k, v in schema.items()
                if not (isinstance(k, str) and (k in ANNOTATIONS or k.startswith("x-")))}
    if isinstance(schema, list):
        return [shape(v) for v in schema]
    return schema


def breaking_changes(old: Any, new: Any, where: str = "#", open_map: bool = False) -> list[str]:
    """How the shape ``new`` breaks the released shape ``old``, one line per change (JSON pointer, what); [] if
    ``new`` only adds entries to ``properties`` / ``$defs`` maps. Both are shapes (see :func:`shape`)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in old:
            if key not in new:
                out.append(f"{where}/{key}: removed" if open_map else f"{where}: keyword {key!r} removed")
        for key in new:
            if key not in old and not open_map:
                out.append(f"{where}: keyword {key!r} added ({new[key]!r})")
        for key in old:
            if key in new:
                out += breaking_changes(old[key], new[key], f"{where}/{key}", key in _OPEN_MAPS and not open_map)
        return out
    if old != new or type(old) is not type(new):
        return [f"{where}: {old!r} became {new!r}"]
    return []
