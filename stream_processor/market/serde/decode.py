"""Decode raw Kafka record bytes (Binance JSON or the normalized form) into model records, and encode JSON."""

from __future__ import annotations

import orjson

from stream_processor.engine.exceptions import DecodeError, InvalidRecordError
from stream_processor.market.models import MarketRecord
from stream_processor.market.serde.binance import normalize_binance
from stream_processor.market.serde.normalized import normalize_normalized

_loads = orjson.loads
_dumps = orjson.dumps
_OPTS = orjson.OPT_SERIALIZE_NUMPY


def decode(value: bytes | None, key: bytes | None = None) -> MarketRecord:
    """Decode one record value (UTF-8 JSON) into a Trade/BookTicker/DepthUpdate/DepthSnapshot/Kline.

    An object with both ``"type"`` and ``"venue"`` is read as the normalized form
    (``stream_processor.market.serde.normalized``); anything else as Binance JSON, bare or in a combined-stream
    envelope. ``key`` (the Kafka key, the symbol) names the symbol of a bare Binance REST depth snapshot.

    Raises DecodeError if ``value`` is None (a tombstone) or not bytes, if ``value`` (or ``key``) is not
    UTF-8 or ``value`` is not JSON, and InvalidRecordError if the JSON is not a valid market-data message
    (wrong JSON type, unknown kind or market, missing field, a value the strict field parsers of
    ``stream_processor.market.serde.binance`` refuse); the message says what is wrong and names the field. A record
    returned holds only values that encode to JSON and are safe for the indicators (64-bit ints, finite
    floats within bounds, validated strings).
    """
    if type(value) is not bytes:
        if value is None:
            raise DecodeError("tombstone: the record has no value")
        raise DecodeError(f"value must be bytes, got {type(value).__name__}")
    try:
        payload = _loads(value)
    except orjson.JSONDecodeError as e:
        raise DecodeError(f"not JSON/UTF-8: {e}") from None
    if type(payload) is not dict:
        raise InvalidRecordError(f"expected a JSON object, got {type(payload).__name__}")
    if "type" in payload and "venue" in payload:
        return normalize_normalized(payload)
    if key:
        try:
            hint = key.decode()
        except UnicodeDecodeError:
            raise DecodeError("key is not UTF-8") from None
        except AttributeError:
            raise DecodeError(f"key must be bytes, got {type(key).__name__}") from None
        return normalize_binance(payload, hint)
    return normalize_binance(payload)


def encode(obj: dict) -> bytes:
    """Serialize ``obj`` (a dict; dataclasses and numpy values are accepted too) to compact UTF-8 JSON.

    NaN/inf floats are written as ``null``. Raises orjson.JSONEncodeError (a TypeError) for values orjson
    cannot serialize (e.g. non-str dict keys, arbitrary objects).
    """
    return _dumps(obj, option=_OPTS)
