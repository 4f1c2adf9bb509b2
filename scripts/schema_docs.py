"""The README's field tables, rendered from the output schemas (stream_processor/market/schemas/<name>/v<N>.json).

Usage::

    python scripts/schema_docs.py                  # print every output schema's table
    python scripts/schema_docs.py --check          # exit 1 if the README's tables or the schema lock are stale
    python scripts/schema_docs.py --write          # rewrite the README's tables in place and update the lock

The README holds each table between ``<!-- schema:<name> v<N> -->`` and ``<!-- /schema -->``; ``--write``
replaces what is between them with the table of the latest version (and the marker's version with it). A new
output schema needs its marker pair placed once by hand (an empty pair is enough).

``--write`` also updates ``tests/unit/schemas_lock.json``, the shape of every released output schema version
(see ``stream_processor.market.schemas``): it locks a new version or a compatible addition (a new optional field) and
refuses, exit 1, a breaking change of a locked version, naming the version to add instead.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stream_processor.market import schemas  # noqa: E402
from stream_processor.market.schemas.compat import breaking_changes, shape  # noqa: E402

README = ROOT / "README.md"
LOCK = ROOT / "tests" / "unit" / "schemas_lock.json"
MARKER_RE = re.compile(r"<!-- schema:(?P<name>[a-z0-9_/]+) v(?P<version>[0-9]+) -->\n(?P<body>.*?)<!-- /schema -->",
                       re.S)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _value(v: Any) -> str:
    return "`null`" if v is None else f"`{v}`" if isinstance(v, str) else f"`{json.dumps(v)}`"


def type_label(s: dict[str, Any]) -> str:
    """A short type for the table: ``number or null``, ``one of `ok`, `crossed` ...``, ``array of [number, number]``."""
    if "const" in s:
        return _value(s["const"])
    if "enum" in s:
        return "one of " + ", ".join(_value(v) for v in s["enum"])
    if "$ref" in s and "type" not in s:
        return "object"
    types = s.get("type", "any")
    parts = []
    for t in types if isinstance(types, list) else [types]:
        if t == "array":
            items = s.get("items")
            if isinstance(items, dict) and "prefixItems" in items:
                parts.append("array of [" + ", ".join(type_label(i) for i in items["prefixItems"]) + "]")
            elif isinstance(items, dict) and items.get("type") == "object":
                parts.append("array of objects")
            elif isinstance(items, dict):
                parts.append(f"array of {type_label(items)}")
            else:
                parts.append("array")
        else:
            parts.append(str(t))
    return " or ".join(parts)


def _rows(props: dict[str, Any], required: list[str], prefix: str = "", note: str = "",
          defs: dict[str, Any] | None = None) -> list[tuple[str, str, str]]:
    rows = []
    for name, s in props.items():
        field = f"{prefix}{name}"
        meaning = s.get("description", "")
        if name not in required:
            meaning = f"(optional) {meaning}"
        rows.append((f"`{field}`", type_label(s), f"{note}{meaning}"))
        items = s.get("items") if isinstance(s.get("items"), dict) else None
        if items is not None and "properties" in items:
            rows += _rows(items["properties"], items.get("required", []), f"{field}[].", note)
        if "properties" in s:
            rows += _rows(s["properties"], s.get("required", []), f"{field}.", note, defs)
        ref = s.get("$ref", "")
        if defs and ref.startswith("#/$defs/"):  # a local definition: its fields under this one's name
            target = defs[ref.split("/")[-1]]
            rows += _rows(target.get("properties", {}), target.get("required", []), f"{field}.", note, defs)
    return rows


def _conditional_rows(schema: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The rows of an ``allOf`` of ``if {type: X} then {...}``: each field under the event types that carry it."""
    rows = []
    for branch in schema.get("allOf", []):
        cond = branch.get("if", {}).get("properties", {}).get("type", {})
        kinds = [cond["const"]] if "const" in cond else cond.get("enum", [])
        then = branch.get("then", {})
        note = "*" + ", ".join(kinds) + "*: "
        rows += _rows(then.get("properties", {}), then.get("required", []), "", note)
    return rows


def rows(name: str, version: int | None = None) -> list[tuple[str, str, str]]:
    """(field, type, meaning) rows of schema ``name``: its properties (nested objects as ``a.b`` / ``a[].b``), then
    those of a local ``$ref`` and of each ``if``/``then`` branch on ``type``."""
    schema = schemas.load(name, version)
    out = _rows(schema.get("properties", {}), schema.get("required", []), defs=schema.get("$defs"))
    ref = schema.get("$ref", "")
    if ref.startswith("#/$defs/"):
        target = schema["$defs"][ref.split("/")[-1]]
        out += _rows(target.get("properties", {}), target.get("required", []))
        out += _conditional_rows(target)
    out += _conditional_rows(schema)
    return out


def render(name: str, version: int | None = None) -> str:
    """The markdown table of schema ``name`` (default: latest version), ending with a newline."""
    lines = ["| field | type | meaning |", "|---|---|---|"]
    lines += [f"| {f} | {_cell(t)} | {_cell(m)} |" for f, t, m in rows(name, version)]
    return "\n".join(lines) + "\n"


def rewrite(text: str) -> str:
    """``text`` (the README) with every marked table rendered from the latest version of its schema."""
    def one(m: re.Match[str]) -> str:
        name = m.group("name")
        version = schemas.versions(name)[-1]
        return f"<!-- schema:{name} v{version} -->\n{render(name, version)}<!-- /schema -->"

    return MARKER_RE.sub(one, text)


def markers(text: str) -> list[tuple[str, int, str]]:
    """``(name, version, body)`` of every marked table in ``text``."""
    return [(m.group("name"), int(m.group("version")), m.group("body")) for m in MARKER_RE.finditer(text)]


def current_lock() -> dict[str, dict[str, Any]]:
    """The lock as the files are now: output schema name -> ``"v<N>"`` -> shape."""
    return {name: {f"v{v}": shape(schemas.load(name, v)) for v in schemas.versions(name)}
            for name in schemas.output_names()}


def lock_problems(locked: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
    """``(breaking, stale)``: breaking changes of locked versions (each message says what to do), and what the lock
    lacks (compatible additions, new versions or schemas: ``--write`` locks them)."""
    breaking, stale = [], []
    now = current_lock()
    for name, by_version in sorted(locked.items()):
        for tag, old in sorted(by_version.items()):
            if tag not in now.get(name, {}):
                breaking.append(f"{name} {tag} is released (locked) but its file is gone: restore "
                                f"stream_processor/market/schemas/{name}/{tag}.json")
                continue
            changes = breaking_changes(old, now[name][tag])
            if changes:
                latest = schemas.versions(name)[-1]
                breaking.append(
                    f"{name} {tag} changed in a breaking way ({'; '.join(changes[:5])}). A released version only takes "
                    f"new optional fields and annotations: restore {name}/{tag}.json and put the change in "
                    f"stream_processor/market/schemas/{name}/v{latest + 1}.json, then run python "
                    "scripts/schema_docs.py --write")
            elif now[name][tag] != old:
                stale.append(f"{name} {tag}: a compatible addition is not locked yet")
    for name, by_version in sorted(now.items()):
        for tag in sorted(by_version):
            if tag not in locked.get(name, {}):
                stale.append(f"{name} {tag}: not locked yet")
    return breaking, stale


def load_lock() -> dict[str, dict[str, Any]]:
    return json.loads(LOCK.read_text(encoding="utf-8")) if LOCK.exists() else {}


def readme_problems(text: str) -> list[str]:
    """What is wrong with the README's tables: a missing, duplicated or outdated marker, or a stale table."""
    problems = []
    found = markers(text)
    names = [n for n, _, _ in found]
    for name in schemas.output_names():
        if names.count(name) != 1:
            problems.append(f"README.md has {names.count(name)} marker(s) <!-- schema:{name} vN --> (want 1): place "
                            f"an empty pair '<!-- schema:{name} v1 -->' '<!-- /schema -->' where its table goes, then "
                            "run python scripts/schema_docs.py --write")
    for name, version, body in found:
        if name not in schemas.names():
            problems.append(f"README.md marks a table of unknown schema {name!r}")
            continue
        latest = schemas.versions(name)[-1]
        if version != latest or body != render(name, latest):
            problems.append(f"README.md: the table of {name} v{version} is not the rendered table of v{latest}: run "
                            "python scripts/schema_docs.py --write")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the README's tables and update the lock")
    mode.add_argument("--check", action="store_true", help="exit 1 if the README's tables or the lock are stale")
    args = parser.parse_args(argv)
    locked = load_lock()
    breaking, stale = lock_problems(locked)
    if args.write:
        if breaking:
            print("\n".join(breaking), file=sys.stderr)
            return 1
        text = README.read_text(encoding="utf-8")
        new = rewrite(text)
        if new != text:
            README.write_text(new, encoding="utf-8")
            print(f"rewrote the schema tables of {README.name}")
        now = current_lock()
        merged = {name: {**locked.get(name, {}), **now[name]} for name in now}
        merged.update({name: v for name, v in locked.items() if name not in now})
        if merged != locked:
            LOCK.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            print(f"locked: {', '.join(stale)}")
        problems = readme_problems(README.read_text(encoding="utf-8"))
        if problems:
            print("\n".join(problems), file=sys.stderr)
            return 1
        return 0
    if args.check:
        problems = breaking + stale + readme_problems(README.read_text(encoding="utf-8"))
        print("\n".join(problems) if problems else "schema tables and lock are up to date",
              file=sys.stderr if problems else sys.stdout)
        return 1 if problems else 0
    for name in schemas.output_names():
        print(f"<!-- schema:{name} v{schemas.versions(name)[-1]} -->\n{render(name)}<!-- /schema -->\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
