"""Processor types: what a ``stream_processors`` entry of the YAML may name, and how each is built.

A type is a settings class (a :class:`~stream_processor.engine.settings.ProcessorSettings` subclass, which adds
``params``) and a factory ``(name, settings) -> Processor``. Types come from three places, looked up in this order:

- an :class:`~stream_processor.engine.app.App`'s decorators (``@app.agent``, ``@app.processor``);
- the global registry here (:func:`register`);
- installed distributions, through the entry-point group :data:`GROUP` (``stream_processor.processors``): one
  entry per type name, ``<name> = "module:attribute"``, where the attribute is a :class:`ProcessorType` called
  ``<name>`` or a callable with no arguments returning one. An entry is loaded (its module imported) the first time
  a YAML entry names its type, then kept in the global registry; an entry without ``type`` (see :func:`guess_type`)
  loads them all. The engine itself names no type: an application's types reach it by these three ways only.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .settings import KeyedError, ProcessorSettings

#: The entry-point group of processor types (see the module docstring).
GROUP = "stream_processor.processors"


@dataclass(frozen=True)
class ProcessorType:
    """A registered type: its settings class, its factory, and what its entries default to.

    ``defaults``: keys an entry of this type gets when the YAML leaves them out (an agent's topics from its
    decorator). ``implicit``: the processor runs even when the YAML has no entry for it (agents; the YAML can
    still disable or parametrize it under its name). ``output_roles``: the role of each position of
    ``output_topics``, each with the names a YAML map may give it (``output_topics: {signals: smc_signals}``);
    empty: a map's topics are taken in the order written. ``keywords``: words in an entry's name or topics that
    make this type the default of an entry without ``type`` (``trade``: the trades type).
    """

    name: str
    settings: type[ProcessorSettings]
    factory: Callable[[str, Any], Any]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    implicit: bool = False
    output_roles: tuple[tuple[str, ...], ...] = ()
    keywords: tuple[str, ...] = ()


TYPES: dict[str, ProcessorType] = {}
"""The global registry: types registered by :func:`register` and types loaded from entry points."""


def register(type_: ProcessorType) -> ProcessorType:
    """Add ``type_`` to the global registry. Raises ValueError if its name is taken by another type."""
    existing = TYPES.get(type_.name)
    if existing is not None and existing.factory is not type_.factory:
        raise ValueError(f"processor type {type_.name!r} is already registered")
    TYPES[type_.name] = type_
    return type_


def load_entry_point(group: str, name: str) -> Any:
    """The object the entry point ``name`` of ``group`` names, loaded (its module imported); None when no installed
    distribution declares one.

    Raises:
        ValueError: distributions declare ``name`` with different values, or loading it fails (the message names
            the entry point and the error).
    """
    found = {ep.value: ep for ep in importlib.metadata.entry_points(group=group, name=name)}
    if not found:
        return None
    if len(found) > 1:
        raise ValueError(f"entry point {name!r} of group {group!r} is declared differently by several installed "
                         f"distributions: {sorted(found)}")
    (ep,) = found.values()
    try:
        return ep.load()
    except Exception as exc:  # noqa: BLE001 - any import error of a plug-in is reported against its entry point
        raise ValueError(f"entry point {group}:{name} = {ep.value} cannot be loaded: {exc!r}") from exc


def _from_entry_point(name: str) -> ProcessorType | None:
    """The type of entry point ``name`` of :data:`GROUP`, loaded and registered; None if none is declared.

    Raises:
        ValueError: the entry point cannot be loaded, or is not (and does not return) a ProcessorType called
            ``name``.
    """
    obj = load_entry_point(GROUP, name)
    if obj is None:
        return None
    type_ = obj if isinstance(obj, ProcessorType) else obj() if callable(obj) else obj
    if not isinstance(type_, ProcessorType):
        raise ValueError(f"entry point {GROUP}:{name} gives {type_!r}, not a ProcessorType (or a callable "
                         "returning one)")
    if type_.name != name:
        raise ValueError(f"entry point {GROUP}:{name} gives the processor type {type_.name!r}: the names must agree")
    return register(type_)


def entry_point_names() -> list[str]:
    """The type names installed distributions declare in :data:`GROUP`, sorted (none is loaded)."""
    return sorted({ep.name for ep in importlib.metadata.entry_points(group=GROUP)})


def lookup(name: str, types: Mapping[str, ProcessorType] | None = None) -> ProcessorType | None:
    """The type called ``name``: from ``types`` first, then the global registry, then the entry point of that name
    (loaded and registered). None when none has it.

    Raises:
        ValueError: the entry point of ``name`` cannot be loaded or gives no ProcessorType called ``name``.
    """
    if types is not None and name in types:
        return types[name]
    if name not in TYPES:
        return _from_entry_point(name)
    return TYPES[name]


def resolve_entries(
    entries: Mapping[str, Any], app_id: str, types: Mapping[str, ProcessorType] | None
) -> dict[str, ProcessorSettings]:
    """Validate each ``stream_processors`` entry with its type's settings class; add the implicit ones missing.

    Raises:
        KeyedError: an entry is not a mapping, names no registered type, or does not validate (the key is the
            path under ``stream_processors``, e.g. ``trades.params.sma_length``).
    """
    out: dict[str, ProcessorSettings] = {}
    todo = dict(entries)
    for name, implicit in (types or {}).items():
        if implicit.implicit and name not in todo:
            todo[name] = {}
    for name, entry in todo.items():
        if entry is None:
            entry = {}
        if not isinstance(entry, dict):
            raise KeyedError(str(name), "must be a mapping")
        type_name = entry.get("type", name)
        try:
            type_: ProcessorType | None = lookup(str(type_name), types) if isinstance(type_name, str) else None
            if type_ is None and "type" not in entry:
                type_ = guess_type(str(name), entry, types)
        except ValueError as exc:  # an entry point that does not load
            raise KeyedError(f"{name}.type" if "type" in entry else str(name), str(exc)) from None
        if type_ is None:
            known = sorted({*(types or {}), *TYPES, *entry_point_names()})
            key = f"{name}.type" if "type" in entry else str(name)
            raise KeyedError(key, f"no processor type {type_name!r} is registered (known: {known}); set `type:` to "
                                  "one of them, or register one with @app.agent, @app.processor, "
                                  "stream_processor.engine.registry.register or an entry point of the group "
                                  f"{GROUP!r}")
        doc = {**type_.defaults, **entry, "type": type_.name}
        if isinstance(doc.get("output_topics"), dict):
            doc["output_topics"] = outputs_by_role(str(name), doc["output_topics"], type_)
        doc.setdefault("consumer_group", f"{app_id}-{name}")
        try:
            out[str(name)] = type_.settings.model_validate(doc)
        except ValidationError as exc:
            error = exc.errors()[0]
            keyed = (error.get("ctx") or {}).get("error")
            loc = [str(part) for part in error["loc"]]
            if isinstance(keyed, KeyedError):
                loc += keyed.key.split(".")
                reason = keyed.reason
            else:
                reason = error["msg"]
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            raise KeyedError(".".join([str(name), *loc]), reason + more) from None
    return out


def guess_type(name: str, entry: Mapping[str, Any], types: Mapping[str, ProcessorType] | None) -> ProcessorType | None:
    """The type an entry without ``type`` means: the one type whose ``keywords`` occur in the entry's name, else in
    its output topics, else in its input topics (``trade_enricher`` -> trades; outputs ``enriched_klines`` ->
    klines). None when no single type matches. Every type of :data:`GROUP` not loaded yet is loaded first.

    Raises:
        ValueError: an entry point of :data:`GROUP` cannot be loaded.
    """
    for type_name in entry_point_names():
        if type_name not in TYPES:
            _from_entry_point(type_name)
    candidates = {**TYPES, **(types or {})}

    def words(value: Any) -> str:
        if isinstance(value, dict):
            return " ".join(f"{k} {v}" for k, v in value.items()).lower()
        if isinstance(value, list):
            return " ".join(map(str, value)).lower()
        return str(value or "").lower()

    for text in (name.lower(), words(entry.get("output_topics")), words(entry.get("input_topics"))):
        found = [t for t in candidates.values() if any(k in text for k in t.keywords)]
        if len(found) == 1:
            return found[0]
    return None


def outputs_by_role(name: str, outputs: Mapping[str, Any], type_: ProcessorType) -> list[Any]:
    """``output_topics`` given as a map of role -> topic, as a list in the type's order of roles.

    Raises:
        KeyedError: a role the type does not have, or a role left out before one that is given.
    """
    if not type_.output_roles:
        return list(outputs.values())
    slots: dict[int, Any] = {}
    for role, topic in outputs.items():
        index = next((i for i, names in enumerate(type_.output_roles) if str(role) in names), None)
        if index is None:
            roles = [names[0] for names in type_.output_roles]
            raise KeyedError(f"{name}.output_topics.{role}", f"{type_.name} has no output role {role!r} (roles: "
                                                             f"{roles})")
        slots[index] = topic
    missing = [type_.output_roles[i][0] for i in range(max(slots, default=-1) + 1) if i not in slots]
    if missing:
        raise KeyedError(f"{name}.output_topics", f"needs the role(s) {missing} too (a {type_.name} processor writes "
                                                  f"its outputs in the order {[r[0] for r in type_.output_roles]})")
    return [slots[i] for i in sorted(slots)]


def build_processor(name: str, settings: Any, types: Mapping[str, ProcessorType] | None = None) -> Any:
    """The processor of ``settings.stream_processors[name]``, built by its type's factory."""
    psettings = settings.stream_processors[name]
    type_ = lookup(psettings.type, types)
    if type_ is None:
        raise KeyError(f"no processor type {psettings.type!r}")
    return type_.factory(name, psettings)
