"""A Faust agent ports by changing only its import: the same source under faust-streaming and under this engine.

``AGENT_BODY`` is an agent written for faust-streaming 0.15.3: a ``faust.Record`` value type, ``app.Table``\\ s with
``default=int`` / ``default=float``, ``async for`` over the stream and ``yield`` to a sink topic. It is executed
twice, in two fresh modules, byte for byte the same apart from its first line:

- ``import faust``, run by Faust's own unit-test machinery (``agent.test_context(channel=<its input topic>)``,
  ``await agent.put(value_bytes, key=...)``): Faust decodes each value with its topic's schema, and what the agent
  yields is recorded in ``agent.results`` (the test wrapper's sink) and passed to the real sink topic, which
  serializes it as the worker would; only the producer hop (``publish_message``, which needs a broker) is
  replaced by a recorder;
- ``import stream_processor as faust``, run by :class:`~stream_processor.engine.testing.TestDriver`.

Only the ``app = ...`` line differs (the two Apps take different arguments), so each module gets its ``app``
injected before the shared source runs. Both get the same input: real Binance spot trades (BTCUSDT and ETHUSDT
from ``feeds/binance-hftbacktest``, merged in trade-time order), as the same JSON bytes keyed by symbol. The yielded
values must be the same sequence, the sink records' value bytes identical, and the tables equal at the end.
"""

from __future__ import annotations

import asyncio
import gzip
import types
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_processor.engine.testing import TestDriver

FAUST_IMPORT = "import faust"
OUR_IMPORT = "import stream_processor as faust"

# Written for faust-streaming; runs after ``app`` is defined (injected: the Apps' constructors differ).
AGENT_BODY = '''

class Trade(faust.Record):
    symbol: str
    trade_id: int
    price: float
    size: float
    buyer_maker: bool


trades_topic = app.topic("trades", value_type=Trade)
stats_topic = app.topic("trade_stats")

trade_counts = app.Table("trade_counts", default=int)
volume = app.Table("volume", default=float)
notional = app.Table("notional", default=float)
buy_volume = app.Table("buy_volume", default=float)


@app.agent(trades_topic, sink=[stats_topic])
async def trade_stats(stream):
    async for trade in stream:
        trade_counts[trade.symbol] += 1
        volume[trade.symbol] += trade.size
        notional[trade.symbol] += trade.price * trade.size
        if not trade.buyer_maker:
            buy_volume[trade.symbol] += trade.size
        yield {
            "symbol": trade.symbol,
            "trade_id": trade.trade_id,
            "side": "sell" if trade.buyer_maker else "buy",
            "trades": trade_counts[trade.symbol],
            "volume": volume[trade.symbol],
            "vwap": notional[trade.symbol] / volume[trade.symbol],
            "buy_share": buy_volume[trade.symbol] / volume[trade.symbol],
        }
'''

TABLES = ("trade_counts", "volume", "notional", "buy_volume")
TRADES_PER_SYMBOL = 250
FEED_FILES = ("btcusdt_20240808.gz", "ethusdt_20240808.gz")


def agent_source(import_line: str) -> str:
    """The agent's source with ``import_line`` as its first line."""
    return import_line + AGENT_BODY


def load_module(name: str, source: str, app: Any) -> types.ModuleType:
    """Execute ``source`` as a fresh module ``name`` whose ``app`` is already defined."""
    module = types.ModuleType(name)
    module.app = app
    exec(compile(source, f"<{name}>", "exec", dont_inherit=True), module.__dict__)  # noqa: S102 - the agent source under test
    return module


def load_trades(shared_data: Path) -> list[dict[str, Any]]:
    """Real spot trades, ``TRADES_PER_SYMBOL`` of each symbol's tape from its start, cut at the earliest last trade
    time so the merged tape is complete, in trade-time order: the JSON objects the input topic holds."""
    tapes = []
    for name in FEED_FILES:
        tape = []
        with gzip.open(shared_data / "feeds" / "binance-hftbacktest" / "spot" / name, "rt") as feed:
            for line in feed:
                msg = orjson.loads(line.split(" ", 1)[1])
                if not msg.get("stream", "").endswith("@trade"):
                    continue
                t = msg["data"]
                tape.append({"symbol": t["s"], "trade_id": t["t"], "price": float(t["p"]), "size": float(t["q"]),
                             "buyer_maker": t["m"], "time_ms": t["T"]})
                if len(tape) == TRADES_PER_SYMBOL:
                    break
        assert len(tape) == TRADES_PER_SYMBOL, name
        tapes.append(tape)
    cut = min(tape[-1]["time_ms"] for tape in tapes)
    merged = [t for tape in tapes for t in tape if t["time_ms"] <= cut]
    merged.sort(key=lambda t: (t["time_ms"], t["symbol"], t["trade_id"]))
    return merged


async def run_faust(trades: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The agent under faust-streaming's ``agent.test_context()``."""
    try:
        import faust
    except ImportError as exc:  # a missing faust fails the test, it never skips it
        pytest.fail(f"faust-streaming is not installed ({exc}): pip install -r requirements-dev.txt")
    # No broker: a port where nothing listens, so a stray connection fails at once instead of finding a test broker.
    app = faust.App("faust-port", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)
    module = load_module("faust_port_faust", agent_source(FAUST_IMPORT), app)

    published: list[tuple[Any, Any]] = []

    async def publish_message(fut: Any, wait: bool = False) -> Any:
        published.append((fut.message.key, fut.message.value))  # serialized as the worker would send them
        return fut

    monkeypatch.setattr(module.stats_topic, "publish_message", publish_message)
    async with module.trade_stats.test_context(channel=module.trades_topic) as agent:
        for trade in trades:
            await agent.put(orjson.dumps(trade), key=trade["symbol"].encode())
        yielded = [agent.results[i] for i in range(len(agent.results))]
    tables = {name: dict(getattr(module, name).data.items()) for name in TABLES}
    return {"yielded": yielded, "sink_values": [v for _, v in published], "sink_keys": [k for k, _ in published],
            "tables": tables}


def run_ours(trades: list[dict[str, Any]]) -> dict[str, Any]:
    """The agent under this engine's TestDriver (4 input partitions, keyed by symbol)."""
    import stream_processor

    app = stream_processor.App("faust-port", settings={"kafka": {"bootstrap_servers": ["127.0.0.1:1"]},
                                                       "topics": {"trades": {"partitions": 4}}})
    load_module("faust_port_ours", agent_source(OUR_IMPORT), app)
    with TestDriver(app) as driver:
        for trade in trades:
            driver.pipe("trades", orjson.dumps(trade), key=trade["symbol"].encode())
        records = driver.read("trade_stats")
        return {"yielded": [r.json() for r in records], "sink_values": [r.value for r in records],
                "sink_keys": [r.key for r in records], "tables": {name: driver.table(name) for name in TABLES},
                "dead_letters": driver.dead_letters()}


def test_sources_differ_only_in_the_import() -> None:
    faust_lines = agent_source(FAUST_IMPORT).splitlines()
    our_lines = agent_source(OUR_IMPORT).splitlines()
    assert faust_lines[0] == "import faust"
    assert our_lines[0] == "import stream_processor as faust"
    assert faust_lines[1:] == our_lines[1:]


def test_faust_agent_runs_unchanged(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trades = load_trades(shared_data)
    assert len(trades) > 300 and {t["symbol"] for t in trades} == {"BTCUSDT", "ETHUSDT"}

    faust_run = asyncio.run(asyncio.wait_for(run_faust(trades, monkeypatch), timeout=60))
    ours = run_ours(trades)

    assert ours["dead_letters"] == []
    assert len(faust_run["yielded"]) == len(trades)
    # The sequence of yielded values, one per trade, in input order.
    assert [(v["symbol"], v["trade_id"]) for v in ours["yielded"]] == [(t["symbol"], t["trade_id"]) for t in trades]
    assert ours["yielded"] == faust_run["yielded"]
    # What reaches the sink topic: the same value bytes (both JSON-encode with orjson).
    assert ours["sink_values"] == faust_run["sink_values"]
    # Faust sends a yielded value without a key; this engine keys it like the input record (App.agent).
    assert faust_run["sink_keys"] == [None] * len(trades)
    assert ours["sink_keys"] == [t["symbol"].encode() for t in trades]
    # The tables at the end.
    assert ours["tables"] == faust_run["tables"]
    assert ours["tables"]["trade_counts"] == {
        s: sum(t["symbol"] == s for t in trades) for s in ("BTCUSDT", "ETHUSDT")}
