"""``stream-processor tail`` on a transactional topic, where every commit leaves a marker at the end; the record
headers (a dead-letter record's reason and source) and timestamps it prints; a topic that does not exist."""

from __future__ import annotations

import asyncio
import time
import uuid
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from click.testing import CliRunner

import stream_processor.cli as cli
from stream_processor.engine.app import App
from stream_processor.engine.collector import dead_letter_headers
from stream_processor.engine.settings import TopicSettings
from stream_processor.engine.tail import TopicNotFoundError, tail_topic
from stream_processor.engine.topics import ensure_topics
from stream_processor.market.settings import DEFAULT_CONFIG
from tests.helpers import isolated_settings


async def test_tail_returns_the_last_records_despite_commit_markers(kafka_bootstrap: str) -> None:
    settings = isolated_settings(kafka_bootstrap)
    topic = f"tail-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, {topic: TopicSettings(partitions=1)})
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"tail-{topic}")
    await producer.start()
    try:
        for i in range(5):  # one record per transaction: data and markers alternate
            async with producer.transaction():
                await producer.send_and_wait(topic, b'{"n": %d}' % i, key=b"k")
        await producer.begin_transaction()  # an aborted record at the end takes an offset too
        await producer.send_and_wait(topic, b'{"n": 99}', key=b"k")
        await producer.abort_transaction()
    finally:
        await producer.stop()
    assert [r["value"] for r in await tail_topic(settings, topic, 1)] == [{"n": 4}]
    assert [r["value"]["n"] for r in await tail_topic(settings, topic, 3)] == [2, 3, 4]


async def _dead_letter_topic(bootstrap: str) -> tuple[Any, str, int]:
    """A dead-letter topic holding one committed record with the runner's headers; (settings, topic, timestamp)."""
    settings = isolated_settings(bootstrap)
    topic = f"dlq-{uuid.uuid4().hex[:8]}"
    await ensure_topics(settings, {topic: TopicSettings(partitions=2)})
    source = SimpleNamespace(topic="raw_trades", partition=3, offset=1234)
    headers = dead_letter_headers("invalid", "price: Input should be greater than 0", "trades", source)
    headers.append(("odd", b"\xff\xfebytes"))  # not UTF-8: replaced, not an error
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"tail-{topic}")
    await producer.start()
    stamp = int(time.time() * 1000) - 60_000
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b'{"e":"trade","s":"BTCUSDT","p":"-1"}', key=b"BTCUSDT",
                                         headers=headers, timestamp_ms=stamp)
        async with producer.transaction():
            await producer.send_and_wait(topic, b"not json", key=None, timestamp_ms=stamp + 1)
    finally:
        await producer.stop()
    return settings, topic, stamp


async def test_tail_shows_headers_and_timestamps(kafka_bootstrap: str) -> None:
    settings, topic, stamp = await _dead_letter_topic(kafka_bootstrap)
    dead, plain = await tail_topic(settings, topic, 5)
    assert dead["headers"] == {
        "reason": "invalid", "error": "price: Input should be greater than 0", "processor": "trades",
        "source_topic": "raw_trades", "source_partition": "3", "source_offset": "1234", "odd": "\ufffd\ufffdbytes",
    }
    assert dead["timestamp"] == stamp and dead["key"] == "BTCUSDT"
    assert dead["value"] == {"e": "trade", "s": "BTCUSDT", "p": "-1"}
    assert plain == {"partition": plain["partition"], "offset": plain["offset"], "timestamp": stamp + 1, "key": "",
                     "headers": {}, "value": "not json"}


async def test_tail_of_a_missing_topic_is_an_error(kafka_bootstrap: str) -> None:
    with pytest.raises(TopicNotFoundError, match=r"topic 'no-such-topic-\w+' does not exist"):
        await tail_topic(isolated_settings(kafka_bootstrap), f"no-such-topic-{uuid.uuid4().hex[:8]}", 3)


# --- the command (synchronous tests: it runs its own event loop) -------------------------------------------------


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(cli, "configure_logging", lambda *args, **kwargs: None)  # keep pytest's log handlers

    def run(bootstrap: str, *args: str) -> Any:
        doc = yaml.safe_load(DEFAULT_CONFIG.read_text())  # the shipped configuration, on the test broker
        doc["kafka"]["bootstrap_servers"] = [bootstrap]
        app = App("tail-test", settings=doc)
        return CliRunner().invoke(cli.main, list(args), obj=app, env={"KAFKA_BOOTSTRAP_SERVERS": None})

    return run


def test_the_tail_command_prints_headers(kafka_bootstrap: str, run_cli: Any) -> None:
    _, topic, stamp = asyncio.run(_dead_letter_topic(kafka_bootstrap))
    result = run_cli(kafka_bootstrap, "tail", topic, "-n", "2")
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [line["timestamp"] for line in lines] == [stamp, stamp + 1]
    assert lines[0]["headers"]["reason"] == "invalid"
    assert lines[0]["headers"]["source_offset"] == "1234"
    assert list(lines[0]) == ["partition", "offset", "timestamp", "key", "headers", "value"]


def test_the_tail_command_on_a_missing_topic(kafka_bootstrap: str, run_cli: Any) -> None:
    topic = f"no-such-topic-{uuid.uuid4().hex[:8]}"
    result = run_cli(kafka_bootstrap, "tail", topic)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"topic '{topic}' does not exist\n"


def test_the_tail_command_refuses_n_below_one(kafka_bootstrap: str, run_cli: Any) -> None:
    result = run_cli(kafka_bootstrap, "tail", "raw_trades", "-n", "0")
    assert result.exit_code == 2
    assert "Invalid value for '-n': 0 is not in the range x>=1" in result.stderr
