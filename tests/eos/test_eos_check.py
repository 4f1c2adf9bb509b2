"""EosCheckProcessor, driven by the TestDriver (no broker): decoding, running aggregates, state restored from the
changelog; the type is registered by importing its module."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from stream_processor.engine.exceptions import DecodeError, InvalidRecordError
from stream_processor.engine.registry import build_processor
from stream_processor.engine.settings import Settings, load_settings
from stream_processor.engine.testing import TestDriver, TestRecord
from tests.eos.eos_check import EosCheckProcessor, KeyAggregate

ENTRY = {"type": "eos_check", "input_topics": ["in"], "output_topics": ["echo", "agg"]}


def settings(**entries: dict[str, Any]) -> Settings:
    """Settings with these ``stream_processors`` entries (name -> entry) and nothing else."""
    return load_settings(doc={"kafka": {"bootstrap_servers": ["127.0.0.1:9092"]}, "stream_processors": entries},
                         environ={})


def reason(record: TestRecord) -> str | None:
    """The dead-letter reason of a dead-lettered record."""
    return record.header("reason")


def _driver(outputs: list[str] | None = None) -> TestDriver:
    driver = TestDriver(settings=settings(check={**ENTRY, "output_topics": outputs or ["echo", "agg"]}))
    assert isinstance(driver.processors["check"], EosCheckProcessor)
    return driver


def _raw(i: int, key: str, value: int) -> bytes:
    return orjson.dumps({"id": i, "key": key, "value": value})


def test_every_record_gives_its_echo_and_the_running_aggregates_of_its_key() -> None:
    rng = random.Random(7)
    values: dict[str, list[int]] = {}
    with _driver() as driver:
        for i in range(500):
            key, value = f"k{rng.randrange(5)}", rng.randint(-1000, 1000)
            raw = _raw(i, key, value)
            driver.pipe("in", raw, key=key)
            values.setdefault(key, []).append(value)
            seen = values[key]
            [echo] = driver.read("echo")
            assert (echo.key, echo.value) == (key.encode(), raw)  # byte for byte
            [agg] = driver.read("agg")
            assert agg.key == key.encode()
            assert agg.json() == {"id": i, "key": key, "count": len(seen), "sum": sum(seen),
                                  "min": min(seen), "max": max(seen)}
        assert driver.dead_letters() == []
        assert driver.table().keys() == set(values)
        assert {r.key.decode() for r in driver.changelog("check")} == set(values)


def test_store_rebuilt_from_its_changelog_continues_identically() -> None:
    records = [("a", 5), ("b", -3), ("a", 9), ("a", -20)]
    nxt = _raw(9, "a", 100)
    results = []
    for crash in (False, True):
        with _driver() as driver:
            for i, (key, value) in enumerate(records):
                driver.pipe("in", _raw(i, key, value), key=key)
            driver.read("echo"), driver.read("agg")
            if crash:
                before = driver.table()["a"]
                driver.restart()
                assert driver.table()["a"] is not before
            driver.pipe("in", nxt, key="a")
            results.append((driver.read("echo"), driver.read("agg"), driver.table()["a"]))
    (echo, agg, state), (echo2, agg2, state2) = results
    assert [(r.key, r.value) for r in echo] == [(r.key, r.value) for r in echo2] == [(b"a", nxt)]
    assert [(r.key, r.value) for r in agg] == [(r.key, r.value) for r in agg2]
    assert agg2[0].json() == {"id": 9, "key": "a", "count": 4, "sum": 94, "min": -20, "max": 100}
    assert isinstance(state2, KeyAggregate)
    assert KeyAggregate.from_state(state2.to_state()).to_state() == state.to_state() == {
        "count": 4, "sum": 94, "min": -20, "max": 100}


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (None, DecodeError),
        (b"not json", DecodeError),
        (b"[1, 2]", InvalidRecordError),
        (b'{"id": "1", "key": "a", "value": 1}', InvalidRecordError),
        (b'{"id": 1, "key": 2, "value": 1}', InvalidRecordError),
        (b'{"id": 1, "key": "a", "value": 1.5}', InvalidRecordError),
        (b'{"id": 1, "key": "a"}', InvalidRecordError),
        (b'{"id": true, "key": "a", "value": 1}', InvalidRecordError),
    ],
)
def test_bad_records_are_dead_lettered_with_their_reason(raw: bytes | None, error: type[Exception]) -> None:
    with _driver() as driver:
        driver.pipe("in", raw, key=b"a")
        [dead] = driver.dead_letters()
        assert (reason(dead), dead.value, dead.key) == (error.reason, raw, b"a")
        assert dead.header("processor") == "check" and dead.header("source_topic") == "in"
        assert driver.read("echo") == driver.read("agg") == [] and driver.table() == {}
    with pytest.raises(error):
        build_processor("check", settings(check=ENTRY)).decode(raw, None)


def test_it_needs_exactly_two_output_topics() -> None:
    with pytest.raises(ValueError, match="output_topics"):
        _driver(["only-one"])
