"""Loading the configuration: a YAML file (or a document), environment overrides, validated into
:class:`~stream_processor.engine.settings.Settings` once at start.

Any invalid value raises :class:`~stream_processor.engine.exceptions.ConfigError` naming the file (or
``environment``) and the key, for example ``config/streams-config.yaml: stream_processors.trades.batch_size: Input
should be a valid integer``.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .exceptions import ConfigError
from .settings import KeyedError, Settings, _location


# Environment variable -> (path in the YAML document, parser). None in the path means "every processor".
def _int(raw: str) -> int:
    return int(raw.strip())


def _servers(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


ENV_OVERRIDES: dict[str, tuple[tuple[str | None, ...], Any]] = {
    "KAFKA_BOOTSTRAP_SERVERS": (("kafka", "bootstrap_servers"), _servers),
    "PROCESSOR_ID": (("processor_id",), str),
    "GROUP_INSTANCE_ID": (("kafka", "group_instance_id"), str),
    "BATCH_SIZE": (("stream_processors", None, "batch_size"), _int),
    "COMMIT_INTERVAL_MS": (("kafka", "commit_interval_ms"), _int),
    "MAX_POLL_RECORDS": (("kafka", "max_poll_records"), _int),
    "METRICS_PORT": (("monitoring", "metrics_port"), _int),
    "HEALTH_CHECK_PORT": (("monitoring", "health_check_port"), _int),
    "LOG_LEVEL": (("monitoring", "log_level"), str),
    "LOG_FORMAT": (("monitoring", "log_format"), str),
    "MONITORING_HOST": (("monitoring", "host"), str),
    "KAFKA_SECURITY_PROTOCOL": (("kafka", "security_protocol"), str),
    "KAFKA_SASL_MECHANISM": (("kafka", "sasl_mechanism"), str),
    "KAFKA_SASL_USERNAME": (("kafka", "sasl_username"), str),
    "KAFKA_SASL_PASSWORD": (("kafka", "sasl_password"), str),
    "KAFKA_SASL_PASSWORD_FILE": (("kafka", "sasl_password_file"), str),
    "KAFKA_SSL_CAFILE": (("kafka", "ssl_cafile"), str),
    "KAFKA_SSL_CERTFILE": (("kafka", "ssl_certfile"), str),
    "KAFKA_SSL_KEYFILE": (("kafka", "ssl_keyfile"), str),
    "KAFKA_SSL_KEY_PASSWORD": (("kafka", "ssl_key_password"), str),
    "KAFKA_SSL_KEY_PASSWORD_FILE": (("kafka", "ssl_key_password_file"), str),
}

#: Keys that hold a secret: only the environment may set them (the YAML is a ConfigMap, readable by many).
SECRET_KEYS = (("kafka", "sasl_password"), ("kafka", "ssl_key_password"))


def _apply_env(doc: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, (path, parse) in ENV_OVERRIDES.items():
        raw = environ.get(name)
        if raw is None or raw == "":
            continue
        try:
            value = parse(raw)
        except ValueError:
            raise ConfigError("environment", name, f"cannot parse {raw!r}") from None
        if path[1:2] == (None,):
            for proc in (doc.get(str(path[0])) or {}).values():
                if isinstance(proc, dict):
                    proc[path[2]] = value
            continue
        node = doc
        for part in path[:-1]:
            node = node.setdefault(str(part), {})
        node[str(path[-1])] = value


def _key_of(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def load_settings(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    types: Mapping[str, Any] | None = None,
    doc: Mapping[str, Any] | None = None,
    defaults: Mapping[str, Any] | None = None,
    extra_topics: Mapping[str, Any] | None = None,
    sections: Mapping[str, type[BaseModel]] | None = None,
) -> Settings:
    """Read, override from ``environ`` (default ``os.environ``) and validate the configuration.

    ``path``: the YAML file; None: no file (the document is ``doc``, else empty: defaults and environment only).
    ``types``: the processor types entries may name (an App's registry; default the global one, see
    :mod:`stream_processor.engine.registry`). ``doc``: the document itself instead of reading ``path`` (which then
    only names it in errors; without a path errors name ``(settings)``). ``defaults``: values used where the
    document has none, merged key by key into its mappings (an App's id, its default broker). ``extra_topics``:
    ``topics`` entries used where the document has none (an App's declared partitions). ``sections``: models of the
    application's top-level sections, by key (see :class:`Settings`).

    Raises:
        ConfigError: the file is missing or not YAML, or a key is unknown, missing or of a wrong type.
    """
    environ = os.environ if environ is None else environ
    source = str(path) if path is not None else "(settings)"
    if doc is None and path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(source, "(file)", f"cannot read: {exc.strerror}") from None
        try:
            doc = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(source, "(file)", f"not valid YAML: {exc}") from None
        if not isinstance(doc, dict):
            raise ConfigError(source, "(top level)", "must be a mapping")
    else:
        doc = copy.deepcopy(dict(doc or {}))
    for section, key in SECRET_KEYS:
        if isinstance(doc.get(section), dict) and doc[section].get(key) is not None:
            raise ConfigError(source, f"{section}.{key}", f"a secret does not belong in the config file: set "
                                                          f"environment KAFKA_{key.upper()} or "
                                                          f"{section}.{key}_file")
    _merge_defaults(doc, defaults or {})
    if extra_topics:
        doc["topics"] = {**extra_topics, **(doc.get("topics") or {})}
    _apply_env(doc, environ)
    try:
        return Settings.model_validate(doc, context={"types": types, "sections": sections})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = _location(first)
        key = _key_of(loc)
        origin = next(
            (f"environment {name}" for name, (p, _) in ENV_OVERRIDES.items()
             if environ.get(name) and _matches(p, loc)),
            source,
        )
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        keyed = (first.get("ctx") or {}).get("error")
        reason = keyed.reason if isinstance(keyed, KeyedError) else first["msg"]
        raise ConfigError(origin, key, reason + more) from None


def _merge_defaults(doc: dict[str, Any], defaults: Mapping[str, Any]) -> None:
    """Set in ``doc`` every value of ``defaults`` it lacks, descending into mappings both have."""
    for key, value in defaults.items():
        if key not in doc:
            doc[key] = copy.deepcopy(value)
        elif isinstance(value, Mapping) and isinstance(doc[key], dict):
            _merge_defaults(doc[key], value)


def _matches(path: tuple[str | None, ...], loc: tuple[Any, ...]) -> bool:
    return len(path) == len(loc) and all(p is None or p == str(part) for p, part in zip(path, loc, strict=True))
