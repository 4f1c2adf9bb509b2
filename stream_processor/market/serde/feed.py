"""Read recorded hftbacktest-format Binance feed files and classify their lines for topic routing."""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from os import PathLike

import orjson

from stream_processor.engine.exceptions import InvalidRecordError

_TRADES, _ORDERBOOK, _KLINES = "trades", "orderbook", "klines"
_KIND_OF_EVENT = {
    "trade": _TRADES, "aggTrade": _TRADES,
    "depthUpdate": _ORDERBOOK, "bookTicker": _ORDERBOOK,
    "kline": _KLINES,
}
_KIND_OF_TYPE = {
    "trade": _TRADES, "kline": _KLINES,
    "book_ticker": _ORDERBOOK, "depth_update": _ORDERBOOK, "depth_snapshot": _ORDERBOOK,
}


#: The first two bytes of a gzip file.
GZIP_MAGIC = b"\x1f\x8b"
FEED_LINE = "'<local_receive_time_ns> <json>'"


def iter_feed(path: str | PathLike[str]) -> Iterator[tuple[int, bytes]]:
    """Yield ``(local_receive_time_ns, raw_json_bytes)`` for each line ``<ns> <json>`` of a feed file.

    The file may be gzip (detected by its magic bytes, not its name) or plain text. Blank lines are
    skipped. Raises OSError if the file cannot be read and ValueError ("<path>:<line>: ...") for a
    line that is not ``<integer> <json>``. The JSON itself is not parsed.
    """
    with open(path, "rb") as f:
        gz = f.read(2) == GZIP_MAGIC
    with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
        for _, ts, raw in feed_lines(f, path):
            yield ts, raw


def feed_lines(lines: Iterable[bytes], name: object) -> Iterator[tuple[int, int, bytes]]:
    """Yield ``(line_number, local_receive_time_ns, raw_json_bytes)`` for each non-blank line of an open feed
    (binary lines); ValueError ("<name>:<line>: not a feed line: ...") for a line that is not ``<integer> <json>``."""
    for lineno, line in enumerate(lines, 1):
        ts, _, raw = line.strip().partition(b" ")
        if not ts:
            continue
        if not raw or not ts.isdigit():
            raise ValueError(f"{name}:{lineno}: not a feed line: expected {FEED_LINE}")
        yield lineno, int(ts), raw


def _as_dict(raw: bytes | dict) -> dict:
    if type(raw) is dict:
        return raw
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidRecordError(f"not JSON: {e}") from None
    if type(payload) is not dict:
        raise InvalidRecordError(f"expected a JSON object, got {type(payload).__name__}")
    return payload


def stream_kind(raw: bytes | dict) -> str:
    """Return the raw topic family of one message: ``"trades"``, ``"orderbook"`` or ``"klines"``.

    ``raw`` is the JSON bytes or the already-parsed dict (pass the dict to avoid parsing twice).
    Binance trade/aggTrade -> trades; depthUpdate, bookTicker, REST or partial depth snapshot ->
    orderbook; kline -> klines. Normalized-form objects are classified by their ``type``. This only
    classifies; it does not validate fields (a bad record still goes to its topic, to be dead-lettered
    downstream). Raises InvalidRecordError if the bytes are not a JSON object or the kind is unknown.
    """
    payload = _as_dict(raw)
    if "type" in payload and "venue" in payload:
        kind = _KIND_OF_TYPE.get(payload["type"]) if type(payload["type"]) is str else None
    else:
        data = payload.get("data", payload) if "stream" in payload else payload
        if type(data) is not dict:
            raise InvalidRecordError("envelope: 'data' is not an object")
        event = data.get("e")
        if type(event) is str:
            kind = _KIND_OF_EVENT.get(event)
        elif event is None and ("lastUpdateId" in data or ("B" in data and "A" in data)):
            kind = _ORDERBOOK
        else:
            kind = None
    if kind is None:
        raise InvalidRecordError("cannot tell the stream kind of this message")
    return kind


def record_symbol(payload: bytes | dict) -> str | None:
    """Return the upper-case symbol of one message, for use as the Kafka key, or None if it has none.

    Taken from ``data.s`` (or a bare message's ``s``), else the combined-stream name ``<sym>@...``, else
    a normalized-form ``symbol``. A bare REST depth snapshot gives None. ``payload`` is the JSON bytes or
    the parsed dict. Raises InvalidRecordError if the bytes are not a JSON object.
    """
    payload = _as_dict(payload)
    data = payload.get("data")
    if type(data) is not dict:
        data = payload
    sym = data.get("s")
    if type(sym) is str and sym:
        return sym.upper()
    stream = payload.get("stream")
    if type(stream) is str and "@" in stream and not stream.startswith("!"):
        return stream.partition("@")[0].upper()
    sym = payload.get("symbol")
    if type(sym) is str and sym:
        return sym.upper()
    return None
