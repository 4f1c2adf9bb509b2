"""A changelog written by the code of commit df71527 restores with this code, which then continues as that code did.

The fixture (fixtures/df71527_changelog.json.gz, written by fixtures/make_df71527_changelog.py running that commit's
code) holds, per case, the compacted changelog of one market processor's task after some real Binance records, in
that code's layouts (layout 1: ``kind``/``version`` inside every object, see stream_processor/market/snapshot.py),
with its offset markers, and what that code sent for the next records. Here the changelog is restored with
:func:`~stream_processor.engine.state.restore` into this code's stores and the same records are processed: every
output must be byte for byte what df71527 sent, and no key may be reset.

The joined SMC context is the exception: df71527 kept it in the store ``smc_context``, which this code no longer
declares (its records are skipped on restore; the versioned store fills from the next context record), so those
outputs are compared without ``smc`` (and the new ``smc_stale``).
"""

from __future__ import annotations

import base64
import gzip
import heapq
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import TopicPartition

from stream_processor.engine.processor import ProcessorContext
from stream_processor.engine.registry import build_processor
from stream_processor.engine.settings import Settings, load_settings
from stream_processor.engine.state import TaskStores, restore
from stream_processor.market.context import CONTEXT_STORE
from stream_processor.market.serde.feed import iter_feed, stream_kind
from stream_processor.market.settings import DEFAULT_CONFIG

from . import SPOT, need

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "df71527_changelog.json.gz"
DAYS = ("20240808", "20240809")
CONTEXT = "smc_context"
TP = TopicPartition("changelog", 0)


@pytest.fixture(scope="module")
def fixture() -> dict[str, Any]:
    return orjson.loads(gzip.decompress(FIXTURE.read_bytes()))


def lines(kind: str) -> list[tuple[int, bytes, bytes]]:
    """``(timestamp ms, key, raw)`` of the spot feeds of ``kind``, both symbols by receive time (as the fixture)."""
    per_symbol = []
    for symbol in ("btcusdt", "ethusdt"):
        per_symbol.append([(ns // 1_000_000, symbol.upper().encode(), raw) for day in DAYS
                           for ns, raw in iter_feed(need(SPOT / f"{symbol}_{day}.gz")) if stream_kind(raw) == kind])
    return list(heapq.merge(*per_symbol, key=lambda line: line[0]))


def settings(entries: dict[str, Any]) -> Settings:
    doc = yaml.safe_load(DEFAULT_CONFIG.read_text())
    shipped = doc["stream_processors"]
    doc["stream_processors"] = {name: {**shipped.get(entry["type"], {}), **entry} for name, entry in entries.items()}
    return load_settings(DEFAULT_CONFIG, environ={}, doc=doc)


class Changelog:
    """The calls ``restore`` makes of a group-less consumer, over the fixture's records."""

    def __init__(self, records: list[tuple[bytes, bytes | None]]) -> None:
        self.records = [SimpleNamespace(offset=i, key=k, value=v) for i, (k, v) in enumerate(records)]
        self.pos = 0

    def assign(self, tps: list[TopicPartition]) -> None:
        pass

    async def seek_to_beginning(self, tp: TopicPartition) -> None:
        self.pos = 0

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.pos = offset

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.records) for tp in tps}

    async def position(self, tp: TopicPartition) -> int:
        return self.pos

    async def getmany(self, tp: TopicPartition, timeout_ms: int, max_records: int) -> dict[TopicPartition, list]:
        batch = self.records[self.pos : self.pos + 50]
        self.pos += len(batch)
        return {tp: batch}


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


def test_the_fixture_is_what_df71527_wrote(fixture: dict[str, Any]) -> None:
    assert fixture["commit"].startswith("df71527")
    for name, case in fixture["cases"].items():
        values = [orjson.loads(_bytes(v)) for _, v in case["changelog"] if v is not None]  # type: ignore[arg-type]
        versioned = [v for v in values if type(v) is dict and v.keys() == {"v", "state"}]
        assert versioned and all(v["v"] == 1 for v in versioned), name  # layout 1, in the envelope
        assert any(b'"kind"' in _bytes(v) for _, v in case["changelog"] if v is not None), name  # type: ignore


@pytest.mark.parametrize("name", ["trades", "klines", "orderbook_delta", "orderbook_full", "trades_joined"])
async def test_a_df71527_changelog_restores_and_continues_as_that_code_did(fixture: dict[str, Any],
                                                                          name: str) -> None:
    case = fixture["cases"][name]
    s = settings(case["entries"])
    processor, *feeder = list(case["entries"])
    proc = build_processor(processor, s)
    stores = TaskStores(proc.stores(), "fail")  # a snapshot this code cannot read fails the test
    records = [(_bytes(k), _bytes(v)) for k, v in case["changelog"]]
    restored = await restore(stores, Changelog(records), TP)  # type: ignore[arg-type]
    assert stores.resets == 0 and len(stores[""]) > 0
    ctx = ProcessorContext(processor, 0, stores)
    ctx.partition, ctx.stream_time = 0, restored.stream_time
    proc.init(ctx)
    offsets = {topic: restored.offset(topic, len(proc.settings.input_topics) == 1) or 0
               for topic in proc.settings.input_topics}
    topic = proc.settings.input_topics[0]
    klines = kctx = None
    if feeder:  # the klines processor whose context records the joining one reads (run from the start)
        assert CONTEXT_STORE in stores.stores and len(stores[CONTEXT_STORE]) == 0  # df71527's store: skipped
        klines = build_processor(feeder[0], s)
        kctx = ProcessorContext(feeder[0], 0, TaskStores(klines.stores()))
        kctx.partition = 0
        klines.init(kctx)
    sent: list[list[Any]] = []
    for i, (timestamp, key, raw) in enumerate(lines(case["kind"])[: case["stop_at"]]):
        contexts = []
        if klines is not None and kctx is not None:
            kctx.run(klines, "raw_trades", i, timestamp, key, (), raw)
            kctx.punctuate_stream_time()
            contexts = [(k, v) for t, k, v, *_ in kctx.outputs if t == CONTEXT]
            kctx.outputs.clear()
        if i < case["restore_at"]:
            continue
        assert offsets[topic] == i
        for topic_, k, v in [(topic, key, raw), *((CONTEXT, k, v) for k, v in contexts)]:
            ctx.run(proc, topic_, offsets[topic_], timestamp, k, (), v)
            ctx.punctuate_stream_time()
            offsets[topic_] += 1
        sent.extend([i, t, k.decode(), v.decode()] for t, k, v, *_ in ctx.outputs)
        ctx.outputs.clear()
    expected = case["outputs"]
    assert len(sent) == len(expected) > 0
    if feeder:
        def strip(out: list[Any]) -> list[Any]:
            doc = orjson.loads(out[3])
            doc.pop("smc_stale", None)
            return [*out[:3], doc, doc.pop("smc")]

        new, old = [strip(out) for out in sent], [strip(out) for out in expected]
        assert [out[:4] for out in new] == [out[:4] for out in old]
        assert all(orjson.loads(out[3])["smc_stale"] is False for out in sent)
        # The versioned store fills from the context records read since: the trades after them carry one again.
        assert len(stores[CONTEXT_STORE]) > 0 and new[0][4] is None and new[-1][4] is not None
    else:
        assert sent == expected
    assert not proc.events.get("state_reset")
