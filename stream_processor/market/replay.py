"""The replay producer: publishes recorded feed files to the raw topics, keyed by symbol.

Each line of an hftbacktest-format feed (``<local_receive_time_ns> <json>``) is published unchanged
(its JSON bytes) to the raw topic of its family (``replay.topics`` in the config: trades, orderbook,
klines), keyed by its symbol. A bare REST depth snapshot names no symbol: it takes the symbol of the
file's previous message. ``speed=0`` publishes as fast as possible; ``speed=k`` paces by the recorded
receive times at k times real time.

Reading is apart from publishing: :class:`FeedReader` opens, checks and classifies the files (every failure a
:class:`ReplayError` naming the file, and the line when a line is at fault), :func:`publish` sends what it reads.
:func:`replay` checks every file (its first line included) before it contacts the broker, so a wrong file name
costs no topic and no connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import stat
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from ..engine.exceptions import InvalidRecordError
from ..engine.security import client_options
from ..engine.settings import Settings
from ..engine.topics import ensure_topics
from .serde.feed import GZIP_MAGIC, feed_lines, record_symbol, stream_kind
from .settings import replay_settings

# Acknowledgements are awaited in chunks so memory stays bounded on a long file.
_ACK_CHUNK = 20_000
# Lines between two readings of the file position (for the progress bar).
_POSITION_EVERY = 1024


class ReplayError(Exception):
    """A feed file cannot be read, or a line of it is not a feed line. The message names the file (and the line);
    ``published`` counts the messages published before it."""

    def __init__(self, message: str, published: int = 0) -> None:
        super().__init__(message)
        self.published = published


@dataclass(frozen=True, slots=True)
class FeedMessage:
    """One line of a feed file, classified: ``kind`` (trades, orderbook, klines) and the Kafka key's ``symbol``."""

    path: Path
    line: int
    ns: int
    kind: str
    symbol: str | None
    raw: bytes


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    elif isinstance(exc, EOFError):
        reason = f"truncated gzip data ({exc})"
    elif isinstance(exc, zlib.error):
        reason = f"corrupt gzip data ({exc})"
    else:
        reason = str(exc) or type(exc).__name__
    return reason[:1].lower() + reason[1:]


class FeedReader:
    """Reads feed files in order and yields their lines as :class:`FeedMessage`.

    ``total_bytes`` is the files' size on disk (compressed, for gzip) when they are all regular files, else None;
    ``bytes_read`` how much of it has been read so far (the position in the stored file, so a gzip file's progress
    counts compressed bytes), brought up to date every few lines and at the end of each file.
    """

    def __init__(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        self.paths = [Path(p) for p in paths]
        self.bytes_read = 0
        self.total_bytes = self._total_bytes()

    def _total_bytes(self) -> int | None:
        total = 0
        for path in self.paths:
            try:
                st = path.stat()
            except OSError:
                return None
            if not stat.S_ISREG(st.st_mode):
                return None
            total += st.st_size
        return total or None

    @contextlib.contextmanager
    def _open(self, path: Path) -> Iterator[tuple[IO[bytes], IO[bytes]]]:
        """``(stored file, line stream)``: the file itself, or its decompressed content for gzip."""
        try:
            stored = open(path, "rb")  # closed below
        except OSError as exc:
            raise ReplayError(f"cannot read {path}: {_reason(exc)}") from None
        with stored:
            try:
                gz = stored.peek(2)[:2] == GZIP_MAGIC
            except OSError as exc:
                raise ReplayError(f"cannot read {path}: {_reason(exc)}") from None
            if not gz and path.suffix.lower() == ".gz":
                raise ReplayError(f"cannot read {path}: not a gzip file (named .gz)")
            if gz:
                with gzip.GzipFile(fileobj=stored, mode="rb") as stream:
                    yield stored, stream
            else:
                yield stored, stored

    def _messages(self, path: Path, *, first_only: bool = False) -> Iterator[FeedMessage]:
        symbol: str | None = None
        track = self.total_bytes is not None and not first_only
        done = self.bytes_read
        with self._open(path) as (stored, stream):
            lines = feed_lines(stream, path)
            while True:
                try:
                    item = next(lines, None)
                except ValueError as exc:  # not '<ns> <json>'; feed_lines names the file and the line
                    raise ReplayError(str(exc)) from None
                except (OSError, EOFError, zlib.error) as exc:
                    raise ReplayError(f"cannot read {path}: {_reason(exc)}") from None
                if item is None:
                    break
                lineno, ns, raw = item
                try:
                    payload = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    raise ReplayError(f"{path}:{lineno}: not a feed line: not JSON ({exc})") from None
                if type(payload) is not dict:
                    raise ReplayError(f"{path}:{lineno}: not a feed line: expected a JSON object, "
                                      f"got {type(payload).__name__}")
                try:
                    kind = stream_kind(payload)
                    symbol = record_symbol(payload) or symbol
                except InvalidRecordError as exc:
                    raise ReplayError(f"{path}:{lineno}: not a feed line: {exc}") from None
                if track and lineno % _POSITION_EVERY == 0:
                    self.bytes_read = done + stored.tell()
                yield FeedMessage(path, lineno, ns, kind, symbol, raw)
                if first_only:
                    return
            if track:
                self.bytes_read = done + stored.tell()

    def check(self) -> None:
        """Open every file and read its first line: ReplayError for the first one that cannot be read."""
        for path in self.paths:
            for _ in self._messages(path, first_only=True):
                pass

    def __iter__(self) -> Iterator[FeedMessage]:
        self.bytes_read = 0
        for path in self.paths:
            yield from self._messages(path)


def progress_bar(reader: FeedReader, limit: int | None, enabled: bool = True, **kwargs: Any) -> tqdm:
    """The replay's progress bar: a percentage of ``limit`` messages when given, else of the files' bytes (with the
    messages published as its postfix), else a message count alone (a pipe, say). ``kwargs`` go to tqdm."""
    common: dict[str, Any] = {"disable": not enabled, "desc": "replay", "mininterval": 0.5, **kwargs}
    if limit is not None:
        return tqdm(total=limit, unit=" msg", **common)
    if reader.total_bytes:
        return tqdm(total=reader.total_bytes, unit="B", unit_scale=True, unit_divisor=1024,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}B/{total_fmt}B read{postfix} "
                               "[{elapsed}<{remaining}]", postfix="0 msg", **common)
    return tqdm(unit=" msg", **common)


async def publish(
    reader: FeedReader,
    send: Callable[..., Awaitable[asyncio.Future[Any]]],
    topics: Mapping[str, str],
    *,
    speed: float = 0.0,
    limit: int | None = None,
    kinds: set[str] | None = None,
    bar: tqdm | None = None,
) -> Counter[str]:
    """Send what ``reader`` reads with ``send(topic, value, key=...)`` (a producer's ``send``: its result is the
    acknowledgement to await); returns the number of records published per topic. ``bar``, from
    :func:`progress_bar`, follows the messages (``limit``) or the bytes read."""
    counts: Counter[str] = Counter()
    pending: list[asyncio.Future[Any]] = []
    bar = None if bar is None or bar.disable else bar
    by_bytes = bar is not None and limit is None and reader.total_bytes is not None
    sent = 0
    path: Path | None = None
    first_ns: int | None = None
    started = time.monotonic()
    try:
        for msg in reader:
            if limit is not None and sent >= limit:
                break
            if msg.path != path:  # pacing starts again with each file
                path, first_ns, started = msg.path, None, time.monotonic()
            if kinds is not None and msg.kind not in kinds:
                continue
            topic = topics.get(msg.kind)
            if topic is None:
                raise ReplayError(f"{msg.path}:{msg.line}: a {msg.kind} message, and the config's replay.topics "
                                  f"names no {msg.kind} topic (leave it out with --only)")
            if speed > 0:
                first_ns = msg.ns if first_ns is None else first_ns
                delay = (msg.ns - first_ns) / 1e9 / speed - (time.monotonic() - started)
                if delay > 0:
                    await asyncio.sleep(delay)
            pending.append(await send(topic, msg.raw, key=msg.symbol.encode() if msg.symbol else None))
            counts[topic] += 1
            sent += 1
            if bar is not None:
                if not by_bytes:
                    bar.update()
                elif reader.bytes_read != bar.n:
                    bar.set_postfix_str(f"{sent} msg", refresh=False)
                    bar.update(reader.bytes_read - bar.n)
            if len(pending) >= _ACK_CHUNK:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    except ReplayError as exc:
        await asyncio.gather(*pending)  # what was sent before the bad line is published: say how much
        exc.published = sent
        raise
    if by_bytes and bar is not None:
        bar.set_postfix_str(f"{sent} msg", refresh=False)
        bar.update(reader.bytes_read - bar.n)
    return counts


async def replay(
    settings: Settings,
    paths: Iterable[str | Path],
    *,
    speed: float = 0.0,
    limit: int | None = None,
    kinds: set[str] | None = None,
    progress: bool = True,
) -> Counter[str]:
    """Publish the feed files in order; returns the number of records published per topic.

    Raises :class:`ReplayError` (naming the file, and the line) for a file that cannot be read or a line that is not
    a feed line, or when ``settings`` have no ``replay`` section; every file is opened and its first line read
    before the broker is contacted.
    """
    replay_section = replay_settings(settings)
    if replay_section is None:
        raise ReplayError("the configuration has no replay section (replay.topics: the raw topic of each message "
                          "family: trades, orderbook, klines)")
    reader = FeedReader(paths)
    reader.check()
    topics = {str(family): topic for family, topic in replay_section.topics.items()}
    await ensure_topics(settings, {t: settings.topic(t) for t in topics.values()})
    producer = AIOKafkaProducer(
        **client_options(settings.kafka),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=512 * 1024,
        client_id=f"{settings.processor_id}-replay",
    )
    await producer.start()
    bar = progress_bar(reader, limit, progress)
    try:
        return await publish(reader, producer.send, topics, speed=speed, limit=limit, kinds=kinds, bar=bar)
    finally:
        bar.close()
        await producer.stop()
