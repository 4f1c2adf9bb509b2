"""EosCheckProcessor: decoding, running aggregates, state round trip."""

from __future__ import annotations

import random

import orjson
import pytest

from stream_processor.engine.exceptions import DecodeError, InvalidRecordError
from stream_processor.market.processors import build_processor
from stream_processor.market.processors.eos_check import EosCheckProcessor, KeyAggregate
from stream_processor.engine.settings import EosCheckProcessorSettings
from stream_processor.engine.state import ChangelogStore


def _processor(outputs: list[str] | None = None) -> EosCheckProcessor:
    settings = EosCheckProcessorSettings(type="eos_check", consumer_group="g", input_topics=["in"],
                                 output_topics=outputs or ["echo", "agg"])
    processor = build_processor("check", settings)
    assert isinstance(processor, EosCheckProcessor)
    return processor


def _raw(i: int, key: str, value: int) -> bytes:
    return orjson.dumps({"id": i, "key": key, "value": value})


def test_every_record_gives_its_echo_and_the_running_aggregates_of_its_key() -> None:
    proc = _processor()
    store = proc.new_store()
    rng = random.Random(7)
    values: dict[str, list[int]] = {}
    for i in range(500):
        key, value = f"k{rng.randrange(5)}", rng.randint(-1000, 1000)
        raw = _raw(i, key, value)
        out = proc.process(proc.decode(raw, key.encode()), store, "in", 0, i)
        values.setdefault(key, []).append(value)
        seen = values[key]
        assert out[0] == ("echo", key.encode(), raw)  # byte for byte
        topic, out_key, doc = out[1]
        assert (topic, out_key) == ("agg", key.encode())
        assert orjson.loads(doc) == {"id": i, "key": key, "count": len(seen), "sum": sum(seen),
                                     "min": min(seen), "max": max(seen)}
    assert store.dirty == set(values)


def test_store_rebuilt_from_its_changelog_continues_identically() -> None:
    proc = _processor()
    store = proc.new_store()
    for i, (key, value) in enumerate([("a", 5), ("b", -3), ("a", 9), ("a", -20)]):
        proc.process(proc.decode(_raw(i, key, value), None), store, "in", 0, i)
    rebuilt = ChangelogStore(proc.state_from)
    for key, value in store.changelog_records():
        rebuilt.load(key, value)
    nxt = proc.decode(_raw(9, "a", 100), None)
    assert proc.process(nxt, store, "in", 0, 9) == proc.process(nxt, rebuilt, "in", 0, 9)
    assert KeyAggregate.from_state(rebuilt.data["a"].to_state()).to_state() == {  # type: ignore[union-attr]
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
def test_bad_records_raise_record_errors(raw: bytes | None, error: type[Exception]) -> None:
    with pytest.raises(error):
        _processor().decode(raw, None)


def test_it_needs_exactly_two_output_topics() -> None:
    with pytest.raises(ValueError, match="output_topics"):
        _processor(["only-one"])
