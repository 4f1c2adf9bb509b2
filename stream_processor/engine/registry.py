"""Processor types: what a ``stream_processors`` entry of the YAML may name, and how each is built.

A type is a settings class (a :class:`~stream_processor.engine.settings.ProcessorSettings` subclass, which adds
``params``) and a factory ``(name, settings) -> Processor``. Types come from two places: an
:class:`~stream_processor.engine.app.App`'s decorators (``@app.agent``, ``@app.processor``), and the global
registry here (:func:`register`), which the built-in market processors (``trades``, ``orderbook``, ``klines``,
``eos_check``) join when :mod:`stream_processor.market` is imported; a YAML entry naming one of those imports it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .settings import KeyedError, ProcessorSettings

BUILTIN_MODULE = "stream_processor.market"
BUILTIN_TYPES = frozenset({"trades", "orderbook", "klines", "eos_check"})


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
"""The global registry (built-in and library types)."""


def register(type_: ProcessorType) -> ProcessorType:
    """Add ``type_`` to the global registry. Raises ValueError if its name is taken by another type."""
    existing = TYPES.get(type_.name)
    if existing is not None and existing.factory is not type_.factory:
        raise ValueError(f"processor type {type_.name!r} is already registered")
    TYPES[type_.name] = type_
    return type_


def lookup(name: str, types: Mapping[str, ProcessorType] | None = None) -> ProcessorType | None:
    """The type called ``name``: from ``types`` first, then the global registry (importing the built-ins if need
    be)."""
    if types is not None and name in types:
        return types[name]
    if name not in TYPES and name in BUILTIN_TYPES:
        importlib.import_module(BUILTIN_MODULE)
    return TYPES.get(name)


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
    for name, type_ in (types or {}).items():
        if type_.implicit and name not in todo:
            todo[name] = {}
    for name, entry in todo.items():
        if entry is None:
            entry = {}
        if not isinstance(entry, dict):
            raise KeyedError(str(name), "must be a mapping")
        type_name = entry.get("type", name)
        type_ = lookup(str(type_name), types) if isinstance(type_name, str) else None
        if type_ is None and "type" not in entry:
            type_ = guess_type(str(name), entry, types)
        if type_ is None:
            known = sorted({*(types or {}), *TYPES, *BUILTIN_TYPES})
            key = f"{name}.type" if "type" in entry else str(name)
            raise KeyedError(key, f"no processor type {type_name!r} is registered (known: {known}); set `type:` to "
                                  "one of them, or register one with @app.agent, @app.processor or "
                                  "stream_processor.engine.registry.register")
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
    klines). None when no single type matches."""
    if not BUILTIN_TYPES <= set(TYPES):
        importlib.import_module(BUILTIN_MODULE)
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
