"""JSON Schemas (draft 2020-12) of every market topic: what the raw topics may carry, what the processors write.

Layout
------
One file per schema and version, ``stream_processor/market/schemas/<name>/v<N>.json`` (package data: an installed
wheel has them). ``<name>`` is the output topic's default name, or ``input/<form>`` for an input form:

* outputs: ``enriched_trades``, ``enriched_orderbook``, ``enriched_klines``, ``smc_signals``, ``alerts``, and
  ``dead_letter`` (a dead-letter record's value is the refused input's bytes as they were; the schema describes
  its HEADERS, as the object :func:`headers_object` builds);
* inputs: ``input/market`` (anything a raw topic may carry: the normalized form or Binance JSON),
  ``input/normalized``, ``input/binance`` (any Binance message, bare or in the combined-stream envelope) and one
  per Binance payload: ``input/binance_trade``, ``input/binance_agg_trade``, ``input/binance_depth_update``,
  ``input/binance_partial_depth``, ``input/binance_book_ticker``, ``input/binance_kline``,
  ``input/binance_depth_snapshot``.

Each file has ``$schema`` (draft 2020-12), an ``$id`` ending in ``<name>/v<N>.json`` (an identifier, not a URL to
fetch; relative ``$ref`` between the files resolve through :func:`registry`), ``title`` and ``description``;
every field has a ``description`` with its units. An output schema is closed (``additionalProperties: false``,
or ``unevaluatedProperties: false`` where the fields depend on the event type), so that an undocumented field
fails, and names the processor output it describes in ``x-topic`` (``{"processor_type", "role"}``, the role as
in the processor type's ``output_roles``, or ``{"dead_letter": true}``): :func:`topic_schemas` maps a
configuration's topics to schemas from it. An input schema is open (the decoder ignores unknown fields), accepts
what the decoder accepts and refuses what it refuses where a schema can tell (it cannot check the bounds of
numeric strings, ``low <= open``, ``U <= u``, or refuse ``12.0`` as an id: JSON Schema counts it an integer).

Versioning (outputs, including the dead-letter headers)
------------------------------------------------------
A released version, ``<name>/vN.json``, is frozen but for two kinds of edit:

* a new OPTIONAL field (a new entry under ``properties`` that is not in ``required``): consumers of a closed
  schema must accept it within the version; it is optional because records written before it lack it;
* annotations: ``title``, ``description``, ``examples``, ``$comment``, ``default``, ``deprecated``, ``x-*``.

Anything else is a breaking change and needs a new file ``<name>/vN+1.json`` next to ``vN.json`` (kept): a field
removed or renamed, a type, nullability, enum or bound changed (looser or tighter), a new REQUIRED field, a
field made optional. :func:`load` and :func:`validator` take the latest version unless told otherwise.
``tests/unit/schemas_lock.json`` holds every released version's shape (the schema without its annotations);
``tests/unit/test_schemas.py`` fails on a breaking edit of a locked version, naming the version to add, and
``python scripts/schema_docs.py --write`` locks compatible additions (and new versions) and rewrites the
README's field tables. Input schemas follow the decoder and are not locked.

To add a field or a topic: edit or add one JSON file, then run ``python scripts/schema_docs.py --write``.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent
"""The directory of the schema files."""
BASE_URI = "https://stream-processor.example/schemas/"
"""Prefix of every schema's ``$id``: ``BASE_URI + "<name>/v<N>.json"``."""
DRAFT = "https://json-schema.org/draft/2020-12/schema"
"""The ``$schema`` of every file."""

_VERSION_RE = re.compile(r"v([1-9][0-9]*)\.json")


class SchemaValidationError(ValueError):
    """A document does not conform to a schema: the message names the schema, its version and the JSON path."""

    def __init__(self, name: str, version: int, path: str, message: str) -> None:
        self.name, self.version, self.path = name, version, path
        super().__init__(f"{name} v{version}: {path}: {message}")


def names() -> list[str]:
    """Every schema's name (``enriched_trades``, ``input/binance_trade``, ...), sorted."""
    found = {str(p.parent.relative_to(SCHEMA_DIR)).replace("\\", "/") for p in SCHEMA_DIR.rglob("v*.json")
             if _VERSION_RE.fullmatch(p.name)}
    return sorted(found)


def output_names() -> list[str]:
    """The names of the output schemas (those with ``x-topic``), sorted."""
    return [n for n in names() if "x-topic" in _load(n, versions(n)[-1])]


def versions(name: str) -> list[int]:
    """The versions of schema ``name``, ascending; KeyError if there is no such schema."""
    folder = SCHEMA_DIR / name
    found = sorted(int(m.group(1)) for p in (folder.iterdir() if folder.is_dir() else ())
                   if (m := _VERSION_RE.fullmatch(p.name)))
    if not found or ".." in Path(name).parts:
        raise KeyError(f"no schema {name!r}; known: {', '.join(names())}")
    return found


def path(name: str, version: int | None = None) -> Path:
    """The file of schema ``name`` at ``version`` (default: the latest)."""
    return SCHEMA_DIR / name / f"v{version or versions(name)[-1]}.json"


@functools.cache
def _load(name: str, version: int) -> dict[str, Any]:
    if version not in versions(name):
        raise KeyError(f"schema {name!r} has no version {version}; versions: {versions(name)}")
    return json.loads(path(name, version).read_text(encoding="utf-8"))


def load(name: str, version: int | None = None) -> dict[str, Any]:
    """Schema ``name`` at ``version`` (default: the latest), a fresh dict. KeyError for an unknown name or version."""
    return copy.deepcopy(_load(name, version or versions(name)[-1]))


def _jsonschema() -> Any:
    try:
        import jsonschema
    except ImportError as exc:  # pragma: no cover - the dev requirements install it
        raise ImportError("validating needs the jsonschema package (pip install -r requirements-dev.txt)") from exc
    return jsonschema


@functools.cache
def registry() -> Any:
    """A ``referencing.Registry`` of every schema file (every version), by ``$id``: what resolves their ``$ref``."""
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    _jsonschema()
    resources = []
    for name in names():
        for version in versions(name):
            doc = _load(name, version)
            resources.append((doc["$id"], Resource.from_contents(doc, default_specification=DRAFT202012)))
    return Registry().with_resources(resources)


@functools.cache
def validator(name: str, version: int | None = None) -> Any:
    """A cached ``jsonschema.Draft202012Validator`` of schema ``name`` (default: latest version), with format
    checking and every other schema file resolvable by ``$ref``."""
    js = _jsonschema()
    cls = js.Draft202012Validator
    return cls(_load(name, version or versions(name)[-1]), registry=registry(), format_checker=cls.FORMAT_CHECKER)


def errors(name: str, doc: Any, version: int | None = None) -> list[str]:
    """Every way ``doc`` fails schema ``name`` (default: latest version), as ``"<JSON path>: <message>"``; [] if
    it conforms."""
    return [f"{e.json_path}: {e.message}" for e in validator(name, version).iter_errors(doc)]


def validate(name: str, doc: Any, version: int | None = None) -> None:
    """Raise :class:`SchemaValidationError` (naming the schema, its version and the JSON path of the most relevant
    error, e.g. ``enriched_trades v1: $.price: 'x' is not of type 'number'``) unless ``doc`` conforms to schema
    ``name`` (default: its latest version)."""
    from jsonschema.exceptions import best_match

    version = version or versions(name)[-1]
    error = best_match(validator(name, version).iter_errors(doc))
    if error is not None:
        raise SchemaValidationError(name, version, error.json_path, error.message)


def headers_object(headers: Iterable[tuple[str, bytes | str | None]] | None) -> dict[str, str]:
    """Kafka record headers ``[(name, value bytes), ...]`` as the object the ``dead_letter`` schema describes: each
    value decoded as UTF-8 (invalid bytes replaced). ValueError for a header name given twice."""
    out: dict[str, str] = {}
    for key, value in headers or ():
        if key in out:
            raise ValueError(f"header {key!r} appears twice")
        out[key] = value.decode("utf-8", errors="replace") if isinstance(value, bytes | bytearray) else str(value)
    return out


def output_schemas() -> dict[tuple[str, str] | str, str]:
    """The output schema of each processor output, from the files' ``x-topic``: ``(processor type, role)`` ->
    name (``role`` is ``param:<dotted params path>`` for a topic its ``params`` name, e.g.
    ``param:smc.context_topic``), and ``"dead_letter"`` -> the dead-letter headers schema."""
    out: dict[tuple[str, str] | str, str] = {}
    for name in output_names():
        topic = _load(name, versions(name)[-1])["x-topic"]
        if topic.get("dead_letter"):
            out["dead_letter"] = name
        else:
            role = f"param:{topic['param']}" if "param" in topic else topic["role"]
            out[(topic["processor_type"], role)] = name
    return out


def topic_schemas(settings: Any) -> dict[str, str]:
    """Topic -> output schema name for every enabled processor of ``settings`` (engine ``Settings``) whose outputs
    have a schema: each output topic by its processor type's role, and each dead-letter topic (``dead_letter``)."""
    from stream_processor.engine.registry import lookup

    by_output = output_schemas()
    out: dict[str, str] = {}
    for proc in settings.stream_processors.values():
        if not proc.enabled:
            continue
        type_ = lookup(proc.type)
        roles = type_.output_roles if type_ is not None else ()
        for i, topic in enumerate(proc.output_topics):
            name = by_output.get((proc.type, roles[i][0])) if i < len(roles) else None
            if name is not None:
                out[topic] = name
        for key, name in by_output.items():
            if isinstance(key, tuple) and key[0] == proc.type and key[1].startswith("param:"):
                value: Any = getattr(proc, "params", None)
                for part in key[1].removeprefix("param:").split("."):
                    value = getattr(value, part, None)
                if isinstance(value, str):
                    out[value] = name
        if "dead_letter" in by_output:
            out[proc.dead_letter_topic] = by_output["dead_letter"]
    return out


def validate_record(name: str, value: bytes | None, headers: Iterable[tuple[str, bytes]] | None = None,
                    version: int | None = None) -> None:
    """Validate one Kafka record of a topic of schema ``name``: its headers (:func:`headers_object`) for
    ``dead_letter``, else its value parsed as JSON. Raises SchemaValidationError (ValueError if not JSON)."""
    if name == "dead_letter":
        validate(name, headers_object(headers), version)
        return
    if value is None:
        raise SchemaValidationError(name, version or versions(name)[-1], "$", "the record has no value")
    validate(name, json.loads(value), version)


def latest_versions(names_: Iterable[str] | None = None) -> Mapping[str, int]:
    """Name -> latest version, for ``names_`` (default: every schema)."""
    return {n: versions(n)[-1] for n in (names() if names_ is None else names_)}


__all__ = [
    "BASE_URI",
    "DRAFT",
    "SCHEMA_DIR",
    "SchemaValidationError",
    "errors",
    "headers_object",
    "latest_versions",
    "load",
    "names",
    "output_names",
    "output_schemas",
    "path",
    "registry",
    "topic_schemas",
    "validate",
    "validate_record",
    "validator",
    "versions",
]
