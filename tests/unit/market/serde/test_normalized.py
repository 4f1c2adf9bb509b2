"""The normalized JSON form: the documented examples decode to the right records and round-trip."""

from __future__ import annotations

import orjson
import pytest

from stream_processor.engine.exceptions import InvalidRecordError
from stream_processor.market.models import BookTicker, DepthSnapshot, DepthUpdate, Kline, Trade
from stream_processor.market.serde import normalized
from stream_processor.market.serde.decode import decode, encode
from stream_processor.market.serde.normalized import normalize_normalized, to_normalized


def documented_examples() -> dict[str, dict]:
    """The example blocks of the module docstring, parsed, by type."""
    text = normalized.__doc__.split("Examples, one per block", 1)[1].split("::", 1)[1]
    blocks = [orjson.loads(block) for block in text.strip().split("\n\n")]
    return {b["type"]: b for b in blocks}


EXAMPLES = documented_examples()
EXPECTED = {
    "trade": Trade("coinbase", "BTC-USD", 172000123, 61837.63, 0.02, "sell", 1723161255342, 1723161255343),
    "book_ticker": BookTicker("coinbase", "BTC-USD", 9001, 61837.63, 3.78826, 61837.64, 1.54698,
                              1723161255208),
    "depth_update": DepthUpdate("bybit", "XRPUSDT", 101, 105, [(0.5123, 1200.0), (0.512, 0.0)],
                                [(0.5125, 800.5)], 1733011200691, 100),
    "depth_snapshot": DepthSnapshot("bybit", "XRPUSDT", 100, [(0.5123, 1000.0), (0.5122, 250.0)],
                                    [(0.5125, 800.5), (0.5126, 40.0)], 1733011200600),
    "kline": Kline("ftx", "BTC-PERP", "1m", 1640991660000, 1640991719999, 46200.5, 46250.0, 46180.0, 46240.0,
                   12.5, True, 577500.0, 310, 1640991720001, "perp"),
}


def test_docstring_documents_every_kind_once() -> None:
    assert sorted(EXAMPLES) == sorted(EXPECTED)


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_documented_example_decodes_and_round_trips(kind: str) -> None:
    rec = normalize_normalized(EXAMPLES[kind])
    assert rec == EXPECTED[kind]
    assert decode(orjson.dumps(EXAMPLES[kind])) == rec
    as_dict = to_normalized(rec)
    assert as_dict["type"] == kind and set(EXAMPLES[kind]) <= set(as_dict)
    assert decode(encode(as_dict)) == rec


def test_optional_fields_take_their_defaults() -> None:
    trade = {k: v for k, v in EXAMPLES["trade"].items() if k != "event_time_ms"}
    assert normalize_normalized(trade).event_time_ms == trade["time_ms"]
    optional = ("quote_volume", "trade_count", "event_time_ms")
    kline = {k: v for k, v in EXAMPLES["kline"].items() if k not in optional}
    rec = normalize_normalized(kline)
    assert (rec.quote_volume, rec.trade_count, rec.event_time_ms) == (0.0, 0, None)
    upd = {**EXAMPLES["depth_update"], "prev_update_id": None}
    assert normalize_normalized(upd).prev_update_id is None
    snap = {k: v for k, v in EXAMPLES["depth_snapshot"].items() if k != "event_time_ms"}
    assert normalize_normalized(snap).event_time_ms is None


@pytest.mark.parametrize(("change", "message"), [
    ({"type": "quote"}, "unknown normalized record type 'quote'"),
    ({"side": "BUY"}, "^trade: field 'side' must be 'buy' or 'sell', got 'BUY'$"),
    ({"price": "abc"}, "^trade: field 'price' is not a number: 'abc'$"),
    ({"price": -1}, "^trade: field 'price' must be a finite price, 0 < price <= 1e\\+15, got -1$"),
    ({"size": "-2"}, "^trade: field 'size' must be a finite size, 0 <= size <= 1e\\+18, got '-2'$"),
    ({"price": None}, "^trade: field 'price' is not a number"),
    ({"venue": ""}, "^trade: field 'venue' must be 1 to 32 of a-z 0-9 . _ -, got ''$"),
    ({"symbol": 5}, "^trade: field 'symbol' is not a symbol"),
    ({"trade_id": "x"}, "^trade: field 'trade_id' must be an integer, got 'x'$"),
])
def test_invalid_trade(change: dict, message: str) -> None:
    with pytest.raises(InvalidRecordError, match=message):
        normalize_normalized({**EXAMPLES["trade"], **change})


def test_missing_field_is_named() -> None:
    kline = {k: v for k, v in EXAMPLES["kline"].items() if k != "close"}
    with pytest.raises(InvalidRecordError, match="^kline: missing field 'close'$"):
        normalize_normalized(kline)
    with pytest.raises(InvalidRecordError, match="^depth_snapshot: field 'asks' has a bad level"):
        normalize_normalized({**EXAMPLES["depth_snapshot"], "asks": [["1", "NaN"]]})


def test_to_normalized_rejects_non_records() -> None:
    with pytest.raises(TypeError):
        to_normalized({"type": "trade"})  # type: ignore[arg-type]
