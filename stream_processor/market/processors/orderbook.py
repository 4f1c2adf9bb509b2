"""The order-book processor: a per-symbol L2 book from depth diffs and snapshots, and its metrics on every change.

State in the changelog (``params.state_encoding``). A 1,000-level book is 33-44 KB of JSON, and nearly every commit
changes it (a Binance spot diff every 100 ms, bookTickers in between); writing it whole at every commit (``full``,
the layout before ``delta``) costs about 350 KB/s per symbol. Under ``delta`` (the default) each book is a log:

- the **base**, the book's full ``to_state()`` plus ``"epoch"`` (its generation), under the book's own key in the
  default store: written when a generation begins;
- the **head**, ``OrderBook.head_state()`` (everything but the levels: ids, flags, horizons, buffered diffs,
  deferred tickers, counters; ``epoch`` and ``segments``, how many segments it has), under the book's key in the
  store :data:`LOG_STORE`: written at every commit in which the book changed;
- **segments** ``<key>#0``, ``<key>#1``, ... in :data:`LOG_STORE`: the ``[price, size]`` now held at each price
  the generation changed (size 0: removed), each segment closed once it holds :data:`SEGMENT_LEVELS` prices; a
  commit writes only the segments that changed since the last one (the open one, and those closed since).

A new generation (a new base, the previous generation's segments tombstoned in the same transaction) begins when a
book is new or was restored (at its first change), when a snapshot or a loss of sync replaced its levels, when its
segments hold more than :data:`LOG_FRACTION` times as many prices as the book has levels, when it has
:data:`MAX_SEGMENTS` segments, or when the open segment alone passes twice the book's depth (so no record exceeds
``max_state_bytes(depth, max_pending_bytes)``). On restore the base is read, then the head and segments of the same
generation are replayed (:meth:`OrderBook.apply_log`): the same book, level for level. A base of another
generation (or without one: written under ``full`` or before ``delta`` existed) is the book as it is and its
stale log is tombstoned at its next change; either encoding restores a changelog written by the other.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from ...engine.exceptions import InvalidRecordError, StateRestoreError
from ...engine.processor import ProcessorContext
from ...engine.state import ChangelogStore, StoreSpec
from ..context import ContextRecord
from ..models import BookTicker, DepthSnapshot, DepthUpdate, MarketRecord
from ..orderbook.analytics import BookMetrics
from ..orderbook.book import BookStatus, OrderBook
from ..settings import OrderbookParams, OrderbookProcessorSettings
from .base import MarketProcessor, state_key

log = logging.getLogger(__name__)

_EMITTING = frozenset({BookStatus.SNAPSHOT, BookStatus.APPLIED, BookStatus.UNSYNCED})
_LOST = {BookStatus.GAP: "book_gap", BookStatus.MISMATCH: "book_mismatch"}

LOG_STORE = "book_log"
"""The store of the books' heads and segments (changelog keys ``\\x01book_log\\x00<key>[#<seq>]``)."""
SEGMENT_LEVELS = 32
"""Prices after which a segment closes. Small, so the segment rewritten at each commit stays near what the commit
changed (a Binance spot book changes 20-50 prices per 100 ms); large enough that a generation has few segments."""
LOG_FRACTION = 2.0
"""A generation ends when its segments hold this many times the book's levels: a restore reads at most three times a
base. bench/state_size.py on the Binance captures: 1.0 writes 17% more bytes per second than 2.0, 3.0 6% less."""
MAX_SEGMENTS = 64
"""Segments per generation at most (changelog keys per book, records a restore reads)."""
MIN_BASE_LEVELS = 64
"""A book of fewer levels counts as this many for :data:`LOG_FRACTION` (a near-empty book is not rebased at every
change)."""


class _Head:
    """The head of a book in :data:`LOG_STORE`: its changelog value is the book's ``head_state()`` at commit."""

    __slots__ = ("book",)

    def __init__(self, book: OrderBook) -> None:
        self.book = book

    def to_state(self) -> dict[str, Any]:
        return self.book.head_state()


class _Segment:
    """Segment ``seq`` of a book in :data:`LOG_STORE`: its changelog value is ``book.segment_state(seq)``."""

    __slots__ = ("book", "seq")

    def __init__(self, book: OrderBook, seq: int) -> None:
        self.book, self.seq = book, seq

    def to_state(self) -> dict[str, Any]:
        return self.book.segment_state(self.seq)


class _Loaded:
    """A head or segment read from the changelog, until its book takes it (``OrderbookProcessor._adopt``)."""

    __slots__ = ("state",)

    def __init__(self, state: dict[str, Any]) -> None:
        if type(state) is not dict:
            raise ValueError(f"a book log record is a JSON object, got {type(state).__name__}")
        self.state = state

    def to_state(self) -> dict[str, Any]:
        return self.state


def base_state(book: OrderBook) -> dict[str, Any]:
    """The changelog value of a book's own key: its ``to_state()``, with ``"epoch"`` when it is a generation's
    base."""
    state = book.to_state()
    if book.log_epoch is not None:
        state["epoch"] = book.log_epoch
    return state


def segment_key(key: str, seq: int) -> str:
    """The :data:`LOG_STORE` key of segment ``seq`` of the book ``key`` (``#`` is never in a venue, market or
    symbol)."""
    return f"{key}#{seq}"


class OrderbookProcessor(MarketProcessor):
    """Keeps one :class:`~stream_processor.market.orderbook.book.OrderBook` per symbol and emits its metrics.

    Input: Binance ``depthUpdate`` diffs, REST/partial-depth snapshots and ``bookTicker`` (or the normalized
    form). A snapshot or an applied diff emits, to ``output_topics[0]`` keyed by symbol, the
    :class:`~stream_processor.market.orderbook.analytics.BookMetrics` of the book (best bid/ask, mid, spread and bps,
    microprice, band depth, imbalance, walls, ``state`` ok/crossed/locked/incomplete) plus ``venue``,
    ``book_status`` and the source (``source_topic, source_partition, source_offset``). A book out of sync (before
    its first snapshot, after a sequence gap or a bookTicker mismatch) emits nothing until a snapshot resyncs it
    under ``params.resync: snapshot``; under ``unsynced`` it goes on applying diffs and emits with ``state:
    "unsynced"``. A gap or a mismatch is counted (events ``book_gap``, ``book_mismatch``) and logged once until
    the book is in sync again. A bookTicker only checks the book. Books are kept per venue, market and symbol.

    With ``params.smc_context_topic`` (one of its ``input_topics``, co-partitioned with the book input) each output
    also carries ``smc``: the SMC context of its symbol per interval, the newest stored before the record's Kafka
    timestamp whose kline closed before the update's ``event_time_ms`` (any, without one), measured from ``mid`` (as
    of the kline's close when the book has no mid), and ``smc_stale``; see :mod:`stream_processor.market.context`.
    """

    state_type = OrderBook

    def __init__(self, name: str, settings: OrderbookProcessorSettings) -> None:
        super().__init__(name, settings)
        self.params: OrderbookParams = settings.params
        self.output_topic = settings.output_topics[0]
        p = self.params
        self.metrics = BookMetrics(p.bands_bps, p.imbalance_levels, p.wall_levels, p.wall_multiple)
        self._out_of_sync: set[str] = set()  # books whose loss of sync was logged (memory only: for the log)
        self.delta = p.state_encoding == "delta"

    def stores(self) -> list[StoreSpec]:
        # Both encodings declare the log store: each restores what the other wrote (see the module docstring).
        return [
            StoreSpec(value_type=OrderBook, from_state=self.state_from, to_state=base_state),
            # Heads and segments: parts of a book's state, in the book's layout (version and migration).
            StoreSpec(name=LOG_STORE, from_state=_Loaded, version=OrderBook.STATE_VERSION, migrate=OrderBook.migrate),
            *super().stores()[1:],  # the SMC context's, when joined
        ]

    def state_from(self, state: dict[str, Any]) -> OrderBook:
        book = OrderBook.from_state(state)
        epoch = state.get("epoch")
        if epoch is not None and (type(epoch) is not int or epoch < 1):
            raise ValueError(f"order book base: epoch {epoch!r} is not a positive int")
        book.log_epoch = epoch
        return book

    def init(self, ctx: ProcessorContext) -> None:
        """Replay every restored book's log onto its base (see the module docstring)."""
        store, log_store = ctx.state(), ctx.state(LOG_STORE)
        heads = [key for key, value in log_store.items() if type(value) is _Loaded and "#" not in key]
        for key in heads:  # a head without its book stays until a new book of that key tombstones it
            book = store.get(key)
            if book is not None and not book.logging:
                self._adopt(store, log_store, key, book)

    def _take_log(self, log_store: ChangelogStore, key: str) -> tuple[dict[str, Any], list[Any]] | None:
        """The head restored for ``key`` and the segments it names (None where missing), taken out of the log
        store; None if no head was restored."""
        loaded = log_store.get(key)
        if type(loaded) is not _Loaded:
            return None
        log_store.take(key)  # its record stays: the book writes the key again (or tombstones it)
        head = loaded.state
        count = head.get("segments")
        count = count if type(count) is int and 0 <= count <= MAX_SEGMENTS else 0  # more: not a head this code wrote
        return head, [log_store.take(segment_key(key, seq)) for seq in range(count)]

    def _adopt(self, store: ChangelogStore, log_store: ChangelogStore, key: str, book: OrderBook) -> None:
        """Replay the log restored for ``key`` onto ``book`` when the book is its generation's base; a stale log (the
        base is newer: written under "full") is only remembered (``log_keys``), for the next base to tombstone.

        A log that names its base's generation but cannot be replayed (a segment missing or unreadable) is state
        this code cannot read: under ``state_errors: fail`` StateRestoreError, else the book is dropped, its records
        tombstoned (it starts from empty state; the event ``state_reset``).
        """
        taken = self._take_log(log_store, key)
        if taken is None:
            return
        head, segments = taken
        book.log_keys = max(book.log_keys, len(segments))
        if book.log_epoch is None or head.get("epoch") != book.log_epoch:
            return
        try:
            missing = [seq for seq, segment in enumerate(segments) if type(segment) is not _Loaded]
            if missing:
                raise ValueError(f"segments {missing} of {len(segments)} are missing")
            book.apply_log(head, [segment.state for segment in segments])
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            if self.settings.state_errors == "fail":
                raise StateRestoreError(f"store {LOG_STORE!r}: the log of {key!r} cannot be read: {exc!r}") from exc
            log.error("order book %s: its changelog log cannot be read (%r); the book starts from empty state", key,
                      exc)
            self.events["state_reset"] += 1
            store.delete(key)
            self._end_log(log_store, key, book)

    def _end_log(self, log_store: ChangelogStore, key: str, book: OrderBook) -> None:
        """Tombstone the head and segments of ``book``'s generation (and a restored log it did not take)."""
        taken = self._take_log(log_store, key)
        count = max(book.log_keys, len(taken[1]) if taken is not None else 0)
        for seq in range(count):
            log_store.delete(segment_key(key, seq))
        log_store.delete(key)
        book.log_keys = 0

    def process(self, record: MarketRecord | ContextRecord, ctx: ProcessorContext) -> None:
        if not isinstance(record, DepthUpdate | DepthSnapshot | BookTicker):
            if type(record) is ContextRecord:
                self.remember_context(record, ctx)
                return
            raise InvalidRecordError(f"orderbook processor takes depth and bookTicker records, got "
                                     f"{type(record).__name__}")
        symbol = record.symbol
        key = state_key(record)
        store = ctx.state()
        book: OrderBook | None = store.get(key)
        log_store = ctx.state(LOG_STORE)
        if book is not None and not book.logging:  # restored: its log replayed first (done by init if it ran)
            self._adopt(store, log_store, key, book)
            book = store.get(key)
        new = book is None
        if book is None:
            p = self.params
            book = OrderBook(symbol, p.depth_levels, p.max_pending, max_pending_bytes=p.max_pending_bytes,
                             resync=p.resync)
        before = book.last_update_id  # the levels change only with it (or wholesale: book.rewrite_due)
        try:
            status = book.apply(record)  # checked before any change
        except ValueError as exc:
            raise InvalidRecordError(str(exc)) from None
        if new:
            store.put(key, book)
        if self.delta:
            self._log(store, log_store, key, book, book.last_update_id != before)
        else:
            store.mark_dirty(key)
            if book.log_epoch is not None or book.log_keys or key in log_store:  # left by "delta"
                self._end_log(log_store, key, book)
                book.log_epoch = None
        lost = _LOST.get(status)
        if lost is not None:
            self.events[lost] += 1
            if key not in self._out_of_sync:
                self._out_of_sync.add(key)
                log.warning("order book %s lost sync (%s at update id %s); %s", key, status,
                            getattr(record, "last_update_id", getattr(record, "update_id", None)),
                            "emitting with state 'unsynced' until the next snapshot" if self.params.resync ==
                            "unsynced" else "nothing is emitted until the next snapshot")
        elif status is BookStatus.SNAPSHOT and key in self._out_of_sync:
            self._out_of_sync.discard(key)
            log.info("order book %s is in sync again (snapshot at update id %s)", key, book.last_update_id)
        if status not in _EMITTING:
            return
        metrics = self.metrics.compute(book)
        if metrics is None:
            return
        metrics.update(venue=record.venue, market=record.market, book_status=str(status), source_topic=ctx.topic,
                       source_partition=ctx.partition, source_offset=ctx.offset)
        if self.context_topic is not None:
            self.join_context(metrics, ctx, key, record.event_time_ms, metrics.get("mid"))
        ctx.send(self.output_topic, orjson.dumps(metrics), symbol.encode())

    def _log(self, store: ChangelogStore, log_store: ChangelogStore, key: str, book: OrderBook,
             changed: bool) -> None:
        """Mark what the change of ``book`` writes at the next commit: its head and open segment (``changed``: the
        record changed levels), or a new base."""
        levels = book.open_levels()
        if (
            not book.logging
            or book.rewrite_due
            or levels > 2 * book.depth
            or book.logged_levels() > LOG_FRACTION * max(len(book.bids) + len(book.asks), MIN_BASE_LEVELS)
            or book.open_segment >= MAX_SEGMENTS
        ):
            self._end_log(log_store, key, book)
            book.start_log((book.log_epoch or 0) + 1)
            store.mark_dirty(key)
            log_store.put(key, _Head(book))
            return
        head = log_store.get(key)
        if type(head) is not _Head or head.book is not book:
            log_store.put(key, _Head(book))
        else:
            log_store.mark_dirty(key)
        if changed and levels:
            seq = book.open_segment
            name = segment_key(key, seq)
            segment = log_store.get(name)
            if type(segment) is not _Segment or segment.book is not book or segment.seq != seq:
                log_store.put(name, _Segment(book, seq))
            else:
                log_store.mark_dirty(name)
            book.log_keys = max(book.log_keys, seq + 1)
            if levels >= SEGMENT_LEVELS:
                book.close_segment()
