"""The replay's reading half (FeedReader: files, errors naming file and line, bytes read) and its publishing loop
with a fake producer (counts, --limit, --only, the progress bar's percentage), without a broker."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
from pathlib import Path
from typing import Any

import pytest

import stream_processor.market.replay as replay_module
from stream_processor.market.replay import FeedReader, ReplayError, progress_bar, publish

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "data" / "sample" / "btcusdt_20240808_head20000.gz"
TOPICS = {"trades": "raw_trades", "orderbook": "raw_orderbook", "klines": "raw_klines"}

TRADE = b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","t":1,"p":"1","q":"1","T":1,"m":true}}'
DEPTH = b'{"e":"depthUpdate","s":"ETHUSDT","U":1,"u":2,"b":[],"a":[]}'
SNAPSHOT = b'{"lastUpdateId":2,"bids":[],"asks":[]}'  # a bare REST snapshot names no symbol


def _feed(path: Path, *payloads: bytes, gz: bool = False) -> Path:
    text = b"".join(b"%d %s\n" % (i + 1, p) for i, p in enumerate(payloads))
    path.write_bytes(gzip.compress(text) if gz else text)
    return path


def _error(paths: list[Path]) -> str:
    with pytest.raises(ReplayError) as info:
        list(FeedReader(paths))
    return str(info.value)


def test_reads_plain_and_gzip_files_in_order_with_kinds_and_symbols(tmp_path: Path) -> None:
    a = _feed(tmp_path / "a.txt", TRADE, DEPTH, SNAPSHOT)
    b = _feed(tmp_path / "b.gz", SNAPSHOT, TRADE, gz=True)
    got = [(m.path.name, m.line, m.ns, m.kind, m.symbol) for m in FeedReader([a, b])]
    assert got == [
        ("a.txt", 1, 1, "trades", "BTCUSDT"), ("a.txt", 2, 2, "orderbook", "ETHUSDT"),
        ("a.txt", 3, 3, "orderbook", "ETHUSDT"),  # the snapshot takes the file's previous symbol
        ("b.gz", 1, 1, "orderbook", None),  # ... but not another file's
        ("b.gz", 2, 2, "trades", "BTCUSDT"),
    ]
    assert next(iter(FeedReader([a]))).raw == TRADE  # published unchanged


def test_bytes_read_follows_the_stored_gzip_file(tmp_path: Path) -> None:
    plain = _feed(tmp_path / "plain.txt", *[TRADE] * 3000)
    reader = FeedReader([SAMPLE, plain])
    assert reader.total_bytes == SAMPLE.stat().st_size + plain.stat().st_size
    seen: list[int] = []
    for n, _ in enumerate(reader):
        if n % 1000 == 0:
            seen.append(reader.bytes_read)
    assert seen == sorted(seen) and 0 < seen[5] < SAMPLE.stat().st_size  # compressed bytes, as they are read
    assert reader.bytes_read == reader.total_bytes


def test_total_bytes_is_unknown_for_a_pipe(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert FeedReader([fifo]).total_bytes is None
    assert FeedReader([tmp_path / "empty.txt"]).total_bytes is None  # missing: no total either


def test_a_directory_cannot_be_read(tmp_path: Path) -> None:
    assert _error([tmp_path]) == f"cannot read {tmp_path}: is a directory"


def test_a_file_without_permission_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _feed(tmp_path / "locked.txt", TRADE)
    if os.geteuid() != 0:  # root reads anything: pretend instead
        path.chmod(0)
    else:
        def denied(file: Any, *args: Any, **kwargs: Any) -> Any:
            raise PermissionError(13, "Permission denied", str(file))
        monkeypatch.setattr(replay_module, "open", denied, raising=False)
    assert _error([path]) == f"cannot read {path}: permission denied"


def test_a_gz_file_must_be_gzip(tmp_path: Path) -> None:
    path = _feed(tmp_path / "feed.gz", TRADE)  # plain text named .gz
    assert _error([path]) == f"cannot read {path}: not a gzip file (named .gz)"


def test_truncated_and_corrupt_gzip(tmp_path: Path) -> None:
    whole = gzip.compress(b"".join(b"%d %s\n" % (i, TRADE) for i in range(5000)))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    assert _error([cut]).startswith(f"cannot read {cut}: truncated gzip data (")
    bad = tmp_path / "bad.gz"
    bad.write_bytes(whole[:20] + b"\xff" * 200 + whole[220:])
    assert _error([bad]).startswith(f"cannot read {bad}: ")


@pytest.mark.parametrize(("line", "reason"), [
    (b"hello world", "not a feed line: expected '<local_receive_time_ns> <json>'"),
    (b"12", "not a feed line: expected '<local_receive_time_ns> <json>'"),
    (b"12 {not json", "not a feed line: not JSON ("),
    (b"12 [1, 2]", "not a feed line: expected a JSON object, got list"),
    (b'12 {"e": "24hrTicker"}', "not a feed line: cannot tell the stream kind of this message"),
])
def test_a_line_that_is_not_a_feed_line_is_named_by_file_and_number(tmp_path: Path, line: bytes, reason: str) -> None:
    path = tmp_path / "feed.txt"
    path.write_bytes(b"1 " + TRADE + b"\n\n" + line + b"\n")
    assert _error([path]).startswith(f"{path}:3: {reason}")


def test_check_reads_only_the_first_line_of_each_file(tmp_path: Path) -> None:
    good = _feed(tmp_path / "good.txt", TRADE, b"{}")  # line 2 is wrong: found while publishing
    FeedReader([good]).check()
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"oops\n")
    with pytest.raises(ReplayError, match=r"bad.txt:1: not a feed line"):
        FeedReader([good, bad]).check()


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[None]:
        self.sent.append((topic, value, key))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_publish_counts_per_topic_with_limit_and_only(tmp_path: Path) -> None:
    path = _feed(tmp_path / "f.txt", TRADE, DEPTH, SNAPSHOT, TRADE)
    producer = FakeProducer()
    counts = await publish(FeedReader([path]), producer.send, TOPICS)
    assert counts == {"raw_trades": 2, "raw_orderbook": 2}
    assert producer.sent[2] == ("raw_orderbook", SNAPSHOT, b"ETHUSDT")
    assert await publish(FeedReader([path]), FakeProducer().send, TOPICS, limit=3) == {"raw_trades": 1,
                                                                                       "raw_orderbook": 2}
    assert await publish(FeedReader([path]), FakeProducer().send, TOPICS, kinds={"trades"}) == {"raw_trades": 2}


async def test_publish_says_how_much_was_published_before_a_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"1 " + TRADE + b"\n2 " + TRADE + b"\n3 oops\n")
    with pytest.raises(ReplayError, match=r"f.txt:3: not a feed line") as info:
        await publish(FeedReader([path]), FakeProducer().send, TOPICS)
    assert info.value.published == 2


async def test_a_kind_without_a_topic_is_named(tmp_path: Path) -> None:
    path = _feed(tmp_path / "f.txt", TRADE, DEPTH)
    with pytest.raises(ReplayError, match=r"f.txt:2: a orderbook message, and the config's replay.topics names no"):
        await publish(FeedReader([path]), FakeProducer().send, {"trades": "raw_trades"})
    assert await publish(FeedReader([path]), FakeProducer().send, {"trades": "raw_trades"}, kinds={"trades"}) == {
        "raw_trades": 1}


async def test_the_progress_bar_shows_the_share_of_bytes_read() -> None:
    out = io.StringIO()
    reader = FeedReader([SAMPLE])
    bar = progress_bar(reader, None, file=out, mininterval=0, ascii=True, ncols=100)
    counts = await publish(reader, FakeProducer().send, TOPICS, bar=bar)
    bar.close()
    lines = out.getvalue().replace("\r", "\n").split("\n")
    final = [line for line in lines if line.strip()][-1]
    assert final.startswith("replay: 100%|") and f"read, {sum(counts.values())} msg" in final
    assert any(line.startswith("replay:  ") and "%|" in line and "100%" not in line for line in lines)  # on its way


async def test_the_progress_bar_shows_the_share_of_the_limit() -> None:
    out = io.StringIO()
    reader = FeedReader([SAMPLE])
    bar = progress_bar(reader, 500, file=out, mininterval=0, ascii=True, ncols=100)
    await publish(reader, FakeProducer().send, TOPICS, limit=500, bar=bar)
    bar.close()
    assert "replay: 100%|" in out.getvalue() and "500/500" in out.getvalue()


async def test_no_progress_writes_nothing(tmp_path: Path) -> None:
    out = io.StringIO()
    reader = FeedReader([_feed(tmp_path / "f.txt", TRADE)])
    bar = progress_bar(reader, None, enabled=False, file=out)
    await publish(reader, FakeProducer().send, TOPICS, bar=bar)
    bar.close()
    assert out.getvalue() == ""
