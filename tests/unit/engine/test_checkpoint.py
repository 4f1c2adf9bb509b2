"""Checkpoint's state machine and commit recipe, against a fake producer and consumer that record every call."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata, RecordMetadata

from stream_processor.engine.checkpoint import Checkpoint, CheckpointState, transactional_id
from stream_processor.engine.exceptions import TransactionStateError
from stream_processor.engine.state import OFFSET_KEY, StoreSpec, TaskStores
from stream_processor.market.models import Trade
from stream_processor.market.processors.trades import SymbolTrades
from stream_processor.market.settings import TradesParams

TP = TopicPartition("raw_trades", 5)
GROUP = "trades-enricher"
CHANGELOG = "stream-processor-trades-state-changelog"


class BrokerError(Exception):
    """What the fake producer raises or fails futures with."""


class FakeBatch:
    """Stands in for aiokafka's BatchBuilder: unlimited size, keeps the records."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes, Any]] = []

    def append(self, *, timestamp: Any, key: bytes | None, value: bytes, headers: Any) -> object:
        self.records.append((key, value, headers))
        return object()


class FakeProducer:
    """Records calls in order; ``send`` returns a future that is already done unless ``auto_ack`` is False.

    It has the engine's producer interface (stream_processor.engine.clients.TaskProducer): aiokafka's methods, and
    ``fenced`` and ``in_transaction`` (whose reading of aiokafka's internals tests/unit/engine/test_kafka_internals.py
    checks).
    """

    def __init__(self, calls: list[tuple[Any, ...]], *, transactional: bool = True) -> None:
        self.calls = calls
        self.transactional = transactional
        self.in_txn = False
        self.fenced = False
        self.auto_ack = True
        self.fail_topics: set[str] = set()
        self.fail_method: str | None = None
        self.unacked: list[asyncio.Future[Any]] = []
        self.stopped = 0
        self.log_end: dict[tuple[str, int], int] = {}  # next offset per topic and partition

    def _maybe_fail(self, method: str) -> None:
        if self.fail_method == method:
            raise BrokerError(method)

    async def begin_transaction(self) -> None:
        self.calls.append(("begin_transaction",))
        assert self.transactional and not self.in_txn
        self._maybe_fail("begin_transaction")
        self.in_txn = True

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def create_batch(self) -> FakeBatch:
        return FakeBatch()

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        for key, value, headers in batch.records:
            self.calls.append(("send", topic, key, value, partition, headers))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        base = self.log_end.get((topic, partition), 0)
        self.log_end[(topic, partition)] = base + len(batch.records)
        if topic in self.fail_topics:
            fut.set_exception(BrokerError(f"send to {topic}"))
        elif self.auto_ack:
            fut.set_result(RecordMetadata(topic, partition, TopicPartition(topic, partition), base, -1, -1, -1))
        else:
            self.unacked.append(fut)
        return fut

    def ack_all(self) -> None:
        self.calls.append(("acked", len(self.unacked)))
        for fut in self.unacked:
            fut.set_result(RecordMetadata("t", 0, TopicPartition("t", 0), 0, -1, -1, -1))
        self.unacked = []

    async def send_offsets_to_transaction(self, offsets: dict[TopicPartition, OffsetAndMetadata], group: str) -> None:
        self.calls.append(("send_offsets_to_transaction", offsets, group))
        assert self.in_txn
        self._maybe_fail("send_offsets_to_transaction")

    async def commit_transaction(self) -> None:
        self.calls.append(("commit_transaction",))
        assert self.in_txn
        self._maybe_fail("commit_transaction")
        self.in_txn = False

    async def abort_transaction(self) -> None:
        self.calls.append(("abort_transaction",))
        assert self.in_txn
        self._maybe_fail("abort_transaction")
        self.in_txn = False

    async def stop(self) -> None:
        self.calls.append(("stop",))
        self.stopped += 1

    @property
    def in_transaction(self) -> bool:
        return self.in_txn


class FakeConsumer:
    def __init__(self, calls: list[tuple[Any, ...]]) -> None:
        self.calls = calls

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self.calls.append(("consumer.commit", offsets))


def _names(calls: list[tuple[Any, ...]]) -> list[str]:
    return [c[0] if c[0] != "send" else f"send:{c[1]}" for c in calls]


def _symbol_state(n: int) -> SymbolTrades:
    obj = SymbolTrades(TradesParams(sma_length=2, ema_length=2, momentum_length=2, volume_window=2))
    for i in range(n):
        obj.update(Trade("binance", "BTCUSDT", i, 61000.0 + i, 0.01, "buy", 1_723_161_255_342 + i, 0))
    return obj


async def _checkpoint(
    *, transactional: bool = True, with_store: bool = True
) -> tuple[Checkpoint, FakeProducer, list]:
    calls: list[tuple[Any, ...]] = []
    producer = FakeProducer(calls, transactional=transactional)
    store = TaskStores([StoreSpec(from_state=SymbolTrades.from_state)]) if with_store else None
    cp = Checkpoint(
        [TP],
        group_id=GROUP,
        producer=producer,  # type: ignore[arg-type]
        consumer=FakeConsumer(calls),  # type: ignore[arg-type]
        store=store,
        changelog_topic=CHANGELOG if with_store else None,
        transactional=transactional,
    )
    await cp.prepare(["enriched_trades", "dead_letter", CHANGELOG])
    return cp, producer, calls


async def _fill(cp: Checkpoint, next_offset: int = 42, count: int = 2) -> None:
    """One batch: begin, two outputs, a state change, the offset."""
    await cp.begin()
    await cp.send("enriched_trades", b'{"n":1}', key=b"BTCUSDT")
    await cp.send("enriched_trades", b'{"n":2}', key=b"BTCUSDT")
    assert cp.store is not None
    cp.store[""].put("BTCUSDT", _symbol_state(3))
    cp.store_offset(TP, next_offset, count)


# ---- exactly once ---------------------------------------------------------------------------------


async def test_new_checkpoint_is_idle() -> None:
    cp, _, calls = await _checkpoint()
    assert cp.state is CheckpointState.IDLE and not cp.is_open
    assert cp.committed_offsets[TP] is None and not cp.pending_offsets and cp.pending_count == 0
    assert calls == []


async def test_commit_recipe_order_exactly_once() -> None:
    cp, producer, calls = await _checkpoint()
    await _fill(cp)
    assert cp.is_open and producer.in_txn
    state = cp.store[""].get("BTCUSDT").to_state()  # type: ignore[union-attr]

    count = await cp.commit()

    assert _names(calls) == [
        "begin_transaction",
        "send:enriched_trades",
        "send:enriched_trades",
        f"send:{CHANGELOG}",
        f"send:{CHANGELOG}",
        "send_offsets_to_transaction",
        "commit_transaction",
    ]
    _, topic, key, value, partition, _ = calls[3]
    assert (topic, key, partition) == (CHANGELOG, b"BTCUSDT", TP.partition)  # q's changelog partition
    assert orjson.loads(value) == state
    _, topic, key, value, partition, _ = calls[4]  # then the offset marker, in the same partition
    marker = OFFSET_KEY + b":raw_trades"
    assert (topic, key, partition, orjson.loads(value)) == (CHANGELOG, marker, TP.partition, {"offset": 42})
    assert calls[5] == ("send_offsets_to_transaction", {TP: OffsetAndMetadata(42, "")}, GROUP)
    assert count == 2
    assert cp.state is CheckpointState.IDLE and not producer.in_txn
    assert cp.committed_offsets[TP] == 42
    assert (cp.pending_offsets, cp.pending_count, cp.pending_failed) == ({}, 0, {})
    assert not cp.store.dirty  # type: ignore[union-attr]


async def test_the_commit_waits_for_every_send_to_be_acknowledged() -> None:
    cp, producer, calls = await _checkpoint()
    producer.auto_ack = False
    await _fill(cp)
    task = asyncio.create_task(cp.commit())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()
    assert cp.state is CheckpointState.COMMITTING
    # The changelog is sent and the offsets join the transaction while the acks are awaited; no commit yet.
    assert _names(calls)[-2:] == [f"send:{CHANGELOG}", "send_offsets_to_transaction"]
    assert "commit_transaction" not in _names(calls)
    producer.ack_all()
    assert await task == 2
    assert _names(calls)[-2:] == ["acked", "commit_transaction"]
    assert calls[-2] == ("acked", 3)  # two sends, and one changelog batch (state and offset marker)


async def test_counts_accumulate_over_batches_and_the_last_offset_wins() -> None:
    cp, _, calls = await _checkpoint()
    await _fill(cp, next_offset=10, count=10)
    cp.store_offset(TP, 25, 15)
    cp.store[""].mark_dirty("BTCUSDT")  # type: ignore[union-attr]
    assert await cp.commit() == 25
    assert cp.committed_offsets[TP] == 25
    assert [c for c in calls if c[0] == "send_offsets_to_transaction"] == [
        ("send_offsets_to_transaction", {TP: OffsetAndMetadata(25, "")}, GROUP)
    ]
    assert _names(calls).count(f"send:{CHANGELOG}") == 2  # one record per dirty key, and the offset marker


async def test_second_cycle_writes_only_what_changed() -> None:
    cp, _, calls = await _checkpoint()
    await _fill(cp)
    await cp.commit()
    calls.clear()
    await cp.begin()
    await cp.send("enriched_trades", b"{}", key=b"BTCUSDT")
    cp.store_offset(TP, 43, 1)
    assert await cp.commit() == 1
    assert _names(calls) == [
        "begin_transaction",
        "send:enriched_trades",
        f"send:{CHANGELOG}",  # only the offset marker: no key changed
        "send_offsets_to_transaction",
        "commit_transaction",
    ]
    assert calls[2][2] == OFFSET_KEY + b":raw_trades"
    assert cp.committed_offsets[TP] == 43


async def test_changelog_position_is_where_the_last_commit_began_writing_the_changelog() -> None:
    cp, producer, _ = await _checkpoint()
    assert cp.changelog_position is None
    await _fill(cp)
    await cp.commit()
    assert cp.changelog_position == 0
    assert producer.log_end[(CHANGELOG, TP.partition)] == 2  # state of BTCUSDT, offset marker
    await cp.begin()
    cp.store[""].mark_dirty("BTCUSDT")  # type: ignore[union-attr]
    cp.store_offset(TP, 50, 8)
    await cp.commit()
    assert cp.changelog_position == 2  # a restore from here sees this commit's state and marker


async def test_at_least_once_writes_no_offset_marker() -> None:
    cp, _, calls = await _checkpoint(transactional=False)
    await _fill(cp)
    await cp.commit()
    assert [c[2] for c in calls if c[0] == "send" and c[1] == CHANGELOG] == [b"BTCUSDT"]


async def test_commit_without_offsets_or_store_still_commits_the_transaction() -> None:
    cp, _, calls = await _checkpoint(with_store=False)
    await cp.begin()
    await cp.send("dead_letter", b"x", headers=[("reason", b"invalid")], partition=0)
    assert await cp.commit() == 0
    assert _names(calls) == ["begin_transaction", "send:dead_letter", "commit_transaction"]
    assert calls[1][4:] == (0, [("reason", b"invalid")])
    assert cp.committed_offsets[TP] is None


# ---- at least once --------------------------------------------------------------------------------


async def test_at_least_once_commits_offsets_on_the_consumer() -> None:
    cp, producer, calls = await _checkpoint(transactional=False)
    await _fill(cp, next_offset=7, count=7)
    assert cp.is_open and not producer.in_txn
    assert await cp.commit() == 7
    assert _names(calls) == [
        "send:enriched_trades",
        "send:enriched_trades",
        f"send:{CHANGELOG}",
        "consumer.commit",
    ]
    assert calls[-1] == ("consumer.commit", {TP: OffsetAndMetadata(7, "")})
    assert cp.committed_offsets[TP] == 7
    assert cp.state is CheckpointState.IDLE


async def test_at_least_once_flushes_before_committing_offsets() -> None:
    cp, producer, calls = await _checkpoint(transactional=False)
    producer.auto_ack = False
    await _fill(cp)
    task = asyncio.create_task(cp.commit())
    for _ in range(5):
        await asyncio.sleep(0)
    # The outputs go first and alone: the state is written only once they are acknowledged.
    assert f"send:{CHANGELOG}" not in _names(calls) and "consumer.commit" not in _names(calls)
    producer.ack_all()
    for _ in range(5):
        await asyncio.sleep(0)
    assert _names(calls)[-2:] == ["acked", f"send:{CHANGELOG}"]
    assert "consumer.commit" not in _names(calls)
    producer.ack_all()
    await task
    assert _names(calls)[-2:] == ["acked", "consumer.commit"]


async def test_at_least_once_abort_and_close_never_touch_transactions() -> None:
    cp, producer, calls = await _checkpoint(transactional=False)
    await _fill(cp)
    await cp.abort()
    await cp.begin()
    await cp.close()
    names = _names(calls)
    assert not {"begin_transaction", "commit_transaction", "abort_transaction", "send_offsets_to_transaction"} & set(
        names
    )
    assert names[-1] == "stop"


async def test_at_least_once_without_offsets_commits_nothing() -> None:
    cp, _, calls = await _checkpoint(transactional=False, with_store=False)
    await cp.begin()
    assert await cp.commit() == 0
    assert calls == []


# ---- illegal calls --------------------------------------------------------------------------------


async def test_send_when_not_open_is_refused() -> None:
    cp, _, calls = await _checkpoint()
    with pytest.raises(TransactionStateError):
        await cp.send("enriched_trades", b"{}")
    assert calls == []


async def test_store_offset_when_not_open_is_refused() -> None:
    cp, _, _ = await _checkpoint()
    with pytest.raises(TransactionStateError):
        cp.store_offset(TP, 10, 10)
    assert not cp.pending_offsets and cp.pending_count == 0


async def test_begin_twice_is_refused() -> None:
    cp, _, calls = await _checkpoint()
    await cp.begin()
    with pytest.raises(TransactionStateError):
        await cp.begin()
    assert _names(calls) == ["begin_transaction"]
    assert cp.is_open


async def test_commit_when_idle_is_refused() -> None:
    cp, _, calls = await _checkpoint()
    with pytest.raises(TransactionStateError):
        await cp.commit()
    assert calls == [] and cp.state is CheckpointState.IDLE


async def test_abort_when_idle_is_refused() -> None:
    cp, _, calls = await _checkpoint()
    with pytest.raises(TransactionStateError):
        await cp.abort()
    assert calls == []


async def test_nothing_is_allowed_after_close() -> None:
    cp, _, calls = await _checkpoint()
    await cp.close()
    assert cp.state is CheckpointState.CLOSED
    with pytest.raises(TransactionStateError):
        await cp.begin()
    with pytest.raises(TransactionStateError):
        await cp.send("enriched_trades", b"{}")
    assert _names(calls) == ["stop"]


async def test_send_and_store_offset_refused_after_commit() -> None:
    cp, _, _ = await _checkpoint()
    await _fill(cp)
    await cp.commit()
    with pytest.raises(TransactionStateError):
        await cp.send("enriched_trades", b"{}")
    with pytest.raises(TransactionStateError):
        cp.store_offset(TP, 50, 1)


async def test_append_when_not_open_is_refused() -> None:
    cp, _, calls = await _checkpoint()
    with pytest.raises(TransactionStateError):
        cp.append("enriched_trades", b"{}", key=b"BTCUSDT")
    assert calls == []


# ---- failures and abort ---------------------------------------------------------------------------


async def test_failed_send_fails_the_commit_and_abort_resets() -> None:
    cp, producer, calls = await _checkpoint()
    await _fill(cp, next_offset=10, count=10)
    await cp.commit()
    assert cp.committed_offsets[TP] == 10
    calls.clear()

    producer.fail_topics = {"enriched_trades"}
    await cp.begin()
    await cp.send("enriched_trades", b"{}", key=b"BTCUSDT")
    cp.store[""].mark_dirty("BTCUSDT")  # type: ignore[union-attr]
    cp.store_offset(TP, 20, 10)
    cp.pending_failed["invalid"] = 3
    cp.pending_outputs["enriched_trades"] += 1
    with pytest.raises(BrokerError):
        await cp.commit()
    names = _names(calls)
    assert "commit_transaction" not in names
    assert producer.in_txn
    assert cp.committed_offsets[TP] == 10

    await cp.abort()
    assert _names(calls)[-1] == "abort_transaction"
    assert cp.state is CheckpointState.IDLE and not producer.in_txn
    assert (cp.pending_offsets, cp.pending_count, cp.pending_failed) == ({}, 0, {})
    assert not cp.pending_outputs
    assert cp.committed_offsets[TP] == 10
    # The checkpoint is usable again, and the failed records are not acknowledged by the next commit.
    producer.fail_topics = set()
    await cp.begin()
    cp.store_offset(TP, 12, 2)
    assert await cp.commit() == 2
    assert cp.committed_offsets[TP] == 12


@pytest.mark.parametrize("method", ["send_offsets_to_transaction", "commit_transaction"])
async def test_broker_error_during_commit_then_abort(method: str) -> None:
    cp, producer, calls = await _checkpoint()
    await _fill(cp, next_offset=30, count=30)
    producer.fail_method = method
    with pytest.raises(BrokerError):
        await cp.commit()
    assert cp.state is CheckpointState.COMMITTING
    assert cp.committed_offsets[TP] is None
    producer.fail_method = None
    await cp.abort()
    assert _names(calls)[-1] == "abort_transaction"
    assert cp.state is CheckpointState.IDLE
    assert cp.committed_offsets[TP] is None and not cp.pending_offsets


async def test_abort_cancels_unacknowledged_sends() -> None:
    cp, producer, _ = await _checkpoint()
    producer.auto_ack = False
    await _fill(cp)
    pending = list(producer.unacked)
    assert len(pending) == 2
    await cp.abort()
    assert all(f.cancelled() for f in pending)


async def test_abort_skips_the_producer_when_no_transaction_is_open() -> None:
    cp, producer, calls = await _checkpoint()
    producer.fail_method = "begin_transaction"
    with pytest.raises(BrokerError):
        await cp.begin()
    assert cp.is_open and not producer.in_txn
    await cp.abort()
    assert "abort_transaction" not in _names(calls)
    assert cp.state is CheckpointState.IDLE


async def test_failing_abort_still_leaves_it_idle() -> None:
    cp, producer, _ = await _checkpoint()
    await _fill(cp)
    producer.fail_method = "abort_transaction"
    with pytest.raises(BrokerError):
        await cp.abort()
    assert cp.state is CheckpointState.IDLE
    assert not cp.pending_offsets


# ---- close ----------------------------------------------------------------------------------------


async def test_close_on_an_open_checkpoint_aborts_then_stops() -> None:
    cp, producer, calls = await _checkpoint()
    await _fill(cp)
    await cp.close()
    assert _names(calls)[-2:] == ["abort_transaction", "stop"]
    assert cp.state is CheckpointState.CLOSED
    assert not cp.pending_offsets and not producer.in_txn


async def test_close_when_idle_only_stops_and_only_once() -> None:
    cp, producer, calls = await _checkpoint()
    await _fill(cp)
    await cp.commit()
    calls.clear()
    await cp.close()
    await cp.close()
    assert _names(calls) == ["stop"]
    assert producer.stopped == 1


async def test_close_stops_the_producer_even_if_abort_fails() -> None:
    cp, producer, calls = await _checkpoint()
    await _fill(cp)
    producer.fail_method = "abort_transaction"
    await cp.close()
    assert _names(calls)[-2:] == ["abort_transaction", "stop"]
    assert cp.state is CheckpointState.CLOSED


async def test_close_after_a_failed_commit_aborts_the_transaction() -> None:
    cp, producer, calls = await _checkpoint()
    await _fill(cp)
    producer.fail_method = "commit_transaction"
    with pytest.raises(BrokerError):
        await cp.commit()
    producer.fail_method = None
    await cp.close()
    assert _names(calls)[-2:] == ["abort_transaction", "stop"]
    assert not producer.in_txn


# ---- transactional.id -----------------------------------------------------------------------------


def test_transactional_id_is_stable_and_distinct_per_partition() -> None:
    ids = [transactional_id("stream-processor", GROUP, [TopicPartition("raw_trades", p)]) for p in range(8)]
    assert ids == [transactional_id("stream-processor", GROUP, [TopicPartition("raw_trades", p)]) for p in range(8)]
    assert len(set(ids)) == 8
    assert ids[5] == "stream-processor-trades-enricher-raw_trades-5"
    others = {
        transactional_id("other-app", GROUP, [TopicPartition("raw_trades", 5)]),
        transactional_id("stream-processor", "other-group", [TopicPartition("raw_trades", 5)]),
        transactional_id("stream-processor", GROUP, [TopicPartition("raw_klines", 5)]),
    }
    assert len(others) == 3 and ids[5] not in others


async def test_fenced_is_the_producers() -> None:
    cp, producer, _ = await _checkpoint()
    assert not cp.fenced
    producer.fenced = True  # the client interface reads aiokafka's sender (tests/unit/engine/test_kafka_internals.py)
    assert cp.fenced


async def test_a_failed_batch_fails_the_commit_after_every_ack_is_collected() -> None:
    cp, producer, calls = await _checkpoint()
    producer.fail_topics = {"enriched_trades"}
    await _fill(cp)
    with pytest.raises(BrokerError, match="enriched_trades"):
        await cp.commit()
    assert "commit_transaction" not in _names(calls)
    await cp.abort()
    assert cp.state is CheckpointState.IDLE


# ---- pipelined commits ----------------------------------------------------------------------------


async def _fill_appended(cp: Checkpoint, next_offset: int, value: bytes) -> None:
    """One batch as the runner builds it: outputs appended (not flushed), the offset stored."""
    if not cp.is_open:
        await cp.begin()
    cp.append("enriched_trades", value, key=b"BTCUSDT")
    cp.store[""].put("BTCUSDT", _symbol_state(next_offset))  # type: ignore[union-attr]
    cp.store_offset(TP, next_offset, 1)


async def test_the_next_transaction_is_held_until_the_sealed_one_commits() -> None:
    cp, producer, calls = await _checkpoint()
    producer.auto_ack = False
    await _fill_appended(cp, 10, b'{"n":1}')
    sealed = cp.seal()
    assert cp.state is CheckpointState.COMMITTING and cp.sealed is sealed
    task = asyncio.create_task(cp.complete(sealed))
    for _ in range(5):
        await asyncio.sleep(0)
    # The next transaction opens and takes records while the first waits for its acks: nothing of it is sent.
    await _fill_appended(cp, 11, b'{"n":2}')
    assert cp.is_open
    sends = [c for c in calls if c[0] == "send"]
    assert [c[3] for c in sends if c[1] == "enriched_trades"] == [b'{"n":1}']
    assert _names(calls).count("begin_transaction") == 1
    with pytest.raises(TransactionStateError):
        cp.seal()  # one transaction at the broker at a time
    with pytest.raises(TransactionStateError):
        await cp.flush()
    producer.ack_all()
    assert await task == 1
    # The first committed; the producer began the second, which is still open (nothing sent yet).
    assert _names(calls)[-3:] == ["acked", "commit_transaction", "begin_transaction"]
    assert cp.is_open and cp.sealed is None and cp.committed_offsets[TP] == 10
    producer.auto_ack = True
    assert await cp.commit() == 1
    assert cp.committed_offsets[TP] == 11 and cp.state is CheckpointState.IDLE
    second = [c[3] for c in calls if c[0] == "send" and c[1] == "enriched_trades"]
    assert second == [b'{"n":1}', b'{"n":2}']
    assert calls[-2] == ("send_offsets_to_transaction", {TP: OffsetAndMetadata(11, "")}, GROUP)


async def test_a_sealed_transaction_that_fails_is_aborted_with_the_one_held_after_it() -> None:
    cp, producer, calls = await _checkpoint()
    await _fill_appended(cp, 10, b'{"n":1}')
    sealed = cp.seal()
    await _fill_appended(cp, 11, b'{"n":2}')  # opened in memory while the first commits
    producer.fail_method = "commit_transaction"
    with pytest.raises(BrokerError):
        await cp.complete(sealed)
    assert cp.is_open and cp.committed_offsets[TP] is None
    producer.fail_method = None
    await cp.abort()
    assert _names(calls)[-1] == "abort_transaction" and not producer.in_txn
    assert cp.state is CheckpointState.IDLE and cp.sealed is None and not cp.pending_offsets
    assert [c[3] for c in calls if c[0] == "send" and c[1] == "enriched_trades"] == [b'{"n":1}']
    # Usable again: a fresh transaction begins on the producer at once.
    await _fill_appended(cp, 12, b'{"n":3}')
    assert await cp.commit() == 1 and cp.committed_offsets[TP] == 12


async def test_complete_takes_only_the_transaction_being_committed() -> None:
    cp, _, _ = await _checkpoint()
    await _fill_appended(cp, 10, b"{}")
    sealed = cp.seal()
    await cp.complete(sealed)
    with pytest.raises(TransactionStateError):
        await cp.complete(sealed)  # already committed


async def test_at_least_once_sealed_changelog_waits_for_the_outputs_acks() -> None:
    cp, producer, calls = await _checkpoint(transactional=False)
    producer.auto_ack = False
    await cp.begin()
    await cp.send("enriched_trades", b'{"n":1}', key=b"BTCUSDT")  # at_least_once hands outputs over at once
    cp.store[""].put("BTCUSDT", _symbol_state(3))  # type: ignore[union-attr]
    cp.store_offset(TP, 7, 1)
    task = asyncio.create_task(cp.complete(cp.seal()))
    for _ in range(5):
        await asyncio.sleep(0)
    assert f"send:{CHANGELOG}" not in _names(calls)  # the state waits until the outputs are acknowledged
    await cp.begin()  # the next transaction opens meanwhile
    producer.ack_all()
    for _ in range(5):
        await asyncio.sleep(0)
    producer.ack_all()
    assert await task == 1
    assert _names(calls)[-4:] == ["acked", f"send:{CHANGELOG}", "acked", "consumer.commit"]
    assert cp.is_open and cp.committed_offsets[TP] == 7
