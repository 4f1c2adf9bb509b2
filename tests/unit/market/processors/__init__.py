"""Helpers of the market processors' tests: the real recorded feeds as Kafka records, settings, a TestDriver run.

The processors are driven through :class:`stream_processor.engine.testing.TestDriver` (no broker): each feed
line is piped as the Kafka record a replay would publish, its raw bytes keyed by the symbol and timestamped with
the collector's receive time.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from stream_processor.engine.settings import Settings, load_settings
from stream_processor.engine.testing import TestDriver, TestRecord
from stream_processor.market.models import MarketRecord
from stream_processor.market.serde.decode import decode, encode
from stream_processor.market.serde.feed import iter_feed, stream_kind
from stream_processor.market.serde.normalized import to_normalized
from stream_processor.market.settings import DEFAULT_CONFIG

REPO_ROOT = Path(__file__).resolve().parents[4]
SHARED_DATA = Path(os.environ.get("SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
SPOT = SHARED_DATA / "feeds" / "binance-hftbacktest" / "spot"
DAY_MS = 86_400_000
SOURCE_FIELDS = {"source_topic", "source_partition", "source_offset"}


@dataclasses.dataclass(frozen=True)
class Line:
    """One message of a recorded feed: its Kafka timestamp (the collector's receive time, ms), the raw bytes as
    recorded, and the record they decode to."""

    timestamp: int
    raw: bytes
    record: Any

    @property
    def key(self) -> bytes:
        return self.record.symbol.encode()

    def replace(self, **changes: Any) -> Line:
        """This line with the record's fields changed, written in the normalized form (same timestamp)."""
        record = dataclasses.replace(self.record, **changes)
        return Line(self.timestamp, raw_of(record), record)


def need(path: Path) -> Path:
    """``path``, or the test fails: the shared data must be there."""
    if not path.is_file():
        pytest.fail(f"shared market data missing: {path} (set SHARED_DATA)")
    return path


def raw_of(record: MarketRecord) -> bytes:
    """The normalized-form bytes of a (possibly changed) record: they decode back to it."""
    return encode(to_normalized(record))


def feed(symbol: str, days: tuple[str, ...] = ("20240808",), kind: str | None = None) -> list[Line]:
    """The lines of ``SPOT/<symbol>_<day>.gz`` (of one stream kind: trades, orderbook), in file order."""
    out = []
    key = symbol.upper().encode()
    for day in days:
        for ns, raw in iter_feed(need(SPOT / f"{symbol}_{day}.gz")):
            if kind is None or stream_kind(raw) == kind:
                out.append(Line(ns // 1_000_000, raw, decode(raw, key)))
    return out


def settings(**entries: dict[str, Any]) -> Settings:
    """The shipped configuration with its ``stream_processors`` replaced by ``entries`` (name -> entry)."""
    doc = yaml.safe_load(DEFAULT_CONFIG.read_text())
    doc["stream_processors"] = entries
    return load_settings(DEFAULT_CONFIG, environ={}, doc=doc)


def shipped(name: str, entry: dict[str, Any] | None = None, **params: Any) -> Settings:
    """The shipped configuration with only processor ``name``: its entry updated with ``entry``, its params with
    ``params``."""
    doc = yaml.safe_load(DEFAULT_CONFIG.read_text())
    spec = {**doc["stream_processors"][name], **(entry or {})}
    spec["params"] = {**spec.get("params", {}), **params}
    doc["stream_processors"] = {name: spec}
    return load_settings(DEFAULT_CONFIG, environ={}, doc=doc)


def pipe(driver: TestDriver, topic: str, line: Line, **kwargs: Any) -> TestRecord:
    """Pipe one line to ``topic``, keyed by its symbol, at its timestamp."""
    return driver.pipe(topic, line.raw, key=line.key, timestamp=line.timestamp, **kwargs)


def pipe_all(driver: TestDriver, topic: str, lines: list[Line], output: str) -> list[tuple[TestRecord, list[Any]]]:
    """Pipe every line; each input record with the JSON values it wrote to ``output``."""
    out = []
    for line in lines:
        record = pipe(driver, topic, line)
        out.append((record, driver.values(output)))
    return out


def by_source(inputs: list[TestRecord], outputs: list[TestRecord]) -> list[tuple[TestRecord, list[TestRecord]]]:
    """Each input record with the outputs that name it as their source (``source_topic/partition/offset``)."""
    index = {(r.topic, r.partition, r.offset): i for i, r in enumerate(inputs)}
    grouped: list[list[TestRecord]] = [[] for _ in inputs]
    for out in outputs:
        doc = out.json()
        grouped[index[(doc["source_topic"], doc["source_partition"], doc["source_offset"])]].append(out)
    return list(zip(inputs, grouped, strict=True))


def without_source(doc: dict[str, Any]) -> dict[str, Any]:
    """An output document without the fields that name its input record."""
    return {k: v for k, v in doc.items() if k not in SOURCE_FIELDS}


def reason(record: TestRecord) -> str | None:
    """The dead-letter reason of a dead-lettered record."""
    return record.header("reason")


def state_bytes(obj: Any) -> bytes:
    """A live state object's snapshot, as bytes (to compare states)."""
    return orjson.dumps(obj.to_state())
