"""The topics' JSON Schemas (stream_processor/market/schemas): valid draft 2020-12 schemas; real inputs (the shipped
sample, the shared Binance feeds, the normalized form's documented examples) conform to the input schemas and what the
decoder refuses they refuse; what the processors write from real inputs (the TestDriver, no broker) conforms to the
output schemas, and a missing, mistyped or undocumented field does not; released versions change only compatibly
(tests/unit/schemas_lock.json); the README's field tables are the rendered schemas."""

from __future__ import annotations

import copy
import gzip
import importlib.util
import itertools
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator

from stream_processor.engine.exceptions import RecordError
from stream_processor.engine.settings import load_settings
from stream_processor.engine.testing import TestDriver
from stream_processor.market import schemas
from stream_processor.market.schemas.compat import breaking_changes, shape
from stream_processor.market.serde import normalized
from stream_processor.market.serde.decode import decode
from stream_processor.market.serde.feed import iter_feed, record_symbol, stream_kind
from stream_processor.market.settings import DEFAULT_CONFIG
from stream_processor.market.smc.events import EVENT_TYPES
from tests.helpers import PENDING_FIELDS, validate_output

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = sorted((ROOT / "data" / "sample").glob("*.gz"))
FEED_LINES = 1500  # per shared feed file: enough of every kind (a few hundred trades, the snapshot), ~1 s each
OUTPUTS = ["enriched_trades", "enriched_orderbook", "enriched_klines", "smc_signals", "alerts", "dead_letter",
           "smc_context", "volume_profile"]


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("schema_docs", ROOT / "scripts" / "schema_docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


schema_docs = _script()


def _lines(path: Path, limit: int | None = None) -> list[tuple[int, bytes]]:
    return list(itertools.islice(iter_feed(path), limit))


@pytest.fixture(scope="module")
def sample() -> list[tuple[int, bytes]]:
    assert SAMPLE, "data/sample/*.gz (the demo's shipped slice) is missing"
    return [line for path in SAMPLE for line in _lines(path)]


def _settings(**processors: dict[str, Any]) -> Any:
    doc = yaml.safe_load(DEFAULT_CONFIG.read_text())
    doc["stream_processors"] = {name: {**doc["stream_processors"][name], **entry} for name, entry in processors.items()}
    return load_settings(DEFAULT_CONFIG, environ={}, doc=doc)


def _invalid(name: str, doc: Any) -> list[str]:
    return schemas.errors(name, doc)


# ---- the schema files ------------------------------------------------------------------------------------------


def _described(schema: Any, where: str) -> list[str]:
    """Paths of properties defined without a description, at every level."""
    missing = []
    if isinstance(schema, dict):
        for name, sub in schema.get("properties", {}).items():
            if not (isinstance(sub, dict) and sub.get("description")):
                missing.append(f"{where}.{name}")
        for key, sub in schema.items():
            if key not in ("if", "not"):  # conditions name a property, they do not define it
                missing += _described(sub, f"{where}/{key}")
    elif isinstance(schema, list):
        for i, sub in enumerate(schema):
            missing += _described(sub, f"{where}[{i}]")
    return missing


def test_every_schema_is_a_valid_draft_2020_12_schema_with_id_title_and_descriptions() -> None:
    assert set(OUTPUTS) <= set(schemas.names()) and schemas.output_names() == sorted(OUTPUTS)
    assert {"input/market", "input/binance", "input/normalized"} <= set(schemas.names())
    for name in schemas.names():
        for version in schemas.versions(name):
            doc = schemas.load(name, version)
            Draft202012Validator.check_schema(doc)
            assert doc["$schema"] == schemas.DRAFT, name
            assert doc["$id"] == f"{schemas.BASE_URI}{name}/v{version}.json", name
            assert doc["title"] and doc["description"], name
            assert _described(doc, name) == []
            schemas.validator(name, version).is_valid({})  # every $ref resolves (an unresolvable one raises)
    for name in schemas.output_names():
        doc = schemas.load(name)
        assert doc.get("additionalProperties") is False or doc.get("unevaluatedProperties") is False, name
        if name == "dead_letter":
            continue
        for field in set(doc["properties"]) - set(doc["required"]):  # a field some configurations leave out
            assert "absent" in doc["properties"][field]["description"].lower(), (name, field, "say when it is absent")


def test_load_versions_validator_and_errors() -> None:
    assert schemas.versions("enriched_trades")[0] == 1
    first = schemas.load("enriched_trades")
    first["title"] = "changed"
    assert schemas.load("enriched_trades")["title"] != "changed"  # a fresh copy each time
    assert schemas.validator("enriched_trades") is schemas.validator("enriched_trades")
    with pytest.raises(KeyError, match="no schema"):
        schemas.versions("nope")
    with pytest.raises(KeyError, match="no version 99"):
        schemas.load("alerts", 99)
    with pytest.raises(schemas.SchemaValidationError) as err:
        schemas.validate("enriched_orderbook", {**_book_doc(), "bands": [{"bps": "5"}]})
    assert str(err.value).startswith("enriched_orderbook v1: $.bands[0]")
    assert err.value.name == "enriched_orderbook" and err.value.version == 1


def test_topic_schemas_map_a_configuration_s_topics() -> None:
    settings = load_settings(DEFAULT_CONFIG, environ={})
    assert schemas.topic_schemas(settings) == {
        "enriched_trades": "enriched_trades", "enriched_orderbook": "enriched_orderbook",
        "enriched_klines": "enriched_klines", "smc_signals": "smc_signals", "alerts": "alerts",
        "dead_letter": "dead_letter", "smc_context": "smc_context", "volume_profile": "volume_profile"}


# ---- inputs ----------------------------------------------------------------------------------------------------


PAYLOAD_SCHEMAS = {"trade": "input/binance_trade", "aggTrade": "input/binance_agg_trade",
                   "depthUpdate": "input/binance_depth_update", "bookTicker": "input/binance_book_ticker",
                   "kline": "input/binance_kline", None: "input/binance_depth_snapshot"}


def _payload_schema(doc: dict[str, Any]) -> tuple[str, Any]:
    """The per-kind schema of a Binance message's payload, and the payload (what input/binance dispatches to)."""
    data = doc.get("data", doc)
    kind = data.get("e")
    if kind is None and "lastUpdateId" not in data:
        kind = "bookTicker"
    if kind == "depthUpdate" and "@depth" in doc.get("stream", "") and doc["stream"].split("@")[1] != "depth":
        return "input/binance_partial_depth", data
    return PAYLOAD_SCHEMAS[kind], data


BULK = frozenset({"input/binance_depth_update", "input/binance_book_ticker"})


def _check_inputs(lines: list[tuple[int, bytes]], where: str) -> Counter[str]:
    """Every line decoded and its kind counted; validated against its payload's schema: every trade and snapshot, the
    first 300 depth diffs and bookTickers and every 10th (jsonschema takes 0.1 to several ms a payload; they are
    three quarters of a feed);
    the first 300 lines and every 25th through the ``input/market`` dispatch as well."""
    kinds: Counter[str] = Counter()
    for i, (_, raw) in enumerate(lines):
        doc = orjson.loads(raw)
        name, payload = _payload_schema(doc)
        errors = []
        if name not in BULK or kinds[name] < 300 or kinds[name] % 10 == 0:
            errors += _invalid(name, payload)
        if i < 300 or i % 25 == 0:
            errors += _invalid("input/market", doc)
        assert errors == [], f"{where} line {i + 1}: {errors[:3]}"
        key = record_symbol(doc)
        decode(raw, key.encode() if key else b"BTCUSDT")  # the decoder agrees
        kinds[name] += 1
    return kinds


def test_the_shipped_sample_conforms_to_the_input_schemas(sample: list[tuple[int, bytes]]) -> None:
    kinds = _check_inputs(sample, "data/sample")
    assert kinds["input/binance_trade"] == 3589 + 3223 and kinds["input/binance_depth_snapshot"] == 2
    assert kinds["input/binance_book_ticker"] > 20_000 and kinds["input/binance_depth_update"] > 3000


def test_the_shared_binance_feeds_conform_to_the_input_schemas(shared_data: Path) -> None:
    files = sorted((shared_data / "feeds" / "binance-hftbacktest").glob("*/*.gz"))
    assert len(files) >= 5
    for path in files:
        kinds = _check_inputs(_lines(path, FEED_LINES), str(path))
        assert kinds["input/binance_trade"] and kinds["input/binance_depth_update"], path


def test_the_normalized_form_s_documented_examples_conform() -> None:
    text = normalized.__doc__.split("Examples, one per block", 1)[1].split("::", 1)[1]
    blocks = [orjson.loads(block) for block in text.strip().split("\n\n")]
    assert {b["type"] for b in blocks} == {"trade", "book_ticker", "depth_update", "depth_snapshot", "kline"}
    for block in blocks:
        assert _invalid("input/normalized", block) == [] and _invalid("input/market", block) == [], block
        decode(orjson.dumps(block))


BINANCE = {
    "trade": {"e": "trade", "E": 1723161255343, "s": "BTCUSDT", "t": 3735683259, "p": "61837.63", "q": "0.02",
              "T": 1723161255342, "m": True, "M": True},
    "aggTrade": {"e": "aggTrade", "E": 1723161255343, "s": "BTCUSDT", "a": 12, "p": "61837.63", "q": "0.02",
                 "f": 1, "l": 2, "T": 1723161255342, "m": False},
    "depthUpdate": {"e": "depthUpdate", "E": 1723161255208, "s": "BTCUSDT", "U": 5, "u": 9, "pu": 4,
                    "b": [["61737.63", "0.1"]], "a": [["61837.64", "0"]]},
    "bookTicker": {"u": 50093239212, "s": "BTCUSDT", "b": "61837.63", "B": "3.7", "a": "61837.64", "A": "1.5"},
    "kline": {"e": "kline", "E": 1640991720001, "s": "BTCUSDT", "k": {
        "t": 1640991660000, "T": 1640991719999, "s": "BTCUSDT", "i": "1m", "o": "46200.5", "c": "46240.0",
        "h": "46250.0", "l": "46180.0", "v": "12.5", "n": 310, "x": True, "q": "577500.0"}},
    "snapshot": {"lastUpdateId": 100, "bids": [["61737.63", "0.1"]], "asks": [["61837.64", "2"]]},
}
# Each: a valid payload changed so that the decoder refuses it; the schema must refuse it too.
REFUSED = [
    ("trade", lambda d: d.pop("p")), ("trade", lambda d: d.update(m="true")), ("trade", lambda d: d.update(t=1.5)),
    ("trade", lambda d: d.update(p=True)), ("trade", lambda d: d.update(q="1_000")),
    ("trade", lambda d: d.update(s="")),
    ("trade", lambda d: d.update(T=-1)), ("trade", lambda d: d.update(p=0)), ("trade", lambda d: d.update(e="nope")),
    ("aggTrade", lambda d: d.pop("a")), ("depthUpdate", lambda d: d.pop("U")),
    ("depthUpdate", lambda d: d.update(b=[["1", "2", "3"]])), ("depthUpdate", lambda d: d.update(a="x")),
    ("depthUpdate", lambda d: d.update(pu="x")), ("bookTicker", lambda d: d.pop("A")),
    ("bookTicker", lambda d: d.update(b=None)), ("kline", lambda d: d["k"].pop("x")),
    ("kline", lambda d: d["k"].update(i="0m")), ("kline", lambda d: d.pop("E")), ("kline", lambda d: d.update(k=[])),
    ("snapshot", lambda d: d.pop("asks")), ("snapshot", lambda d: d.update(bids=[[1, 2]] * 5001)),
]


def _refused_by_decoder(doc: Any) -> bool:
    try:
        decode(orjson.dumps(doc), b"BTCUSDT")
    except RecordError:
        return True
    return False


@pytest.mark.parametrize("envelope", [False, True])
def test_binance_payloads_the_decoder_accepts_conform_and_those_it_refuses_do_not(envelope: bool) -> None:
    def wrap(kind: str, d: dict) -> dict:
        stream = {"snapshot": "btcusdt@depth20", "bookTicker": "btcusdt@bookTicker"}.get(kind, f"btcusdt@{kind}")
        return {"stream": stream, "data": d, "market": "spot"} if envelope else d

    for kind, payload in BINANCE.items():
        doc = wrap(kind, copy.deepcopy(payload))
        assert not _refused_by_decoder(doc) and _invalid("input/binance", doc) == [], kind
    for i, (kind, change) in enumerate(REFUSED):
        payload = copy.deepcopy(BINANCE[kind])
        change(payload)
        doc = wrap(kind, payload)
        assert _refused_by_decoder(doc), (i, kind, doc)
        assert _invalid("input/binance", doc) and _invalid("input/market", doc), (i, kind, doc)
    if envelope:
        # the envelope's own rules, and a futures partial depth (a depthUpdate without U on a @depthN stream)
        assert _invalid("input/binance", {"stream": "btcusdt@trade", "data": BINANCE["trade"], "market": "x"})
        assert _invalid("input/binance", {"stream": 5, "data": BINANCE["trade"]})
        partial = {k: v for k, v in BINANCE["depthUpdate"].items() if k not in ("U", "pu")}
        for stream in ("btcusdt@depth5", "btcusdt@depth20@100ms"):
            doc = {"stream": stream, "data": partial, "market": "usdm"}
            assert not _refused_by_decoder(doc) and _invalid("input/binance", doc) == []
        doc = {"stream": "btcusdt@depth@100ms", "data": partial}
        assert _refused_by_decoder(doc) and _invalid("input/binance", doc)


def test_normalized_records_the_decoder_refuses_do_not_conform() -> None:
    trade = {"type": "trade", "venue": "coinbase", "symbol": "BTC-USD", "trade_id": 1, "price": "1.5", "size": 2,
             "side": "buy", "time_ms": 1723161255342}
    assert _invalid("input/market", trade) == [] and not _refused_by_decoder(trade)
    for change in ({"side": "taker"}, {"venue": "a b"}, {"price": "abc"}, {"trade_id": -1}, {"type": "quote"},
                   {"market": 5}, {"time_ms": 1.5}):
        doc = {**trade, **change}
        assert _refused_by_decoder(doc) and _invalid("input/market", doc), change
    doc = {k: v for k, v in trade.items() if k != "price"}
    assert _refused_by_decoder(doc) and _invalid("input/market", doc)


# ---- outputs of the processors on real inputs -------------------------------------------------------------------


def _check_outputs(driver: TestDriver, topics: dict[str, str]) -> Counter[str]:
    """Count each topic's records and validate the first 500 and every 10th after (~0.3 ms each: all 40k of the
    sample would take 10 s of CI)."""
    counts: Counter[str] = Counter()
    for topic, name in topics.items():
        for i, rec in enumerate(driver.read(topic)):
            if i < 500 or i % 10 == 0:
                validate_output(name, rec.value, rec.headers, f"{topic}@{rec.offset}")
            counts[name] += 1
    return counts


def test_the_processors_outputs_on_the_shipped_sample_conform(sample: list[tuple[int, bytes]]) -> None:
    settings = _settings(trades={}, orderbook={}, klines={})
    with TestDriver(settings=settings, commit_every=1000) as driver:
        for ns, raw in sample:
            kind = stream_kind(raw)
            topic = {"trades": "raw_trades", "orderbook": "raw_orderbook"}[kind]
            driver.pipe(topic, raw, key=(record_symbol(raw) or "BTCUSDT").encode(), timestamp=ns // 1_000_000)
        driver.pipe("raw_trades", b"not json", key=b"BTCUSDT")  # dead-lettered by trades and klines
        driver.pipe("raw_orderbook", b'{"e":"depthUpdate","s":"BTCUSDT"}', key=b"BTCUSDT")
        driver.flush()
        counts = _check_outputs(driver, schemas.topic_schemas(settings))
        assert [r.header("reason") for r in driver.dead_letters()].count("undecodable") == 2
    assert counts["enriched_trades"] == 3589 + 3223
    assert counts["enriched_orderbook"] > 1000 and counts["enriched_klines"] >= 4 and counts["dead_letter"] == 3


def test_the_orderbook_outputs_on_the_usdm_feed_and_unsynced_books_conform(shared_data: Path) -> None:
    lines = _lines(shared_data / "feeds" / "binance-hftbacktest" / "usdm" / "btcusdt_20240808.gz", FEED_LINES)
    books = [(ns, raw) for ns, raw in lines if stream_kind(raw) == "orderbook"]
    for resync, skip_snapshot in (("snapshot", False), ("unsynced", True)):
        settings = _settings(orderbook={"params": {"resync": resync}})
        with TestDriver(settings=settings, commit_every=1000) as driver:
            for ns, raw in books:
                if skip_snapshot and b"lastUpdateId" in raw:
                    continue
                driver.pipe("raw_orderbook", raw, key=b"BTCUSDT", timestamp=ns // 1_000_000)
            driver.flush()
            docs = [r.json() for r in driver.read("enriched_orderbook")]
        assert len(docs) > 100
        for doc in docs:
            validate_output("enriched_orderbook", orjson.dumps(doc), where="enriched_orderbook")
        assert {d["market"] for d in docs} == {"usdm"}
        if skip_snapshot:
            assert {d["state"] for d in docs} == {"unsynced"} and {d["book_status"] for d in docs} == {"unsynced"}


def _eurusd(shared_data: Path, n: int) -> list[tuple[int, bytes]]:
    path = shared_data / "smc_reference" / "smart-money-concepts" / "EURUSD" / "EURUSD_15M.csv.gz"
    out = []
    with gzip.open(path, "rt") as f:
        header = f.readline().strip().split(",")
        for line in itertools.islice(f, n):
            row = dict(zip(header, line.strip().split(","), strict=True))
            t = int(datetime.strptime(row["Date"], "%Y.%m.%d %H:%M:%S").replace(tzinfo=UTC).timestamp() * 1000)
            out.append((t + 900_000, orjson.dumps({
                "type": "kline", "venue": "fx", "symbol": "EURUSD", "interval": "15m", "open_time_ms": t,
                "close_time_ms": t + 899_999, "open": row["Open"], "high": row["High"], "low": row["Low"],
                "close": row["Close"], "volume": row["Tickvol"], "is_closed": True})))
    return out


@pytest.fixture(scope="module")
def smc_outputs(shared_data: Path) -> dict[str, list[Any]]:
    """enriched_klines, smc_signals and alerts of 2,000 real EURUSD 15m candles, with rules for every event type."""
    rules = [{"name": f"on {t}", "event": t} for t in sorted(EVENT_TYPES)]
    rules += [{"name": "bos against 15m", "event": "bos", "against_trend": "15m"},
              {"name": "choch with 15m", "event": "choch", "with_trend": "15m", "direction": -1}]
    params = {"source": "klines", "alerts": rules, "smc": {"fvg_join_consecutive": True}}  # fvg_replaced too
    settings = _settings(klines={"input_topics": ["raw_klines"], "params": params})
    with TestDriver(settings=settings, commit_every=1000) as driver:
        for ts, raw in _eurusd(shared_data, 2000):
            driver.pipe("raw_klines", raw, key=b"EURUSD", timestamp=ts)
        driver.flush()
        assert driver.dead_letters() == []
        return {t: [r.json() for r in driver.read(t)] for t in ("enriched_klines", "smc_signals", "alerts")}


def test_klines_smc_signals_and_alerts_of_real_candles_conform(smc_outputs: dict[str, list[Any]]) -> None:
    for topic, docs in smc_outputs.items():
        assert docs, topic
        for doc in docs if topic != "enriched_klines" else docs[:100] + docs[100::10]:  # ~1 ms each
            validate_output(topic, orjson.dumps(doc), where=topic)
    documented = set(schemas.load("smc_signals")["$defs"]["event"]["properties"]["type"]["enum"])
    assert {d["type"] for d in smc_outputs["smc_signals"]} == documented  # every documented type was checked
    assert documented <= EVENT_TYPES
    assert any(d["trends"] for d in smc_outputs["alerts"])
    warming = smc_outputs["enriched_klines"][0]
    assert warming["sma"] is None and warming["return"] is None  # null while warming up: allowed


# ---- negative cases: what must not conform ----------------------------------------------------------------------


def _book_doc() -> dict[str, Any]:
    band = {"bps": 5.0, "bid_size": 1.0, "bid_notional": 10.0, "ask_size": None, "ask_notional": None}
    return {"symbol": "BTCUSDT", "venue": "binance", "market": "spot", "update_id": 7, "event_time_ms": None,
            "state": "ok", "book_status": "applied", "best_bid": 10.0, "best_bid_size": 1.0, "best_ask": 10.5,
            "best_ask_size": 2.0, "mid": 10.25, "spread": 0.5, "spread_bps": 487.8, "microprice": 10.17,
            "bands": [band], "imbalance": -0.3, "bid_walls": [[10.0, 1.0]], "ask_walls": None, "bid_levels": 1,
            "ask_levels": 1, "bid_horizon": None, "ask_horizon": 11.0, "source_topic": "raw_orderbook",
            "source_partition": 0, "source_offset": 3}


def _trade_doc() -> dict[str, Any]:
    return {"venue": "binance", "market": "spot", "symbol": "BTCUSDT", "trade_id": 1, "price": 61837.63,
            "size": 0.02, "side": "sell", "time_ms": 1723161255342, "event_time_ms": 1723161255343, "sma": None,
            "ema": None, "vwap": 61837.63, "momentum": None, "volume": None, "buy_volume": None, "sell_volume": None,
            "trade_count": 1, "source_topic": "raw_trades", "source_partition": 0, "source_offset": 0}


def test_a_missing_mistyped_or_undocumented_output_field_fails(smc_outputs: dict[str, list[Any]]) -> None:
    by_type = {}
    for doc in smc_outputs["smc_signals"]:
        by_type.setdefault(doc["type"], doc)
    alert = smc_outputs["alerts"][0]
    kline = {k: v for k, v in smc_outputs["enriched_klines"][-1].items()
             if k not in PENDING_FIELDS.get("enriched_klines", ())}
    valid = {"enriched_trades": _trade_doc(), "enriched_orderbook": _book_doc(), "enriched_klines": kline,
             "alerts": alert, "dead_letter": schemas.headers_object(
                 [("reason", b"invalid"), ("error", b"trade: missing field 'p'"), ("processor", b"trades"),
                  ("source_topic", b"raw_trades"), ("source_partition", b"0"), ("source_offset", b"12")]),
             **{f"smc_signals {t}": d for t, d in by_type.items()}}
    for label, doc in valid.items():
        name = label.split()[0]
        assert _invalid(name, doc) == [], label
        for field in doc:
            missing = {k: v for k, v in doc.items() if k != field}
            top = schemas.load(name)
            optional = field in top["properties"] and field not in top["required"]
            for branch in top.get("$defs", {}).get("event", {}).get("allOf", []):  # an event type's optional field
                cond = branch["if"]["properties"]["type"]
                if doc.get("type") in cond.get("enum", [cond.get("const")]):
                    then = branch["then"]
                    optional = optional or field in then["properties"] and field not in then.get("required", [])
            assert bool(_invalid(name, missing)) is not optional, (label, field)
            assert _invalid(name, {**doc, field: {"an": "object"}}), (label, field)
        assert _invalid(name, {**doc, "undocumented": 1}), label
    # each event type requires its own fields and has no other type's
    assert _invalid("smc_signals", {k: v for k, v in by_type["fvg"].items() if k != "top"})
    assert _invalid("smc_signals", {**by_type["fvg"], "synthetic": False})
    assert _invalid("smc_signals", {**by_type["swing_high"], "type": "fvg"})
    assert _invalid("alerts", {**alert, "event": {**alert["event"], "symbol": "EURUSD"}})
    assert _invalid("alerts", {**alert, "trends": {"15m": 0}})
    assert _invalid("enriched_trades", {**_trade_doc(), "price": "61837.63"})
    assert _invalid("enriched_trades", {**_trade_doc(), "trade_count": 1.5})
    assert _invalid("enriched_orderbook", {**_book_doc(), "state": "broken"})
    assert _invalid("dead_letter", {**valid["dead_letter"], "value_truncated": "12"})  # needs value_sha256
    with pytest.raises(ValueError, match="twice"):
        schemas.headers_object([("reason", b"a"), ("reason", b"b")])


def test_pending_fields_are_not_documented_yet() -> None:
    """tests/helpers.PENDING_FIELDS lists fields being added by parallel work; once a schema documents one, its entry
    must go (so the field is validated)."""
    for name, fields in PENDING_FIELDS.items():
        documented = fields & set(schemas.load(name)["properties"])
        assert not documented, f"{name} documents {sorted(documented)}: remove them from tests/helpers.PENDING_FIELDS"


# ---- versioning: released versions are locked --------------------------------------------------------------------


def test_released_output_schemas_change_only_compatibly() -> None:
    breaking, stale = schema_docs.lock_problems(schema_docs.load_lock())
    assert not breaking, "\n".join(breaking)
    assert not stale, "the lock is behind the schema files (" + "; ".join(stale) + "): run " \
        "python scripts/schema_docs.py --write"
    assert set(schema_docs.load_lock()) == set(schemas.output_names())


def test_the_compatibility_rule() -> None:
    old = shape(schemas.load("enriched_trades"))
    assert breaking_changes(old, old) == []

    def changed(edit: Any) -> list[str]:
        new = copy.deepcopy(schemas.load("enriched_trades"))
        edit(new)
        return breaking_changes(old, shape(new))

    assert changed(lambda s: s["properties"]["price"].update(description="another text")) == []
    assert changed(lambda s: s["properties"].update(extra={"type": "number", "description": "new, optional"})) == []
    assert changed(lambda s: s["properties"].pop("vwap"))  # removed
    assert changed(lambda s: s["properties"].update(vwap=s["properties"].pop("vwap")) or s["required"].reverse())
    assert changed(lambda s: s["properties"]["sma"].update(type="number"))  # no longer nullable
    assert changed(lambda s: s["properties"]["price"].update(type="string"))  # type changed
    assert changed(lambda s: s["properties"]["side"].update(enum=["buy", "sell", "cross"]))
    assert changed(lambda s: (s["properties"].update(extra={"type": "number"}), s["required"].append("extra")))
    assert changed(lambda s: s.pop("additionalProperties"))
    signals = shape(schemas.load("smc_signals"))
    new = copy.deepcopy(schemas.load("smc_signals"))
    new["$defs"]["event"]["allOf"][0]["then"]["properties"]["level"]["type"] = "string"
    assert breaking_changes(signals, shape(new))


def test_the_lock_guard_names_the_version_to_add(monkeypatch: pytest.MonkeyPatch) -> None:
    lock = copy.deepcopy(schema_docs.load_lock())
    lock["enriched_trades"]["v1"]["properties"]["gone"] = {"type": "number"}  # as if a field had been removed
    breaking, _ = schema_docs.lock_problems(lock)
    assert len(breaking) == 1 and "enriched_trades v1 changed in a breaking way" in breaking[0]
    assert "stream_processor/market/schemas/enriched_trades/v2.json" in breaking[0]


# ---- the README's tables ------------------------------------------------------------------------------------------


def test_the_readme_tables_are_the_rendered_schemas() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert schema_docs.readme_problems(text) == []
    assert {name for name, _, _ in schema_docs.markers(text)} == set(schemas.output_names())
    assert schema_docs.rewrite(text) == text
    table = schema_docs.render("enriched_trades")
    assert table.startswith("| field | type | meaning |\n|---|---|---|\n| `venue` | string |")
    assert "| `sma` | number or null |" in table
    assert all(json.loads(json.dumps(r)) for r in schema_docs.rows("smc_signals"))
